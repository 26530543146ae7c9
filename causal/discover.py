"""The hypothesis funnel: screen every visual component, then test the strongest associations causally.

``steps: [discover]`` (``experiment=discover``) runs, on one dataset:

1. **Screening** (:func:`causal.screening.screen_features`) over every candidate component: each column of the
   table except the outcome, the confounders, ids, ``data.outcome_derived`` and ``discover.exclude`` (or the
   columns listed in ``discover.features``), with Benjamini-Hochberg adjusted p-values.
2. **Hypotheses**: the ``discover.top_k`` features with the smallest adjusted p-values among those significant at
   ``discover.alpha``. A binary feature is one hypothesis (its high level against its low level); a continuous one
   is one hypothesis (the slope); a categorical one gives one hypothesis per level against the reference level
   (its most frequent), on the rows at either level.
3. **The causal chain per hypothesis**, adjusted for the confounders W (``ctx.features``), on the rows where the
   feature is present: the partially linear DML estimate ``theta`` in ``Y = theta T + g(W) + e`` (residual on
   residual with cross-fitted ``E[T | W]`` and ``E[Y | W]``, :func:`causal.dml.partially_linear`, HC0 errors).
   ``E[Y | W]`` is cross-fitted once and shared by every hypothesis on all rows; a level pair or a feature missing
   on some rows changes it, so it is cross-fitted again there.

   * binary / level: ``E[T | W]`` is a cross-fitted classifier's propensity; overlap is its range and the share
     of units outside [``dml.clip``, 1 - ``dml.clip``] (clipped there). ``theta`` is the overlap-weighted
     average effect (weights e(1 - e)), which stays estimable where few units of some confounder level carry the
     feature (an AIPW ATE with clipped inverse weights measured biased there: 0.009 against a true 0);
   * continuous: ``theta`` is the slope per unit of the feature; overlap is the share of T's variance W leaves
     (``residual_variance_share``); ``dose_response`` is the mean outcome residual ``Y - E[Y | W]`` per
     quantile bin of T (the adjusted curve's shape, with CIs);
   * sensitivity (light): the robustness value RV (Cinelli & Hazlett 2020) of the estimate's t statistic: the
     partial R^2 with both T and Y a hidden confounder needs to explain the whole estimate away (``rv``) or to
     make it insignificant (``rv_alpha``).

4. **The ranked table** ``results["hypotheses"]``: p-values adjusted with Holm over every hypothesis tested
   (``p_adjusted``), ``significant`` at ``discover.alpha``, sorted by adjusted p-value. On the simulator with
   ``data.components`` each entry also has ``truth`` (the planted effect, :mod:`causal.simulate_components`) and
   ``covers_truth``.

Each hypothesis' result is cached under ``paths.cache/discover/<key>``, keyed by the hypothesis, the method's
settings and a hash of the arrays it reads (y, t, W), so a rerun with a larger ``top_k`` reuses the ones done.
With ``discover.use_ray`` the hypotheses not in the cache run as Ray tasks (same numbers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold
from statsmodels.stats.multitest import multipletests
from threadpoolctl import threadpool_limits

from causal import dml, estimands
from causal.bands import add_bands
from causal.cache import StepCache
from causal.learners import make_learner
from causal.screening import _kind, screen_features

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "features": None,  # null: every column but the outcome, confounders, ids and data.outcome_derived
    "exclude": [],
    "top_k": 20,  # hypotheses (features) taken from screening into the causal chain
    "alpha": 0.05,  # screening (BH) and ranked table (Holm) level
    "learner": "hist_gradient_boosting",  # nuisance learner (causal.learners.make_learner spec)
    "folds": 5,
    "min_arm": 30,  # fewest rows per arm (binary / level hypotheses)
    "bins": 5,  # dose-response bins of a continuous treatment
    "bands": True,  # add people_band / face_size_band from face_count / face_area_max (causal.bands)
    "use_ray": False,  # run the hypotheses as Ray tasks (where scripts/run_experiment.py's `ray` node says)
}
TABLE_KEYS = ("feature", "treatment_kind", "estimate", "ci_low", "ci_high", "p_value", "p_adjusted", "significant")


def options(raw: dict[str, Any] | None, alpha: float) -> dict[str, Any]:
    """``discover`` config node merged over :data:`DEFAULTS`; unknown keys refused by name."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"config key discover: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, "alpha": alpha, **{k: v for k, v in raw.items() if v is not None or k == "features"}}
    if int(opts["top_k"]) < 1 or int(opts["folds"]) < 2 or int(opts["bins"]) < 2:
        raise ValueError("config key discover: top_k >= 1, folds >= 2 and bins >= 2 are required")
    return opts


# ------------------------------------------------------------------------------------------------ hypotheses
def candidates(frame: pd.DataFrame, outcome: str, confounders: list[str], opts: dict, derived: list[str]) -> list:
    """Columns screened: ``features`` when given, else every column but outcome, confounders and excluded ones."""
    if opts.get("features"):
        return [str(c) for c in opts["features"]]
    drop = {outcome, *confounders, *derived, *(opts.get("exclude") or [])}
    return [c for c in frame.columns if c not in drop]


def expand(frame: pd.DataFrame, feature: str, min_arm: int) -> list[dict[str, Any]]:
    """The hypotheses of one feature: ``feature``, ``treatment_kind``, ``level``/``reference`` and ``rows``/``t``."""
    series = frame[feature]
    present = series.notna().to_numpy()
    kind, values = _kind(series)
    if kind == "continuous":
        return [{"feature": feature, "treatment_kind": "continuous", "rows": present, "t": values.to_numpy(float)}]
    if kind == "binary":
        if pd.api.types.is_numeric_dtype(values.dtype):
            t = (values == values.max()).to_numpy(float)
            return [{"feature": feature, "treatment_kind": "binary", "rows": present, "t": t}]
        levels = sorted(values.dropna().unique())
        return [_level(feature, values, levels[1], levels[0], "binary")]
    counts = values.value_counts()
    reference = sorted(counts[counts == counts.max()].index)[0]
    out = []
    for level in sorted(counts.index):
        if level != reference and counts[level] >= min_arm:
            out.append(_level(feature, values, level, reference, "categorical_level"))
    return out


def _level(feature: str, values: pd.Series, level: Any, reference: Any, kind: str) -> dict[str, Any]:
    rows = values.isin([level, reference]).to_numpy()
    t = (values == level).to_numpy(float)
    return {
        "feature": feature,
        "treatment_kind": kind,
        "level": str(level),
        "reference": str(reference),
        "rows": rows,
        "t": t,
    }


def label(h: dict[str, Any]) -> str:
    """Display name: the feature, with ``=level vs reference`` for a level hypothesis."""
    return h["feature"] + (f"={h['level']} vs {h['reference']}" if h.get("level") is not None else "")


# ---------------------------------------------------------------------------------------------- estimation
def crossfit(
    X: np.ndarray, v: np.ndarray, spec: Any, folds: int, seed: int, *, kind: str = "regressor", n_jobs: int = 1
) -> np.ndarray:
    """Out-of-fold predictions of ``v`` from ``X`` (K folds shuffled with ``seed``; a classifier's P(v = 1)),
    with BLAS / OpenMP threads capped at ``n_jobs`` (unbounded OpenMP threads crawl on a shared machine)."""
    learner = make_learner(spec, kind=kind, seed=seed, n_rows=len(v), n_jobs=n_jobs)
    split = StratifiedKFold if kind == "classifier" else KFold
    oof = np.empty(len(v))
    with threadpool_limits(limits=int(n_jobs)):
        for train, test in split(folds, shuffle=True, random_state=seed).split(X, v):
            model = clone(learner).fit(X[train], v[train])
            oof[test] = model.predict_proba(X[test])[:, 1] if kind == "classifier" else model.predict(X[test])
    return oof


def _sensitivity(estimate: float, stderr: float, n: int, p: int, alpha: float) -> dict[str, Any]:
    from causal.sensitivity.ovb import robustness_value

    t_value = estimate / stderr if stderr > 0 else 0.0
    dof = max(n - p - 1, 2)
    return {
        "t_value": float(t_value),
        "rv": robustness_value(t_value, dof),
        "rv_alpha": robustness_value(t_value, dof, alpha=alpha),
    }


def estimate(
    y, t, X, y_hat, opts: dict, seed: int, *, binary: bool, clip: float, alpha: float, n_jobs: int = 1
) -> dict[str, Any]:
    """Partially linear DML ``Y = theta T + g(W) + e`` (residual on residual) with ``y_hat`` = E[Y | W] given.

    Binary T: ``E[T | W]`` is a cross-fitted classifier's propensity, clipped to [clip, 1 - clip]; theta is the
    overlap-weighted average effect (weights e(1 - e): units whose arm is nearly certain count little), which stays
    estimable where the ATE's inverse weights would explode. Continuous T: theta is the slope per unit of T.
    """
    kind = "classifier" if binary else "regressor"
    t_hat = crossfit(X, t, opts["learner"], int(opts["folds"]), seed, kind=kind, n_jobs=n_jobs)
    if binary:
        outside = float(np.mean((t_hat < clip) | (t_hat > 1 - clip)))
        overlap = {"propensity_min": float(t_hat.min()), "propensity_max": float(t_hat.max())}
        overlap["share_outside_clip"] = outside
        t_hat = np.clip(t_hat, clip, 1 - clip)
    else:
        var_t = float(np.var(t))
        overlap = {"residual_variance_share": float(np.var(t - t_hat) / var_t) if var_t > 0 else 0.0}
    record = dml.partially_linear(y, t, t_hat, y_hat, alpha)
    out = {"record": record, "overlap": overlap}
    out["method"] = "partially linear DML: " + (
        "overlap-weighted effect of the level" if binary else "slope per unit of the feature"
    )
    if not binary:
        out["dose_response"] = dose_response(y, t, y_hat, int(opts["bins"]), alpha)
    return out


def dose_response(y: np.ndarray, t: np.ndarray, y_hat: np.ndarray, bins: int, alpha: float) -> list[dict[str, Any]]:
    """Mean outcome residual ``Y - E[Y|W]`` per quantile bin of T: the confounder-adjusted dose-response curve's
    shape (each bin's level relative to the average artwork with the same confounders), with normal CIs."""
    edges = np.unique(np.quantile(t, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    res = y - y_hat
    out = []
    for b in range(len(edges) - 1):
        r = res[which == b]
        if len(r) < 2:
            continue
        rec = dml.effect(float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r))), alpha)
        out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(len(r)), **rec})
    return out


def _data_hash(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def run_hypothesis(h: dict, y: np.ndarray, X: np.ndarray, y_hat: np.ndarray, ctx_args: dict) -> dict[str, Any]:
    """One hypothesis through overlap, estimation and sensitivity; a plain dict (JSON types)."""
    rows = h["rows"]
    yy, tt, XX = y[rows], h["t"][rows], X[rows]
    out: dict[str, Any] = {k: h[k] for k in ("feature", "treatment_kind") if k in h}
    out.update({k: h[k] for k in ("level", "reference") if k in h})
    out["n"] = int(rows.sum())
    opts, seed, alpha = ctx_args["opts"], ctx_args["seed"], ctx_args["alpha"]
    binary = h["treatment_kind"] != "continuous"
    if binary:
        arms = (int(tt.sum()), int(len(tt) - tt.sum()))
        if min(arms) < int(opts["min_arm"]):
            return {**out, "skipped": f"arms of {arms} rows; discover.min_arm={opts['min_arm']}"}
    # E[Y | W] is shared by the hypotheses on every row; a subset (a level pair, a feature missing on some rows)
    # changes it, so it is cross-fitted again there.
    n_jobs = int(ctx_args.get("n_jobs", 1))
    yy_hat = y_hat[rows] if rows.all() else crossfit(XX, yy, opts["learner"], int(opts["folds"]), seed, n_jobs=n_jobs)
    fit = estimate(yy, tt, XX, yy_hat, opts, seed, binary=binary, clip=ctx_args["clip"], alpha=alpha, n_jobs=n_jobs)
    rec = fit.pop("record")
    out.update({k: float(rec[k]) for k in ("estimate", "stderr", "ci_low", "ci_high")})
    out["p_value"] = float(rec.get("p_value", _p_value(rec["estimate"], rec["stderr"])))
    out.update(fit)
    out["sensitivity"] = _sensitivity(out["estimate"], out["stderr"], out["n"], XX.shape[1], alpha)
    return out


def _p_value(estimate: float, stderr: float) -> float:
    from scipy import stats

    return float(2 * stats.norm.sf(abs(estimate / stderr))) if stderr > 0 else 1.0


def _cache_entry(h: dict, y, X, ctx_args: dict, cache: StepCache) -> Any:
    """The hypothesis' cache folder (``paths.cache/discover/<key>``), or None when caching is off."""
    settings = {k: ctx_args[k] for k in ("seed", "alpha", "clip")} | {"opts": ctx_args["opts"]}
    keyed = {"h": label(h), "kind": h["treatment_kind"], "settings": settings}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]
    key += _data_hash(y[h["rows"]], h["t"][h["rows"]], X[h["rows"]])
    return cache.entry("discover", key)


def _store(entry: Any, result: dict, ctx_args: dict, cache: StepCache) -> None:
    tmp_dir = ctx_args["out_dir"] / ".discover_cache"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    (tmp_dir / "hypothesis.json").write_text(json.dumps(result, default=float))
    cache.store("discover", entry.name, tmp_dir, ["hypothesis.json"])


def estimate_all(
    hypotheses: list[dict], y, X, y_hat, ctx_args: dict, cache: StepCache, *, use_ray: bool = False
) -> list:
    """:func:`run_hypothesis` of every hypothesis not in the cache (in turn, or as Ray tasks), the rest restored."""
    entries = [_cache_entry(h, y, X, ctx_args, cache) for h in hypotheses]
    results: list[dict | None] = [
        json.loads((e / "hypothesis.json").read_text()) if e is not None and (e / "_complete").is_file() else None
        for e in entries
    ]
    todo = [i for i, r in enumerate(results) if r is None]
    if use_ray and todo:
        import ray

        remote = ray.remote(run_hypothesis)
        refs = [ray.put(a) for a in (y, X, y_hat)]
        done = ray.get([remote.remote(hypotheses[i], *refs, ctx_args) for i in todo])
    else:
        done = [run_hypothesis(hypotheses[i], y, X, y_hat, ctx_args) for i in todo]
    for i, result in zip(todo, done, strict=True):
        results[i] = result
        if entries[i] is not None:
            _store(entries[i], result, ctx_args, cache)
    return results


# -------------------------------------------------------------------------------------------- table, truth
def rank(results: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Holm-adjusted p-values over the estimated hypotheses, ranked; skipped ones last (no p-value)."""
    done = [r for r in results if "p_value" in r]
    if done:
        _, adjusted, _, _ = multipletests([r["p_value"] for r in done], alpha=alpha, method="holm")
        for r, p in zip(done, adjusted, strict=True):
            r["p_adjusted"] = float(p)
            r["significant"] = bool(p <= alpha)
    done.sort(key=lambda r: (r["p_adjusted"], r["p_value"]))
    ordered = [{**{k: r[k] for k in TABLE_KEYS}, **r} for r in done]
    return ordered + [r for r in results if "p_value" not in r]


def truth_of(entry: dict[str, Any], truth: dict | None) -> float | None:
    """The simulator's true effect of one hypothesis, or None when the simulator does not define one.

    ``data.components`` columns: their planted effects (a level hypothesis: the level's shift minus the
    reference's); ``img_*`` colour columns: 0 (drawn independently of the outcome given genre); the treatment
    ``face_present``: the variance-weighted ATE (the partially linear estimand; its effect varies). The other
    face columns come with a face, so a single-column effect is not defined.
    """
    if truth is None:
        return None
    feature = entry["feature"]
    planted = (truth.get("components") or {}).get(feature)
    if isinstance(planted, dict):
        return float(planted.get(entry.get("level"), 0.0) - planted.get(entry.get("reference"), 0.0))
    if planted is not None:
        return float(planted)
    if feature.startswith("img_"):
        return 0.0
    if feature == truth.get("treatment") and entry["treatment_kind"] == "binary":
        return float(truth["ate_variance_weighted"])  # what the partially linear model estimates
    return None


def _with_truth(table: list[dict[str, Any]], truth: dict | None) -> None:
    for entry in table:
        value = truth_of(entry, truth)
        if value is not None and "ci_low" in entry:
            entry["truth"] = value
            entry["covers_truth"] = bool(entry["ci_low"] <= value <= entry["ci_high"])


def summary(table: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of the ranked table: tested, significant, and on the simulator the discoveries against the truth."""
    scored = [r for r in table if "truth" in r]
    out = {
        "n_tested": sum("p_value" in r for r in table),
        "n_significant": sum(bool(r.get("significant")) for r in table),
    }
    if scored:
        nulls = [r for r in scored if r["truth"] == 0]
        real = [r for r in scored if r["truth"] != 0]
        out["false_discoveries"] = sum(bool(r["significant"]) for r in nulls)
        out["true_discoveries"] = sum(bool(r["significant"]) for r in real)
        out["n_true_effects_tested"] = len(real)
        out["covered"] = sum(r["covers_truth"] for r in scored)
        out["n_scored"] = len(scored)
    return out


# -------------------------------------------------------------------------------------------------- step
def run_step(ctx: Any) -> dict[str, Any]:
    """The funnel (module docstring): writes ``results["hypotheses"]``; returns the screening table and counts."""
    from causal.pipeline import _node, to_plain

    opts = options(ctx.step_config("discover"), ctx.alpha)
    ds = ctx.dataset
    frame = add_bands(ds.frame) if opts["bands"] else ds.frame
    data_cfg = to_plain(_node(ctx.cfg, "data")) or {}
    derived = list(data_cfg.get("outcome_derived") or [])
    features = candidates(frame, ds.roles.outcome, list(ds.roles.confounders), opts, derived)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"config key discover.features: column(s) {missing} not in {ds.source}")
    start = time.perf_counter()
    screening = screen_features(frame, ds.roles.outcome, features, alpha=float(opts["alpha"]), source=ds.source)
    passed = screening[screening["significant"]].sort_values(["p_adjusted", "p_value"]).head(int(opts["top_k"]))
    hypotheses = [h for f in passed["feature"] for h in expand(frame, f, int(opts["min_arm"]))]
    X = ctx.features.to_numpy(dtype=np.float64)
    y = np.asarray(ds.y, dtype=np.float64)
    n_jobs = int(_node(ctx.cfg, "n_jobs") or 1)
    y_hat = crossfit(X, y, opts["learner"], int(opts["folds"]), ctx.seed, n_jobs=n_jobs)  # shared E[Y | W]
    dml_opts = ctx.step_config("dml")
    args = {
        "opts": opts,
        "seed": ctx.seed,
        "alpha": float(opts["alpha"]),
        "clip": float(dml_opts.get("clip", estimands.DEFAULT_CLIP)),
        "out_dir": ctx.out_dir,
        "n_jobs": n_jobs,
    }
    cache = StepCache(_node(_node(ctx.cfg, "paths"), "cache"))
    tested = estimate_all(hypotheses, y, X, y_hat, args, cache, use_ray=bool(opts["use_ray"]))
    table = rank(tested, float(opts["alpha"]))
    _with_truth(table, ctx.truth)
    ctx.results["hypotheses"] = table
    ctx.timings["discover"] = time.perf_counter() - start
    from causal import report

    return {
        "settings": opts,
        "screened": report.to_jsonable(screening),
        "taken": [str(f) for f in passed["feature"]],
        **summary(table),
    }
