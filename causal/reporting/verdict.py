"""The robustness verdict in plain words, from the benchmark comparison of the OVB analysis (Cinelli & Hazlett 2020).

Cinelli & Hazlett's advice is to say, in words, whether a hidden confounder as strong as an observed covariate one
knows matters (the benchmark) would overturn the conclusion. :func:`robustness_verdict` reads the bound rows of
``results["sensitivity"]["linear"]`` and answers:

* ``fragile``: a confounder as strong as the benchmark (the smallest multiplier, normally 1x) brings the linear
  estimate to zero or past it (``erased``), or leaves an interval that includes zero: the conclusion "there is an
  effect" would not survive it;
* ``robust``: even then the interval excludes zero (and the largest multiplier that still does is named);
* ``no effect``: the linear estimate's own interval already includes zero, so there is nothing to erase.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

VERDICTS = ("fragile", "robust", "no effect")


def _erased(row: Mapping[str, Any], estimate: float) -> bool:
    return row["adjusted_estimate"] * estimate <= 0


def _excludes_zero(row: Mapping[str, Any]) -> bool:
    return row["adjusted_ci_low"] > 0 or row["adjusted_ci_high"] < 0


def robustness_verdict(results: Mapping[str, Any], names: Callable[[Any], str] = str) -> dict[str, Any] | None:
    """The verdict of the first benchmark, or None when the run has no OVB benchmark bounds.

    Returns
    -------
    dict or None
        ``verdict`` (one of :data:`VERDICTS`), ``erased`` (the adjusted estimate reaches zero), ``benchmark``
        (column), ``label`` (its words), ``kd``,
        ``adjusted_estimate``, ``adjusted_ci_low``, ``adjusted_ci_high``, ``estimate`` (the linear model's),
        ``strongest_survived`` (largest multiplier whose adjusted interval still excludes zero, or None) and
        ``sentence``.
    """
    lin = (results.get("sensitivity") or {}).get("linear") or {}
    bounds = [b for b in lin.get("bounds") or [] if b.get("adjusted_estimate") is not None]
    if not bounds or lin.get("estimate") is None:
        return None
    name = bounds[0]["benchmark"]
    rows = sorted((b for b in bounds if b["benchmark"] == name), key=lambda b: b["kd"])
    first, est = rows[0], lin["estimate"]
    significant = lin.get("ci_low") is None or lin["ci_low"] > 0 or lin["ci_high"] < 0
    if not significant:
        verdict = "no effect"
    elif _erased(first, est) or not _excludes_zero(first):
        verdict = "fragile"
    else:
        verdict = "robust"
    survived = [b["kd"] for b in rows if not _erased(b, est) and _excludes_zero(b)]
    out = {
        "verdict": verdict,
        "erased": _erased(first, est),
        "benchmark": name,
        "label": names(name),
        "kd": first["kd"],
        "estimate": est,
        "adjusted_estimate": first["adjusted_estimate"],
        "adjusted_ci_low": first["adjusted_ci_low"],
        "adjusted_ci_high": first["adjusted_ci_high"],
        "strongest_survived": max(survived) if survived else None,
    }
    out["sentence"] = _sentence(out)
    return out


def _strength(kd: float, label: str) -> str:
    return f"as strong as {label}" if kd == 1 else f"{kd:g} times as strong as {label}"


def _sentence(v: Mapping[str, Any]) -> str:
    strength = _strength(v["kd"], v["label"])
    moved = (
        f"the linear model's estimate {v['estimate']:.3g} would become {v['adjusted_estimate']:.3g} "
        f"[{v['adjusted_ci_low']:.3g}, {v['adjusted_ci_high']:.3g}]"
    )
    if v["verdict"] == "no effect":
        return (
            f"The linear model's estimate ({v['estimate']:.3g}) is not distinguishable from zero even before "
            f"allowing for a hidden factor; a factor {strength} would move it to {v['adjusted_estimate']:.3g}."
        )
    if v["verdict"] == "fragile" and v["erased"]:
        return f"A hidden factor {strength} would be enough to erase the effect: {moved}."
    if v["verdict"] == "fragile":
        return (
            f"A hidden factor {strength} would be enough to erase the effect (leave it indistinguishable from "
            f"zero): {moved}."
        )
    text = f"A hidden factor {strength} would not be enough to erase the effect: {moved}."
    if v["strongest_survived"] and v["strongest_survived"] > v["kd"]:
        text += f" Even one {_strength(v['strongest_survived'], v['label'])} would not."
    return text
