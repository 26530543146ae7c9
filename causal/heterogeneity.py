"""Effect heterogeneity from the doubly robust scores: group average effects (each ``roles.groups`` column), the
spread across groups, and the best-linear-predictor test of Chernozhukov et al. (2022)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal.effects import effect


def group_effects(
    scores: np.ndarray,
    groups: pd.DataFrame,
    alpha: float = 0.05,
    tau: np.ndarray | None = None,
    member_scores: Mapping[str, tuple[float, np.ndarray]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Group average effects: DR scores averaged within each level of each group column.

    Parameters
    ----------
    scores : ndarray of shape (n,)
    groups : DataFrame of shape (n, g)
        Group columns (levels as strings).
    alpha : float
    tau : ndarray of shape (n,), optional
        The estimator's CATE; its level mean is added as ``cate_model`` (the plug-in, for comparison).
    member_scores : mapping, optional
        With a stacked outcome, ``{member: (weight, scores of shape (n,))}`` (:func:`causal.estimands.member_scores`;
        ``scores`` is their weighted sum): each level's standard error is then model-averaged as the ATE's
        (:func:`causal.estimands.model_averaged_stderr`), and the plain one kept as ``stderr_within_model``.

    Returns
    -------
    dict
        ``{column: [{"level", "n", "estimate", "stderr", "ci_low", "ci_high"[, "cate_model"]
        [, "stderr_within_model"]}, ...]}``, levels sorted by name.
    """
    frame = pd.DataFrame({"psi": np.asarray(scores, dtype=np.float64)})
    if tau is not None:
        frame["tau"] = np.asarray(tau, dtype=np.float64)
    members = dict(member_scores) if member_scores and len(member_scores) > 1 else {}
    for k, (_, member) in enumerate(members.values()):
        frame[f"m{k}"] = np.asarray(member, dtype=np.float64)
    out: dict[str, list[dict[str, Any]]] = {}
    for col in groups.columns:
        frame["level"] = groups[col].astype(str).to_numpy()
        out[str(col)] = [
            _level_effect(str(level), part, alpha, [w for w, _ in members.values()])
            for level, part in frame.groupby("level", sort=True)
        ]
    return out


def _level_effect(level: str, part: pd.DataFrame, alpha: float, weights: list[float]) -> dict[str, Any]:
    """One level's record from its rows of scores (``psi``), CATE (``tau``) and member scores (``m0``, ``m1``, ...)."""
    n = len(part)
    se = _mean_se(part["psi"])
    extra: dict[str, Any] = {}
    if weights:
        # Buckland et al.: sum_k w_k sqrt(se_k^2 + (theta_k - theta)^2); theta = sum_k w_k theta_k by linearity.
        theta = float(part["psi"].mean())
        spread = [(part[f"m{k}"].mean(), _mean_se(part[f"m{k}"])) for k in range(len(weights))]
        extra = {"stderr_within_model": se}
        se = float(sum(w * np.hypot(se_k, th_k - theta) for w, (th_k, se_k) in zip(weights, spread, strict=True)))
    rec = {"level": level, "n": n, **effect(float(part["psi"].mean()), se, alpha)}
    if "tau" in part:
        rec["cate_model"] = float(part["tau"].mean())
    return {**rec, **extra}


def _mean_se(values: pd.Series) -> float:
    return float(values.std()) / np.sqrt(len(values)) if len(values) > 1 else float("nan")


def group_heterogeneity(cate_by_group: Mapping[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Wald test per group column that all level effects are equal.

    The level means are independent (disjoint units), so W = sum_l (est_l - pooled)^2 / se_l^2 with the
    inverse-variance pooled mean is chi-square with (levels - 1) degrees of freedom under equality.
    """
    out = {}
    for col, rows in cate_by_group.items():
        rows = [r for r in rows if np.isfinite(r["stderr"]) and r["stderr"] > 0]
        if len(rows) < 2:
            out[col] = {"chi2": float("nan"), "df": 0, "p_value": float("nan")}
            continue
        est = np.array([r["estimate"] for r in rows])
        w = 1.0 / np.array([r["stderr"] for r in rows]) ** 2
        pooled = np.sum(w * est) / w.sum()
        chi2 = float(np.sum(w * (est - pooled) ** 2))
        df = len(rows) - 1
        out[col] = {"chi2": chi2, "df": df, "p_value": float(stats.chi2.sf(chi2, df))}
    return out


def blp_test(
    scores: np.ndarray,
    tau: np.ndarray,
    alpha: float = 0.05,
    member_scores: Mapping[str, tuple[float, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Best linear predictor of the effect (Chernozhukov, Demirer, Duflo & Fernandez-Val, 2022).

    OLS of psi on (1, tau - mean(tau)) with HC1 standard errors. ``beta_ate`` estimates the ATE; ``beta_het`` is
    1 when tau captures the heterogeneity exactly and 0 when it captures none; ``p_value`` is one-sided for
    beta_het > 0 ("heterogeneity detected"). With ``member_scores`` (a stacked outcome's members, as in
    :func:`group_effects`) both standard errors are model-averaged over the members' own fits (the coefficients are
    linear in psi, so the stack's are the members' weighted means), the plain ones kept as ``stderr_within_model``.
    """
    s = np.asarray(scores, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    ok = ~(np.isnan(s) | np.isnan(tau))
    s, tau = s[ok], tau[ok]
    centred = tau - tau.mean()
    if np.allclose(centred, 0.0):
        return {
            "beta_ate": effect(s.mean(), s.std(ddof=1) / np.sqrt(s.size), alpha),
            "beta_het": None,
            "p_value": float("nan"),
            "note": "the CATE is constant; no heterogeneity to test",
        }
    design = np.column_stack([np.ones_like(centred), centred])
    params, bse = _ols_hc1(s, design)
    extra: dict[str, Any] = {}
    if member_scores is not None and len(member_scores) > 1:
        fits = [(w, *_ols_hc1(np.asarray(m, dtype=np.float64)[ok], design)) for w, m in member_scores.values()]
        extra = {"stderr_within_model": {"beta_ate": float(bse[0]), "beta_het": float(bse[1])}}
        bse = np.sum([w * np.hypot(se_k, p_k - params) for w, p_k, se_k in fits], axis=0)
    z = params[1] / bse[1]
    return {
        "beta_ate": effect(params[0], bse[0], alpha),
        "beta_het": effect(params[1], bse[1], alpha),
        "p_value": float(stats.norm.sf(z)),
        **extra,
    }


def _ols_hc1(y: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and their HC1 (heteroskedasticity-robust) standard errors, each of shape (k,)."""
    import statsmodels.api as sm

    fit = sm.OLS(y, design).fit(cov_type="HC1")
    return np.asarray(fit.params), np.asarray(fit.bse)
