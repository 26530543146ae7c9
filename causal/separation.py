"""Separation of the arms: where positivity fails outright, not just thinly. A covariate or the propensity that
orders treated above control almost perfectly, and 0/1 covariates set only in one arm, are found before any effect
is estimated, and :func:`check_separation` turns complete separation into an error naming the columns."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal.crossfit import subsample_rows

log = logging.getLogger(__name__)

# A covariate (or the propensity) that ranks treated above control with AUC >= 0.99 leaves about 1% of treated-control
# pairs in the "wrong" order: the arms hardly overlap and an estimate rests on a sliver of units with huge weights.
SEPARATION_AUC = 0.99
# Units sharing a 0/1 covariate, all in one arm, that count as a structural positivity failure rather than chance:
# 30 units all in one arm at a propensity of 1/2 has probability 2e-9.
SEPARATION_MIN_COUNT = 30


def _auc(values: np.ndarray, treated: np.ndarray) -> float:
    """P(value of a random treated unit > that of a random control), ties counting 1/2 (Mann-Whitney AUC)."""
    ranks = stats.rankdata(values)
    n_t, n_c = int(treated.sum()), int((~treated).sum())
    return float((ranks[treated].sum() - n_t * (n_t + 1) / 2.0) / (n_t * n_c))


def separation(
    t: np.ndarray,
    covariates: pd.DataFrame,
    *,
    propensity: np.ndarray | None = None,
    min_count: int = SEPARATION_MIN_COUNT,
    auc_bound: float = SEPARATION_AUC,
    max_rows: int = 200_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Perfect or near-perfect separation of the arms: where positivity fails outright, not just thinly.

    Three signs: a covariate whose treated and control ranges do not overlap (``split``), or which orders treated
    above control with AUC >= ``auc_bound`` (``near``; AUC from a seeded subsample of ``max_rows`` rows); the
    cross-fitted propensity doing the same (``propensity_auc``, a combination of covariates); and 0/1 covariates
    (e.g. a dummy-coded confounder level) set in at least ``min_count`` units that are all treated or all control
    (``one_arm``).

    Returns
    -------
    dict
        ``status`` ("ok", "partial": one-arm levels only, or "complete"), ``separating`` ([{"covariate", "auc",
        "kind"}]), ``one_arm`` ([{"covariate", "n", "arm"}]), ``propensity_auc`` (or None), ``auc_bound``.
    """
    treated = np.asarray(t).astype(bool).ravel()
    values = covariates.to_numpy(dtype=np.float64)
    rows = subsample_rows(len(treated), max_rows, seed)
    if rows is None:
        rows = np.arange(len(treated))
    separating, one_arm = [], []
    for j, name in enumerate(covariates.columns):
        col = values[:, j]
        ok = ~np.isnan(col)
        a, b = col[ok & treated], col[ok & ~treated]
        if a.size == 0 or b.size == 0 or a.min() == a.max() == b.min() == b.max():
            continue
        if a.min() > b.max() or a.max() < b.min():
            separating.append({"covariate": str(name), "auc": 1.0 if a.min() > b.max() else 0.0, "kind": "split"})
            continue
        sub = rows[ok[rows]]
        auc = _auc(col[sub], treated[sub]) if treated[sub].any() and (~treated[sub]).any() else 0.5
        if max(auc, 1.0 - auc) >= auc_bound:
            separating.append({"covariate": str(name), "auc": auc, "kind": "near"})
        elif np.isin(col[ok], (0.0, 1.0)).all():
            on = ok & (col == 1.0)
            n_on, n_treated = int(on.sum()), int((on & treated).sum())
            if n_on >= min_count and n_treated in (0, n_on):
                one_arm.append({"covariate": str(name), "n": n_on, "arm": "treated" if n_treated else "control"})
    p_auc = None
    if propensity is not None and treated.any() and (~treated).any():
        e = np.asarray(propensity, dtype=np.float64).ravel()
        p_auc = _auc(e[rows], treated[rows])
    complete = bool(separating) or (p_auc is not None and p_auc >= auc_bound)
    status = "complete" if complete else ("partial" if one_arm else "ok")
    return {
        "status": status,
        "separating": separating,
        "one_arm": one_arm,
        "propensity_auc": p_auc,
        "auc_bound": auc_bound,
    }


def _separation_why(entry: Mapping[str, Any]) -> str:
    return "no overlap" if entry["kind"] == "split" else f"AUC {entry['auc']:.3f}"


def check_separation(
    t: np.ndarray, covariates: pd.DataFrame, *, source: str = "table", propensity: np.ndarray | None = None
) -> dict[str, Any]:
    """:func:`separation`, raising on complete or near-complete separation and warning on one-arm levels.

    Why stop rather than trim: when one covariate (or the propensity) splits treated from control, no unit has a
    comparable unit in the other arm, so trimming leaves nothing (or a sliver at the boundary) and any estimate is
    pure extrapolation by the outcome model -- the "real effect" a run once reported with weighted |SMD| 2.5.

    Raises
    ------
    DataError
        Naming the separating covariates (and the AUC), with the usual causes and remedies.
    """
    from causal.data import DataError  # local: causal.data does not import this module, but keep it light

    result = separation(t, covariates, propensity=propensity)
    if result["status"] == "complete":
        named = [f"{s['covariate']!r} ({_separation_why(s)})" for s in result["separating"][:5]]
        if not named:
            named = [f"the cross-fitted propensity (AUC {result['propensity_auc']:.3f}; no single covariate)"]
        raise DataError(
            f"{source}: the treatment is (nearly) perfectly separated by {', '.join(named)}: treated and control "
            "units do not overlap, so no effect can be estimated (positivity fails). Is the covariate a consequence "
            "or a proxy of the treatment (then drop it from roles.confounders/roles.modifiers)? Otherwise restrict "
            "the rows to where both arms occur (config data.query)"
        )
    for level in result["one_arm"]:
        log.warning(
            "%s: all %d units with %s are %s (no comparable units in the other arm)",
            source,
            level["n"],
            level["covariate"],
            level["arm"],
        )
    return result
