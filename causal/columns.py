"""What a role column holds, and the checks every numeric role value passes.

Kinds: vectors (embeddings as lists, arrays or JSON-like ``"[0.1, ...]"`` strings from CSV), booleans and
boolean-like strings (true/false, yes/no, 0/1), numbers, and text. Missing is ``None``/NaN/``pd.NA``; a vector is
never "missing" because of its elements.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd

from causal.tables import DataError

_TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_STRINGS = frozenset({"false", "f", "no", "n", "0", "0.0"})
# XGBoost stores features as float32: a larger |value| becomes inf there and fails in its C++ check, which names no
# column. So every numeric role value must be finite and within float32's range.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Strings pandas reads as missing by default. Here they are data (`NA` is North America) unless `data.na_values`
# lists them; a numeric column holding only these besides numbers is refused with a hint (refuse_na_like_numbers).
NA_LIKE_STRINGS = frozenset(
    {"NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "<NA>", "#N/A", "#NA", "#N/A N/A"}
)

# A number written with a comma ("0,53", "1.234,5", "1,234"): a decimal comma or a thousands separator. Read as
# text, such a column would be dummy-coded per value (a confounder adjusted for as 60 unrelated levels).
_COMMA_NUMBER = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+")
_COMMA_HINT = (
    "write the table with decimal points and no thousands separators (e.g. pandas: read_csv(path, decimal=',', "
    "thousands='.') then to_parquet)"
)


def is_vector(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def list_column(series: pd.Series) -> pd.Series | None:
    """The column as a Series of 1-d float arrays (None where missing) if it holds vectors, else None."""
    if not (pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)):
        return None
    values = series.dropna()
    if values.empty:
        return None
    first = values.iloc[0]
    if is_vector(first):
        # Values beyond float32's range become inf here (no warning): the encoder refuses them, naming the rows.
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


def missing_mask(series: pd.Series) -> pd.Series:
    """True where the value is missing; an object column's vectors count as present (``isna`` would test elements)."""
    if pd.api.types.is_object_dtype(series.dtype):
        return series.map(lambda v: v is None or (not is_vector(v) and pd.isna(v))).astype(bool)
    return series.isna()


def n_distinct(series: pd.Series) -> int:
    """Distinct non-missing values; for vector columns only 1 or 2 (= "not constant"), found without hashing."""
    values = series[~missing_mask(series)]
    if len(values) and is_vector(values.iloc[0]):
        first = np.asarray(values.iloc[0])
        return 2 if any(not np.array_equal(first, np.asarray(v)) for v in values) else 1
    return int(values.nunique())


def check_finite(values: pd.Series, where: str, rows: pd.Series) -> None:
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


def refuse_na_like_numbers(series: pd.Series, where: str) -> None:
    """Raise when a text column is numbers plus missing markers such as ``NA``: it would be dummy-coded per value."""
    present = series[~missing_mask(series)]
    numbers = pd.to_numeric(present, errors="coerce")
    text = present[numbers.isna()].astype(str).str.strip()
    markers = set(text.unique())
    if numbers.notna().any() and markers and markers <= NA_LIKE_STRINGS:
        raise DataError(
            f"{where} holds numbers and {len(text)} cell(s) reading {sorted(markers)}; if these mean missing, list "
            f"them in config `data.na_values` (e.g. data.na_values=[{','.join(sorted(markers))}])"
        )


def refuse_comma_numbers(series: pd.Series, where: str) -> None:
    """Raise when every value of a text column is a number written with a comma (``"0,53"``)."""
    present = series[~missing_mask(series)].astype(str).str.strip()
    if len(present) and present.str.fullmatch(_COMMA_NUMBER).all():
        raise DataError(
            f"{where} is text, but every value is a number written with a comma (e.g. {present.iloc[0]!r}): "
            f"{_COMMA_HINT}, so that it is read as a number"
        )


def as_numeric(series: pd.Series, where: str) -> pd.Series:
    """The column as float64 (booleans and boolean-like strings as 0/1); raise naming ``where`` on any text."""
    as_bool = as_boolean(series)
    if as_bool is not None:
        return as_bool
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna()
    if bad.any():
        shown = list(series[bad].astype(str).unique()[:3])
        hint = f"; {_COMMA_HINT}" if all(_COMMA_NUMBER.fullmatch(v.strip()) for v in shown) else ""
        raise DataError(f"{where} must be numeric; found values like {shown}{hint}")
    return converted.astype("float64")
