"""Feature-by-feature association with the outcome: the ranked hypotheses the causal steps then test.

Each candidate feature gets one marginal test, chosen by its kind:

* continuous (numeric, more than two values): Pearson correlation ``r`` with a Fisher-z confidence interval
  (``scipy.stats.pearsonr``);
* binary (two values: booleans, 0/1, two-level strings): difference in outcome means (high level minus low level)
  with a Welch t-test and its interval (``scipy.stats.ttest_ind(equal_var=False)``);
* categorical (three or more levels): one-way ANOVA (``scipy.stats.f_oneway``); the estimate is eta squared with
  the interval from inverting the noncentral F (``statsmodels.stats.oneway.confint_effectsize_oneway``).

p-values are adjusted over all screened features with Benjamini-Hochberg
(``statsmodels.stats.multitest.multipletests(method="fdr_bh")``). Rows with a missing feature value are left out of
that feature's test (its ``n`` says how many were used). ``effect_r`` puts the kinds on one scale for ranking:
``r``, the point-biserial correlation, or ``sqrt(eta^2)``.

Skipped, with a log line: the outcome, id columns (``image_id``, ``title_id``, any ``*_id``, and string columns
unique in every row), columns in ``exclude``, list/array columns (embeddings: screen their PCA components from
``CausalDataset.W`` instead, one vector column is not one hypothesis), all-missing or constant columns, and
categorical columns with more than ``max_levels`` levels.

These are marginal associations, not effects: a feature associated only through a confounder (e.g. a genre-linked
brightness) ranks high. With clustered units (several artworks per title) the p-values are optimistic.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.oneway import confint_effectsize_oneway

from causal.data import DataError, as_boolean, is_vector

log = logging.getLogger(__name__)

COLUMNS = [
    "feature",
    "kind",
    "test",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "significant",
    "effect_r",
    "n",
    "rank",
]
ID_COLUMNS = ("image_id", "title_id")


def _is_id_column(name: str, series: pd.Series) -> bool:
    if name in ID_COLUMNS or name.endswith("_id"):
        return True
    if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return False
    values = series.dropna()
    return len(values) > 20 and values.nunique() == len(values)


def _kind(series: pd.Series) -> tuple[str, pd.Series]:
    """The feature's kind and its values prepared for the test (floats, or string labels)."""
    as_bool = as_boolean(series)
    if as_bool is not None:
        return "binary", as_bool
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.astype("float64")
        return ("binary" if values.nunique() == 2 else "continuous"), values
    labels = series.astype("string").astype(object).where(series.notna(), None)
    return ("binary" if labels.nunique() == 2 else "categorical"), labels


def _label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _pearson(x: np.ndarray, y: np.ndarray, alpha: float) -> dict:
    res = stats.pearsonr(x, y)
    ci = res.confidence_interval(confidence_level=1 - alpha)
    r = float(res.statistic)
    return {
        "test": "pearson",
        "estimate": r,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "p_value": float(res.pvalue),
        "effect_r": r,
    }


def _diff_means(x: pd.Series, y: np.ndarray, alpha: float) -> dict:
    levels = sorted(pd.unique(x))
    low, high = levels[0], levels[1]
    y_high, y_low = y[(x == high).to_numpy()], y[(x == low).to_numpy()]
    if min(len(y_high), len(y_low)) < 2:
        return {}
    res = stats.ttest_ind(y_high, y_low, equal_var=False)
    ci = res.confidence_interval(confidence_level=1 - alpha)
    indicator = (x == high).to_numpy(dtype=float)
    r = float(np.corrcoef(indicator, y)[0, 1]) if np.std(y) > 0 else 0.0
    return {
        "test": "diff_means",
        "estimate": float(y_high.mean() - y_low.mean()),
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "p_value": float(res.pvalue),
        "effect_r": r,
        "levels": f"{_label(high)} - {_label(low)}",
    }


def _anova(x: pd.Series, y: np.ndarray, alpha: float) -> dict:
    groups = [y[(x == level).to_numpy()] for level in sorted(pd.unique(x))]
    res = stats.f_oneway(*groups)
    k, n = len(groups), len(y)
    grand = y.mean()
    ss_between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups)
    ss_total = float(((y - grand) ** 2).sum())
    eta2 = ss_between / ss_total if ss_total > 0 else 0.0
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = confint_effectsize_oneway(float(res.statistic), (k - 1, n - k), alpha=alpha, nobs=n).eta2
    return {
        "test": "anova",
        "estimate": float(eta2),
        "ci_low": float(ci[0]),
        "ci_high": float(ci[1]),
        "p_value": float(res.pvalue),
        "effect_r": float(np.sqrt(eta2)),
        "f_statistic": float(res.statistic),
    }


def screen_features(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str] | None = None,
    *,
    alpha: float = 0.05,
    exclude: Sequence[str] = (),
    max_levels: int = 100,
    source: str = "table",
) -> pd.DataFrame:
    """Test every candidate feature's marginal association with the outcome and rank them.

    Parameters
    ----------
    frame : DataFrame
        One row per unit.
    outcome : str
        Outcome column (numeric).
    features : sequence of str or None
        Columns to screen; ``None`` screens every column except the outcome, ids and ``exclude``.
    alpha : float
        1 - confidence level of the intervals and the false discovery rate of ``significant``.
    exclude : sequence of str
        Columns never screened (e.g. columns computed from the outcome, such as ``plays``).
    max_levels : int
        Categorical columns with more levels are skipped.
    source : str
        File name for messages.

    Returns
    -------
    DataFrame
        One row per screened feature with columns ``feature, kind (continuous|binary|categorical),
        test (pearson|diff_means|anova), estimate (r | mean difference, outcome units | eta^2), ci_low, ci_high,
        p_value, p_adjusted (Benjamini-Hochberg), significant (p_adjusted < alpha), effect_r, n, rank`` plus
        ``levels`` (binary: which difference) and ``f_statistic`` (ANOVA); sorted by p-value, then by ``|effect_r|``
        descending; ``rank`` is 1-based.

    Raises
    ------
    DataError
        When the outcome or a requested feature is missing, or the outcome is not numeric.
    """
    if not 0 < alpha < 1:
        raise DataError(f"config `alpha` must be in (0, 1), got {alpha}")
    y_all = _outcome(frame, outcome, source)
    candidates = _candidates(frame, outcome, features, exclude, source)
    rows, skipped = [], {}
    for col in candidates:
        row, why = _screen_one(frame[col], y_all, alpha, explicit=features is not None, max_levels=max_levels)
        if row is None:
            skipped[col] = why
        else:
            rows.append({"feature": col, **row})
    for col, why in skipped.items():
        log.info("screening %s: skipped %r (%s)", source, col, why)

    if not rows:
        return pd.DataFrame(columns=[*COLUMNS, "levels", "f_statistic"])
    table = pd.DataFrame(rows)
    reject, p_adj, _, _ = multipletests(table["p_value"].to_numpy(), alpha=alpha, method="fdr_bh")
    table["p_adjusted"] = p_adj
    table["significant"] = reject
    table["_abs"] = table["effect_r"].abs()
    table = table.sort_values(["p_value", "_abs", "feature"], ascending=[True, False, True], kind="mergesort")
    table = table.drop(columns="_abs").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    for extra in ("levels", "f_statistic"):
        if extra not in table.columns:
            table[extra] = np.nan
    log.info("screening %s: %d features, %d significant at FDR %.2f", source, len(table), int(reject.sum()), alpha)
    return table[[*COLUMNS, "levels", "f_statistic"]]


def _outcome(frame: pd.DataFrame, outcome: str, source: str) -> pd.Series:
    if outcome not in frame.columns:
        raise DataError(f"{source}: missing outcome column {outcome!r}")
    y_all = pd.to_numeric(frame[outcome], errors="coerce")
    if y_all.notna().sum() == 0 or (y_all.isna() & frame[outcome].notna()).any():
        raise DataError(f"{source}: outcome column {outcome!r} must be numeric")
    return y_all


def _candidates(
    frame: pd.DataFrame, outcome: str, features: Sequence[str] | None, exclude: Sequence[str], source: str
) -> list[str]:
    if features is None:
        return [c for c in frame.columns if c != outcome and c not in set(exclude)]
    absent = [c for c in features if c not in frame.columns]
    if absent:
        raise DataError(f"{source}: missing feature column(s) {absent}")
    return [c for c in features if c != outcome and c not in set(exclude)]


def _skip_reason(series: pd.Series, *, explicit: bool) -> str | None:
    """Why a column is not screened at all (vectors, ids unless asked for, dates), or None."""
    non_null = series.dropna()
    if len(non_null) and is_vector(non_null.iloc[0]):
        return "list/array column (screen its PCA components)"
    if not explicit and _is_id_column(str(series.name), series):
        return "id column"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "date column"
    return None


def _screen_one(
    series: pd.Series, y_all: pd.Series, alpha: float, *, explicit: bool, max_levels: int
) -> tuple[dict | None, str]:
    """One feature's test row (without its name), or None and the reason it was skipped."""
    why = _skip_reason(series, explicit=explicit)
    if why is not None:
        return None, why
    kind, values = _kind(series)
    keep = values.notna().to_numpy() & y_all.notna().to_numpy()
    x, y = values[keep].reset_index(drop=True), y_all[keep].to_numpy(dtype=float)
    n_levels = x.nunique()
    if len(y) < 3 or n_levels < 2:
        return None, "all missing or constant"
    if kind == "categorical" and n_levels > max_levels:
        return None, f"{n_levels} levels > max_levels={max_levels}"
    if kind == "continuous" and np.std(y) == 0:
        return None, "constant outcome"
    if kind == "continuous":
        result = _pearson(x.to_numpy(dtype=float), y, alpha)
    else:
        result = _diff_means(x, y, alpha) if kind == "binary" else _anova(x, y, alpha)
    if not result or not np.isfinite(result["p_value"]):
        return None, "test undefined (too few rows per level or no variance)"
    return {"kind": kind, "n": int(len(y)), **result}, ""
