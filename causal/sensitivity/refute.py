"""Refutation tests: refit the estimator on altered data where the right answer is known.

Placebo treatment, random common cause, data subsets and dummy outcome, each with a verdict and its
plain-language reading (:func:`refute`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from causal.mediation import encode_covariates

log = logging.getLogger(__name__)

REFUTATIONS = ("placebo_treatment", "random_common_cause", "data_subset", "dummy_outcome")
RANDOM_COMMON_CAUSE = "_random_common_cause"
_NULL_CHECKS = ("placebo_treatment", "dummy_outcome")  # the true effect is 0; the others check stability

FitFn = Callable[[pd.DataFrame, Sequence[str]], "float | Mapping[str, float]"]


def _as_estimate(value: Any) -> dict[str, float]:
    if isinstance(value, Mapping):
        if "estimate" not in value:
            raise ValueError(f"fit_fn returned a mapping without 'estimate': keys {sorted(value)}")
        return {k: float(value[k]) for k in ("estimate", "stderr", "ci_low", "ci_high") if value.get(k) is not None}
    return {"estimate": float(value)}


def _null_check(name: str, estimates: np.ndarray, alpha: float, single: dict[str, float] | None) -> dict:
    """A refutation whose true effect is zero: passes when the interval for the refuted effect covers 0."""
    if len(estimates) == 1 and single is not None and "ci_low" in single:
        low, high = single["ci_low"], single["ci_high"]
        basis = "the refit's own confidence interval"
    elif len(estimates) >= 2:
        half = stats.t.ppf(1 - alpha / 2, len(estimates) - 1) * estimates.std(ddof=1) / np.sqrt(len(estimates))
        low, high = estimates.mean() - half, estimates.mean() + half
        basis = f"the mean of {len(estimates)} refits +/- t * sd / sqrt(n_sims)"
    else:
        raise ValueError(f"{name}: one simulation needs a fit_fn that returns ci_low/ci_high; use n_sims >= 2")
    return {"ci_low": float(low), "ci_high": float(high), "passed": bool(low <= 0 <= high), "interval_basis": basis}


def _dummy_outcome(frame: pd.DataFrame, outcome: str, confounders: Sequence[str], rng: np.random.Generator):
    """An outcome with the confounders' structure and no treatment effect: fitted E[Y|W] + permuted residuals."""
    y = frame[outcome].to_numpy(dtype=float)
    if not confounders:
        return rng.permutation(y)
    w = np.column_stack([np.ones(len(y)), encode_covariates(frame, confounders)[0].to_numpy()])
    fitted = w @ np.linalg.lstsq(w, y, rcond=None)[0]
    return fitted + rng.permutation(y - fitted)


def _check_refute_args(
    frame: pd.DataFrame, treatment: str, outcome: str, kinds: Sequence[str], n_sims: int, subset_fraction: float
) -> None:
    unknown = sorted(set(kinds) - set(REFUTATIONS))
    if unknown:
        raise ValueError(f"unknown refutation kind(s) {unknown}; choose from {list(REFUTATIONS)}")
    for role, name in (("treatment", treatment), ("outcome", outcome)):
        if name not in frame.columns:
            raise ValueError(f"{role} column {name!r} not in the table")
    if n_sims < 1:
        raise ValueError(f"n_sims must be at least 1, got {n_sims}")
    if not 0 < subset_fraction < 1:
        raise ValueError(f"subset_fraction must be in (0, 1), got {subset_fraction}")
    if RANDOM_COMMON_CAUSE in frame.columns:
        raise ValueError(f"the table already has a column {RANDOM_COMMON_CAUSE!r}")


def _refit_altered(
    kind: str,
    fit_fn: FitFn,
    frame: pd.DataFrame,
    rng: np.random.Generator,
    *,
    treatment: str,
    outcome: str,
    subset_fraction: float,
    confounders: Sequence[str],
) -> dict[str, float]:
    """One simulation of refutation ``kind``: alter the table with ``rng`` and refit."""
    if kind == "placebo_treatment":
        altered = frame.assign(**{treatment: rng.permutation(frame[treatment].to_numpy())})
        return _as_estimate(fit_fn(altered, ()))
    if kind == "random_common_cause":
        altered = frame.assign(**{RANDOM_COMMON_CAUSE: rng.normal(size=len(frame))})
        return _as_estimate(fit_fn(altered, (RANDOM_COMMON_CAUSE,)))
    if kind == "data_subset":
        keep = np.sort(rng.choice(len(frame), size=int(round(subset_fraction * len(frame))), replace=False))
        return _as_estimate(fit_fn(frame.iloc[keep], ()))
    altered = frame.assign(**{outcome: _dummy_outcome(frame, outcome, confounders, rng)})
    return _as_estimate(fit_fn(altered, ()))


def _null_verdict(kind: str, est: np.ndarray, sims: list[dict[str, float]], alpha: float, theta: float) -> dict:
    """Interval, verdict and reading of a refutation whose true effect is 0 (placebo, dummy outcome)."""
    n_sims = len(sims)
    row = _null_check(kind, est, alpha, sims[0] if n_sims == 1 else None)
    what = "a permuted treatment" if kind == "placebo_treatment" else "an outcome with no treatment effect"
    verdict = (
        "the interval covers 0 as it should: passed."
        if row["passed"]
        else "the interval excludes 0, so the estimator finds an effect where none exists: failed."
    )
    interval = f"{est.mean():.4g} [{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
    row["reading"] = f"With {what} the estimate is {interval}; {verdict}"
    if kind == "placebo_treatment":
        row["p_value"] = float((1 + np.sum(np.abs(est) >= abs(theta))) / (n_sims + 1))
    return row


def _stability_verdict(
    kind: str, est: np.ndarray, theta: float, se: float, *, alpha: float, subset_fraction: float, tolerance_se: float
) -> dict:
    """Change, tolerance, verdict and reading of a refutation that should leave the estimate where it was."""
    change = float(est.mean() - theta)
    if kind == "random_common_cause":
        tol = tolerance_se * se
        cause = f"{tolerance_se:g} standard error(s) of the original estimate"
    else:
        # A nested subsample of fraction f moves the estimate by sampling error of sd se * sqrt(1 / f - 1).
        tol = stats.norm.ppf(1 - alpha / 2) * se * np.sqrt(1 / subset_fraction - 1)
        cause = f"the sampling error of a {100 * subset_fraction:.0f}% subset"
    row = {"change": change, "tolerance": float(tol), "passed": bool(abs(change) <= tol)}
    row["reading"] = f"The estimate moved by {change:+.4g} (tolerance {tol:.4g}, {cause}): " + (
        "stable, passed." if row["passed"] else "it changed more than it should have: failed."
    )
    return row


def refute(
    fit_fn: FitFn,
    frame: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    kinds: Sequence[str] = REFUTATIONS,
    n_sims: int = 20,
    seed: int = 0,
    alpha: float = 0.05,
    subset_fraction: float = 0.8,
    tolerance_se: float = 1.0,
    confounders: Sequence[str] = (),
    original: float | Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Refutation tests: refit the estimator on altered data where the right answer is known.

    Each kind refits ``fit_fn`` ``n_sims`` times:

    * ``placebo_treatment`` -- the treatment column is randomly permuted, so its true effect is 0. Passes when
      the interval for the mean placebo effect covers 0.
    * ``random_common_cause`` -- an independent standard-normal column (``_random_common_cause``) is added and
      passed to ``fit_fn`` as an extra confounder; a valid adjustment leaves the estimate where it was. Passes
      when the mean change is within ``tolerance_se`` standard errors of the original estimate.
    * ``data_subset`` -- a random ``subset_fraction`` of the rows; the estimate should move only by sampling error,
      whose standard deviation for a nested subsample is ``se * sqrt(1 / fraction - 1)``. Passes when the mean
      change is within ``z_(1-alpha/2)`` such standard deviations.
    * ``dummy_outcome`` -- the outcome is replaced by the confounders' linear prediction plus permuted residuals
      (or the permuted outcome without ``confounders``): it keeps the outcome's dependence on W but has no
      treatment effect, so an estimator that adjusts for W finds 0. Passes like the placebo.

    A refutation that *fails* means the estimate changed when it should not have (or found an effect where there
    is none): a sign of a broken pipeline, leakage or residual confounding by the measured covariates. Passing is
    necessary, not sufficient: no refutation can detect confounding by an unmeasured variable.

    Parameters
    ----------
    fit_fn : callable ``(frame, extra_confounders) -> float | mapping``
        Refits the estimator on ``frame`` (same columns, possibly permuted or subset), adjusting for the configured
        confounders plus the names in ``extra_confounders``; returns the estimate or a mapping with ``estimate``
        and optionally ``stderr``, ``ci_low``, ``ci_high``.
    frame : pandas.DataFrame
        The analysis table.
    treatment, outcome : str
        Columns that the placebo / dummy-outcome refutations replace.
    kinds : sequence of str
        Which refutations to run (subset of ``REFUTATIONS``).
    n_sims : int
        Refits per kind.
    seed : int
        Seed of all permutations, noise columns and subsets.
    alpha : float
        Test level.
    subset_fraction : float
        Fraction of rows kept by ``data_subset``.
    tolerance_se : float
        Allowed mean change, in original standard errors, for ``random_common_cause``.
    confounders : sequence of str
        Confounders used to build the dummy outcome.
    original : float or mapping, optional
        The original estimate (with ``stderr``); computed by ``fit_fn(frame, ())`` when omitted.

    Returns
    -------
    list of dict
        One per kind: ``name``, ``estimate`` (mean refit estimate), ``original``, ``passed``, ``reading``,
        ``n_sims``, ``sims_sd``, ``ci_low``/``ci_high`` (null checks) or ``tolerance`` (stability checks), and for
        the placebo ``p_value`` (permutation p-value of the original estimate among the placebo estimates).
    """
    _check_refute_args(frame, treatment, outcome, kinds, n_sims, subset_fraction)
    orig = _as_estimate(fit_fn(frame, ()) if original is None else original)
    theta, se = orig["estimate"], orig.get("stderr")
    needs_se = {"random_common_cause", "data_subset"} & set(kinds)
    if needs_se and se is None:
        raise ValueError(f"refutations {sorted(needs_se)} need the original estimate's stderr: return it from fit_fn")
    # One child seed per kind (by its place in REFUTATIONS): a kind draws the same numbers whatever else runs.
    seeds = np.random.SeedSequence(seed).spawn(len(REFUTATIONS))
    alter = {"treatment": treatment, "outcome": outcome, "subset_fraction": subset_fraction, "confounders": confounders}
    results = []
    for kind in kinds:
        rng = np.random.default_rng(seeds[REFUTATIONS.index(kind)])
        sims = [_refit_altered(kind, fit_fn, frame, rng, **alter) for _ in range(n_sims)]
        est = np.array([s["estimate"] for s in sims])
        row: dict[str, Any] = {
            "name": kind,
            "estimate": float(est.mean()),
            "original": theta,
            "n_sims": n_sims,
            "sims_sd": float(est.std(ddof=1)) if n_sims > 1 else float("nan"),
        }
        if kind in _NULL_CHECKS:
            row |= _null_verdict(kind, est, sims, alpha, theta)
        else:
            row |= _stability_verdict(
                kind, est, theta, se, alpha=alpha, subset_fraction=subset_fraction, tolerance_se=tolerance_se
            )
        log.info("refutation %s: %s", kind, "passed" if row["passed"] else "FAILED")
        results.append(row)
    return results
