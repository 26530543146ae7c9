"""The project as an installable tool: the wheel carries every package, the configs and the weights, installs into a
fresh virtual environment, and its console command runs an experiment from a directory outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _package_dirs() -> set[str]:
    """Every folder of vision/, causal/ and conf/ (as creative_insights_conf) that holds code or data."""
    found = set()
    for root, wheel_name in (("vision", "vision"), ("causal", "causal"), ("conf", "creative_insights_conf")):
        for folder in [REPO / root, *sorted(p for p in (REPO / root).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(f.is_file() for f in folder.iterdir()):
                continue
            found.add(".".join([wheel_name, *folder.relative_to(REPO / root).parts]))
    return found


def test_pyproject_lists_every_package_folder() -> None:
    """setuptools is given the package list explicitly (conf/ is mapped in); a new folder must be added there."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert listed == _package_dirs()


def test_causal_finds_the_vision_plugins_by_name() -> None:
    from causal.cli import plugin

    assert plugin("creative_insights.stages", "annotate").__module__ == "vision.stages"
    with pytest.raises(ImportError, match="no creative_insights.stages plugin named 'nothing'"):
        plugin("creative_insights.stages", "nothing")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    # No deprecation noise from the project's own metadata (license table, package data as packages).
    noise = [line for line in (build.stdout + build.stderr).splitlines() if "deprecat" in line.lower()]
    assert not noise, noise
    (path,) = out.glob("creative_insights-*.whl")
    return path


@pytest.mark.slow
def test_wheel_carries_packages_configs_weights_and_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _package_dirs():
        assert any(n.startswith(package.replace(".", "/") + "/") for n in names), package
    configs = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert {f"creative_insights_conf/{c}" for c in configs} <= names
    weights = {p.relative_to(REPO).as_posix() for p in (REPO / "vision").rglob("*") if p.suffix in (".npz", ".onnx")}
    assert weights <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


@pytest.mark.slow
def test_wheel_in_a_fresh_environment_runs_the_console_command(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=env)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    subprocess.run(install, check=True, timeout=300, capture_output=True, env=env)
    # The dependencies (torch, EconML, ...) come from this environment rather than the network: a .pth line puts its
    # site-packages after the new environment's own, where the wheel is installed; the checkout is never on the path.
    # Written after the install, so that pip never sees this environment's own (editable) creative-insights.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    command = str(venv / "bin" / "creative-insights")
    help_run = subprocess.run([command, "--help"], cwd=outside, env=env, capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0 and "experiment" in help_run.stdout and "annotate" in help_run.stdout
    where = subprocess.run(
        [str(python), "-c", "import causal, creative_insights_conf; print(causal.__file__)"],
        cwd=outside, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(REPO) not in where  # the installed copy, not the checkout
    overrides = ["data.n_titles=40", "steps=[screening,overlap]", "paths.cache=null", "hydra.run.dir=run"]
    run = subprocess.run(
        [command, "experiment", *overrides], cwd=outside, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (outside / "run" / "results.json").is_file() and (outside / "run" / "report.html").is_file()
    assert (outside / "run" / "experiment.log").is_file()
