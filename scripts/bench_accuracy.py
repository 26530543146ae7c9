"""Accuracy of the ATE (and mediation) against a known truth: the project's defaults beside hand-written peers.

    python scripts/bench_accuracy.py                                   # every setup, n = 500 and 2000, 20 seeds
    python scripts/bench_accuracy.py --setups nw_a kang_schafer --sizes 500 --seeds 5          # a quick look
    python scripts/bench_accuracy.py --setups simulator --sizes 20000 --seeds 5
    python scripts/bench_accuracy.py --mediation --seeds 20            # mediation under non-linear confounding

Setups (all offline, truth known; the target is the sample ATE, the mean of the units' true effects):

* ``nw_a`` .. ``nw_d`` -- Nie & Wager (2021) setups A-D as in causalml's ``synthetic_data(mode=1..4)``, p = 6,
  sigma = 1: A difficult nuisance, easy effect; B randomised trial; C easy propensity, difficult baseline, constant
  effect; D unrelated treatment and control arms.
* ``kang_schafer`` -- Kang & Schafer (2007): the learners see only the transformed covariates; effect
  10 + 5 Z1 (varies with the propensity, so the ATE differs from a variance-weighted average).
* ``simulator`` -- the project's simulated catalog (``causal.simulate``) with n artworks, its encoded confounders.
* ``ihdp_b`` -- Hill (2011) response surface B on the IHDP covariates (747 children, 25 covariates, treated
  children of non-white mothers removed), as shipped with EconML (``econml.data.dgps.ihdp_surface_B``); the seed
  draws the coefficients and the noise; n is always 747.

Methods, each on the same data matrix:

* ``project`` -- the shipped defaults (conf/config.yaml composed with no override): ``causal.nuisance`` learner
  choice and repeats, then the ``estimand=ate`` AIPW of ``causal.estimands`` (what ``results.ate`` reports);
* ``doubleml_lasso`` / ``doubleml_rf`` -- DoubleML ``DoubleMLIRM`` (5 folds) with LassoCV + LogisticRegressionCV,
  or random forests (100 trees);
* ``econml_forest`` -- EconML ``CausalForestDML`` with its default (automatically chosen) nuisance models,
  ``ate_`` and ``ate_stderr_``;
* ``econml_dr`` -- EconML ``LinearDRLearner`` defaults, ``ate_inference``.

Printed per (setup, n, method): mean absolute error, RMSE, 95% CI coverage, mean CI width, seconds per fit, and the
ratio of the method's mean abs error to the best peer's. From the project's own nuisances, the variants its defaults
were chosen against are printed too (``project_repeats1``: one cross-fit; ``project_clip<b>``: other clipping bounds).
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
from scipy import special

REPO = Path(__file__).resolve().parents[1]
SETUPS = ("nw_a", "nw_b", "nw_c", "nw_d", "kang_schafer", "simulator", "ihdp_b")
FIXED_SIZE = {"ihdp_b": 747}  # a real covariate table: its own rows, whatever --sizes says
METHODS = ("project", "doubleml_lasso", "doubleml_rf", "econml_forest", "econml_dr")


# ---------------------------------------------------------------------------------------------------- data setups
def nie_wager(mode: str, n: int, seed: int, p: int = 6, sigma: float = 1.0) -> tuple:
    """Setups A-D of Nie & Wager (2021), as causalml's ``synthetic_data``; returns (X, t, y, tau)."""
    rng = np.random.default_rng(seed)
    if mode == "a":
        x = rng.uniform(size=(n, p))
        b = np.sin(np.pi * x[:, 0] * x[:, 1]) + 2 * (x[:, 2] - 0.5) ** 2 + x[:, 3] + 0.5 * x[:, 4]
        e = np.clip(np.sin(np.pi * x[:, 0] * x[:, 1]), 0.1, 0.9)
        tau = (x[:, 0] + x[:, 1]) / 2
    else:
        x = rng.normal(size=(n, p))
        if mode == "b":
            b = np.maximum.reduce([x[:, 0] + x[:, 1], x[:, 2], np.zeros(n)]) + np.maximum(x[:, 3] + x[:, 4], 0)
            e = np.full(n, 0.5)
            tau = x[:, 0] + np.log1p(np.exp(x[:, 1]))
        elif mode == "c":
            b = 2 * np.log1p(np.exp(x[:, 0] + x[:, 1] + x[:, 2]))
            e = 1 / (1 + np.exp(x[:, 1] + x[:, 2]))
            tau = np.ones(n)
        else:
            b = (np.maximum(x[:, 0] + x[:, 1] + x[:, 2], 0) + np.maximum(x[:, 3] + x[:, 4], 0)) / 2
            e = 1 / (1 + np.exp(-x[:, 0]) + np.exp(-x[:, 1]))
            tau = np.maximum(x[:, 0] + x[:, 1] + x[:, 2], 0) - np.maximum(x[:, 3] + x[:, 4], 0)
    t = (rng.uniform(size=n) < e).astype(int)
    y = b + (t - 0.5) * tau + sigma * rng.normal(size=n)
    return x, t, y, tau


def kang_schafer(n: int, seed: int) -> tuple:
    """Kang & Schafer (2007) with a treatment effect 10 + 5 Z1; the learners see the transformed covariates."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    e = special.expit(-z[:, 0] + 0.5 * z[:, 1] - 0.25 * z[:, 2] - 0.1 * z[:, 3])
    t = (rng.uniform(size=n) < e).astype(int)
    tau = 10 + 5 * z[:, 0]
    y0 = 210 + 27.4 * z[:, 0] + 13.7 * (z[:, 1] + z[:, 2] + z[:, 3]) + rng.normal(size=n)
    y = y0 + t * tau
    x = np.column_stack(
        [
            np.exp(z[:, 0] / 2),
            z[:, 1] / (1 + np.exp(z[:, 0])) + 10,
            (z[:, 0] * z[:, 2] / 25 + 0.6) ** 3,
            (z[:, 1] + z[:, 3] + 20) ** 2,
        ]
    )
    return x, t, y, tau


def simulator(n: int, seed: int) -> tuple:
    """The project's catalog: the encoded confounders and modifiers the pipeline's nuisances see."""
    from causal.data import Roles, load_from_config

    cfg = _compose([f"data.n_titles={max(n // 10, 1)}", f"seed={seed}"])
    from causal.pipeline import to_plain

    roles = Roles.from_config({**to_plain(cfg.roles), "mediator": None})
    ds, _ = load_from_config(cfg.data, roles, seed=seed)
    from causal.simulate import simulate_from_config

    units = simulate_from_config(cfg.data, seed=seed).units
    tau = units.set_index("image_id")["tau"].reindex(ds.frame["image_id"]).to_numpy()
    extra = [c for c in ds.X.columns if c not in ds.W.columns]
    x = pd.concat([ds.W, ds.X[extra]], axis=1).to_numpy(dtype=float)
    return x, ds.t.astype(int), ds.y, tau


def ihdp_b(seed: int) -> tuple:
    """IHDP response surface B (EconML's copy of Hill's covariates); drops EconML's intercept column."""
    from econml.data.dgps import ihdp_surface_B

    y, t, x, tau = ihdp_surface_B(random_state=seed)
    return np.asarray(x[:, 1:], dtype=float), np.asarray(t, dtype=int), np.asarray(y, dtype=float), tau


def make_data(setup: str, n: int, seed: int) -> tuple:
    if setup == "ihdp_b":
        return ihdp_b(seed)
    if setup.startswith("nw_"):
        return nie_wager(setup[-1], n, seed)
    if setup == "kang_schafer":
        return kang_schafer(n, seed)
    return simulator(n, seed)


# -------------------------------------------------------------------------------------------------------- methods
def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def project(x, t, y, seed: int, overrides: list[str]) -> dict[str, tuple[float, float, float]]:
    """The shipped defaults (``project``), and from the same nuisances the variants the defaults were chosen
    against: one cross-fit instead of ``nuisance.repeats`` (``project_repeats1``), other clipping bounds."""
    from causal import estimands
    from causal.nuisance import from_config
    from causal.pipeline import to_plain

    cfg = _compose([f"seed={seed}", *overrides])
    nuis = from_config(to_plain(cfg.nuisance), seed=seed).fit(x, t, y)
    arms = (nuis.propensity_repeats_, nuis.outcome_treated_repeats_, nuis.outcome_control_repeats_)
    clip = float(to_plain(cfg.dml).get("clip", estimands.DEFAULT_CLIP))
    variants = {"project": (arms, clip), "project_repeats1": (tuple(a[:1] for a in arms), clip)}
    for other in (0.01, 0.025, 0.05, 0.1):
        if other != clip:
            variants[f"project_clip{other:g}"] = (arms, other)
    out = {}
    for name, (use, bound) in variants.items():
        rec, _ = estimands.aipw("ate", y, t, *use, clip=bound)
        out[name] = (rec["estimate"], rec["ci_low"], rec["ci_high"])
    return out


def doubleml(x, t, y, seed: int, learners: str) -> tuple[float, float, float]:
    import doubleml as dml
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LassoCV, LogisticRegressionCV

    np.random.seed(seed)  # noqa: NPY002 -- DoubleML draws its folds from numpy's global state
    data = dml.DoubleMLData.from_arrays(x, y, t)
    if learners == "lasso":
        ml_g, ml_m = LassoCV(), LogisticRegressionCV(max_iter=1000)
    else:
        ml_g = RandomForestRegressor(n_estimators=100, random_state=seed)
        ml_m = RandomForestClassifier(n_estimators=100, random_state=seed)
    fit = dml.DoubleMLIRM(data, ml_g, ml_m, n_folds=5).fit()
    low, high = fit.confint().to_numpy()[0]
    return float(fit.coef[0]), float(low), float(high)


def econml_forest(x, t, y, seed: int) -> tuple[float, float, float]:
    from econml.dml import CausalForestDML

    est = CausalForestDML(discrete_treatment=True, random_state=seed).fit(y, t, X=x)
    ate, se = float(np.ravel(est.ate_)[0]), float(np.ravel(est.ate_stderr_)[0])
    return ate, ate - 1.96 * se, ate + 1.96 * se


def econml_dr(x, t, y, seed: int) -> tuple[float, float, float]:
    from econml.dr import LinearDRLearner

    est = LinearDRLearner(random_state=seed).fit(y, t, X=x)
    inf = est.ate_inference(X=x)
    low, high = (float(np.ravel(v)[0]) for v in inf.conf_int_mean())
    return float(np.ravel(inf.mean_point)[0]), low, high


def fit_method(method: str, x, t, y, seed: int, overrides: list[str]) -> dict[str, tuple[float, float, float]]:
    """``{method (or variant) name: (estimate, ci_low, ci_high)}``."""
    if method == "project":
        return project(x, t, y, seed, overrides)
    if method.startswith("doubleml"):
        return {method: doubleml(x, t, y, seed, method.split("_")[1])}
    if method == "econml_forest":
        return {method: econml_forest(x, t, y, seed)}
    return {method: econml_dr(x, t, y, seed)}


# ----------------------------------------------------------------------------------------------------------- runs
def run_ate(setups, sizes, seeds, methods, overrides, large_seeds, partial: Path | None = None) -> pd.DataFrame:
    """Every (setup, n, seed, method) fit; with ``partial``, the rows so far are rewritten there after each seed."""
    rows = []
    # Seed-major order: a run stopped early (see *.partial.json) has the same seeds for every setup.
    cells = [
        (setup, n)
        for setup in setups
        for n in (sizes if setup != "simulator" else sorted({*sizes, *([20000] if large_seeds else [])}))
        if setup not in FIXED_SIZE
    ] + [(setup, FIXED_SIZE[setup]) for setup in setups if setup in FIXED_SIZE]
    for seed in range(seeds):
        for setup, n in cells:
            if n > 2000 and seed >= (large_seeds or seeds):
                continue
            x, t, y, tau = make_data(setup, n, seed)
            truth = float(np.mean(tau))
            for method in methods:
                start = time.perf_counter()
                try:
                    fits = fit_method(method, x, t, y, seed, overrides)
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
                            "truth": truth,
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
    raw = raw.assign(
        abs_error=(raw.estimate - raw.truth).abs(),
        sq_error=(raw.estimate - raw.truth) ** 2,
        covered=(raw.ci_low <= raw.truth) & (raw.truth <= raw.ci_high),
        width=raw.ci_high - raw.ci_low,
    )
    table = raw.groupby(["setup", "n", "method"], sort=False).agg(
        seeds=("seed", "size"),
        mean_abs_error=("abs_error", "mean"),
        rmse=("sq_error", lambda v: float(np.sqrt(v.mean()))),
        coverage=("covered", "mean"),
        ci_width=("width", "mean"),
        seconds=("seconds", "mean"),
    )
    ours = [m for m in table.index.get_level_values("method").unique() if m.startswith("project")]
    best_peer = table.drop(index=ours, level="method").groupby(level=["setup", "n"]).mean_abs_error.min()
    table["mae_vs_best_peer"] = table.mean_abs_error / best_peer.reindex(table.index.droplevel("method")).to_numpy()
    return table.reset_index()


def run_mediation(seeds: int, n_titles: int, strength: float, overrides: list[str]) -> pd.DataFrame:
    """Face-count mediation on the simulator with non-linear confounding; coverage of each method's intervals."""
    import tempfile

    from causal.pipeline import run

    rows = []
    for seed in range(seeds):
        cfg = _compose(
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
    raw = run_ate(args.setups, args.sizes, args.seeds, args.methods, args.override, args.large_seeds, partial)
    table = summarise(raw)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.json:
        args.json.write_text(json.dumps({"raw": raw.to_dict("records"), "summary": table.to_dict("records")}))


if __name__ == "__main__":
    main()
