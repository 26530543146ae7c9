"""Encoding role columns into the float covariates of the causal stage (for XGBoost and the linear final stages).

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

Missing covariate values under ``missing="indicator"``: numeric and boolean columns get the median of the observed
values plus a ``<col>__missing`` 0/1 column; categorical columns get their own level ``"missing"``; embedding
columns get the PCA mean (zeros in component space) plus ``<col>__missing``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from causal.columns import as_boolean, check_finite, list_column, refuse_comma_numbers, refuse_na_like_numbers
from causal.levels import MISSING_LEVEL, OTHER_LEVEL
from causal.roles import Roles
from causal.tables import DataError

log = logging.getLogger(__name__)

PCA_FIT_ROWS = 50_000  # vectors a PCA is fitted on (a seeded subsample beyond this)
PCA_CHUNK_ROWS = 50_000  # vectors stacked at once when transforming


class Encoder:
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
        # A column both confounder and modifier is encoded once: the same PCA and dummies in W and X.
        if col not in self._cache:
            self._cache[col] = self._encode_one(col)
        return self._cache[col]

    def _encode_one(self, col: str) -> pd.DataFrame:
        series = self.frame[col]
        where = f"{self.source}: column {col!r} ({self.roles.key_of(col)})"
        if pd.api.types.is_datetime64_any_dtype(series.dtype) or isinstance(series.dtype, pd.PeriodDtype):
            raise DataError(f"{where} is a date; derive a numeric covariate from it (e.g. the year)")
        try:
            vectors = list_column(series)
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
        refuse_na_like_numbers(series, where)
        refuse_comma_numbers(series, where)
        return self._categorical(col, series)

    def _numeric(self, col: str, values: pd.Series) -> pd.DataFrame:
        check_finite(values, f"{self.source}: column {col!r} ({self.roles.key_of(col)})", self.rows)
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

    def _vector_rows(self, vectors: pd.Series, where: str) -> tuple[pd.Series, int]:
        """Which rows have a usable vector, and the common length; raise on infinite values or ragged lengths."""
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
        return has, lengths.pop()

    def _embedding(self, col: str, vectors: pd.Series, where: str) -> pd.DataFrame:
        has, dim = self._vector_rows(vectors, where)
        rows = np.flatnonzero(has.to_numpy())
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
