"""Do the estimators agree? A joint Wald test of their differences from a reference estimator.

All the estimators of :mod:`causal.methods` are computed on the same units, so their estimates are strongly
correlated and comparing each interval with the others would almost never flag anything. Each estimator instead
comes with per-unit contributions c_m,i whose mean is its estimate (its linearisation: the AIPW scores, IPW's
theta + influence function, the T-learner's mu1 - mu0, the matching estimator's imputed unit effects, the forest's
doubly robust scores). For every method m of the same estimand as the reference r (``aipw_ate`` for ATE methods,
``aipw_att`` for ATT methods), D_m,i = c_m,i - c_r,i; under "every method estimates the same quantity" the mean of
D is zero, and::

    W = n * mean(D)' pinv(cov(D)) mean(D)  ~  chi^2(rank of cov(D))

(a Hotelling-type test on the paired differences, which accounts for the correlation between methods: their
common sampling noise cancels in D). A small p-value says some estimators disagree more than their sampling
noise allows: typically one nuisance model is wrong (a confounder missing from the outcome model biases the
T-learner but not IPW or AIPW, a poor propensity biases IPW and matching but not the T-learner). The per-method
z-statistics (mean(D_m) over its own standard error) say which. Estimators without a linearisation (LinearDML's
``ate_inference``) are listed under ``not_tested``. The matching contributions are not independent across units
(a control can serve several treated units), so for them the test is approximate; ``scripts/bench_methods.py``
measures its false-alarm rate on the simulator.

Statistically detectable is not the same as material. The estimators share their nuisances, so their differences
are measured very precisely, and a difference of a few percent of the estimate's own standard error can be
"significant" (on the demo, the forest's ATE is 0.00016 from AIPW's, z = -2.8, while AIPW's standard error is
0.00074). When the test rejects but every method whose own difference is significant (|z| above the two-sided
critical value) differs by less than ``MATERIAL_SE`` (a quarter) of the reference estimate's standard error, the
verdict is ``close``: the detectable differences are smaller than could move any conclusion drawn from the
reference's interval. ``disagree`` is kept for differences that are both detectable and material. (A noisy method
such as IPW may sit further from AIPW without its difference being detectable; that is sampling noise, reported
in its own interval, not disagreement.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from causal.estimands import cov_of_mean

REFERENCE = {"ate": "aipw_ate", "att": "aipw_att"}
# A detectable difference smaller than this fraction of the reference estimate's standard error is immaterial.
MATERIAL_SE = 0.25


def _differences(
    estimates: Mapping[str, Mapping[str, Any]], parts: Mapping[str, np.ndarray], reference: str | None
) -> tuple[list[str], np.ndarray]:
    """The tested method names and the (n, k) matrix of their per-unit differences from the reference."""
    names, columns = [], []
    for name, rec in estimates.items():
        ref = reference or REFERENCE.get(str(rec.get("estimand")))
        if name == ref or name not in parts or ref not in parts:
            continue
        if reference is not None and estimates[ref].get("estimand") != rec.get("estimand"):
            continue
        names.append(name)
        columns.append(np.asarray(parts[name], dtype=np.float64) - np.asarray(parts[ref], dtype=np.float64))
    return names, (np.column_stack(columns) if columns else np.empty((0, 0)))


def agreement_test(
    estimates: Mapping[str, Mapping[str, Any]],
    parts: Mapping[str, np.ndarray],
    *,
    reference: str | None = None,
    alpha: float = 0.05,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Joint test that every estimator estimates the same effect as its reference (module docstring).

    Parameters
    ----------
    estimates : mapping
        ``{name: {"estimate", "stderr", ..., "estimand"}}`` (:func:`causal.methods.estimate_all`).
    parts : mapping
        ``{name: ndarray (n,)}`` per-unit contributions, all on the same n units.
    reference : str, optional
        One reference for all methods of its estimand; default ``aipw_ate`` / ``aipw_att`` by estimand.
    alpha : float
        Level of the test.
    groups : ndarray of shape (n,), optional
        Cluster labels: the covariance of the mean differences is cluster-robust (as the AIPW intervals).

    Returns
    -------
    dict
        ``statistic`` (W), ``df``, ``p_value``, ``verdict`` (``agree`` | ``close`` | ``disagree`` | ``not tested``;
        ``close``: rejected, but every individually significant difference below ``MATERIAL_SE`` of the
        reference's standard error), ``largest_difference_in_se`` (the largest such |difference| over its
        reference's standard error; over every method when none is individually significant),
        ``alpha``, ``reference``, ``differences`` (per method: ``difference``, ``stderr``, ``z``, ``p_value``),
        ``max_abs_z``, ``spread`` (largest minus smallest estimate, in units of the median standard error),
        ``not_tested`` and ``sentence`` (one plain sentence).
    """
    names, d = _differences(estimates, parts, reference)
    values = [float(r["estimate"]) for r in estimates.values()]
    ses = [float(r["stderr"]) for r in estimates.values() if np.isfinite(r.get("stderr", np.nan))]
    spread = (max(values) - min(values)) / float(np.median(ses)) if ses and len(values) > 1 else float("nan")
    out: dict[str, Any] = {
        "statistic": float("nan"),
        "df": 0,
        "p_value": float("nan"),
        "verdict": "not tested",
        "alpha": float(alpha),
        "reference": reference or dict(REFERENCE),
        "differences": {},
        "max_abs_z": float("nan"),
        "spread": float(spread),
        "not_tested": sorted(set(estimates) - set(names) - set(REFERENCE.values()) - {reference}),
    }
    if not names:
        out["sentence"] = "Fewer than two estimators with per-unit contributions: agreement not tested."
        return out
    mean = d.mean(axis=0)
    cov = cov_of_mean(d, groups)
    se = np.sqrt(np.diag(cov))
    z = np.divide(mean, se, out=np.zeros_like(mean), where=se > 0)
    rank = int(np.linalg.matrix_rank(cov))
    stat = float(mean @ np.linalg.pinv(cov) @ mean) if rank else 0.0
    p = float(stats.chi2.sf(stat, rank)) if rank else 1.0
    out.update(statistic=stat, df=rank, p_value=p, verdict="agree" if p >= alpha else "disagree")
    out["max_abs_z"] = float(np.max(np.abs(z)))
    critical = float(stats.norm.ppf(1 - alpha / 2))
    detectable = [k for k in range(len(names)) if abs(z[k]) >= critical] or list(range(len(names)))
    out["largest_difference_in_se"] = _largest_difference_in_se(
        [names[k] for k in detectable], mean[detectable], estimates, reference
    )
    if out["verdict"] == "disagree" and out["largest_difference_in_se"] < MATERIAL_SE:
        out["verdict"] = "close"
    out["differences"] = {
        name: {"difference": float(m), "stderr": float(s), "z": float(zz), "p_value": float(2 * stats.norm.sf(abs(zz)))}
        for name, m, s, zz in zip(names, mean, se, z)
    }
    out["sentence"] = _sentence(out, estimates)
    return out


def _largest_difference_in_se(
    names: list[str], mean: np.ndarray, estimates: Mapping[str, Mapping[str, Any]], reference: str | None
) -> float:
    """max over tested methods of |difference| / the standard error of the method's reference estimate."""
    ratios = []
    for name, diff in zip(names, mean):
        ref = reference or REFERENCE.get(str(estimates[name].get("estimand")))
        se = float(estimates[ref].get("stderr", np.nan))
        ratios.append(abs(float(diff)) / se if np.isfinite(se) and se > 0 else float("inf"))
    return float(max(ratios)) if ratios else float("nan")


def _sentence(out: Mapping[str, Any], estimates: Mapping[str, Mapping[str, Any]]) -> str:
    """One plain sentence on the verdict, naming the estimator furthest from its reference."""
    diffs = out["differences"]
    worst = max(diffs, key=lambda k: abs(diffs[k]["z"]))
    level = 100 * (1 - out["alpha"])
    if out["verdict"] == "agree":
        refs = {out["reference"]} if isinstance(out["reference"], str) else set(REFERENCE.values()) & set(estimates)
        return (
            f"The {len(diffs) + len(refs)} estimators tested agree: their differences are within sampling noise "
            f"(joint test p = {out['p_value']:.3g}; largest |z| {abs(diffs[worst]['z']):.2f}, {worst})."
        )
    est = estimates[worst]
    ref = out["reference"] if isinstance(out["reference"], str) else REFERENCE[str(est.get("estimand"))]
    if out["verdict"] == "close":
        return (
            f"The estimators differ detectably but immaterially (joint test p = {out['p_value']:.3g}): the clearest "
            f"difference, {worst} at {diffs[worst]['difference']:+.4g} from {ref} (z = {diffs[worst]['z']:.2f}), and "
            f"every other detectable one are at most {out['largest_difference_in_se']:.2f} of the reference's "
            "standard error, too small to change a conclusion."
        )
    return (
        f"The estimators disagree beyond sampling noise (joint test p = {out['p_value']:.3g}, rejected at "
        f"{100 - level:.0f}%): {worst} gives {est['estimate']:.4g}, {diffs[worst]['difference']:+.4g} from {ref} "
        f"(z = {diffs[worst]['z']:.2f}). Methods that lean on different nuisance models disagreeing usually means "
        "one model is wrong (a missing confounder or a poor fit): trust the doubly robust estimate only after "
        "checking the outcome and propensity models."
    )
