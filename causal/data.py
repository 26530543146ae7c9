"""Reading, joining and validating the tables of the causal stage.

A table becomes a :class:`CausalDataset` in three steps: :func:`read_table` (CSV or Parquet, a file or a folder of
parts), optionally :func:`join_annotations` (annotation images table x engagement table on ``image_id``), and
:func:`prepare`, which checks the columns named by :class:`Roles` and turns them into numeric arrays.

Every problem raises :class:`DataError` whose message names the file (``source``) and the column or config key.

Missing-value policy (``prepare(missing=...)``)
-----------------------------------------------
* Treatment, outcome and mediator define the estimand, so a row missing any of them is dropped; the number of rows
  dropped per column is logged (a warning) and kept in ``CausalDataset.info["dropped"]``. If no row is left,
  :class:`DataError`.
* Covariates (confounders ``W`` and modifiers ``X``) under the default ``missing="indicator"``:
  numeric and boolean columns get the median of the observed values plus a ``<col>__missing`` 0/1 column (only when
  the column has missing values); categorical columns get their own level ``"missing"``; embedding (list) columns
  get the PCA mean, i.e. zeros in component space, plus ``<col>__missing``.
  ``missing="drop"`` drops rows with any missing role column instead (logged); ``missing="error"`` raises.
* ``groups`` columns are kept as strings; a missing value becomes the level ``"missing"``.

Encoding for XGBoost
--------------------
Categorical columns (string, object, category) are dummy coded: one 0/1 column ``<col>=<level>`` per level except
a reference level (the most frequent, ties broken by name). Why dummies rather than integer codes: codes impose an
arbitrary order on the levels, so a tree needs several splits to isolate one genre, and EconML hands the nuisance
models plain float arrays (XGBoost's native categorical support needs a pandas ``category`` frame, which EconML does
not pass through). Why drop a reference level: trees lose nothing (the reference is "all zeros"), while the linear
final stages (LinearDML, Baron & Kenny, Cinelli & Hazlett regressions) would otherwise be collinear with their
intercept. Levels beyond ``max_levels`` (by frequency) are pooled into ``"other"`` so a high-cardinality column
cannot explode the width. Boolean columns and boolean-like strings (true/false, yes/no, 0/1) become one 0/1 column.
Embedding columns (lists or arrays of floats, e.g. ``face_embedding_mean``, ``image_embedding``; also JSON-like
``"[0.1, ...]"`` strings from CSV) are reduced by a PCA with ``n_components`` components (seeded), fitted on the rows
that have a vector (a seeded subsample of 50,000 when there are more), and enter as ``<col>_pc1..k``.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

log = logging.getLogger(__name__)

MISSING_LEVEL = "missing"
OTHER_LEVEL = "other"
_TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_STRINGS = frozenset({"false", "f", "no", "n", "0", "0.0"})
_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
MISSING_POLICIES = ("indicator", "drop", "error")
PCA_FIT_ROWS = 50_000  # vectors a PCA is fitted on (a seeded subsample beyond this)
PCA_CHUNK_ROWS = 50_000  # vectors stacked at once when transforming
# XGBoost stores features as float32: a larger |value| becomes inf there and fails in its C++ check, which names no
# column. So every numeric role value must be finite and within float32's range.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# A level needs this many units before it is reported (CATE by group) or gets its own moderation term; rarer levels
# pool into "other". Why 30: a level's effect is a mean of doubly robust scores with SE sd/sqrt(n); below ~30 units
# (split over two arms) the normal interval is unreliable and the estimate is noise, and every extra level costs a
# column in the moderation regression (5,000 one-unit levels made it run for over 11 minutes).
MIN_LEVEL_COUNT = 30
# Strings pandas reads as missing by default. Here they are data (`NA` is North America) unless `data.na_values`
# lists them; a numeric column holding only these besides numbers is refused with a hint (see _encode_one).
NA_LIKE_STRINGS = frozenset(
    {"NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "<NA>", "#N/A", "#NA", "#N/A N/A"}
)


class DataError(ValueError):
    """Bad input data or data configuration; the message names the file and the column or config key."""


# ----------------------------------------------------------------------------------------------------------- roles
@dataclass
class Roles:
    """Which columns play which part in the analysis; always from configuration, never from code.

    Parameters
    ----------
    treatment, outcome : str
        Column names of the treatment ``T`` and the outcome ``Y``.
    confounders : list of str
        Columns ``W`` to adjust for.
    modifiers : list of str
        Effect modifiers ``X`` (the CATE is a function of these); may be empty.
    mediator : str or None
        Column on the path treatment -> mediator -> outcome, for the mediation step.
    groups : list of str
        Columns whose levels the CATE is reported by.
    """

    treatment: str
    outcome: str
    confounders: list[str] = field(default_factory=list)
    modifiers: list[str] = field(default_factory=list)
    mediator: str | None = None
    groups: list[str] = field(default_factory=list)

    _LIST_KEYS = ("confounders", "modifiers", "groups")

    @classmethod
    def from_config(cls, cfg: Mapping) -> Roles:
        """Build roles from the ``roles`` config node (a dict or an OmegaConf ``DictConfig``).

        Raises
        ------
        DataError
            On an unknown key, a missing ``treatment``/``outcome``, a wrong type, or a column playing two roles
            that exclude each other (e.g. the outcome listed as a confounder, the mediator as a confounder).
        """
        if cfg is None or not isinstance(cfg, Mapping):
            raise DataError(f"config `roles` must be a mapping, got {type(cfg).__name__}")
        known = {"treatment", "outcome", "confounders", "modifiers", "mediator", "groups"}
        for key in cfg:
            if key not in known:
                raise DataError(f"config `roles.{key}`: unknown key; known keys are {', '.join(sorted(known))}")
        values: dict[str, Any] = {}
        for key in known:
            try:
                values[key] = cfg.get(key, None)
            except Exception as exc:  # OmegaConf raises on `???` (mandatory value not set)
                raise DataError(f"config `roles.{key}` is not set ({exc.__class__.__name__})") from exc
        for key in ("treatment", "outcome"):
            if values[key] is None or values[key] == "???" or values[key] == "":
                raise DataError(f"config `roles.{key}` is required (a column name)")
            if not isinstance(values[key], str):
                raise DataError(f"config `roles.{key}` must be one column name, got {values[key]!r}")
        if values["mediator"] is not None and not isinstance(values["mediator"], str):
            raise DataError(f"config `roles.mediator` must be one column name or null, got {values['mediator']!r}")
        for key in cls._LIST_KEYS:
            raw = values[key]
            if raw is None:
                values[key] = []
            elif isinstance(raw, str):
                values[key] = [raw]
            else:
                try:
                    items = list(raw)
                except TypeError as exc:
                    raise DataError(f"config `roles.{key}` must be a list of column names, got {raw!r}") from exc
                if not all(isinstance(item, str) for item in items):
                    raise DataError(f"config `roles.{key}` must be a list of column names, got {items!r}")
                if len(set(items)) != len(items):
                    raise DataError(f"config `roles.{key}` lists a column twice: {items!r}")
                values[key] = items
        roles = cls(**values)
        roles.check()
        return roles

    def check(self) -> None:
        """Raise :class:`DataError` when a column plays roles that exclude each other."""
        if self.treatment == self.outcome:
            raise DataError(f"config `roles.treatment` and `roles.outcome` are the same column {self.treatment!r}")
        covariates = {"confounders": self.confounders, "modifiers": self.modifiers}
        for key, columns in covariates.items():
            for name, col in (("treatment", self.treatment), ("outcome", self.outcome), ("mediator", self.mediator)):
                if col is not None and col in columns:
                    raise DataError(
                        f"config `roles.{key}` contains {col!r}, which is `roles.{name}`; "
                        f"a {name} cannot be adjusted for"
                    )
        if self.mediator is not None and self.mediator in (self.treatment, self.outcome):
            raise DataError(f"config `roles.mediator` {self.mediator!r} is also the treatment or the outcome")

    def columns(self) -> list[str]:
        """Every column named by a role, each once, in role order."""
        cols = [self.treatment, self.outcome, *self.confounders, *self.modifiers]
        if self.mediator is not None:
            cols.append(self.mediator)
        cols.extend(self.groups)
        return list(dict.fromkeys(cols))

    def key_of(self, column: str) -> str:
        """The config key (``roles.<key>``) through which ``column`` entered, for messages."""
        for key in ("treatment", "outcome", "mediator"):
            if getattr(self, key) == column:
                return f"roles.{key}"
        for key in self._LIST_KEYS:
            if column in getattr(self, key):
                return f"roles.{key}"
        return "roles"

    def to_dict(self) -> dict[str, Any]:
        return {
            "treatment": self.treatment,
            "outcome": self.outcome,
            "confounders": list(self.confounders),
            "modifiers": list(self.modifiers),
            "mediator": self.mediator,
            "groups": list(self.groups),
        }


# ---------------------------------------------------------------------------------------------------------- reading
def _table_files(folder: Path) -> list[Path]:
    """Data files in a folder of parts; hidden and underscore files (temporary parts, _SUCCESS) are skipped."""
    visible = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith((".", "_"))]
    parquet = [p for p in visible if p.name.lower().endswith(_PARQUET_SUFFIXES)]
    if parquet:
        return parquet
    return [p for p in visible if p.name.lower().endswith(_CSV_SUFFIXES)]


def na_values_option(value: Any, *, key: str = "data.na_values") -> list[str]:
    """The strings read as missing besides empty cells, from config ``data.na_values`` (null, a string or a list)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        raise DataError(f"config `{key}` must be a list of strings (or null), got a mapping {dict(value)!r}")
    try:
        items = list(value)
    except TypeError as exc:
        raise DataError(f"config `{key}` must be a list of strings (or null), got {value!r}") from exc
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in items):
        raise DataError(f"config `{key}` must be a list of strings (or null), got {items!r}")
    return [str(v) for v in items]


def _read_one(path: Path, na_values: Sequence[str] = ()) -> pd.DataFrame:
    name = path.name.lower()
    # Only empty cells are missing by default: pandas' own list would turn the country code NA into NaN unannounced.
    csv_na = {"keep_default_na": False, "na_values": ["", *na_values]}
    try:
        if name.endswith(_PARQUET_SUFFIXES):
            table = pd.read_parquet(path)
            for col in table.columns:  # Parquet has typed nulls; `na_values` still names missing markers in text
                if na_values and (table[col].dtype == object or pd.api.types.is_string_dtype(table[col].dtype)):
                    table[col] = table[col].where(~table[col].isin(list(na_values)), None)
            return table
        if name.endswith((".tsv", ".tsv.gz")):
            return pd.read_csv(path, sep="\t", **csv_na)
        if name.endswith(_CSV_SUFFIXES):
            return pd.read_csv(path, **csv_na)
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as a table ({exc.__class__.__name__}: {exc})") from exc
    raise DataError(f"{path}: unknown table format; expected one of {', '.join(_PARQUET_SUFFIXES + _CSV_SUFFIXES)}")


def read_table(path: str | Path, *, na_values: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet table: one file, or a folder of part files (``part-*.parquet`` or ``*.csv``).

    Parameters
    ----------
    path : str or Path
        A file (``.csv``, ``.tsv``, ``.csv.gz``, ``.parquet``, ``.pq``) or a folder holding part files of one
        format. An annotation output folder (with an ``images/`` sub-folder) reads its images table.
    na_values : sequence of str, optional
        Cell texts read as missing besides empty cells (config ``data.na_values``). By default none: ``NA``,
        ``null``, ``N/A`` ... are data, unlike pandas' default.

    Returns
    -------
    DataFrame
        The rows of all parts, index ``0..n-1``.

    Raises
    ------
    DataError
        When the path does not exist, holds no table, cannot be parsed, the parts disagree on their columns, or
        the table has no rows.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = _table_files(path)
        if not files and (path / "images").is_dir():
            return read_table(path / "images", na_values=na_values)
        if not files:
            raise DataError(f"{path}: folder holds no .parquet or .csv files")
        frames = [_read_one(p, na_values or ()) for p in files]
        columns = list(frames[0].columns)
        for part, frame in zip(files[1:], frames[1:]):
            if set(frame.columns) != set(columns):
                raise DataError(
                    f"{part}: columns differ from {files[0].name} "
                    f"(extra: {sorted(set(frame.columns) - set(columns))}, "
                    f"missing: {sorted(set(columns) - set(frame.columns))})"
                )
        frames = [f for f in frames if len(f)]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    else:
        table = _read_one(path, na_values or ())
    if len(table) == 0:
        raise DataError(f"{path}: the table has no rows")
    table = table.reset_index(drop=True)
    log.info("read %d rows x %d columns from %s", len(table), table.shape[1], path)
    holes = {str(c): int(k) for c, k in table.isna().sum().items() if k}
    if holes:
        what = "empty cells" + (f" and {list(na_values)}" if na_values else "")
        log.info("%s: missing values (%s) per column: %s", path, what, holes)
    return table


# ---------------------------------------------------------------------------------------------------------- joining
def join_annotations(
    images: pd.DataFrame,
    engagement: pd.DataFrame,
    *,
    images_source: str = "annotations",
    engagement_source: str = "engagement",
    id_column: str = "image_id",
    max_lost_fraction: float | None = None,
) -> pd.DataFrame:
    """Inner-join the annotation images table with an engagement table on ``id_column``.

    Images with ``status == "error"`` are dropped first. Rows lost by the join are counted by reason and logged:
    engagement rows whose id is missing in the annotations, engagement rows whose image has error status, and
    annotated images missing in the engagement table. The counts are also in ``result.attrs["join"]``.

    Parameters
    ----------
    images : DataFrame
        The ``annotations/images`` table (one row per image).
    engagement : DataFrame
        One row per artwork with engagement columns. Its columns must not repeat image columns other than the id.
    images_source, engagement_source : str
        File names for messages.
    id_column : str
        The join key; compared as strings so ``"7"`` and ``7`` match.
    max_lost_fraction : float or None
        Raise when more than this fraction of engagement rows is lost. ``None``: raise only when all are lost.

    Returns
    -------
    DataFrame
        Engagement columns followed by image columns, in engagement row order, index ``0..n-1``.

    Raises
    ------
    DataError
        On a missing or duplicated id column, overlapping column names, or when the join loses all rows (or more
        than ``max_lost_fraction`` of them). The message says how many were lost and why.
    """
    for frame, source in ((images, images_source), (engagement, engagement_source)):
        if id_column not in frame.columns:
            raise DataError(f"{source}: missing id column {id_column!r}")
        _check_unique_ids(frame, id_column, source)
    overlap = sorted((set(images.columns) & set(engagement.columns)) - {id_column})
    if overlap:
        raise DataError(
            f"{engagement_source} and {images_source}: column(s) {overlap} are in both tables; "
            "drop or rename them in one"
        )
    img = images.copy()
    eng = engagement.copy()
    img[id_column] = img[id_column].astype(str)
    eng[id_column] = eng[id_column].astype(str)
    if "status" in img.columns:
        bad = img["status"].astype(str).str.lower().eq("error")
        error_ids = set(img.loc[bad, id_column])
        img = img.loc[~bad]
    else:
        error_ids = set()
    ok_ids = set(img[id_column])
    eng_ids = eng[id_column]
    in_error = eng_ids.isin(error_ids)
    not_annotated = ~eng_ids.isin(ok_ids) & ~in_error
    not_engaged = ~img[id_column].isin(set(eng_ids))
    joined = eng.merge(img, on=id_column, how="inner", validate="one_to_one", sort=False)
    report = {
        "engagement_rows": len(eng),
        "image_rows": len(images),
        "joined_rows": len(joined),
        "missing_in_annotations": int(not_annotated.sum()),
        "error_status": int(in_error.sum()),
        "missing_in_engagement": int(not_engaged.sum()),
    }
    why = (
        f"{report['missing_in_annotations']} engagement row(s) have no image in {images_source}, "
        f"{report['error_status']} have an image with status=error, "
        f"{report['missing_in_engagement']} annotated image(s) have no row in {engagement_source}"
    )
    lost = report["missing_in_annotations"] + report["error_status"]
    if len(joined) == 0:
        raise DataError(
            f"joining {engagement_source} with {images_source} on {id_column!r} lost every row: {why}. "
            f"Example ids: engagement {list(eng_ids.head(3))}, annotations {list(img[id_column].head(3))}"
        )
    if max_lost_fraction is not None and lost / max(len(eng), 1) > max_lost_fraction:
        raise DataError(
            f"joining {engagement_source} with {images_source} on {id_column!r} lost {lost} of {len(eng)} "
            f"engagement rows (more than max_lost_fraction={max_lost_fraction}): {why}"
        )
    if lost or report["missing_in_engagement"]:
        log.warning("join on %r kept %d rows: %s", id_column, len(joined), why)
    else:
        log.info("join on %r kept all %d rows", id_column, len(joined))
    joined = joined.reset_index(drop=True)
    joined.attrs["join"] = report
    return joined


# -------------------------------------------------------------------------------------------------------- preparing
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


def _check_unique_ids(frame: pd.DataFrame, id_column: str, source: str) -> None:
    ids = frame[id_column]
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        examples = list(dict.fromkeys(dup.astype(str)))[:3]
        raise DataError(
            f"{source}: column {id_column!r} has {dup.nunique()} duplicated id(s) over {len(dup)} rows, e.g. {examples}"
        )


def is_vector(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def _list_column(series: pd.Series) -> pd.Series | None:
    """The column as a Series of 1-d float arrays (None where missing) if it holds vectors, else None."""
    if not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
        return None
    values = series.dropna()
    if values.empty:
        return None
    first = values.iloc[0]
    if is_vector(first):
        # Values beyond float32's range become inf here (no warning): _embedding refuses them, naming the rows.
        with np.errstate(over="ignore"):
            return series.map(lambda v: None if not is_vector(v) else np.asarray(v, dtype=np.float32).ravel())
    if isinstance(first, str) and first.lstrip().startswith("["):
        # A list serialised into CSV. If it does not parse, say so rather than dummy-coding every vector.
        return series.map(lambda v: None if not isinstance(v, str) else np.asarray(json.loads(v), np.float32))
    return None


def as_boolean(series: pd.Series) -> pd.Series | None:
    """0.0/1.0/NaN if every non-missing value is a boolean or a boolean-like string, else None."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64")
    if pd.api.types.is_numeric_dtype(series.dtype):
        return None
    values = series.dropna()
    if values.empty:
        return None
    if all(isinstance(v, bool | np.bool_) for v in values):
        return series.map(lambda v: np.nan if v is None or v is pd.NA else float(bool(v))).astype(float)
    text = values.astype(str).str.strip().str.lower()
    if text.isin(_TRUE_STRINGS | _FALSE_STRINGS).all() and text.nunique() <= 2:
        mapped = series.astype("string").str.strip().str.lower()
        out = pd.Series(np.nan, index=series.index)
        out[mapped.isin(_TRUE_STRINGS).fillna(False).astype(bool)] = 1.0
        out[mapped.isin(_FALSE_STRINGS).fillna(False).astype(bool)] = 0.0
        return out
    return None


def _is_missing_mask(series: pd.Series) -> pd.Series:
    if pd.api.types.is_object_dtype(series.dtype):
        return series.map(lambda v: v is None or (not is_vector(v) and pd.isna(v))).astype(bool)
    return series.isna()


def _n_distinct(series: pd.Series) -> int:
    """Distinct non-missing values; for vector columns only 1 or 2 (= "not constant"), found without hashing."""
    values = series[~_is_missing_mask(series)]
    if len(values) and is_vector(values.iloc[0]):
        first = np.asarray(values.iloc[0])
        return 2 if any(not np.array_equal(first, np.asarray(v)) for v in values) else 1
    return int(values.nunique())


def _check_finite(values: pd.Series, where: str, rows: pd.Series) -> None:
    """Raise when a numeric role value is infinite or beyond float32's range (see ``FLOAT32_MAX``); NaN passes."""
    v = values.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(v) & ~(np.abs(v) <= FLOAT32_MAX)
    if bad.any():
        shown = ", ".join(f"{rows.name} {r!r} ({x:.6g})" for r, x in zip(rows[bad].head(3), v[bad][:3]))
        raise DataError(
            f"{where}: {int(bad.sum())} value(s) infinite or beyond +-{FLOAT32_MAX:.4g} (float32, what XGBoost "
            f"computes in), e.g. {shown}; fix or remove these rows"
        )


def _refuse_na_like_numbers(series: pd.Series, where: str) -> None:
    """Raise when a text column is numbers plus missing markers such as ``NA``: it would be dummy-coded per value."""
    present = series[~_is_missing_mask(series)]
    numbers = pd.to_numeric(present, errors="coerce")
    text = present[numbers.isna()].astype(str).str.strip()
    markers = set(text.unique())
    if numbers.notna().any() and markers and markers <= NA_LIKE_STRINGS:
        raise DataError(
            f"{where} holds numbers and {len(text)} cell(s) reading {sorted(markers)}; if these mean missing, list "
            f"them in config `data.na_values` (e.g. data.na_values=[{','.join(sorted(markers))}])"
        )


def pool_rare_levels(
    labels: pd.Series, *, min_count: int = MIN_LEVEL_COUNT, max_levels: int | None = None
) -> pd.Series:
    """Levels seen fewer than ``min_count`` times, and those beyond the ``max_levels`` most frequent, -> ``"other"``.

    A single rare level is kept as it is (pooling it alone would only rename it). When no level reaches
    ``min_count`` every level is rare and all become "other": no level has enough units to say anything on its own
    (lower ``data.prepare.min_level_count`` for a small table). Frequency ties are broken by name, so the result
    does not depend on row order.

    Parameters
    ----------
    labels : Series of str
    min_count : int
        Smallest level size kept (config ``data.prepare.min_level_count``).
    max_levels : int or None
        Most levels kept, ``"other"`` included.

    Returns
    -------
    Series of str, same index
    """
    counts = labels.value_counts()
    order = sorted(counts.index, key=lambda level: (-counts[level], level))
    rare = [lv for lv in order if counts[lv] < min_count]
    keep = [lv for lv in order if counts[lv] >= min_count] if len(rare) >= 2 else order
    if max_levels is not None and len(keep) + (len(keep) < len(order)) > max_levels:
        keep = keep[: max_levels - 1]
    if len(keep) == len(order):
        return labels
    return labels.where(labels.isin(set(keep)), OTHER_LEVEL)


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


class _Encoder:
    """Turns role columns into float covariates; one instance per ``prepare`` call so both W and X share it."""

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        source: str,
        roles: Roles,
        missing: str,
        n_components: int,
        seed: int,
        max_levels: int,
        rows: pd.Series,
    ):
        self.frame = frame
        self.rows = rows  # row labels for messages (id column values, else row numbers as read)
        self.source = source
        self.roles = roles
        self.missing = missing
        self.n_components = n_components
        self.seed = seed
        self.max_levels = max_levels
        self.info: dict[str, Any] = {"imputed": {}, "dummies": {}, "pca": {}, "boolean": []}
        self._cache: dict[str, pd.DataFrame] = {}

    def encode(self, columns: Sequence[str]) -> pd.DataFrame:
        parts = [self._column(c) for c in columns]
        if not parts:
            return pd.DataFrame(index=self.frame.index, dtype=float)
        return pd.concat(parts, axis=1).astype("float64")

    def _column(self, col: str) -> pd.DataFrame:
        if col not in self._cache:
            self._cache[col] = self._encode_one(col)
        return self._cache[col]

    def _encode_one(self, col: str) -> pd.DataFrame:
        series = self.frame[col]
        where = f"{self.source}: column {col!r} ({self.roles.key_of(col)})"
        if pd.api.types.is_datetime64_any_dtype(series.dtype) or isinstance(series.dtype, pd.PeriodDtype):
            raise DataError(f"{where} is a date; derive a numeric covariate from it (e.g. the year)")
        try:
            vectors = _list_column(series)
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"{where} looks like a list column but a value is not a JSON list of numbers ({exc})"
            ) from exc
        if vectors is not None:
            return self._embedding(col, vectors, where)
        as_bool = as_boolean(series)
        if as_bool is not None:
            self.info["boolean"].append(col)
            return self._numeric(col, as_bool)
        if pd.api.types.is_numeric_dtype(series.dtype):
            return self._numeric(col, series.astype("float64"))
        _refuse_na_like_numbers(series, where)
        return self._categorical(col, series)

    def _numeric(self, col: str, values: pd.Series) -> pd.DataFrame:
        _check_finite(values, f"{self.source}: column {col!r} ({self.roles.key_of(col)})", self.rows)
        missing = values.isna()
        out = pd.DataFrame({col: values})
        if missing.any():
            median = float(values.median())
            out[col] = values.fillna(median)
            out[f"{col}__missing"] = missing.astype(float)
            self.info["imputed"][col] = {"rows": int(missing.sum()), "value": median}
        return out

    def _categorical(self, col: str, series: pd.Series) -> pd.DataFrame:
        labels = series.astype("string").fillna(MISSING_LEVEL).astype(str)
        counts = labels.value_counts()
        # Stable order: frequency, then name, so the reference level and the pooled levels do not depend on row order.
        order = sorted(counts.index, key=lambda level: (-counts[level], level))
        if len(order) > self.max_levels:
            keep = set(order[: self.max_levels - 1])
            labels = labels.where(labels.isin(keep), OTHER_LEVEL)
            log.warning(
                "%s: column %r has %d levels; the %d rarest are pooled into %r",
                self.source,
                col,
                len(order),
                len(order) - len(keep),
                OTHER_LEVEL,
            )
            counts = labels.value_counts()
            order = sorted(counts.index, key=lambda level: (-counts[level], level))
        reference, levels = order[0], order[1:]
        out = pd.DataFrame({f"{col}={level}": (labels == level).astype(float) for level in levels}, index=series.index)
        self.info["dummies"][col] = {"reference": reference, "levels": list(levels)}
        if (labels == MISSING_LEVEL).any() and series.isna().any():
            self.info["imputed"][col] = {"rows": int(series.isna().sum()), "value": MISSING_LEVEL}
        return out

    def _embedding(self, col: str, vectors: pd.Series, where: str) -> pd.DataFrame:
        # float32 vectors: a value beyond its range became inf. NaN inside a vector still means "no vector".
        infinite = vectors.map(lambda v: v is not None and bool(np.isinf(v).any())).astype(bool)
        if infinite.any():
            raise DataError(
                f"{where}: {int(infinite.sum())} vector(s) hold infinite values or values beyond float32's range, "
                f"e.g. {self.rows.name} {list(self.rows[infinite].head(3))}; fix or remove these rows"
            )
        has = vectors.map(lambda v: v is not None and v.size > 0 and bool(np.isfinite(v).all())).astype(bool)
        lengths = {int(v.size) for v in vectors[has]}
        if len(lengths) > 1:
            raise DataError(f"{where} holds vectors of different lengths {sorted(lengths)[:5]}")
        rows = np.flatnonzero(has.to_numpy())
        dim = lengths.pop()
        k = min(self.n_components, dim, len(rows))
        # Bounded memory at any n: fit on a seeded subsample of PCA_FIT_ROWS vectors, transform in chunks.
        rng = np.random.default_rng(self.seed)
        fit_rows = rows if len(rows) <= PCA_FIT_ROWS else np.sort(rng.choice(rows, PCA_FIT_ROWS, replace=False))
        pca = PCA(n_components=k, random_state=self.seed).fit(np.vstack(vectors.iloc[fit_rows].to_numpy()))
        comps = np.zeros((len(vectors), k))
        for begin in range(0, len(rows), PCA_CHUNK_ROWS):
            chunk = rows[begin : begin + PCA_CHUNK_ROWS]
            comps[chunk] = pca.transform(np.vstack(vectors.iloc[chunk].to_numpy()))
        out = pd.DataFrame(comps, index=vectors.index, columns=[f"{col}_pc{i + 1}" for i in range(k)])
        if not has.all():
            out[f"{col}__missing"] = (~has).astype(float)
            self.info["imputed"][col] = {"rows": int((~has).sum()), "value": "pca mean (0)"}
        self.info["pca"][col] = {
            "dim": dim,
            "n_components": k,
            "fit_rows": int(len(fit_rows)),
            "explained_variance_ratio": [float(x) for x in pca.explained_variance_ratio_],
        }
        return out


def _to_numeric(series: pd.Series, where: str) -> pd.Series:
    as_bool = as_boolean(series)
    if as_bool is not None:
        return as_bool
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna()
    if bad.any():
        raise DataError(f"{where} must be numeric; found values like {list(series[bad].astype(str).unique()[:3])}")
    return converted.astype("float64")


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
    if missing not in MISSING_POLICIES:
        raise DataError(f"config `missing` must be one of {MISSING_POLICIES}, got {missing!r}")
    if n_components < 1:
        raise DataError(f"config `n_components` must be >= 1, got {n_components}")
    if int(min_level_count) < 1 or int(max_levels) < 2:
        raise DataError(
            f"config `data.prepare.min_level_count` must be >= 1 and `max_levels` >= 2, got {min_level_count}, "
            f"{max_levels}"
        )
    roles.check()
    absent = [c for c in roles.columns() if c not in frame.columns]
    if absent:
        detail = ", ".join(f"{c!r} ({roles.key_of(c)})" for c in absent)
        raise DataError(f"{source}: missing column(s) {detail}; the table has {list(frame.columns)[:20]}")
    frame = frame.reset_index(drop=True).copy()
    if id_column is not None and id_column in frame.columns:
        _check_unique_ids(frame, id_column, source)

    for col in roles.columns():
        if _is_missing_mask(frame[col]).all():
            raise DataError(f"{source}: column {col!r} ({roles.key_of(col)}) is missing in every row")

    holes_by_column = {c: int(_is_missing_mask(frame[c]).sum()) for c in roles.columns()}
    holes_by_column = {c: k for c, k in holes_by_column.items() if k}
    dropped: dict[str, int] = {}
    required = [roles.treatment, roles.outcome] + ([roles.mediator] if roles.mediator else [])
    for col in required:
        gone = _is_missing_mask(frame[col])
        if gone.any():
            dropped[col] = int(gone.sum())
            log.warning("%s: dropping %d row(s) with missing %r (%s)", source, gone.sum(), col, roles.key_of(col))
            frame = frame.loc[~gone]
    covariates = list(dict.fromkeys([*roles.confounders, *roles.modifiers, *roles.groups]))
    if missing != "indicator":
        holes = {c: int(_is_missing_mask(frame[c]).sum()) for c in covariates}
        holes = {c: k for c, k in holes.items() if k}
        if holes and missing == "error":
            detail = ", ".join(f"{c!r} ({roles.key_of(c)}): {k} rows" for c, k in holes.items())
            raise DataError(f"{source}: missing values in {detail} (missing='error')")
        for col in holes:
            gone = _is_missing_mask(frame[col])
            dropped[col] = dropped.get(col, 0) + int(gone.sum())
            log.warning("%s: dropping %d row(s) with missing %r (missing='drop')", source, gone.sum(), col)
            frame = frame.loc[~gone]
    if len(frame) == 0:
        raise DataError(f"{source}: no rows left after dropping rows with missing values ({dropped})")
    # Row labels for messages: the id column when there is one, else the row number in the table as read.
    has_ids = id_column is not None and id_column in frame.columns
    rows = pd.Series(frame[id_column].to_numpy() if has_ids else frame.index.to_numpy(), name=id_column or "row")
    rows.name = id_column if has_ids else "row"
    frame = frame.reset_index(drop=True)

    t_where = f"{source}: column {roles.treatment!r} (roles.treatment)"
    t = _to_numeric(frame[roles.treatment], t_where)
    _check_finite(t, t_where, rows)
    if binary_treatment:
        levels = set(np.unique(t.to_numpy()))
        if not levels <= {0.0, 1.0}:
            shown = sorted(frame[roles.treatment].astype(str).unique())[:5]
            raise DataError(
                f"{t_where} must be binary (0/1 or true/false); found values {shown}. "
                "Set config `data.prepare.binary_treatment=false` for a continuous treatment"
            )
    y_where = f"{source}: column {roles.outcome!r} (roles.outcome)"
    y = _to_numeric(frame[roles.outcome], y_where)
    _check_finite(y, y_where, rows)
    if outcome_range is not None:
        low, high = (float(v) for v in outcome_range)
        out = (y < low) | (y > high)
        if out.any():
            raise DataError(
                f"{y_where}: {int(out.sum())} value(s) outside the outcome range [{low}, {high}] "
                f"(min {y.min():.6g}, max {y.max():.6g})"
            )
    m = None
    if roles.mediator is not None:
        m_where = f"{source}: column {roles.mediator!r} (roles.mediator)"
        m = _to_numeric(frame[roles.mediator], m_where)
        _check_finite(m, m_where, rows)
        m = m.to_numpy()

    for col in roles.columns():
        if _n_distinct(frame[col]) < 2:
            value = frame[col].dropna().iloc[0] if frame[col].notna().any() else None
            msg = f"{source}: column {col!r} ({roles.key_of(col)}) is constant ({value!r}) over {len(frame)} rows"
            if col in roles.groups and col not in roles.confounders and col not in roles.modifiers:
                log.warning("%s; CATE by it has a single level", msg)
                continue
            raise DataError(msg + "; it carries no information: remove it from the config")

    encoder = _Encoder(
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
    groups = _group_labels(frame, roles, min_level_count=min_level_count, max_levels=max_levels, source=source)
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


def _group_labels(
    frame: pd.DataFrame, roles: Roles, *, min_level_count: int, max_levels: int, source: str
) -> pd.DataFrame:
    """The ``roles.groups`` columns as strings, missing -> "missing", rare levels pooled (:func:`pool_rare_levels`)."""
    out = {}
    for g in roles.groups:
        labels = frame[g].astype("string").fillna(MISSING_LEVEL).astype(str)
        pooled = pool_rare_levels(labels, min_count=min_level_count, max_levels=max_levels)
        n_before, n_after = labels.nunique(), pooled.nunique()
        if n_after < n_before:
            log.warning(
                "%s: group column %r has %d levels; %d with fewer than %d rows (or beyond the %d most frequent) "
                "pooled into %r (%d rows)",
                source,
                g,
                n_before,
                n_before - n_after + 1,
                min_level_count,
                max_levels,
                OTHER_LEVEL,
                int((pooled == OTHER_LEVEL).sum()),
            )
        out[g] = pooled
    return pd.DataFrame(out, index=frame.index)


# ------------------------------------------------------------------------------------------------------ from config
_PREPARE_KEYS = (
    "binary_treatment",
    "outcome_range",
    "n_components",
    "missing",
    "id_column",
    "max_levels",
    "min_level_count",
)


def prepare_options(cfg: Mapping | None, *, key: str = "data.prepare") -> dict[str, Any]:
    """Keyword arguments for :func:`prepare` from a config node; unknown keys raise naming ``<key>.<name>``."""
    if cfg is None:
        return {}
    options: dict[str, Any] = {}
    for name in cfg:
        if name not in _PREPARE_KEYS:
            raise DataError(f"config `{key}.{name}`: unknown key; known keys are {', '.join(_PREPARE_KEYS)}")
        value = cfg[name]
        if name == "outcome_range" and value is not None:
            value = tuple(float(v) for v in value)
            if len(value) != 2 or value[0] > value[1]:
                raise DataError(f"config `{key}.outcome_range` must be [low, high], got {list(value)}")
        options[name] = value
    return options


def load_table_from_config(cfg: Mapping) -> tuple[pd.DataFrame, str]:
    """The analysis table named by a ``data=table`` config node, joined with annotations when ``images`` is set.

    Returns
    -------
    (DataFrame, str)
        The table and its source name for messages.
    """
    try:
        path = cfg["path"]
    except Exception as exc:
        raise DataError("config `data.path` is required for data=table (a CSV or Parquet file or folder)") from exc
    if path in (None, "", "???"):
        raise DataError("config `data.path` is required for data=table (a CSV or Parquet file or folder)")
    na_values = na_values_option(cfg.get("na_values") if isinstance(cfg, Mapping) else None)
    table = read_table(path, na_values=na_values)
    source = str(path)
    images_path = cfg.get("images") if isinstance(cfg, Mapping) else None
    if images_path:
        images = read_table(images_path, na_values=na_values)
        table = join_annotations(
            images,
            table,
            images_source=str(images_path),
            engagement_source=source,
            id_column=cfg.get("id_column", "image_id") or "image_id",
            max_lost_fraction=cfg.get("max_lost_fraction"),
        )
        source = f"{path} x {images_path}"
    return table, source


def load_from_config(data_cfg: Mapping, roles: Roles, *, seed: int = 0) -> tuple[CausalDataset, dict | None]:
    """Build the analysis dataset for any ``data=`` config (table, simulated, sample).

    Parameters
    ----------
    data_cfg : Mapping
        The ``data`` config node (``name`` is ``table``, ``simulated`` or ``sample``; optional ``query``, a row
        filter applied before validation, and ``prepare``, keyword arguments of :func:`prepare`).
    roles : Roles
        From the top-level ``roles`` node.
    seed : int
        The run's seed (PCA; the simulator unless ``data.seed`` is set).

    Returns
    -------
    (CausalDataset, dict or None)
        The dataset and the simulator's truth (``None`` for a user table).

    Raises
    ------
    DataError
        Bad config keys, unreadable files, failed validation, or a role column listed in
        ``data.outcome_derived`` (columns computed from the outcome must not be adjusted for).
    """
    name = data_cfg.get("name")
    options = prepare_options(data_cfg.get("prepare"))
    options.setdefault("id_column", data_cfg.get("id_column", "image_id"))
    derived = set(data_cfg.get("outcome_derived") or [])
    for col in [*roles.confounders, *roles.modifiers, roles.treatment, roles.mediator]:
        if col in derived:
            raise DataError(
                f"config `{roles.key_of(col)}` uses {col!r}, which `data.outcome_derived` marks as computed from "
                "the outcome"
            )
    if name == "table":
        table, source = load_table_from_config(data_cfg)
        truth = None
    elif name in ("simulated", "sample"):
        from causal.simulate import simulate_from_config  # local: simulate imports this module

        catalog = simulate_from_config(data_cfg, seed=seed)
        table, source, truth = catalog.data, f"simulator (data={name})", catalog.truth
    else:
        raise DataError(f"config `data.name` must be table, simulated or sample, got {name!r}")
    query = data_cfg.get("query")
    if query:
        table = select_rows(table, str(query), source=source)
    return prepare(table, roles, source=source, seed=seed, **options), truth


def select_rows(frame: pd.DataFrame, query: str, *, source: str = "table") -> pd.DataFrame:
    """Rows matching config ``data.query`` (e.g. ``"face_present == 1 and genre in ['drama', 'comedy']"``).

    The query is parsed here with :mod:`ast` and evaluated with pandas boolean operations; it never reaches
    ``DataFrame.query``/``eval``, whose ``@`` names and attribute calls run arbitrary code from a config string.
    Allowed: comparisons (``==, !=, <, <=, >, >=, in, not in``, chained ``a < b < c``) between columns (bare names,
    or ```back ticked``` names with spaces) and constants (numbers, strings, booleans, ``-x``, lists or tuples of
    constants for ``in``), combined with ``and``/``or``/``not`` (or parenthesised ``&``/``|``/``~``); a boolean
    column alone is a condition. Missing values compare false, except ``!=`` (pandas' rule).

    Raises
    ------
    DataError
        Naming ``data.query`` and the offending piece, when the query is anything else (function calls, ``@``,
        attribute access, arithmetic, unknown columns), fails on the table, or selects no row.
    """
    tree, names = _parse_query(query)
    try:
        mask = _QueryEvaluator(frame, query, names, source).condition(tree.body)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"config `data.query` {query!r} fails on {source}: {exc.__class__.__name__}: {exc}") from exc
    kept = frame.loc[mask.fillna(False).astype(bool).to_numpy()]
    if len(kept) == 0:
        raise DataError(f"config `data.query` {query!r} selects no row of {source}")
    log.info("%s: data.query %r keeps %d of %d rows", source, query, len(kept), len(frame))
    return kept.reset_index(drop=True)


_COMPARE_OPS = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def _parse_query(query: str) -> tuple[ast.Expression, dict[str, str]]:
    """The query's syntax tree, with ```quoted``` column names replaced by placeholders (returned as a map)."""
    names: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        key = f"__column_{len(names)}__"
        names[key] = match.group(1)
        return key

    text = re.sub(r"`([^`]*)`", placeholder, query)
    if "`" in text:
        raise DataError(f"config `data.query` {query!r}: unbalanced back tick")
    try:
        return ast.parse(text.strip(), mode="eval"), names
    except SyntaxError as exc:
        hint = "; '@' (pandas' local variables) is not allowed" if "@" in text else ""
        raise DataError(f"config `data.query` {query!r} is not a valid condition ({exc.msg}){hint}") from exc


class _QueryEvaluator:
    """Evaluates the whitelisted query grammar of :func:`select_rows` on a frame; anything else is refused."""

    def __init__(self, frame: pd.DataFrame, query: str, names: Mapping[str, str], source: str):
        self.frame, self.query, self.names, self.source = frame, query, names, source

    def refuse(self, node: ast.AST, why: str) -> DataError:
        piece = ast.unparse(node)
        for key, name in self.names.items():
            piece = piece.replace(key, f"`{name}`")
        return DataError(f"config `data.query` {self.query!r} refused on {self.source}: {why}: {piece!r}")

    def condition(self, node: ast.AST) -> pd.Series:
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(v) for v in node.values]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if isinstance(node.op, ast.And) else (out | part)
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr):
            left, right = self.condition(node.left), self.condition(node.right)
            return (left & right) if isinstance(node.op, ast.BitAnd) else (left | right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.Invert):
            return ~self.condition(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            column = self.column(node)
            if not pd.api.types.is_bool_dtype(column.dtype):
                raise self.refuse(node, "a column alone is a condition only when it is boolean; compare it")
            return column.fillna(False).astype(bool)
        raise self.refuse(node, "only comparisons joined by and/or/not are allowed")

    def compare(self, node: ast.Compare) -> pd.Series:
        out = None
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, ast.In | ast.NotIn):
                column = self.column(left) if isinstance(left, ast.Name) else None
                if column is None or not isinstance(right, ast.List | ast.Tuple | ast.Set):
                    raise self.refuse(node, "`in` needs a column on the left and a list of constants on the right")
                part = column.isin([self.constant(e) for e in right.elts])
                part = ~part if isinstance(op, ast.NotIn) else part
            elif type(op) in _COMPARE_OPS:
                part = _COMPARE_OPS[type(op)](self.operand(left), self.operand(right))
                if not isinstance(part, pd.Series):
                    raise self.refuse(node, "a comparison must involve a column")
            else:
                raise self.refuse(node, "unsupported comparison")
            out = part if out is None else (out & part)
            left = right
        return out

    def operand(self, node: ast.AST) -> Any:
        return self.column(node) if isinstance(node, ast.Name) else self.constant(node)

    def column(self, node: ast.Name) -> pd.Series:
        name = self.names.get(node.id, node.id)
        if name not in self.frame.columns:
            shown = list(self.frame.columns)[:20]
            raise DataError(f"config `data.query` {self.query!r} fails on {self.source}: no column {name!r} in {shown}")
        return self.frame[name]

    def constant(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
            return node.value
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
            and not isinstance(node.operand.value, bool)
        ):
            return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr):
            raise self.refuse(node, "& and | bind tighter than comparisons: write `and`/`or` or parenthesise")
        raise self.refuse(node, "only column names and constants (numbers, strings, booleans) are allowed")
