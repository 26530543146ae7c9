"""The report's "Other estimators" section: the consistency table and plot of ``estimates_by_method``, the
agreement test's verdict in a sentence, Rosenbaum's Gamma and the calibration against randomised rows.

:func:`methods_section` returns an HTML fragment (empty when the run has none of these blocks); ``report.html``
inlines it. Self-contained: its own escaping, table and inlined PNG, so it does not depend on the page's helpers.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

MAX_GROUP_ROWS = 30  # calibrated rows shown per group column


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    return f"{value:.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def forest_plot(estimates: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """PNG of each method's estimate and CI, one row per method (ATE and ATT in two colours); None without
    matplotlib or estimates."""
    if not estimates:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    names = list(estimates)
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(names) + 1.0))
    for i, name in enumerate(names):
        rec = estimates[name]
        colour = "tab:orange" if rec.get("estimand") == "att" else "tab:blue"
        ax.plot([rec["ci_low"], rec["ci_high"]], [i, i], color=colour, lw=2)
        ax.plot(rec["estimate"], i, "o", color=colour)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.axvline(0.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("effect (blue: ATE, orange: ATT), with confidence interval")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _methods_part(results: Mapping[str, Any]) -> list[str]:
    est = results.get("estimates_by_method") or {}
    if not est:
        return []
    agree = results.get("agreement") or {}
    png = forest_plot(est)
    parts = [
        "<h2>Other estimators</h2>",
        "<p>The same question answered by estimators that lean on different parts of the model: weighting "
        "(propensity only), matching, outcome regression (outcome model only), and the doubly robust ones (both). "
        "They should agree within their sampling noise.</p>",
        f"<p><b>{html.escape(str(agree.get('verdict', 'not tested')))}.</b> "
        f"{html.escape(str(agree.get('sentence', '')))}</p>",
    ]
    if png:
        parts.append(f'<img alt="estimates by method" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    diffs = agree.get("differences") or {}
    rows = [
        (name, rec.get("estimand"), rec["estimate"], f"[{_fmt(rec['ci_low'])}, {_fmt(rec['ci_high'])}]",
         (diffs.get(name) or {}).get("z"))
        for name, rec in est.items()
    ]  # fmt: skip
    parts.append(_table(["method", "estimand", "estimate", "CI", "z vs reference"], rows))
    return parts


def _rosenbaum_part(results: Mapping[str, Any]) -> list[str]:
    ros = (results.get("sensitivity") or {}).get("rosenbaum")
    if not ros:
        return []
    return [
        "<h3>Rosenbaum bounds (matched pairs)</h3>",
        f"<p>{html.escape(str(ros.get('sentence', '')))}</p>",
        _table(["Gamma", "upper-bound p-value"], [(r["gamma"], r["p_upper"]) for r in ros.get("table", [])]),
    ]


def _calibration_part(results: Mapping[str, Any]) -> list[str]:
    cal = results.get("calibration")
    if not cal:
        return []
    rows = [
        ("experimental (randomised rows)", cal["experimental"]["estimate"], cal["experimental"]["ci_low"],
         cal["experimental"]["ci_high"]),
        ("observational (other rows)", cal["observational"]["estimate"], cal["observational"]["ci_low"],
         cal["observational"]["ci_high"]),
        ("bias (observational - experimental)", cal["bias"], cal["bias_ci_low"], cal["bias_ci_high"]),
    ]  # fmt: skip
    for column, levels in (cal.get("calibrated") or {}).items():
        for level, c in list(levels.items())[:MAX_GROUP_ROWS]:
            rows.append((f"calibrated: {column} = {level}", c["estimate"], c["ci_low"], c["ci_high"]))
    return [
        "<h2>Calibration against randomised rows</h2>",
        f"<p>{html.escape(str(cal.get('sentence', '')))}</p>",
        _table(["", "estimate", "CI low", "CI high"], rows),
    ]


def methods_section(results: Mapping[str, Any]) -> str:
    """HTML of the estimators side by side, Rosenbaum's bounds and the calibration; empty when none ran."""
    return "\n".join(_methods_part(results) + _rosenbaum_part(results) + _calibration_part(results))
