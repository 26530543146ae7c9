"""The report's section for the hypothesis funnel (``results["hypotheses"]``, :mod:`causal.discover`): HTML only.

:func:`report_section` returns one self-contained HTML fragment: the ranked table (estimate, CI, p-value, Holm
adjusted p-value, verdict, robustness value; the truth on the simulator), then one collapsible block per hypothesis
with its overlap, sensitivity and (continuous features) the dose-response bins. Every value from the results is
escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


def _name(h: Mapping[str, Any]) -> str:
    name = str(h["feature"])
    if h.get("level") is not None:
        name += f" = {h['level']} (vs {h.get('reference')})"
    return html.escape(name)


def _row(h: Mapping[str, Any], with_truth: bool) -> str:
    if "p_value" not in h:
        cells = [_name(h), _fmt(h.get("treatment_kind")), f"not tested: {_fmt(h.get('skipped'))}"]
        return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    verdict = '<span class="ok">effect</span>' if h.get("significant") else '<span class="muted">no evidence</span>'
    cells = [
        _name(h),
        _fmt(h.get("treatment_kind")),
        _fmt(h["estimate"], 4),
        f"[{_fmt(h['ci_low'], 4)}, {_fmt(h['ci_high'], 4)}]",
        _fmt(h["p_value"]),
        _fmt(h.get("p_adjusted")),
        verdict,
        _fmt((h.get("sensitivity") or {}).get("rv")),
    ]
    if with_truth:
        cells.append(_fmt(h.get("truth"), 4) + ("" if "truth" not in h else (" ✓" if h.get("covers_truth") else " ✗")))
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _details(h: Mapping[str, Any]) -> str:
    if "p_value" not in h:
        return ""
    items = [f"<li>method: {_fmt(h.get('method'))}; n = {_fmt(h.get('n'))}</li>"]
    overlap = h.get("overlap") or {}
    items.append("<li>overlap: " + ", ".join(f"{html.escape(k)} {_fmt(v)}" for k, v in overlap.items()) + "</li>")
    sens = h.get("sensitivity") or {}
    items.append(
        f"<li>robustness: a hidden confounder explaining {_fmt(sens.get('rv'))} of the residual variance of both "
        f"the feature and the outcome would explain the estimate away ({_fmt(sens.get('rv_alpha'))} would make "
        "it insignificant)</li>"
    )
    curve = h.get("dose_response") or []
    if curve:
        bins = "; ".join(f"[{_fmt(b['low'])}, {_fmt(b['high'])}]: {_fmt(b['estimate'], 3)}" for b in curve)
        items.append(f"<li>dose-response (mean outcome residual by bin of the feature): {bins}</li>")
    return f"<details><summary>{_name(h)}</summary><ul>{''.join(items)}</ul></details>"


def report_section(results: Mapping[str, Any]) -> str:
    """The funnel's section of report.html, or ``""`` when the run has no ``hypotheses``."""
    table: Sequence[Mapping[str, Any]] = results.get("hypotheses") or []
    if not table and "discover" not in results:
        return ""
    info = results.get("discover") or {}
    with_truth = any("truth" in h for h in table)
    header = ["hypothesis", "kind", "estimate", "CI", "p", "p (Holm)", "verdict", "RV"]
    header += ["truth"] if with_truth else []
    head = "".join(f"<th>{h}</th>" for h in header)
    rows = "".join(_row(h, with_truth) for h in table)
    taken = ", ".join(html.escape(str(f)) for f in info.get("taken", []))
    lines = [
        "<h2>Which components help? The hypothesis funnel</h2>",
        f"<p>Screened {len(info.get('screened', []))} components (Benjamini–Hochberg); the significant ones taken "
        f"as hypotheses: {taken or 'none'}. Each was tested with double machine learning adjusted for the "
        f"confounders; p-values adjusted with Holm over the {_fmt(info.get('n_tested'))} tests. "
        f"{_fmt(info.get('n_significant'))} significant.</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>",
    ]
    if "false_discoveries" in info:
        lines.append(
            f"<p>Against the simulator's truth: {_fmt(info['true_discoveries'])} of "
            f"{_fmt(info['n_true_effects_tested'])} real effects found, {_fmt(info['false_discoveries'])} false "
            f"discoveries, {_fmt(info['covered'])} of {_fmt(info['n_scored'])} CIs cover the truth.</p>"
        )
    lines += [_details(h) for h in table]
    return "\n".join(lines)


def summary_lines(results: Mapping[str, Any], limit: int = 10) -> list[str]:
    """The funnel's ranked table as text lines for the command's printed summary (``[]`` without hypotheses)."""
    table = [h for h in results.get("hypotheses") or [] if "p_value" in h]
    if not table:
        return []
    lines = [f"hypotheses (Holm over {len(table)} tests), best first:"]
    for h in table[:limit]:
        name = str(h["feature"]) + (f"={h['level']} vs {h['reference']}" if h.get("level") is not None else "")
        truth = f"  truth {h['truth']:+.4g}" if "truth" in h else ""
        lines.append(
            f"  {name[:40]:40s}{h['estimate']:+12.4g}  [{h['ci_low']:+.4g}, {h['ci_high']:+.4g}]  "
            f"p_adj {h['p_adjusted']:.3g}{'  *' if h['significant'] else ''}{truth}"
        )
    if len(table) > limit:
        lines.append(f"  ... {len(table) - limit} more in results.json")
    return lines
