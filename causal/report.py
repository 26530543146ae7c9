"""Results -> ``results.json`` (JSON-safe, stable key order) and the run's plots.

``results.json`` is the interface between runs, sweeps and the report: its keys are fixed by the results contract in
docs/ARCHITECTURE.md. Contract keys come first, in the contract's order, then any other key in the order the pipeline
produced it, so two runs with the same inputs write byte-identical files.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CONTRACT_ORDER = (
    "n_units",
    "n_used",
    "treatment",
    "outcome",
    "naive",
    "ate",
    "cate_by_group",
    "screening",
    "overlap",
    "mediation",
    "sensitivity",
    "misclassification",
    "truth",
)


def to_jsonable(obj: Any) -> Any:
    """Recursively convert to JSON types: numpy scalars and arrays, pandas objects, paths, tuples, sets.

    Non-finite floats become ``None`` (``null``): JSON has no NaN, and a ``NaN`` literal breaks strict parsers.
    Mapping keys become strings; mapping order is kept.
    """
    value = _scalar(obj)
    if value is not _NOT_SCALAR:
        return value
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return _pandas_or_item(obj)


_NOT_SCALAR = object()


def _scalar(obj: Any) -> Any:
    """JSON value of a Python or numpy scalar, or ``_NOT_SCALAR``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return _NOT_SCALAR


def _pandas_or_item(obj: Any) -> Any:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if obj is pd.NA or obj is pd.NaT:
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def order_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """Contract keys first (contract order), then the others in their given order."""
    ordered = {k: results[k] for k in CONTRACT_ORDER if k in results}
    ordered.update({k: v for k, v in results.items() if k not in ordered})
    return ordered


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented, strict JSON (``allow_nan=False``) atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_results(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``results.json`` into ``out_dir`` with the contract's key order; return its path."""
    path = write_json(order_results(results), Path(out_dir) / "results.json")
    log.info("wrote %s", path)
    return path


def plot_label(value: Any) -> str:
    """Text for matplotlib drawn literally: every ``$`` escaped, so data such as a level ``"$5-$10"`` or ``"$x^$"``
    never switches on mathtext (which garbles the text or, for invalid TeX, raises after all the fitting is done).

    Every label built from data or config (levels, column names, titles) goes through this helper.
    """
    return str(value).replace("$", r"\$")


def largest_levels(rows: Sequence[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
    """The ``limit`` group-level rows with the most units (ties by level name), in their original order."""
    if len(rows) <= limit:
        return list(rows)
    ranked = sorted(range(len(rows)), key=lambda i: (-(rows[i].get("n") or 0), str(rows[i].get("level"))))
    return [rows[i] for i in sorted(ranked[:limit])]


def plot_propensity(
    histogram: Mapping[str, Any], path: str | Path, *, threshold: float | None = None, title: str = "Propensity overlap"
) -> Path:
    """Histogram of the propensity score by arm (the ``overlap.histogram`` data), as a PNG.

    Parameters
    ----------
    histogram : mapping
        ``edges`` (bins + 1), ``treated`` and ``control`` counts (bins each).
    path : path of the PNG
    threshold : float, optional
        Trimming threshold alpha; dashed lines at alpha and 1 - alpha.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    edges = np.asarray(histogram["edges"], dtype=float)
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    treated = np.asarray(histogram["treated"], dtype=float)
    control = np.asarray(histogram["control"], dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    # Densities, so arms of different size compare on one axis; control mirrored below zero.
    ax.bar(
        centres,
        treated / max(treated.sum(), 1) / width,
        width=width,
        color="#d95f02",
        alpha=0.85,
        label=f"treated (n={int(treated.sum())})",
    )
    ax.bar(
        centres,
        -control / max(control.sum(), 1) / width,
        width=width,
        color="#1b9e77",
        alpha=0.85,
        label=f"control (n={int(control.sum())})",
    )
    if threshold:
        for x in (threshold, 1 - threshold):
            ax.axvline(x, color="0.3", linestyle="--", linewidth=1)
    ax.axhline(0, color="0.2", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("estimated propensity e(x) = P(treated | covariates)")
    ax.set_ylabel("density (control below)")
    ax.set_title(plot_label(title))
    ax.legend(loc="upper center", frameon=False, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_cate_by_group(
    cate_by_group: Mapping[str, list[Mapping[str, Any]]],
    path: str | Path,
    *,
    ate: Mapping[str, Any] | None = None,
    truth: Mapping[str, Mapping[str, float]] | None = None,
    max_rows: int = 40,
    names: Any = None,
) -> Path:
    """Forest plot of group effects with CIs, one panel per group column; true values marked when given.

    At most ``max_rows`` levels per panel (those with the most units), so the figure stays a readable size.
    ``names`` turns column names into words (default :class:`causal.reporting.labels.DisplayNames`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from causal.reporting.labels import DisplayNames

    names = names or DisplayNames()
    cate_by_group = {c: largest_levels(rows, max_rows) for c, rows in cate_by_group.items()}
    cols = [c for c, rows in cate_by_group.items() if rows]
    fig, axes = plt.subplots(
        1,
        max(len(cols), 1),
        figsize=(4.2 * max(len(cols), 1), 0.35 * max((len(cate_by_group[c]) for c in cols), default=4) + 1.4),
        dpi=110,
        squeeze=False,
    )
    for ax, col in zip(axes[0], cols):
        rows = cate_by_group[col]
        ys = np.arange(len(rows))[::-1]
        est = np.array([r["estimate"] for r in rows], dtype=float)
        lo = np.array([r["ci_low"] for r in rows], dtype=float)
        hi = np.array([r["ci_high"] for r in rows], dtype=float)
        ax.errorbar(est, ys, xerr=[est - lo, hi - est], fmt="o", color="#1f78b4", capsize=2, label="estimate, CI")
        if truth and col in truth:
            true = [truth[col].get(r["level"], np.nan) for r in rows]
            ax.plot(true, ys, "x", color="#e31a1c", label="truth")
        if ate is not None:
            ax.axvline(ate["estimate"], color="0.4", linestyle="--", linewidth=1, label="ATE")
        ax.axvline(0, color="0.2", linewidth=0.6)
        ax.set_yticks(ys, [plot_label(f"{r['level']} (n={r['n']})") for r in rows], fontsize=8)
        ax.set_title(plot_label(f"effect by {names(col)}"))
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
