"""Categorical levels: the "missing" and "other" level names, and pooling rare levels into "other"."""

from __future__ import annotations

import logging

import pandas as pd

log = logging.getLogger(__name__)

MISSING_LEVEL = "missing"
OTHER_LEVEL = "other"
# A level needs this many units before it is reported (CATE by group) or gets its own moderation term; rarer levels
# pool into "other". Why 30: a level's effect is a mean of doubly robust scores with SE sd/sqrt(n); below ~30 units
# (split over two arms) the normal interval is unreliable and the estimate is noise, and every extra level costs a
# column in the moderation regression (5,000 one-unit levels made it run for over 11 minutes).
MIN_LEVEL_COUNT = 30


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


def group_labels(
    frame: pd.DataFrame, groups: list[str], *, min_level_count: int, max_levels: int, source: str
) -> pd.DataFrame:
    """The ``roles.groups`` columns as strings, missing -> "missing", rare levels pooled (:func:`pool_rare_levels`)."""
    out = {}
    for g in groups:
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
