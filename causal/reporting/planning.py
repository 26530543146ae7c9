"""Effects in planning terms: the baseline (control mean), the absolute effect and the relative lift, with intervals.

:func:`baseline_block` is computed by the dml step (``results["baseline"]``); :func:`lift` and :func:`effect_words`
turn an effect into "+1.5 percentage points (+12%)" when the outcome is a rate (every value in [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from causal.reporting.numbers import sig


def baseline_block(y: np.ndarray, t: np.ndarray, groups: pd.DataFrame | None = None) -> dict[str, Any]:
    """Mean outcome of the control and treated units (overall and per group level) and whether it is a rate.

    Parameters
    ----------
    y, t : array of shape (n,)
        Outcome and binary treatment of the units the estimators used.
    groups : DataFrame, optional
        The group columns (CATE levels) of the same units.

    Returns
    -------
    dict
        ``control_mean``, ``treated_mean``, ``n_control``, ``is_rate`` (every outcome in [0, 1]) and ``by_group``
        ({column: {level: control mean}}; a level without control units is left out).
    """
    y = np.asarray(y, dtype=np.float64)
    treated = np.asarray(t).astype(bool)
    by_group: dict[str, dict[str, float]] = {}
    if groups is not None:
        for col in groups.columns:
            values = groups[col].astype(str).to_numpy()
            means = pd.Series(y[~treated]).groupby(values[~treated]).mean()
            by_group[str(col)] = {str(k): float(v) for k, v in means.items()}
    return {
        "control_mean": float(y[~treated].mean()) if (~treated).any() else None,
        "treated_mean": float(y[treated].mean()) if treated.any() else None,
        "n_control": int((~treated).sum()),
        "is_rate": bool(y.size and np.nanmin(y) >= 0 and np.nanmax(y) <= 1),
        "by_group": by_group,
    }


def lift(effect: Mapping[str, Any] | None, baseline: float | None) -> dict[str, float] | None:
    """Relative lift ``effect / baseline`` with its interval (the baseline taken as known); None without both or
    when the baseline is not positive (a share of zero or of a negative mean means nothing)."""
    if not effect or effect.get("estimate") is None or baseline is None or baseline <= 0:
        return None
    out = {"estimate": effect["estimate"] / baseline}
    if effect.get("ci_low") is not None and effect.get("ci_high") is not None:
        low, high = effect["ci_low"] / baseline, effect["ci_high"] / baseline
        out.update(ci_low=min(low, high), ci_high=max(low, high))
    return out


def _signed(value: float, digits: int) -> str:
    return sig(value, digits, signed=True) if abs(value) >= 1e-12 else "0"


def amount(value: float | None, is_rate: bool, digits: int = 3) -> str:
    """An outcome difference in words: '+1.5 percentage points' for a rate, else '+0.0153'."""
    if value is None or not math.isfinite(value):
        return "–"
    if is_rate:
        return f"{_signed(100 * value, digits)} percentage points"
    return _signed(value, digits)


def level(value: float | None, is_rate: bool, digits: int = 3) -> str:
    """An outcome level: '12.4%' for a rate, else '0.124'."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{sig(100 * value, digits)}%" if is_rate else sig(value, digits)


def percent(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{sig(100 * value, digits, signed=True)}%"


def effect_words(effect: Mapping[str, Any], baseline: float | None, is_rate: bool) -> str:
    """'+1.5 percentage points [+0.9, +2.1] on a baseline of 12.4%, a lift of +12% [+7%, +17%]'."""
    est = effect.get("estimate")
    unit_ci = ""
    if effect.get("ci_low") is not None:
        scale = 100 if is_rate else 1
        unit_ci = f" [{_signed(scale * effect['ci_low'], 3)}, {_signed(scale * effect['ci_high'], 3)}]"
    text = f"{amount(est, is_rate)}{unit_ci}"
    rel = lift(effect, baseline)
    if rel is None:
        return text
    ci = f" [{percent(rel.get('ci_low'))}, {percent(rel.get('ci_high'))}]" if "ci_low" in rel else ""
    return f"{text} on a baseline of {level(baseline, is_rate)}, a relative lift of {percent(rel['estimate'])}{ci}"
