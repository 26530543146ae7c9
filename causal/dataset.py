"""Validating a table against its roles and building the numeric arrays of the causal stage (:func:`prepare`).

Missing-value policy (``prepare(missing=...)``)
-----------------------------------------------
* Treatment, outcome and mediator define the estimand, so a row missing any of them is dropped; the number of rows
  dropped per column is logged (a warning) and kept in ``CausalDataset.info["dropped"]``. If no row is left,
  :class:`DataError`.
* Covariates (confounders ``W`` and modifiers ``X``) under the default ``missing="indicator"``: imputed with an
  indicator column or a "missing" level (:mod:`causal.encode`). ``missing="drop"`` drops rows with any missing role
  column instead (logged); ``missing="error"`` raises.
* ``groups`` columns are kept as strings; a missing value becomes the level ``"missing"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from causal.columns import as_numeric, check_finite, missing_mask, n_distinct
from causal.encode import Encoder
from causal.levels import MIN_LEVEL_COUNT, MISSING_LEVEL, group_labels
from causal.roles import Roles
from causal.tables import DataError, check_unique_ids

log = logging.getLogger(__name__)

MISSING_POLICIES = ("indicator", "drop", "error")


@dataclass
class CausalDataset:
    """A validated analysis table and its numeric arrays.

    Attributes
    ----------
    frame : DataFrame
        The validated table, index ``0..n-1``, original columns, after row filtering.
    y : ndarray of shape (n,)
        Outcome, float64.
    t : ndarray of shape (n,)
        Treatment, float64 (0/1 when binary).
    W : DataFrame of shape (n, p)
        Confounders as float columns (dummy-coded categoricals, embedding PCA components, missing indicators).
    X : DataFrame of shape (n, q)
        Effect modifiers, same encoding; may have 0 columns.
    groups : DataFrame of shape (n, g)
        The raw ``roles.groups`` columns as strings.
    roles : Roles
    source : str
        File name(s), for messages.
    m : ndarray of shape (n,) or None
        Mediator, float64, when ``roles.mediator`` is set.
    info : dict
        What ``prepare`` did: rows dropped per reason, imputed columns, dummy levels and reference levels, PCA
        explained variance per embedding column.
    """

    frame: pd.DataFrame
    y: np.ndarray
    t: np.ndarray
    W: pd.DataFrame
    X: pd.DataFrame
    groups: pd.DataFrame
    roles: Roles
    source: str
    m: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.y)


def _missing_summary(counts: Mapping[str, int], roles: Roles, missing: str, imputed: Mapping, source: str) -> dict:
    """Per role column with missing values: how many, and how they were handled; each logged (a warning)."""
    required = {roles.treatment, roles.outcome, roles.mediator}
    out = {}
    for col, k in counts.items():
        if col in required or missing == "drop":
            how = "rows dropped"
        elif col in imputed and isinstance(imputed[col]["value"], float):
            how = f"median {imputed[col]['value']:.6g} and indicator column {col}__missing"
        elif col in imputed and str(imputed[col]["value"]).startswith("pca"):
            how = f"PCA mean (0) and indicator column {col}__missing"
        else:
            how = f"level {MISSING_LEVEL!r}"
        out[col] = {"rows": int(k), "handled": how}
        log.warning("%s: column %r (%s): %d missing value(s); %s", source, col, roles.key_of(col), k, how)
    return out


def _check_options(missing: str, n_components: int, max_levels: int, min_level_count: int) -> None:
    if missing not in MISSING_POLICIES:
        raise DataError(f"config `missing` must be one of {MISSING_POLICIES}, got {missing!r}")
    if n_components < 1:
        raise DataError(f"config `n_components` must be >= 1, got {n_components}")
    if int(min_level_count) < 1 or int(max_levels) < 2:
        raise DataError(
            f"config `data.prepare.min_level_count` must be >= 1 and `max_levels` >= 2, got {min_level_count}, "
            f"{max_levels}"
        )


def _check_role_columns(frame: pd.DataFrame, roles: Roles, source: str, id_column: str | None) -> pd.DataFrame:
    """The table, index reset; raise on an absent role column, duplicated ids or a column missing in every row."""
    absent = [c for c in roles.columns() if c not in frame.columns]
    if absent:
        detail = ", ".join(f"{c!r} ({roles.key_of(c)})" for c in absent)
        raise DataError(f"{source}: missing column(s) {detail}; the table has {list(frame.columns)[:20]}")
    frame = frame.reset_index(drop=True).copy()
    if id_column is not None and id_column in frame.columns:
        check_unique_ids(frame, id_column, source)
    for col in roles.columns():
        if missing_mask(frame[col]).all():
            raise DataError(f"{source}: column {col!r} ({roles.key_of(col)}) is missing in every row")
    return frame


def _drop_missing_rows(frame: pd.DataFrame, roles: Roles, missing: str, source: str) -> tuple[pd.DataFrame, dict]:
    """Drop rows missing the treatment, outcome or mediator, and (``missing="drop"``) any covariate; log each."""
    dropped: dict[str, int] = {}
    required = [roles.treatment, roles.outcome] + ([roles.mediator] if roles.mediator else [])
    for col in required:
        gone = missing_mask(frame[col])
        if gone.any():
            dropped[col] = int(gone.sum())
            log.warning("%s: dropping %d row(s) with missing %r (%s)", source, gone.sum(), col, roles.key_of(col))
            frame = frame.loc[~gone]
    covariates = list(dict.fromkeys([*roles.confounders, *roles.modifiers, *roles.groups]))
    if missing != "indicator":
        holes = {c: int(missing_mask(frame[c]).sum()) for c in covariates}
        holes = {c: k for c, k in holes.items() if k}
        if holes and missing == "error":
            detail = ", ".join(f"{c!r} ({roles.key_of(c)}): {k} rows" for c, k in holes.items())
            raise DataError(f"{source}: missing values in {detail} (missing='error')")
        for col in holes:
            gone = missing_mask(frame[col])
            dropped[col] = dropped.get(col, 0) + int(gone.sum())
            log.warning("%s: dropping %d row(s) with missing %r (missing='drop')", source, gone.sum(), col)
            frame = frame.loc[~gone]
    if len(frame) == 0:
        raise DataError(f"{source}: no rows left after dropping rows with missing values ({dropped})")
    return frame, dropped


def _row_labels(frame: pd.DataFrame, id_column: str | None) -> pd.Series:
    """Row labels for messages: the id column when there is one, else the row number in the table as read."""
    has_ids = id_column is not None and id_column in frame.columns
    rows = pd.Series(frame[id_column].to_numpy() if has_ids else frame.index.to_numpy(), name=id_column or "row")
    rows.name = id_column if has_ids else "row"
    return rows


def _treatment(frame: pd.DataFrame, roles: Roles, source: str, rows: pd.Series, binary: bool) -> pd.Series:
    t_where = f"{source}: column {roles.treatment!r} (roles.treatment)"
    t = as_numeric(frame[roles.treatment], t_where)
    check_finite(t, t_where, rows)
    if binary:
        levels = set(np.unique(t.to_numpy()))
        if not levels <= {0.0, 1.0}:
            shown = sorted(frame[roles.treatment].astype(str).unique())[:5]
            raise DataError(
                f"{t_where} must be binary (0/1 or true/false); found values {shown}. "
                "Set config `data.prepare.binary_treatment=false` for a continuous treatment"
            )
    return t


def _outcome(
    frame: pd.DataFrame, roles: Roles, source: str, rows: pd.Series, outcome_range: tuple[float, float] | None
) -> pd.Series:
    y_where = f"{source}: column {roles.outcome!r} (roles.outcome)"
    y = as_numeric(frame[roles.outcome], y_where)
    check_finite(y, y_where, rows)
    if outcome_range is not None:
        low, high = (float(v) for v in outcome_range)
        out = (y < low) | (y > high)
        if out.any():
            raise DataError(
                f"{y_where}: {int(out.sum())} value(s) outside the outcome range [{low}, {high}] "
                f"(min {y.min():.6g}, max {y.max():.6g})"
            )
    return y


def _mediator(frame: pd.DataFrame, roles: Roles, source: str, rows: pd.Series) -> np.ndarray | None:
    if roles.mediator is None:
        return None
    m_where = f"{source}: column {roles.mediator!r} (roles.mediator)"
    m = as_numeric(frame[roles.mediator], m_where)
    check_finite(m, m_where, rows)
    return m.to_numpy()


def _check_not_constant(frame: pd.DataFrame, roles: Roles, source: str) -> None:
    """Raise on a constant role column (it carries no information); a constant group column only warns."""
    for col in roles.columns():
        if n_distinct(frame[col]) < 2:
            value = frame[col].dropna().iloc[0] if frame[col].notna().any() else None
            value = value.item() if isinstance(value, np.generic) else value  # 1, not np.int64(1)
            msg = f"{source}: column {col!r} ({roles.key_of(col)}) is constant ({value!r}) over {len(frame)} rows"
            if col in roles.groups and col not in roles.confounders and col not in roles.modifiers:
                log.warning("%s; CATE by it has a single level", msg)
                continue
            raise DataError(msg + "; it carries no information: remove it from the config")


def prepare(
    frame: pd.DataFrame,
    roles: Roles,
    *,
    source: str = "table",
    binary_treatment: bool = True,
    outcome_range: tuple[float, float] | None = None,
    n_components: int = 8,
    missing: str = "indicator",
    seed: int = 0,
    id_column: str | None = "image_id",
    max_levels: int = 50,
    min_level_count: int = MIN_LEVEL_COUNT,
) -> CausalDataset:
    """Validate a table against its roles and build the numeric arrays of the causal stage.

    Parameters
    ----------
    frame : DataFrame
        One row per unit (artwork).
    roles : Roles
        Which columns are treatment, outcome, confounders, modifiers, mediator and groups.
    source : str
        File name(s) for messages.
    binary_treatment : bool
        Require a 0/1 (or boolean) treatment. ``False`` allows a continuous numeric treatment.
    outcome_range : (float, float) or None
        Inclusive bounds every outcome value must respect, e.g. ``(0, 1)`` for a take rate.
    n_components : int
        PCA components kept per embedding column.
    missing : {"indicator", "drop", "error"}
        Covariate missing-value policy (see the module docstring).
    seed : int
        Seed of the PCA.
    id_column : str or None
        Column that must be unique when present (``None`` skips the check).
    max_levels : int
        Most dummy-coded levels per categorical column, the reference included; rarer levels pool into "other".
        Also the most levels of a ``roles.groups`` column and of a moderator in ``dml.moderation``.
    min_level_count : int
        ``roles.groups`` levels (and moderation levels) with fewer rows pool into "other" (see ``MIN_LEVEL_COUNT``).

    Returns
    -------
    CausalDataset

    Raises
    ------
    DataError
        Missing columns, duplicate ids, all-missing or constant role columns, a non-binary treatment (when
        binary), a non-numeric or out-of-range outcome, no rows left after dropping missing treatment/outcome,
        infinite or float32-overflowing numbers in any role column (naming the column and a few rows).
    """
    _check_options(missing, n_components, max_levels, min_level_count)
    roles.check()
    frame = _check_role_columns(frame, roles, source, id_column)
    # Counted before any row is dropped: the summary reports every hole of the table as read.
    holes_by_column = {c: int(missing_mask(frame[c]).sum()) for c in roles.columns()}
    holes_by_column = {c: k for c, k in holes_by_column.items() if k}
    frame, dropped = _drop_missing_rows(frame, roles, missing, source)
    rows = _row_labels(frame, id_column)
    frame = frame.reset_index(drop=True)
    t = _treatment(frame, roles, source, rows, binary_treatment)
    y = _outcome(frame, roles, source, rows, outcome_range)
    m = _mediator(frame, roles, source, rows)
    _check_not_constant(frame, roles, source)

    encoder = Encoder(
        frame,
        source=source,
        roles=roles,
        missing=missing,
        n_components=n_components,
        seed=seed,
        max_levels=max_levels,
        rows=rows,
    )
    W = encoder.encode(roles.confounders)
    X = encoder.encode(roles.modifiers)
    groups = group_labels(frame, roles.groups, min_level_count=min_level_count, max_levels=max_levels, source=source)
    info = {
        "dropped": dropped,
        "n_rows": len(frame),
        **encoder.info,
        "missing": _missing_summary(holes_by_column, roles, missing, encoder.info["imputed"], source),
        "pooling": {"min_level_count": int(min_level_count), "max_levels": int(max_levels)},
    }
    log.info("%s: prepared %d rows, W %d columns, X %d columns", source, len(frame), W.shape[1], X.shape[1])
    return CausalDataset(
        frame=frame,
        y=y.to_numpy(dtype="float64"),
        t=t.to_numpy(dtype="float64"),
        W=W,
        X=X,
        groups=groups,
        roles=roles,
        source=source,
        m=None if m is None else np.asarray(m, dtype="float64"),
        info=info,
    )
