"""Calibration of the observational estimate against rows whose treatment was randomised: the ``calibration`` step.

A streaming service already runs randomised artwork tests (explore traffic, A/B tests). When the engagement table
flags those rows (``data.randomised_column``), their difference in means is an unbiased experimental estimate of
the effect, with no model. The observational estimate on the other rows (the AIPW mean of the run's cross-fitted
scores over those rows) targets the same average effect when both kinds of row come from the same catalog, so
their difference estimates the observational analysis's bias::

    bias = observational - experimental

Its standard error comes from the joint per-row influence of both estimates (cluster-robust with ``data.cluster``,
since a title's artworks may fall on both sides and share a shock).

A bias interval that excludes 0 says the adjustment misses something (an unmeasured confounder, a wrong model).
The calibrated estimates subtract the bias from the observational effect of each group of ``roles.groups``
(additive calibration: "the observational study overestimates by b; remove b where no test is possible"), with
the bias's uncertainty added to each group's.

The nuisance models are fitted on all rows. Measured (``scripts/bench_calibration.py``): refitting them on the
observational rows alone moved the bias by at most 0.06 of its standard error (2 seeds, both planted values).
Adjusting the experimental difference in means by the cross-fitted outcome models (an AIPW score with the known
design) was measured and not adopted: its spread fell by a quarter but its influence-function standard error was
about 20% too small (sd of z 1.22 over 31 seeds, where the plain difference's is 1.01), so its intervals covered
about 85%.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from causal import dml, estimands


def _as_flags(values: pd.Series, column: str) -> np.ndarray:
    """The randomised column as booleans (bool, 0/1 or true/false text)."""
    if values.dtype == bool or str(values.dtype) == "boolean":
        return values.fillna(False).to_numpy(dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    known = {"1": True, "true": True, "1.0": True, "0": False, "false": False, "0.0": False}
    bad = sorted(set(text) - set(known))
    if bad:
        raise ValueError(
            f"config key data.randomised_column: column {column!r} must be 0/1 or true/false, got {bad[:5]}"
        )
    return text.map(known).to_numpy(dtype=bool)


def calibrate(
    y: np.ndarray,
    t: np.ndarray,
    randomised: np.ndarray,
    scores: np.ndarray,
    *,
    groups: pd.DataFrame | None = None,
    alpha: float = 0.05,
    clusters: np.ndarray | None = None,
) -> dict[str, Any]:
    """Experimental vs observational effect and the observational bias.

    Parameters
    ----------
    y, t : ndarray of shape (n,)
        Outcome and 0/1 treatment.
    randomised : ndarray of bool, shape (n,)
        Rows whose treatment was randomised.
    scores : ndarray of shape (n,)
        Doubly robust (AIPW) scores of the ATE for every row (their mean over rows is the AIPW ATE of those rows).
    groups : DataFrame of shape (n, g), optional
        Columns to report calibrated effects by.
    alpha : float
        1 - confidence level.
    clusters : ndarray of shape (n,), optional
        Cluster labels: cluster-robust standard errors (:func:`causal.estimands.mean_stderr`).

    Returns
    -------
    dict
        ``experimental`` and ``observational`` (effects with ``n``), ``bias``, ``bias_stderr``, ``bias_ci_low``,
        ``bias_ci_high``, ``n_randomised``, ``sentence`` and, with groups, ``calibrated`` (``{column: {level:
        effect}}``: each group's observational effect minus the bias).
    """
    randomised = np.asarray(randomised, dtype=bool)
    y, t, scores = (np.asarray(a, dtype=np.float64) for a in (y, t, scores))
    if randomised.sum() < 4 or (~randomised).sum() < 4:
        raise ValueError(f"calibration needs randomised and other rows: {int(randomised.sum())} randomised of {len(y)}")
    exp_estimate, exp_part = _experimental(y, t, randomised)
    obs = ~randomised
    obs_part = np.where(obs, scores - scores[obs].mean(), 0.0) * len(y) / obs.sum()
    experimental = dml.effect(exp_estimate, estimands.mean_stderr(exp_part, clusters), alpha, n=int(randomised.sum()))
    experimental["method"] = "difference in means on the randomised rows"
    observational = dml.effect(scores[obs].mean(), estimands.mean_stderr(obs_part, clusters), alpha, n=int(obs.sum()))
    observational["method"] = "AIPW on the other rows (the run's cross-fitted nuisances)"
    if clusters is not None:
        labels = np.asarray(clusters)
        experimental["n_clusters"] = len(np.unique(labels[randomised]))
        observational["n_clusters"] = len(np.unique(labels[obs]))
    bias_se = estimands.mean_stderr(obs_part - exp_part, clusters)
    bias = dml.effect(observational["estimate"] - experimental["estimate"], bias_se, alpha)
    out = {
        "experimental": experimental,
        "observational": observational,
        "bias": bias["estimate"],
        "bias_stderr": bias["stderr"],
        "bias_ci_low": bias["ci_low"],
        "bias_ci_high": bias["ci_high"],
        "n_randomised": int(randomised.sum()),
        "sentence": _sentence(bias, experimental, alpha),
    }
    if groups is not None and groups.shape[1]:
        out["calibrated"] = _calibrated_groups(scores, obs, groups, bias, alpha)
    return out


def _experimental(y: np.ndarray, t: np.ndarray, randomised: np.ndarray) -> tuple[float, np.ndarray]:
    """The difference in means on the randomised rows and its per-row influence, scaled to all n rows and zero off
    them (so ``mean_stderr`` of it is the estimate's standard error, cluster-robust with clusters)."""
    n = len(y)
    treated, control = randomised & (t == 1), randomised & (t == 0)
    if treated.sum() < 2 or control.sum() < 2:
        raise ValueError(
            f"calibration needs >= 2 randomised rows per arm; got {int(treated.sum())} treated, {int(control.sum())}"
            " control"
        )
    part = np.zeros(n)
    part[treated] = (y[treated] - y[treated].mean()) * n / treated.sum()
    part[control] = -(y[control] - y[control].mean()) * n / control.sum()
    return float(y[treated].mean() - y[control].mean()), part


def _calibrated_groups(
    scores: np.ndarray, rows: np.ndarray, groups: pd.DataFrame, bias: Mapping[str, float], alpha: float
) -> dict[str, dict[str, dict[str, float]]]:
    """Per group level: the observational effect of its non-randomised rows minus the bias."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    frame = groups.reset_index(drop=True)
    for column in frame.columns:
        levels = frame[column].astype(str).to_numpy()
        out[column] = {}
        for level in sorted(set(levels[rows])):
            part = scores[rows & (levels == level)]
            if part.size < 2:
                continue
            obs = dml.mean_effect(part, alpha)
            se = float(np.hypot(obs["stderr"], bias["stderr"]))
            out[column][level] = dml.effect(obs["estimate"] - bias["estimate"], se, alpha, n=int(part.size))
    return out


def _sentence(bias: Mapping[str, float], experimental: Mapping[str, float], alpha: float) -> str:
    level = f"{100 * (1 - alpha):.0f}%"
    relative = bias["estimate"] / experimental["estimate"] if experimental["estimate"] else float("nan")
    if bias["ci_low"] <= 0 <= bias["ci_high"]:
        return (
            f"On the randomised rows the observational analysis is not detectably biased: bias "
            f"{bias['estimate']:.4g} ({level} CI {bias['ci_low']:.4g} to {bias['ci_high']:.4g})."
        )
    word = "overestimates" if bias["estimate"] > 0 else "underestimates"
    return (
        f"The observational analysis {word} the randomised effect by {abs(bias['estimate']):.4g} "
        f"({abs(relative):.0%} of it; {level} CI {bias['ci_low']:.4g} to {bias['ci_high']:.4g}): correct "
        "observational estimates where no test exists by this bias (the calibrated rows), and look for the "
        "confounder the adjustment misses."
    )


def run_step(ctx: Any) -> dict[str, Any]:
    """Pipeline step ``calibration``: the ``calibration`` block from the rows flagged by ``data.randomised_column``.

    Uses every row of the dataset (not the overlap step's trimming: randomised rows need no overlap) and the run's
    cross-fitted nuisances (the AIPW scores with the ``dml.clip`` bound).
    """
    data_cfg = ctx.step_config("data")
    column = data_cfg.get("randomised_column")
    if not column:
        raise ValueError("config key data.randomised_column: the calibration step needs the column of randomised rows")
    ds, nuis = ctx.dataset, ctx.nuisance
    if column not in ds.frame.columns:
        raise ValueError(f"config key data.randomised_column: column {column!r} is not in the table")
    randomised = _as_flags(ds.frame[column], column)
    clip = float(ctx.step_config("dml").get("clip", estimands.DEFAULT_CLIP))
    e, _ = estimands.clip_propensity(nuis.propensity_, clip)
    scores = estimands.ate_scores(ds.y, ds.t, e, nuis.outcome_treated_, nuis.outcome_control_)
    groups = ds.groups if ds.groups.shape[1] else None
    result = calibrate(ds.y, ds.t, randomised, scores, groups=groups, alpha=ctx.alpha, clusters=ctx.clusters)
    return {"randomised_column": str(column), **result}
