"""Benchmark the configured causal chain against the same library calls composed naively.

    python scripts/bench_causal.py                          # n = 10k and 100k, both variants
    python scripts/bench_causal.py --sizes 1000000 --variants ours
    python scripts/bench_causal.py --sizes 10000 --override nuisance=xgboost --n-jobs 1

Both variants run the same steps on the same simulated catalog (30 covariates: genre and country dummies,
popularity, release year, two image statistics and 12 PCA components of a 16-d image embedding) with the same
cross-fitting folds and the same forest settings:

* ``ours``: ``causal.pipeline.run`` with the shipped nuisance default -- screening; nuisance learners chosen once by
  out-of-fold loss (on at most ``nuisance.select_max_rows`` rows) and cross-fitted once (one repeat above
  ``nuisance.repeats_max_rows``); overlap diagnostics, the AIPW estimands, LinearDML and CausalForestDML (group
  CATEs from doubly robust scores) and the moderation regressions all reuse them.
* ``naive``: every step fits its own nuisances and tunes on all rows -- the overlap step grid-searches and
  cross-fits its own propensity model; LinearDML and CausalForestDML each get ``GridSearchCV`` nuisance models,
  which EconML tunes on all rows and then cross-fits itself; group CATEs from ``ate_inference(X=subset)``.

Each (size, variant) runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. "chain" seconds
exclude simulating and preparing the data (identical in both variants); peak RSS includes them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFOUNDERS = "[genre,country,title_popularity,release_year,img_brightness,img_colourfulness,image_embedding]"


def overrides_for(n: int, n_jobs: int, extra: list[str], variant: str = "ours") -> list[str]:
    # ours: the shipped nuisance default (learner choice by out-of-fold loss, conf/nuisance/auto.yaml); naive
    # composes the XGBoost grid by hand, so it keeps nuisance=xgboost_grid (its grid is what it searches).
    return [
        f"data.n_titles={max(n // 10, 1)}",
        "data.artworks_per_title=10",
        "data.embedding_dim=16",
        "data.prepare.n_components=12",
        f"roles.confounders={CONFOUNDERS}",
        "steps=[screening,overlap,dml]",
        *(["nuisance=xgboost_grid"] if variant == "naive" else []),
        "estimator=causal_forest",
        "dml.compare=[{name: linear_dml}]",
        f"n_jobs={n_jobs}",
        *extra,
    ]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_ours(cfg) -> dict:
    from causal.pipeline import run

    with tempfile.TemporaryDirectory() as out:
        results = run(cfg, out)
        timings = json.loads((Path(out) / "timings.json").read_text())
    return {
        "seconds_data": timings["data"],
        "seconds_chain": timings["total"] - timings["data"],
        "stages": {k: round(v, 2) for k, v in timings.items()},
        "ate": results["ate"]["estimate"],
        "ate_linear_dml": results["estimates"]["linear_dml"]["ate"]["estimate"],
        "truth": results["truth"]["ate"],
    }


def _grid_search(nuis: dict, kind: str, seed: int, n_jobs: int, inside_econml: bool):
    """The naive chain's tuned learner: a grid search over the nuisance grid of ``kind``."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from causal.nuisance import make_classifier, make_regressor

    base = (make_classifier if kind == "classifier" else make_regressor)(nuis[kind], seed=seed, n_jobs=n_jobs)
    # Inside EconML the searcher's cv is replaced by EconML's own cross-fitting folds (SklearnCVSelector).
    cv = None if inside_econml else StratifiedKFold(int(nuis["tune_folds"]), shuffle=True, random_state=seed)
    scoring = "neg_log_loss" if kind == "classifier" else "neg_mean_squared_error"
    return GridSearchCV(base, nuis["grid"][kind], cv=cv, scoring=scoring, n_jobs=1)


def run_naive(cfg) -> dict:
    """The same library calls, composed the obvious way: every step fits and tunes its own nuisances on all rows."""
    import numpy as np
    import pandas as pd
    from econml.dml import CausalForestDML, LinearDML
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from causal import dml, overlap
    from causal.pipeline import build_dataset, to_plain
    from causal.screening import screen_features

    stages: dict[str, float] = {}
    start = time.perf_counter()
    ds, truth = build_dataset(cfg)
    stages["data"] = time.perf_counter() - start
    seed, nj = int(cfg.seed), int(cfg.n_jobs)
    nuis = to_plain(cfg.nuisance)
    folds = int(nuis["folds"])
    features = pd.concat([ds.W, ds.X[[c for c in ds.X.columns if c not in ds.W.columns]]], axis=1)
    feats = features.to_numpy(dtype=np.float32)

    def search(kind: str, inside_econml: bool = True):
        return _grid_search(nuis, kind, seed, nj, inside_econml)

    t0 = time.perf_counter()
    screen_features(ds.frame, ds.roles.outcome, alpha=float(cfg.alpha), exclude=list(cfg.data.outcome_derived or []))
    stages["screening"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gs = search("classifier", inside_econml=False).fit(feats, ds.t.astype(int))
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    e = cross_val_predict(clone(gs.best_estimator_), feats, ds.t.astype(int), cv=split, method="predict_proba")[:, 1]
    ov = overlap.from_config(to_plain(cfg.overlap))
    _, keep = overlap.diagnose(e, ds.t, features, ds.groups, **ov)
    stages["overlap"] = time.perf_counter() - t0

    y, t = ds.y[keep], ds.t[keep].astype(int)
    X = ds.X.loc[keep].to_numpy(dtype=np.float64)
    W = ds.W.loc[keep].to_numpy(dtype=np.float64)
    groups = ds.groups.loc[keep].reset_index(drop=True)
    forest_cfg = to_plain(cfg.estimator)
    forest = {k: v for k, v in forest_cfg.items() if k not in ("name", "max_samples_rows") and v is not None}
    forest["max_samples"] = min(forest.get("max_samples", 0.45), forest_cfg["max_samples_rows"] / len(y))
    ates = {}
    for name, est in (
        (
            "linear_dml",
            LinearDML(
                model_y=search("regressor"),
                model_t=search("classifier"),
                discrete_treatment=True,
                cv=folds,
                random_state=seed,
            ),
        ),
        (
            "causal_forest",
            CausalForestDML(
                model_y=search("regressor"),
                model_t=search("classifier"),
                discrete_treatment=True,
                cv=folds,
                random_state=seed,
                **forest,
            ),
        ),
    ):
        t0 = time.perf_counter()
        est.fit(y, t, X=X, W=W)
        ates[name] = float(est.ate_inference(X=X).mean_point)
        for col in groups.columns:
            for level in sorted(groups[col].unique()):
                est.ate_inference(X=X[(groups[col] == level).to_numpy()]).conf_int_mean()
        stages[f"estimator_{name}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = ds.frame.loc[keep].reset_index(drop=True)
    for mod in ds.roles.modifiers:
        dml.moderation(y, t, frame[mod], ds.W.loc[keep].reset_index(drop=True))
    stages["moderation"] = time.perf_counter() - t0
    stages["total"] = time.perf_counter() - start
    return {
        "seconds_data": stages["data"],
        "seconds_chain": stages["total"] - stages["data"],
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "ate": ates["causal_forest"],
        "ate_linear_dml": ates["linear_dml"],
        "truth": truth["ate"],
    }


def child(variant: str, n: int, n_jobs: int, extra: list[str], out: Path) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    cfg = _compose(overrides_for(n, n_jobs, extra, variant))
    start = time.perf_counter()
    record = run_ours(cfg) if variant == "ours" else run_naive(cfg)
    record.update(
        {
            "variant": variant,
            "n": n,
            "n_jobs": n_jobs,
            "seconds_total": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            # CPU seconds of the whole child: on a shared machine wall time depends on the load, this does not.
            "cpu_seconds": sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime")),
        }
    )
    out.write_text(json.dumps(record, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--variants", nargs="+", default=["ours", "naive"], choices=["ours", "naive"])
    parser.add_argument("--n-jobs", type=int, default=2, help="threads per model (the targets assume 2 cores)")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override, repeatable")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per (size, variant) run")
    parser.add_argument("--json", type=Path, default=None, help="also write all records here")
    parser.add_argument("--child", choices=["ours", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.n_jobs, args.override, args.record)
        return

    records = [_run_child(args, n, variant) for n in args.sizes for variant in args.variants]
    _print_records(records)
    _print_ratios(records, args.sizes)
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))


def _run_child(args: argparse.Namespace, n: int, variant: str) -> dict:
    """One (size, variant) run in a fresh process (so peak RSS is its own); its record."""
    with tempfile.TemporaryDirectory() as tmp:
        record_path = Path(tmp) / "record.json"
        cmd = [sys.executable, __file__, "--child", variant, "--n", str(n), "--n-jobs", str(args.n_jobs)]
        cmd += ["--record", str(record_path)]
        for extra in args.override:
            cmd += ["--override", extra]
        print(f"n={n:>9,d} {variant:5s} ...", end=" ", flush=True)
        start = time.perf_counter()
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        try:
            proc = subprocess.run(
                cmd, cwd=REPO, timeout=args.timeout, capture_output=True, text=True, env=env, check=False
            )
        except subprocess.TimeoutExpired:
            print(f"timed out after {args.timeout:.0f}s")
            return {"variant": variant, "n": n, "timed_out": True, "seconds_total": args.timeout}
        if proc.returncode != 0:
            print("failed\n" + proc.stderr[-3000:])
            return {"variant": variant, "n": n, "failed": True}
        rec = json.loads(record_path.read_text())
    wall = time.perf_counter() - start
    print(f"{wall:.0f}s wall, chain {rec['seconds_chain']:.1f}s, peak {rec['peak_rss_mb']:.0f} MB")
    return rec


def _print_records(records: list[dict]) -> None:
    print()
    header = (
        f"{'n':>10} {'variant':8} {'chain s':>9} {'data s':>8} {'peak MB':>9} {'ATE forest':>11} {'ATE linear':>11} "
    )
    print(header + f"{'truth':>9}")
    for r in records:
        if r.get("timed_out") or r.get("failed"):
            print(f"{r['n']:>10,d} {r['variant']:8} {'timed out' if r.get('timed_out') else 'failed':>9}")
            continue
        print(
            f"{r['n']:>10,d} {r['variant']:8} {r['seconds_chain']:>9.1f} {r['seconds_data']:>8.1f} "
            f"{r['peak_rss_mb']:>9.0f} {r['ate']:>11.5f} {r['ate_linear_dml']:>11.5f} {r['truth']:>9.5f}"
        )
    print()


def _print_ratios(records: list[dict], sizes: list[int]) -> None:
    """Naive over ours, in the same run: time and peak memory per size."""
    for n in sizes:
        by = {r["variant"]: r for r in records if r["n"] == n}
        ours, naive = by.get("ours"), by.get("naive")
        if not (ours and naive and "seconds_chain" in ours):
            continue
        if naive.get("timed_out"):
            print(
                f"n={n:,d}: naive did not finish in {naive['seconds_total']:.0f}s; "
                f"speed-up > {naive['seconds_total'] / ours['seconds_chain']:.1f}x"
            )
        elif "seconds_chain" in naive:
            print(
                f"n={n:,d}: naive / ours = {naive['seconds_chain'] / ours['seconds_chain']:.2f}x time, "
                f"{naive['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x peak RSS"
            )


if __name__ == "__main__":
    main()
