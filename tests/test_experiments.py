"""Every experiment in conf/experiment/, composed with Hydra's compose API and run shrunk through the end-to-end
runner (causal.experiment.run_experiment, as scripts/run_experiment.py calls it), plus the step cache and the sweep
aggregation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from causal import experiment
from causal.aggregate import collect_runs, parse_overrides
from causal.summary import summary_lines

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))

# Shrunk settings: the same code path as a full run, at a size that runs in seconds.
SMALL_NUISANCE = [
    "nuisance=xgboost",
    "nuisance.folds=3",
    "nuisance.classifier.n_estimators=40",
    "nuisance.regressor.n_estimators=40",
]
SMALL_STEPS = [
    "mediation.n_boot=40",
    "sensitivity.refutations.n_sims=1",
    "sensitivity.refutations.kinds=[placebo_treatment]",
]


class _Runner:
    """causal.experiment with the vision stages the entry point passes (imported only when a test annotates)."""

    split_steps = staticmethod(experiment.split_steps)
    summary_lines = staticmethod(summary_lines)

    @staticmethod
    def run_experiment(cfg, out_dir):
        def annotate_stage(*args, **kwargs):
            from vision.stages import annotate_stage

            return annotate_stage(*args, **kwargs)

        def evaluate_stage(*args, **kwargs):
            from vision.stages import evaluate_stage

            return evaluate_stage(*args, **kwargs)

        return experiment.run_experiment(cfg, out_dir, annotate_stage=annotate_stage, evaluate_stage=evaluate_stage)


runner = _Runner()


def _compose(overrides=()):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _z(estimate: float, truth: float, se: float) -> float:
    return abs(estimate - truth) / se


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_known_steps(experiment):
    cfg = _compose([f"experiment={experiment}"])
    vision, causal, _ = runner.split_steps(list(cfg.steps))
    assert causal, "every experiment runs at least one causal step"
    assert cfg.roles.treatment and cfg.roles.outcome
    assert "mediation" in cfg and "sensitivity" in cfg and "paths" in cfg


def test_unknown_step_is_named():
    with pytest.raises(ValueError, match="unknown step"):
        runner.split_steps(["screening", "estimate_everything"])


@pytest.mark.slow
def test_face_presence_shrunk(tmp_path):
    cfg = _compose(
        ["experiment=face_presence", "data.n_titles=80", "estimator.n_estimators=40", *SMALL_NUISANCE, *SMALL_STEPS]
    )
    results, info = runner.run_experiment(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["treatment"] == "face_present" and set(on_disk["cate_by_group"]) == {"genre", "country"}
    truth = on_disk["truth"].get("ate_used", on_disk["truth"]["ate"])
    assert _z(on_disk["ate"]["estimate"], truth, on_disk["ate"]["stderr"]) < 4  # seeded; 4 SE
    assert on_disk["sensitivity"]["e_value"] > 1
    html = (tmp_path / "report.html").read_text()
    assert info["report"] == tmp_path / "report.html"
    for section in ("Screening", "Overlap and balance", "Effect", "Effect by group", "Sensitivity"):
        assert f"<h2>{section}" in html
    assert "<h2>Face detector" not in html  # no labels given: the evaluate step was skipped


@pytest.mark.slow
def test_face_count_mediation_shrunk(tmp_path):
    cfg = _compose(["experiment=face_count_mediation", "data.n_titles=150", *SMALL_NUISANCE, *SMALL_STEPS])
    results, _ = runner.run_experiment(cfg, tmp_path)
    med = results["mediation"]
    assert med["treatment"] == "face_count" and med["mediator"] == "face_area_mean"
    assert results["n_units"] < 1500  # data.query kept only artworks with a face
    truth = results["truth"]["mediation"]
    assert _z(med["indirect"]["estimate"], truth["indirect"], med["indirect"]["stderr"]) < 4
    assert "ate" not in results  # a count treatment: no binary-treatment DML step
    assert "<h2>Mediation" in (tmp_path / "report.html").read_text()


def test_screening_only_shrunk(tmp_path):
    cfg = _compose(["experiment=screening_only", "data.n_titles=50"])
    results, _ = runner.run_experiment(cfg, tmp_path)
    assert results["screening"] and "ate" not in results and "nuisance" not in results
    top = results["screening"][0]
    assert top["p_adjusted"] >= top["p_value"]
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Screening" in html and "<h2>Effect</h2>" not in html


def _generic_table(path: Path, n: int = 1500, effect: float = 0.5) -> Path:
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    segment = rng.choice(["a", "b", "c"], size=n)
    region = rng.choice(["north", "south"], size=n)
    treated = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * x1 - 0.5 * x2)))).astype(int)
    outcome = effect * treated + 1.0 * x1 + 0.5 * x2 + (segment == "b") * 0.3 + rng.normal(scale=1.0, size=n)
    frame = pd.DataFrame(
        {"unit_id": np.arange(n), "treated": treated, "outcome": outcome, "x1": x1, "x2": x2}
        | {"segment": segment, "region": region}
    )
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_generic_table_shrunk(tmp_path):
    table = _generic_table(tmp_path / "table.csv")
    cfg = _compose(["experiment=generic_table", f"data.path={table}", *SMALL_NUISANCE, *SMALL_STEPS])
    results, _ = runner.run_experiment(cfg, tmp_path / "run")
    assert results["treatment"] == "treated" and results["overlap"]["rule"] == "crump"
    assert _z(results["ate"]["estimate"], 0.5, results["ate"]["stderr"]) < 4
    naive_bias = results["naive"]["difference_in_means"] - 0.5
    assert naive_bias > 3 * results["naive"]["stderr"]  # confounded on x1: the naive difference is biased up
    assert set(results["cate_by_group"]) == {"segment", "region"}
    assert (tmp_path / "run" / "report.html").is_file()


@pytest.mark.slow
def test_causal_steps_cached_until_config_changes(tmp_path):
    base = ["experiment=screening_only", "data.n_titles=40", f"paths.cache={tmp_path / 'cache'}"]
    first, info1 = runner.run_experiment(_compose(base), tmp_path / "a")
    second, info2 = runner.run_experiment(_compose(base), tmp_path / "b")
    assert not info1.get("causal_cached") and info2.get("causal_cached")
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()
    assert (tmp_path / "b" / "report.html").is_file()
    _, info3 = runner.run_experiment(_compose([*base, "seed=5"]), tmp_path / "c")
    assert not info3.get("causal_cached")
    _, info4 = runner.run_experiment(_compose([*base, "paths.outputs=elsewhere"]), tmp_path / "d")
    assert info4.get("causal_cached")  # where files go is not part of the key


def test_a_failed_causal_step_is_reported_and_never_cached(tmp_path, monkeypatch):
    from causal import pipeline

    def broken(ctx):
        raise RuntimeError("screening broke")

    base = ["experiment=screening_only", "data.n_titles=40", f"paths.cache={tmp_path / 'cache'}"]
    with monkeypatch.context() as patch:
        patch.setitem(pipeline.STEPS, "screening", broken)
        failed, _ = runner.run_experiment(_compose(base), tmp_path / "a")
    assert failed["errors"][0]["step"] == "screening" and "screening" not in failed
    assert "step screening FAILED (RuntimeError): no results for it" in runner.summary_lines(failed)
    assert json.loads((tmp_path / "a" / "results.json").read_text())["errors"] == failed["errors"]
    report = (tmp_path / "a" / "report.html").read_text()  # the report still shows what was computed
    assert "Steps that failed in this run" in report
    assert "screening</b> failed (RuntimeError: screening broke)" in report
    # Had the failed run been cached, this run would replay the error instead of computing the screening.
    second, info = runner.run_experiment(_compose(base), tmp_path / "b")
    assert not info.get("causal_cached") and second["screening"] and "errors" not in second


def test_aggregate_runs_reads_overrides_and_results(tmp_path):
    for num, (est, seed, ate) in enumerate([("linear_dml", 1, 0.01), ("causal_forest", 2, 0.02)]):
        run = tmp_path / str(num)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- estimator={est}\n- seed={seed}\n")
        results = {
            "treatment": "t",
            "outcome": "y",
            "n_units": 10,
            "n_used": 10,
            "ate": {"estimate": ate, "stderr": 0.005, "ci_low": ate - 0.01, "ci_high": ate + 0.01},
            "truth": {"ate": 0.015},
        }
        (run / "results.json").write_text(json.dumps(results))
    table = collect_runs(tmp_path)
    assert list(table["estimator"]) == ["linear_dml", "causal_forest"] and list(table["seed"]) == ["1", "2"]
    assert list(table["ate"]) == [0.01, 0.02] and table["ci_covers_truth"].all()
    assert parse_overrides(["+a.b=1", "~c"]) == {"a.b": "1", "c": "(deleted)"}
    with pytest.raises(FileNotFoundError, match="no results.json"):
        collect_runs(tmp_path / "0" / ".hydra")


def test_runner_and_causal_do_not_import_torch_or_vision():
    code = (
        "import importlib.util, sys\n"
        "import causal.pipeline, causal.report_html, causal.cache, causal.aggregate\n"
        f"spec = importlib.util.spec_from_file_location('r', {str(REPO / 'scripts' / 'run_experiment.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'vision')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
