"""Coverage of every estimator of the ``methods`` step, and the agreement test's size and power.

    nice -n 10 python scripts/bench_methods.py                          # 50 seeds, n = 2000 artworks
    python scripts/bench_methods.py --seeds 10 --n 1000                 # a quick look

Part 1 (coverage). For each seed, the simulated catalog (``data=simulated``, ``data.n_titles = n / 10``) runs
through the shipped defaults (``causal.pipeline.run`` with steps ``[overlap, dml, methods]``); each entry of
``estimates_by_method`` is checked against the simulator's truth for its estimand (``truth.ate`` or ``truth.att``,
the sample's mean true effects). Printed per estimator: mean error, mean absolute error, CI coverage with its
binomial standard error, mean CI width, and the SD over seeds of error / standard error (1 when the standard errors
are right; above 1 when they are too small). Also the agreement test's rejection rate (its size: nothing is wrong).

Part 2 (power). A design with a known confounder x0 (n units, effect 1): the outcome models are cross-fitted once
with every confounder and once with x0 dropped (the propensity model keeps it), and the agreement test's
rejection rate is printed for both.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def coverage(seeds: int, n: int, jsonl: Path | None = None) -> None:
    from causal.pipeline import run

    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    rejected = []
    start = time.perf_counter()
    for seed in range(seeds):
        cfg = _compose([f"seed={seed}", f"data.n_titles={max(n // 10, 1)}", "steps=[overlap,dml,methods]"])
        with tempfile.TemporaryDirectory() as tmp:
            results = run(cfg, tmp)
        truth = results["truth"]
        for name, rec in results["estimates_by_method"].items():
            target = truth["att"] if rec["estimand"] == "att" else truth["ate"]
            err = rec["estimate"] - target
            errors = (err, rec["ci_low"] - target, rec["ci_high"] - target, err / rec["stderr"])
            rows.setdefault(name, []).append(errors)
        rejected.append(results["agreement"]["verdict"] == "disagree")
        outcome_model = results["nuisance"]["learners"]["outcome"]["chosen"]
        print(f"seed {seed}: {time.perf_counter() - start:.0f}s, outcome model {outcome_model}", flush=True)
        if jsonl is not None:  # one line per seed, so an interrupted run keeps what it measured
            record = {"seed": seed, "outcome_model": outcome_model, "truth": {k: truth[k] for k in ("ate", "att")}}
            record["estimates"] = results["estimates_by_method"]
            record["agreement"] = results["agreement"]["verdict"]
            with jsonl.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
    print(f"\nsimulator, n = {n}, {seeds} seeds: error against the truth of each estimand")
    print(f"{'method':<20}{'mean err':>11}{'mean |err|':>11}{'coverage':>10}{'(+- se)':>9}{'CI width':>11}{'sd z':>7}")
    for name, values in rows.items():
        err, lo, hi, z = (np.array(v) for v in zip(*values))
        cover = np.mean((lo <= 0) & (hi >= 0))
        se = np.sqrt(cover * (1 - cover) / len(err)) if 0 < cover < 1 else np.sqrt(0.95 * 0.05 / len(err))
        width = (hi - lo).mean()
        line = f"{name:<20}{err.mean():>11.5f}{np.abs(err).mean():>11.5f}{cover:>10.2f}{se:>9.2f}{width:>11.5f}"
        print(line + f"{z.std(ddof=1):>7.2f}")  # sd of error / stderr: 1 when the standard error is right
    print(f"agreement test rejects (nothing planted): {np.mean(rejected):.2f} of {seeds} (nominal 0.05)")


def planted(seed: int, n: int, drop: bool) -> bool:
    """One draw of the misspecification design; True when the agreement test rejects."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from causal.agreement import agreement_test
    from causal.crossfit import cross_predict, make_folds
    from causal.methods import estimate_all

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    t = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))).astype(int)
    y = t + 1.5 * x[:, 0] + x[:, 1] + 0.5 * x[:, 2] + rng.normal(size=n)
    folds = make_folds(n, seed=seed, stratify=t)
    e = cross_predict(LogisticRegression(), x, t, folds)
    xo = x[:, 1:] if drop else x
    mu1 = cross_predict(LinearRegression(), xo, y, folds, train_mask=t == 1)
    mu0 = cross_predict(LinearRegression(), xo, y, folds, train_mask=t == 0)
    estimates, parts = estimate_all(y, t, (e, mu1, mu0))
    return agreement_test(estimates, parts)["verdict"] == "disagree"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--n", type=int, default=2000, help="simulated artworks (part 1) and units (part 2)")
    parser.add_argument("--skip-coverage", action="store_true")
    parser.add_argument("--jsonl", type=Path, default=None, help="append one JSON record per seed (part 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    power = {drop: np.mean([planted(s, args.n, drop) for s in range(args.seeds)]) for drop in (False, True)}
    print(f"planted design, n = {args.n}, {args.seeds} seeds: agreement test rejects")
    print(f"  every confounder in the outcome model: {power[False]:.2f} (nominal 0.05)")
    print(f"  confounder x0 dropped from the outcome model: {power[True]:.2f}")
    if not args.skip_coverage:
        coverage(args.seeds, args.n, args.jsonl)


if __name__ == "__main__":
    main()
