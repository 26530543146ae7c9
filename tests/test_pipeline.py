"""The configured pipeline: Hydra composition, results contract, reproducibility, any table, the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from causal import pipeline
from causal.data import DataError
from causal.pipeline import run

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
# Shrunk settings: 1000 artworks, small fixed nuisances, a small forest. Same code path as a full run.
SHRINK = [
    "data.n_titles=100",
    "nuisance=xgboost",
    "nuisance.folds=3",
    "nuisance.classifier.n_estimators=60",
    "nuisance.regressor.n_estimators=60",
    "estimator.n_estimators=40",
]
CONTRACT = ["n_units", "n_used", "treatment", "outcome", "naive", "ate", "cate_by_group", "screening", "overlap"]


def _compose(overrides=(), hydra_cfg=False):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_cfg)


def test_default_config_composes():
    cfg = _compose(hydra_cfg=True)
    assert cfg.data.name == "simulated" and cfg.estimator.name == "causal_forest"
    # Learner choice by out-of-fold loss is the default; nuisance=xgboost_grid keeps the tuned XGBoost.
    assert cfg.nuisance.name == "auto" and "constant" in cfg.nuisance.candidates and cfg.estimand == "ate"
    assert list(cfg.steps) == ["screening", "overlap", "dml", "methods"]  # methods: estimators side by side
    assert cfg.roles.treatment == "face_present" and list(cfg.roles.modifiers) == ["genre", "country"]
    hydra_cfg = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert hydra_cfg["run"]["dir"].startswith("outputs/") and hydra_cfg["sweep"]["subdir"] == "${hydra.job.num}"
    assert hydra_cfg["sweep"]["dir"].startswith("multirun/")
    assert cfg.estimator.n_jobs == cfg.n_jobs == cfg.nuisance.n_jobs


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_composes(experiment):
    cfg = _compose([f"experiment={experiment}"])
    assert cfg.roles.treatment and cfg.roles.outcome and cfg.steps
    # annotate / evaluate / report are stages of scripts/run_experiment.py around the causal pipeline.
    assert set(cfg.steps) - {"annotate", "evaluate", "report"} <= set(pipeline.STEPS)


@pytest.mark.parametrize("group", ["estimator=linear_dml", "estimator=causal_forest", "nuisance=xgboost"])
def test_group_options_compose(group):
    cfg = _compose([group])
    assert cfg.estimator.name in ("linear_dml", "causal_forest")


def test_overrides_reach_the_config():
    cfg = _compose(["experiment=face_presence", "estimator=linear_dml", "seed=3", "roles.groups=[genre]"])
    assert cfg.estimator.name == "linear_dml" and cfg.seed == 3
    assert list(cfg.roles.modifiers) == ["genre"]  # modifiers follow groups unless set


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = _compose([*SHRINK, "overlap.rule=crump", "dml.compare=[{name: linear_dml}]"])
    return run(cfg, out), out


@pytest.mark.slow
def test_run_writes_the_results_contract(small_run):
    results, out = small_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert list(on_disk)[: len(CONTRACT)] == CONTRACT  # contract keys first, in contract order
    assert on_disk["n_units"] == 1000 and on_disk["n_used"] == 1000 - on_disk["overlap"]["trimmed"]
    assert on_disk["treatment"] == "face_present" and on_disk["outcome"] == "take_rate"
    assert set(on_disk["naive"]) >= {"difference_in_means", "ci_low", "ci_high"}
    assert set(on_disk["ate"]) >= {"method", "estimate", "stderr", "ci_low", "ci_high"}
    for col in ("genre", "country"):
        for row in on_disk["cate_by_group"][col]:
            assert set(row) >= {"level", "n", "estimate", "ci_low", "ci_high"}
    assert {"feature", "estimate", "p_value", "p_adjusted"} <= set(on_disk["screening"][0])
    assert {"trimmed", "rule", "smd_raw", "smd_weighted"} <= set(on_disk["overlap"])
    assert on_disk["overlap"]["rule"] == "crump"
    assert set(on_disk["estimates"]) == {"causal_forest", "linear_dml"}
    assert on_disk["nuisance"]["folds"] == 3 and not on_disk["nuisance"]["tuned"]


@pytest.mark.slow
def test_run_writes_truth_plots_and_timings(small_run):
    results, out = small_run
    truth = json.loads((out / "truth.json").read_text())
    assert truth == results["truth"] and "ate" in truth and "cate_by_group" in truth
    if results["overlap"]["trimmed"]:
        assert "ate_used" in truth  # the estimand after trimming: the ATE over the units kept
    for name in results["plots"].values():
        assert (out / name).stat().st_size > 1000
    assert json.loads((out / "timings.json").read_text())["total"] > 0


@pytest.mark.slow
def test_same_seed_gives_identical_results_json(tmp_path):
    cfg = _compose([*SHRINK, "+nuisance.classifier.subsample=0.8", "+nuisance.regressor.colsample_bytree=0.8"])
    run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b")
    first = (tmp_path / "a" / "results.json").read_bytes()
    assert first == (tmp_path / "b" / "results.json").read_bytes()
    run(_compose([*SHRINK, "seed=1"]), tmp_path / "c")
    assert first != (tmp_path / "c" / "results.json").read_bytes()


def _generic_table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 800
    g = rng.choice(["north", "south", "east"], size=n)
    a, b = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["x", "y"], size=n)
    t = rng.binomial(1, 1 / (1 + np.exp(-a)))
    y = a + 0.5 * b + (1.0 + (g == "south")) * t + rng.normal(size=n)
    pd.DataFrame({"id": np.arange(n), "t": t, "y": y, "a": a, "b": b, "c": c, "g": g}).to_csv(path, index=False)
    return path


def test_any_table_runs_with_roles_from_overrides(tmp_path):
    table = _generic_table(tmp_path / "my.csv")
    cfg = _compose(
        [
            *SHRINK[1:],
            "data=table",
            f"data.path={table}",
            "roles.treatment=t",
            "roles.outcome=y",
            "roles.confounders=[a,b,c]",
            "roles.groups=[g]",
        ]
    )
    results = run(cfg, tmp_path / "out")
    assert results["treatment"] == "t" and results["n_units"] == 800 and "truth" not in results
    assert [r["level"] for r in results["cate_by_group"]["g"]] == ["east", "north", "south"]
    assert not (tmp_path / "out" / "truth.json").exists()


def test_unknown_step_and_missing_step_module_are_named(tmp_path):
    with pytest.raises(ValueError, match="config key steps: unknown step"):
        run(_compose([*SHRINK, "steps=[screening,dml,explain]"]), tmp_path)
    step = pipeline._external("causal.no_such_module:run_step")
    with pytest.raises(ValueError, match="causal.no_such_module"):
        step(None)


def test_registered_step_reads_the_shared_nuisances(tmp_path, monkeypatch):
    seen = {}

    def probe(ctx):
        seen["e"] = ctx.nuisance.propensity_
        seen["folds"] = len(ctx.nuisance.folds_)
        return {"mean_propensity": float(seen["e"].mean())}

    monkeypatch.setitem(pipeline.STEPS, "probe", probe)
    results = run(_compose([*SHRINK, "steps=[overlap,probe]"]), tmp_path)
    assert seen["folds"] == 3 and results["probe"]["mean_propensity"] == pytest.approx(seen["e"].mean())
    assert "ate" not in results  # the dml step did not run


@pytest.mark.slow
def test_cli_writes_results_and_prints_a_summary(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_experiment.py"),
            *SHRINK[:-1],
            "estimator=linear_dml",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "results.json").exists() and (out / ".hydra" / "config.yaml").exists()
    assert "ATE (doubly robust)" in proc.stdout and "naive difference" in proc.stdout
    bad = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_experiment.py"),
            "data=table",
            "data.path=/nonexistent.csv",
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert bad.returncode != 0 and "/nonexistent.csv" in bad.stderr


def _metrics_without_rates(tmp_path: Path) -> Path:
    """A detector metrics file the misclassification analysis cannot read: it fails inside the sensitivity step, after
    the dml step, the way a real file from another evaluation version would (the config itself is valid)."""
    path = tmp_path / "metrics.json"
    path.write_text("{}")
    return path


# The sensitivity step is a shipped group (conf/sensitivity/default.yaml) but not a default step: added here so that a
# step runs after dml; the e-value and the misclassification analysis alone keep it short.
AFTER_DML = ["steps=[screening,overlap,dml,sensitivity]", "sensitivity.analyses=[e_value]"]
MISCLASSIFICATION = "sensitivity.analyses=[e_value,misclassification]"


@pytest.mark.slow
def test_a_step_failing_after_dml_keeps_the_ate_and_names_the_step(tmp_path):
    metrics = _metrics_without_rates(tmp_path)
    cfg = _compose([*SHRINK, *AFTER_DML, MISCLASSIFICATION, f"sensitivity.misclassification.metrics_file={metrics}"])
    results = run(cfg, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk == results
    assert on_disk["ate"]["ci_low"] < on_disk["ate"]["estimate"] < on_disk["ate"]["ci_high"]
    assert {"screening", "overlap", "naive", "cate_by_group"} <= set(on_disk)
    [error] = on_disk["errors"]
    assert (error["step"], error["type"], error["skipped"]) == ("sensitivity", "ValueError", [])
    assert str(metrics) in error["message"]
    # The failed step leaves no half-written block (its e-value was computed before the misclassification failed).
    assert "sensitivity" not in on_disk and "misclassification" not in on_disk
    assert (tmp_path / "out" / "timings.json").exists() and (tmp_path / "out" / "truth.json").exists()


def test_a_failed_step_skips_the_steps_that_need_it(tmp_path, monkeypatch):
    def no_overlap(ctx):
        ctx.keep[:] = False  # half done: must not leak into n_used
        raise DataError("no overlap")

    monkeypatch.setitem(pipeline.STEPS, "overlap", no_overlap)
    results = run(_compose([*SHRINK, *AFTER_DML]), tmp_path)
    assert results["errors"] == [
        {"step": "overlap", "type": "DataError", "message": "no overlap", "skipped": ["dml", "sensitivity"]}
    ]
    assert results["screening"] and "ate" not in results and "nuisance" not in results  # dml never fitted
    assert results["n_used"] == results["n_units"]
    assert json.loads((tmp_path / "results.json").read_text()) == results


@pytest.mark.slow
def test_cli_exit_codes_name_the_bad_key_or_the_failed_step(tmp_path):
    def cli(*overrides, name):
        script = str(REPO / "scripts" / "run_experiment.py")
        args = [sys.executable, script, *overrides, f"hydra.run.dir={tmp_path / name}"]
        return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300, check=False)

    for overrides, key in ((["+dml.comapre=[]"], "dml.comapre"), (["data=table"], "data.path")):
        bad = cli(*overrides, name=key)
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]  # one line, no traceback
        assert bad.stderr.startswith(f"config error: config key {key}: ")
    metrics = _metrics_without_rates(tmp_path)
    failed = cli(
        *SHRINK[:-1],
        "estimator=linear_dml",
        *AFTER_DML,
        MISCLASSIFICATION,
        f"sensitivity.misclassification.metrics_file={metrics}",
        name="partial",
    )
    assert failed.returncode == 1, failed.stderr[-2000:]
    results_json = tmp_path / "partial" / "results.json"
    assert failed.stderr.strip().splitlines()[-1].startswith("error: step sensitivity failed (ValueError: ")
    assert failed.stderr.strip().endswith(f"the other steps' results are in {results_json}")
    assert "ATE (doubly robust)" in failed.stdout and "step sensitivity FAILED (ValueError)" in failed.stdout
    assert json.loads(results_json.read_text())["ate"]["estimate"] is not None


def test_results_json_is_strict_and_ordered(tmp_path):
    from causal.report import order_results, to_jsonable, write_results

    results = {
        "extra": 1,
        "ate": {"estimate": np.float64(0.5), "stderr": np.nan},
        "n_units": np.int64(3),
        "screening": pd.DataFrame({"feature": ["a"], "p_value": [np.float32(0.25)]}),
    }
    path = write_results(results, tmp_path)
    text = path.read_text()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert list(loaded) == ["n_units", "ate", "screening", "extra"]
    assert loaded["ate"] == {"estimate": 0.5, "stderr": None}
    assert loaded["screening"] == [{"feature": "a", "p_value": 0.25}]
    assert list(order_results({"truth": 1, "n_used": 2})) == ["n_used", "truth"]
    with pytest.raises(TypeError, match="cannot write object"):
        to_jsonable(object())


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_interrupted_prints_one_line_and_exit_code(tmp_path, sig, code):
    """Ctrl-C / SIGTERM mid-run with the shipped defaults (the simulator experiment): no traceback, a resume hint."""
    args = [sys.executable, str(REPO / "scripts" / "run_experiment.py"), f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (tmp_path / "run" / ".hydra").is_dir():
        time.sleep(0.1)
    time.sleep(2.0)  # into the steps
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr and "run the same command again to resume" in stderr


def test_an_arm_smaller_than_the_folds_stops_the_run_before_any_step(tmp_path):
    from causal.config_problems import ConfigError
    from causal.simulate import simulate_catalog

    table = simulate_catalog(n_titles=20, seed=0).data
    table = table.drop(columns=[c for c in table.columns if c.endswith("embedding")])
    treated = np.flatnonzero(table["face_present"].astype(bool).to_numpy())
    table = table.drop(index=treated[3:])  # 3 treated rows left: fewer than the shipped 5 folds
    path = tmp_path / "small.parquet"
    table.to_parquet(path)
    cfg = _compose(["data=table", f"data.path={path}"])  # shipped steps and nuisance.folds
    with pytest.raises(ConfigError, match=r"nuisance\.folds: 5 cross-fitting folds .* has 3 treated and \d+ control"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "results.json").exists()  # stopped before screening wrote anything
