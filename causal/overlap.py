"""Overlap (positivity): propensity diagnostics, covariate balance, and trimming.

Works on the cross-fitted propensity of :class:`causal.nuisance.CrossFitNuisance`; it fits no model itself.

Balance is the standardized mean difference (SMD) of each covariate between arms, raw and after weighting, with the
*unweighted* pooled standard deviation as the denominator in both, so a change in SMD reflects a change in means
only (Austin & Stuart, 2015). Weights: inverse propensity (``ipw``, target ATE) or overlap weights (``overlap``,
Li, Morgan & Zaslavsky, 2018), which give exact balance of the propensity model's logit-linear terms and never
explode.

Trimming keeps units with ``threshold <= e(x) <= 1 - threshold``: a fixed threshold, or Crump, Hotz, Imbens &
Mitnik (2009)'s rule, which picks the threshold that minimises the asymptotic variance of the trimmed-population
ATE. Trimming changes the estimand to the ATE on the kept units; the results say how many were dropped, per arm
and per group.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from causal.separation import (  # noqa: F401  (re-exported: the overlap step's public names)
    SEPARATION_AUC,
    SEPARATION_MIN_COUNT,
    check_separation,
    separation,
)

log = logging.getLogger(__name__)

RULES = ("none", "fixed", "crump")
WEIGHTINGS = ("ipw", "overlap")


def crump_threshold(propensity: np.ndarray) -> float:
    """Crump et al. (2009) optimal trimming threshold alpha.

    With g = 1 / (e (1 - e)): if max g <= 2 E[g], nothing is trimmed (alpha = 0). Otherwise gamma solves
    gamma = 2 E[g | g <= gamma] and alpha = 1/2 - sqrt(1/4 - 1/gamma).

    Parameters
    ----------
    propensity : ndarray of shape (n,)
        Estimated P(T=1 | x), strictly inside (0, 1) for the units that matter.

    Returns
    -------
    float
        alpha in [0, 0.5); keep units with alpha <= e <= 1 - alpha.
    """
    e = np.asarray(propensity, dtype=np.float64).ravel()
    prod = e * (1.0 - e)
    if prod.size == 0:
        raise ValueError("crump_threshold: no propensities")
    # Units with e(1-e) == 0 have g = inf and are always trimmed; they cannot enter the running mean.
    g = np.sort(1.0 / prod[prod > 0])
    if g.size == 0:
        return 0.5
    cum_mean = np.cumsum(g) / np.arange(1, g.size + 1)
    if prod.min() > 0 and g[-1] <= 2.0 * cum_mean[-1]:
        return 0.0
    # The smallest gamma = g[k] such that gamma >= 2 * mean(g <= gamma), scanning from the best-overlap units.
    ok = np.nonzero(g >= 2.0 * cum_mean)[0]
    gamma = g[ok[0]] if ok.size else g[-1]
    return float(max(0.0, 0.5 - np.sqrt(max(0.0, 0.25 - 1.0 / gamma))))


def trim_mask(propensity: np.ndarray, *, rule: str = "fixed", threshold: float = 0.01) -> tuple[np.ndarray, float]:
    """Units kept by a trimming rule.

    Parameters
    ----------
    propensity : ndarray of shape (n,)
    rule : {"none", "fixed", "crump"}
        ``fixed`` keeps ``threshold <= e <= 1 - threshold``; ``crump`` uses :func:`crump_threshold`.
    threshold : float
        For ``fixed``, in [0, 0.5).

    Returns
    -------
    keep : ndarray of bool, shape (n,)
    alpha : float
        The threshold applied (0 for ``none``).
    """
    e = np.asarray(propensity, dtype=np.float64).ravel()
    if rule not in RULES:
        raise ValueError(f"config key overlap.rule: {rule!r} is not one of {RULES}")
    if rule == "none":
        return np.ones(e.shape, dtype=bool), 0.0
    if rule == "fixed":
        if not 0.0 <= threshold < 0.5:
            raise ValueError(f"config key overlap.threshold: {threshold} is not in [0, 0.5)")
        alpha = float(threshold)
    else:
        alpha = crump_threshold(e)
    return (e >= alpha) & (e <= 1.0 - alpha), alpha


def balancing_weights(propensity: np.ndarray, t: np.ndarray, kind: str = "overlap") -> np.ndarray:
    """Unit weights that balance the arms.

    Parameters
    ----------
    propensity : ndarray of shape (n,)
    t : ndarray of shape (n,), 0/1
    kind : {"ipw", "overlap"}
        ``ipw``: 1/e for treated, 1/(1-e) for controls. ``overlap``: 1-e for treated, e for controls.
    """
    e = np.asarray(propensity, dtype=np.float64)
    t = np.asarray(t).astype(bool)
    if kind == "ipw":
        return np.where(t, 1.0 / e, 1.0 / (1.0 - e))
    if kind == "overlap":
        return np.where(t, 1.0 - e, e)
    raise ValueError(f"config key overlap.weighting: {kind!r} is not one of {WEIGHTINGS}")


def standardized_mean_differences(
    covariates: pd.DataFrame, t: np.ndarray, weights: np.ndarray | None = None
) -> pd.Series:
    """SMD per covariate: (mean_treated - mean_control) / sqrt((var_treated + var_control) / 2).

    Means are weighted when ``weights`` is given; variances are always the unweighted ones.

    Parameters
    ----------
    covariates : DataFrame of shape (n, p), numeric
    t : ndarray of shape (n,), 0/1
    weights : ndarray of shape (n,), optional

    Returns
    -------
    Series of length p, indexed by column name (0 for a covariate constant in both arms).
    """
    values = covariates.to_numpy(dtype=np.float64)
    treated = np.asarray(t).astype(bool)
    w = np.ones(len(treated)) if weights is None else np.asarray(weights, dtype=np.float64)
    out = {}
    for j, name in enumerate(covariates.columns):
        col = values[:, j]
        ok = ~np.isnan(col)
        a, b = ok & treated, ok & ~treated
        if a.sum() < 2 or b.sum() < 2:
            out[name] = float("nan")
            continue
        sd = np.sqrt((col[a].var(ddof=1) + col[b].var(ddof=1)) / 2.0)
        diff = np.average(col[a], weights=w[a]) - np.average(col[b], weights=w[b])
        out[name] = 0.0 if sd == 0 else float(diff / sd)
    return pd.Series(out, dtype=np.float64)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / np.sum(w**2)) if w.size else 0.0


def propensity_histogram(propensity: np.ndarray, t: np.ndarray, *, bins: int = 40) -> dict[str, Any]:
    """Counts of e(x) per arm on common bins over [0, 1], the data behind the overlap plot.

    Returns
    -------
    dict
        ``edges`` (bins + 1 floats), ``treated`` and ``control`` (bins ints each).
    """
    e = np.asarray(propensity, dtype=np.float64)
    treated = np.asarray(t).astype(bool)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    return {
        "edges": edges.tolist(),
        "treated": np.histogram(e[treated], bins=edges)[0].astype(int).tolist(),
        "control": np.histogram(e[~treated], bins=edges)[0].astype(int).tolist(),
    }


def diagnose(
    propensity: np.ndarray,
    t: np.ndarray,
    covariates: pd.DataFrame,
    groups: pd.DataFrame | None = None,
    *,
    rule: str = "fixed",
    threshold: float = 0.01,
    weighting: str = "overlap",
    bins: int = 40,
    source: str = "table",
) -> tuple[dict[str, Any], np.ndarray]:
    """Overlap diagnostics and the trimming decision.

    Parameters
    ----------
    propensity : ndarray of shape (n,)
        Cross-fitted P(T=1 | x).
    t : ndarray of shape (n,), 0/1
    covariates : DataFrame of shape (n, p), numeric
        Covariates to check balance on (confounders W and modifiers X).
    groups : DataFrame of shape (n, g), optional
        Columns to count trimmed units by (``roles.groups``).
    rule, threshold : see :func:`trim_mask`
    weighting : {"ipw", "overlap"}
        Weights for ``smd_weighted`` (both are reported under ``smd_weighted_by``).
    bins : int
        Histogram bins.
    source : str
        File name(s), for messages.

    Returns
    -------
    result : dict
        ``trimmed`` (int), ``rule``, ``threshold`` (alpha applied), ``weighting``, ``smd_raw`` and ``smd_weighted``
        ({covariate: float}, on the kept units' weights), ``smd_weighted_by`` ({"ipw": ..., "overlap": ...}),
        ``max_abs_smd`` ({"raw", "weighted"}), ``ess`` ({"treated", "control"} for raw / ipw / overlap weights),
        ``propensity`` (summary by arm), ``trimmed_by_arm``, ``trimmed_by_group``, ``histogram``, ``separation``
        (:func:`separation`, plus ``trimmed``: units of one-arm levels removed, unless ``rule="none"``).
    keep : ndarray of bool, shape (n,)

    Raises
    ------
    DataError
        On complete or near-complete separation (:func:`check_separation`).
    """
    e = np.asarray(propensity, dtype=np.float64).ravel()
    t = np.asarray(t).astype(np.int8).ravel()
    if len(e) != len(t) or len(covariates) != len(t):
        raise ValueError(f"propensity ({len(e)}), treatment ({len(t)}), covariates ({len(covariates)}) differ in rows")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"config key overlap.weighting: {weighting!r} is not one of {WEIGHTINGS}")
    keep, alpha = trim_mask(e, rule=rule, threshold=threshold)
    sep = check_separation(t, covariates, source=source, propensity=e)
    keep = _trim_one_arm_levels(sep, covariates, keep, rule=rule, source=source)
    # Weights are only defined strictly inside (0, 1); clipping at 1e-6 only matters when nothing was trimmed.
    e_safe = np.clip(e, 1e-6, 1 - 1e-6)
    cov_kept = covariates.loc[keep]
    t_kept, e_kept = t[keep], e_safe[keep]
    smd_by = {
        kind: standardized_mean_differences(cov_kept, t_kept, balancing_weights(e_kept, t_kept, kind))
        for kind in WEIGHTINGS
    }
    smd_raw = standardized_mean_differences(covariates, t)
    ess = {}
    for kind, w in (("unweighted", None), ("ipw", "ipw"), ("overlap", "overlap")):
        weights = np.ones(keep.sum()) if w is None else balancing_weights(e_kept, t_kept, w)
        ess[kind] = {
            "treated": effective_sample_size(weights[t_kept == 1]),
            "control": effective_sample_size(weights[t_kept == 0]),
        }
    trimmed_by_group = {}
    if groups is not None:
        for col in groups.columns:
            frame = pd.DataFrame({"level": groups[col].astype(str).to_numpy(), "kept": keep})
            agg = frame.groupby("level", sort=True)["kept"].agg(["size", "sum"])
            trimmed_by_group[col] = [
                {"level": str(level), "n": int(row["size"]), "trimmed": int(row["size"] - row["sum"])}
                for level, row in agg.iterrows()
            ]
    result = {
        "trimmed": int((~keep).sum()),
        "rule": rule,
        "threshold": alpha,
        "weighting": weighting,
        "smd_raw": _to_dict(smd_raw),
        "smd_weighted": _to_dict(smd_by[weighting]),
        "smd_weighted_by": {kind: _to_dict(s) for kind, s in smd_by.items()},
        "max_abs_smd": {"raw": _max_abs(smd_raw), "weighted": _max_abs(smd_by[weighting])},
        "ess": ess,
        "propensity": {arm: _describe(e[t == value]) for arm, value in (("treated", 1), ("control", 0))},
        "trimmed_by_arm": {
            "treated": int((~keep & (t == 1)).sum()),
            "control": int((~keep & (t == 0)).sum()),
        },
        "trimmed_by_group": trimmed_by_group,
        "histogram": propensity_histogram(e, t, bins=bins),
        "separation": sep,
    }
    log.info(
        "overlap: rule=%s alpha=%.4f trimmed %d of %d (treated %d, control %d); max |SMD| raw %.3f -> %s %.3f",
        rule,
        alpha,
        result["trimmed"],
        len(t),
        result["trimmed_by_arm"]["treated"],
        result["trimmed_by_arm"]["control"],
        result["max_abs_smd"]["raw"],
        weighting,
        result["max_abs_smd"]["weighted"],
    )
    return result, keep


def _trim_one_arm_levels(
    sep: dict[str, Any], covariates: pd.DataFrame, keep: np.ndarray, *, rule: str, source: str
) -> np.ndarray:
    """Drop units of one-arm levels from ``keep`` (recorded in ``sep["trimmed"]``), unless ``rule="none"``.

    Why trim rather than stop: part of the sample still overlaps, and a level with no unit in the other arm is the
    same positivity failure that propensity trimming exists for; like it, this changes the estimand to the ATE on
    the units kept, which the results and the report say loudly.
    """
    sep["trimmed"] = 0
    if not sep["one_arm"] or rule == "none":
        return keep
    cols = [level["covariate"] for level in sep["one_arm"]]
    in_level = (covariates[cols].to_numpy(dtype=np.float64) == 1.0).any(axis=1)
    sep["trimmed"] = int((keep & in_level).sum())
    log.warning(
        "%s: overlap trims %d unit(s) in level(s) %s, which hold only treated or only control units; the estimate "
        "is the ATE on the remaining units",
        source,
        sep["trimmed"],
        cols,
    )
    return keep & ~in_level


def from_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`diagnose` from the ``overlap`` config node (rule, threshold, weighting, bins);
    missing keys take the structured config's defaults (:class:`causal.config_schema.OverlapConfig`)."""
    from causal.config_schema import OverlapConfig, defaults

    cfg = dict(cfg or {})
    allowed = defaults(OverlapConfig)
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise ValueError(f"config group overlap: unknown key(s) {unknown}; allowed {sorted(allowed)}")
    merged = {**allowed, **cfg}
    return {
        "rule": str(merged["rule"]),
        "threshold": float(merged["threshold"]),
        "weighting": str(merged["weighting"]),
        "bins": int(merged["bins"]),
    }


def _to_dict(s: pd.Series) -> dict[str, float]:
    return {str(k): float(v) for k, v in s.items()}


def _max_abs(s: pd.Series) -> float:
    vals = np.abs(s.to_numpy(dtype=np.float64))
    vals = vals[~np.isnan(vals)]
    return float(vals.max()) if vals.size else float("nan")


def _describe(e: np.ndarray) -> dict[str, float]:
    if e.size == 0:
        return {"n": 0}
    q = np.quantile(e, [0.01, 0.5, 0.99])
    return {
        "n": int(e.size),
        "min": float(e.min()),
        "p01": float(q[0]),
        "median": float(q[1]),
        "p99": float(q[2]),
        "max": float(e.max()),
    }
