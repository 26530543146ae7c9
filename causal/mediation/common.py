"""What the three mediation estimators share: encoding confounders, reading columns, the bootstrap, the verdict."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

VERDICTS = ("full", "partial", "none")


def encode_covariates(
    frame: pd.DataFrame, columns: Sequence[str], *, what: str = "confounders"
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Numeric design matrix for covariates, one-hot encoding categorical columns.

    Parameters
    ----------
    frame : pandas.DataFrame
        The analysis table, one row per unit.
    columns : sequence of str
        Covariate names. Numeric and boolean columns are used as they are (booleans as 0/1); object, string and
        category columns are one-hot encoded with the first level dropped (the models carry an intercept).
    what : str
        Name of the role, used in error messages (e.g. ``"confounders"``).

    Returns
    -------
    design : pandas.DataFrame, shape (n_units, n_encoded)
        Float columns, index aligned with ``frame``.
    groups : dict of str to list of str
        For each original column, the encoded column names it became (one name for a numeric column).

    Raises
    ------
    ValueError
        If a column is missing, has missing values, or holds non-finite numbers.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} not in the table (columns: {list(frame.columns)})")
    parts: list[pd.DataFrame] = []
    groups: dict[str, list[str]] = {}
    for col in columns:
        series = frame[col]
        if series.isna().any():
            raise ValueError(f"{what}: column {col!r} has {int(series.isna().sum())} missing value(s)")
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
            values = series.astype(float)
            if not np.isfinite(values.to_numpy()).all():
                raise ValueError(f"{what}: column {col!r} has non-finite values")
            part = values.to_frame(col)
        else:
            part = pd.get_dummies(series.astype(str), prefix=col, prefix_sep="=", drop_first=True, dtype=float)
        groups[col] = list(part.columns)
        parts.append(part)
    if not parts:
        return pd.DataFrame(index=frame.index), groups
    return pd.concat(parts, axis=1), groups


def _column(frame: pd.DataFrame, name: str, role: str) -> np.ndarray:
    if name not in frame.columns:
        raise ValueError(f"{role} column {name!r} not in the table (columns: {list(frame.columns)})")
    series = frame[name]
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise ValueError(f"{role} column {name!r} must be numeric or boolean, got dtype {series.dtype}")
    values = series.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise ValueError(f"{role} column {name!r} has missing or non-finite values")
    if np.ptp(values) == 0:
        raise ValueError(f"{role} column {name!r} is constant")
    return values


def _groups_array(frame: pd.DataFrame, groups: str | Sequence | np.ndarray | None) -> np.ndarray | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        if groups not in frame.columns:
            raise ValueError(f"groups column {groups!r} not in the table")
        return frame[groups].to_numpy()
    arr = np.asarray(groups)
    if arr.shape != (len(frame),):
        raise ValueError(f"groups must have one label per row ({len(frame)}), got shape {arr.shape}")
    return arr


def bootstrap_indices(
    n: int, n_boot: int, rng: np.random.Generator, groups: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Row indices of nonparametric bootstrap resamples.

    Parameters
    ----------
    n : int
        Number of rows.
    n_boot : int
        Number of resamples.
    rng : numpy.random.Generator
        Source of randomness.
    groups : array of shape (n,), optional
        Cluster labels (e.g. ``title_id``): whole clusters are resampled, so rows of one title stay together.

    Yields
    ------
    numpy.ndarray of int
        Indices of one resample (length n without groups; the sampled clusters' rows with groups).
    """
    if groups is None:
        for _ in range(n_boot):
            yield rng.integers(0, n, size=n)
        return
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    members = [order[starts[g] : starts[g + 1]] for g in range(codes.max() + 1)]
    for _ in range(n_boot):
        picked = rng.integers(0, len(members), size=len(members))
        yield np.concatenate([members[g] for g in picked])


def _effect(estimate: float, draws: np.ndarray, alpha: float) -> dict[str, float]:
    draws = draws[np.isfinite(draws)]
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return {
        "estimate": float(estimate),
        "stderr": float(np.std(draws, ddof=1)),
        "ci_low": float(low),
        "ci_high": float(high),
    }


def _excludes_zero(effect: dict[str, float]) -> bool:
    return effect["ci_low"] > 0 or effect["ci_high"] < 0


def mediation_verdict(indirect_significant: bool, direct_significant: bool) -> str:
    """The verdict rule of this module (see the module docstring): ``"none"``, ``"full"`` or ``"partial"``."""
    if not indirect_significant:
        return "none"
    return "partial" if direct_significant else "full"


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _check_roles(treatment: str, mediator: str, outcome: str, confounders: Sequence[str]) -> None:
    roles = [treatment, mediator, outcome]
    if len(set(roles)) != 3:
        raise ValueError(f"treatment, mediator and outcome must be three different columns, got {roles}")
    overlap = sorted(set(roles) & set(confounders))
    if overlap:
        raise ValueError(f"column(s) {overlap} are both a confounder and the treatment/mediator/outcome")
