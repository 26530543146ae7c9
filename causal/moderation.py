"""Moderation (Baron & Kenny): does the treatment's effect differ across the levels of a moderator? OLS of the
outcome on T, the moderator, T x moderator and the confounders, with HC3 standard errors computed in O(n p) memory."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal.data import MIN_LEVEL_COUNT, pool_rare_levels
from causal.effects import _z, effect

log = logging.getLogger(__name__)


def moderation(
    y: np.ndarray,
    t: np.ndarray,
    moderator: pd.Series,
    confounders: pd.DataFrame,
    *,
    alpha: float = 0.05,
    min_level_count: int = MIN_LEVEL_COUNT,
    max_levels: int | None = 50,
) -> dict[str, Any]:
    """Baron & Kenny moderation: OLS of y on T, the moderator, T x moderator and confounders, HC3 SEs.

    Fitted by :func:`ols_hc3` (statsmodels' HC3 numbers in O(n p) memory).

    A categorical moderator enters as dummies (reference: its most frequent level) and each T x level term is the
    difference in effect from the reference level; a numeric one is centred, so the T coefficient is the effect at
    the moderator's mean. Levels with fewer than ``min_level_count`` rows, and those beyond the ``max_levels`` most
    frequent, pool into "other" first (:func:`causal.data.pool_rare_levels`): each level costs two design columns
    and a column-by-column rank check, so 5,000 raw levels took over 11 minutes, for terms that are noise anyway.

    Parameters
    ----------
    y, t : ndarray of shape (n,)
    moderator : Series of length n
        Raw moderator column.
    confounders : DataFrame of shape (n, p), numeric
        Encoded confounders W. Columns in the span of the moderator's dummies (the moderator is usually a
        confounder too) are dropped so the design has full rank.
    min_level_count, max_levels : int
        Level pooling (config ``data.prepare.min_level_count`` and ``max_levels``).

    Returns
    -------
    dict
        ``kind`` ("categorical" or "numeric"), ``reference``, ``treatment`` (effect record at the reference level
        or mean), ``interactions`` ([{"term", "level", estimate, stderr, ci, p_value}]), ``joint`` (Wald test of
        all interaction terms: ``chi2``, ``df``, ``p_value``), ``cov_type`` ("HC3"), ``n``, and for a categorical
        moderator ``levels`` (distinct raw levels) and ``pooled_levels`` (how many went into "other").
    """
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    numeric = pd.api.types.is_numeric_dtype(moderator) and not pd.api.types.is_bool_dtype(moderator)
    numeric = numeric and moderator.nunique(dropna=True) > 10
    if numeric:
        m = moderator.to_numpy(dtype=np.float64)
        m = np.where(np.isnan(m), np.nanmean(m), m) - np.nanmean(m)
        main = m[:, None]
        names = [str(moderator.name)]
        reference = "mean"
    else:
        raw = moderator.astype(str).fillna("missing")
        levels = pool_rare_levels(raw, min_count=min_level_count, max_levels=max_levels)
        pooling = {"levels": int(raw.nunique()), "pooled_levels": int(raw.nunique() - levels.nunique())}
        pooling["pooled_levels"] += int(pooling["pooled_levels"] > 0)  # "other" replaced them: it is not one of them
        counts = levels.value_counts()
        reference = str(sorted(counts.index[counts == counts.max()])[0])
        others = sorted(lv for lv in counts.index if lv != reference)
        main = np.column_stack([(levels == lv).to_numpy(dtype=np.float64) for lv in others]) if others else None
        names = others
    if main is None:
        note = "moderator has one level" + (" after pooling rare levels" if pooling["pooled_levels"] else "")
        return {"kind": "categorical", "reference": reference, "note": f"{note}; nothing to test", **pooling}
    head = np.column_stack([np.ones_like(t), t, t[:, None] * main, main])
    k = main.shape[1]
    params, cov, kept = ols_hc3(y, head, confounders.to_numpy(dtype=np.float64))
    bse = np.sqrt(np.diag(cov))
    inter = slice(2, 2 + k)
    z = _z(alpha)
    interactions = []
    for j, name in enumerate(names):
        est, se = params[2 + j], bse[2 + j]
        identified = bool(kept[2 + j])
        interactions.append(
            {
                "term": f"T x {name}",
                "level": name,
                "estimate": float(est) if identified else float("nan"),
                "stderr": float(se) if identified else float("nan"),
                "ci_low": float(est - z * se) if identified else float("nan"),
                "ci_high": float(est + z * se) if identified else float("nan"),
                "p_value": float(2 * stats.norm.sf(abs(est / se))) if identified and se > 0 else float("nan"),
                **({} if identified else {"note": "not identified: no treated (or no control) unit at this level"}),
            }
        )
    ok = kept[inter]
    b = params[inter][ok]
    v = cov[inter, inter][np.ix_(ok, ok)]
    chi2 = float(b @ np.linalg.solve(v, b)) if ok.any() else float("nan")
    return {
        "kind": "numeric" if numeric else "categorical",
        "reference": reference,
        "treatment": effect(params[1], bse[1], alpha),
        "interactions": interactions,
        "joint": {"chi2": chi2, "df": int(ok.sum()), "p_value": float(stats.chi2.sf(chi2, int(ok.sum())))},
        "cov_type": "HC3",
        "n": int(len(y)),
        **({} if numeric else pooling),
    }


def ols_hc3(
    y: np.ndarray, head: np.ndarray, controls: np.ndarray, *, tol: float = 1e-9, chunk: int = 250_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OLS of y on [head, controls] with HC3 covariance, in O(n p) memory; the ``head`` coefficients are returned.

    Gives statsmodels' ``OLS(y, design).fit(cov_type="HC3")`` numbers (checked in the tests) without its (n, p)
    pseudo-inverse and SVD copies, which at 1M rows took minutes and gigabytes. Controls are centred and scaled
    (their coefficients are not reported, and affine changes of them leave the others unchanged) and a column that
    is (numerically) a linear combination of the columns before it is dropped -- the moderator's dummies are
    usually among the confounders. HC3: cov = A (sum_i x_i x_i' (e_i / (1 - h_ii))^2) A with A = (X'X)^-1.

    Parameters
    ----------
    y : ndarray of shape (n,)
    head : ndarray of shape (n, k)
        Columns whose coefficients are wanted (intercept first).
    controls : ndarray of shape (n, p)
    tol : float
        A column is dropped when its residual variance given the kept columns is below ``tol`` of its variance.
    chunk : int
        Rows per block for the leverages and the HC3 "meat".

    Returns
    -------
    params : ndarray of shape (k,)
        The intercept (column 0) is at the controls' means, since they are centred.
    cov : ndarray of shape (k, k)
    kept : ndarray of bool, shape (k,)
        Head columns that are identified; params and cov entries of the others are NaN.
    """
    live = [j for j in range(controls.shape[1]) if controls[:, j].std() > 0]
    design = np.empty((len(y), head.shape[1] + len(live)))
    design[:, : head.shape[1]] = head
    for i, j in enumerate(live, start=head.shape[1]):  # one column at a time: no second (n, p) copy
        col = controls[:, j]
        design[:, i] = (col - col.mean()) / col.std()
    gram = design.T @ design
    scale = np.where(np.diag(gram) > 0, np.diag(gram), 1.0)
    keep: list[int] = []
    for j in range(design.shape[1]):
        if gram[j, j] == 0:
            continue
        if keep:
            g = gram[np.ix_(keep, keep)]
            resid = gram[j, j] - gram[j, keep] @ np.linalg.solve(g, gram[keep, j])
        else:
            resid = gram[j, j]
        if resid > tol * scale[j]:
            keep.append(j)
    a = np.linalg.inv(gram[np.ix_(keep, keep)])
    beta = a @ (design.T @ y)[keep]
    meat = np.zeros_like(a)
    for start in range(0, len(y), chunk):
        block = design[start : start + chunk][:, keep]
        resid = y[start : start + chunk] - block @ beta
        lev = np.einsum("ij,ij->i", block @ a, block)
        w = (resid / (1.0 - lev)) ** 2
        meat += (block * w[:, None]).T @ block
    cov_all = a @ meat @ a
    k = head.shape[1]
    kept = np.array([j in keep for j in range(k)])
    pos = {j: i for i, j in enumerate(keep)}
    params = np.full(k, np.nan)
    cov = np.full((k, k), np.nan)
    idx = [pos[j] for j in range(k) if kept[j]]
    params[kept] = beta[idx]
    cov[np.ix_(kept, kept)] = cov_all[np.ix_(idx, idx)]
    return params, cov, kept
