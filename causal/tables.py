"""Reading the tables of the causal stage: CSV or Parquet, one file or a folder of parts.

Only empty cells are missing unless config ``data.na_values`` lists more (``NA`` is North America, not a hole).
:class:`DataError`, the data layer's one error type, is defined here, in its lowest module, so every other data
module and the simulator can import it without an import circle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")


class DataError(ValueError):
    """Bad input data or data configuration; the message names the file and the column or config key."""


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


def _read_parts(files: list[Path], na_values: Sequence[str]) -> pd.DataFrame:
    """The part files of one folder as one table; every part must have the same columns."""
    frames = [_read_one(p, na_values) for p in files]
    columns = list(frames[0].columns)
    for part, frame in zip(files[1:], frames[1:]):
        if set(frame.columns) != set(columns):
            raise DataError(
                f"{part}: columns differ from {files[0].name} "
                f"(extra: {sorted(set(frame.columns) - set(columns))}, "
                f"missing: {sorted(set(columns) - set(frame.columns))})"
            )
    # Empty parts are left out: they add no row and could only change the result's dtypes (an empty CSV is object).
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


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
        table = _read_parts(files, na_values or ())
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


def check_unique_ids(frame: pd.DataFrame, id_column: str, source: str) -> None:
    """Raise :class:`DataError` when ``id_column`` repeats a value, naming how many and a few examples."""
    ids = frame[id_column]
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        examples = list(dict.fromkeys(dup.astype(str)))[:3]
        raise DataError(
            f"{source}: column {id_column!r} has {dup.nunique()} duplicated id(s) over {len(dup)} rows, e.g. {examples}"
        )
