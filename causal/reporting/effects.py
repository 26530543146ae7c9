"""The effect tables in planning terms: every estimate with the baseline, absolute effect and relative lift (the
headline named, the others labelled as what they are), group effects, and the mediation effects beside the truth."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from causal.report import largest_levels
from causal.reporting.html import MAX_TABLE_ROWS, ci, num, table
from causal.reporting.numbers import sig
from causal.reporting.planning import level, lift, percent
from causal.reporting.text import population

Names = Callable[[Any], str]


def _planning_cells(effect: Mapping[str, Any], baseline: float | None, is_rate: bool) -> tuple:
    rel = lift(effect, baseline)
    rel_text = "–"
    if rel is not None:
        rel_text = percent(rel["estimate"])
        if "ci_low" in rel:
            rel_text += f" [{percent(rel['ci_low'])}, {percent(rel['ci_high'])}]"
    scale = 100 if is_rate else 1
    est = effect.get("estimate")
    ci_text = "–"
    if effect.get("ci_low") is not None:
        ci_text = f"[{sig(scale * effect['ci_low'], signed=True)}, {sig(scale * effect['ci_high'], signed=True)}]"
    return (level(baseline, is_rate), "–" if est is None else sig(scale * est, signed=True), ci_text, rel_text)


def effects_table(results: Mapping[str, Any]) -> str:
    """Every effect of the run, the headline named, in planning terms (baseline, absolute effect, relative lift)."""
    base = results.get("baseline") or {}
    control, is_rate = base.get("control_mean"), bool(base.get("is_rate"))
    unit = "percentage points" if is_rate else "outcome units"
    header = ["estimate", "baseline (control mean)", f"effect ({unit})", "95% CI", "relative lift [95% CI]"]
    rows = _naive_rows(results) + _estimate_rows(results)
    truth = results.get("truth") or {}
    if truth.get("ate") is not None:
        rows.append(("true ATE (simulator)", {"estimate": truth.get("ate_used", truth["ate"])}))
    return table(header, [(label, *_planning_cells(eff, control, is_rate)) for label, eff in rows])


def _naive_rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rows = []
    for key, label in (
        ("naive", "naive difference in means, all units"),
        ("naive_trimmed", "naive difference, trimmed sample"),
    ):
        if results.get(key):
            rows.append((label, {"estimate": results[key]["difference_in_means"], **_ci_of(results[key])}))
    return rows


def _estimate_rows(results: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The headline ATE first, then the other estimates, each labelled as what it is."""

    def has(block: Any) -> bool:
        return (block or {}).get("estimate") is not None

    rows = []
    if has(results.get("ate")):
        rows.append((f"HEADLINE: ATE, doubly robust{population(results['ate'])}", results["ate"]))
    if has(results.get("ate_partially_linear")):
        rows.append(("partially linear: variance-weighted effect (not the ATE)", results["ate_partially_linear"]))
    if has(results.get("ate_econml")):
        rows.append(("EconML LinearDML ATE (cross-check)", results["ate_econml"]))
    for kind, eff in (results.get("estimands") or {}).items():
        if kind != (results.get("ate") or {}).get("estimand") and has(eff):
            rows.append((f"{kind.upper()}{population(eff)}", eff))
    for name, est in (results.get("estimates") or {}).items():
        if has(est.get("ate")):
            rows.append((f"{name} (compare)", est["ate"]))
    return rows


def _ci_of(block: Mapping[str, Any]) -> dict:
    return {"ci_low": block.get("ci_low"), "ci_high": block.get("ci_high")}


def cate_tables(results: Mapping[str, Any], names: Names = str, limit: int = MAX_TABLE_ROWS) -> str:
    """One table per group column, each level with its baseline, effect and lift; beyond ``limit`` levels only the
    largest are listed and the rest summarised."""
    base = results.get("baseline") or {}
    is_rate, by_group = bool(base.get("is_rate")), base.get("by_group") or {}
    unit = "percentage points" if is_rate else "outcome units"
    out = []
    for col, rows in (results.get("cate_by_group") or {}).items():
        out.append(f"<h3>by {html.escape(names(col))}</h3>")
        shown = largest_levels(rows, limit)
        controls = by_group.get(col) or {}
        body = [(r["level"], r["n"], *_planning_cells(r, controls.get(str(r["level"])), is_rate)) for r in shown]
        header = ["level", "n", "baseline (control mean)", f"effect ({unit})", "95% CI", "relative lift [95% CI]"]
        out.append(table(header, body, [False, True, False, False, False, False]))
        if len(shown) < len(rows):
            rest = sum(int(r.get("n") or 0) for r in rows) - sum(int(r.get("n") or 0) for r in shown)
            out.append(
                f'<p class="muted">{len(rows) - len(shown)} smaller levels ({rest} units) are in results.json.</p>'
            )
    return "".join(out)


def mediation_table(med: Mapping[str, Any], truth: Mapping[str, Any] | None = None) -> str:
    """Total, direct and indirect effects with intervals, the simulator's true values beside them when known."""
    truth = truth or {}
    rows = [
        (name, med[name].get("estimate"), ci(med[name]), truth.get(name))
        for name in ("total", "direct", "indirect")
        if isinstance(med.get(name), Mapping)
    ]
    rows.append(("proportion mediated", med.get("proportion_mediated"), "", truth.get("proportion_mediated")))
    if not truth:
        return table(["effect", "estimate", "95% CI"], [r[:3] for r in rows], [False, True, False])
    return table(["effect", "estimate", "95% CI", "true (simulator)"], rows, [False, True, False, True])


def baron_kenny_table(med: Mapping[str, Any], names: Names = str) -> str:
    """The Baron & Kenny steps (paths a, b, c, c') of the method that has them, or ''."""
    methods = med.get("methods") or {}
    paths = methods.get("baron_kenny") or next(
        (m for m in methods.values() if isinstance(m, Mapping) and "path_a" in m), None
    )
    if not paths:
        return ""
    t, m, y = (names(med.get(k)) for k in ("treatment", "mediator", "outcome"))
    steps = [
        (f"c: {y} on {t}", paths.get("total")),
        (f"a: {m} on {t}", paths.get("path_a")),
        (f"b: {y} on {m}, given {t}", paths.get("path_b")),
        (f"c': {y} on {t}, given {m}", paths.get("direct")),
    ]
    rows = [(label, (eff or {}).get("estimate"), ci(eff), (eff or {}).get("p_value")) for label, eff in steps if eff]
    return table(["Baron & Kenny step", "coefficient", "95% CI", "p-value"], rows, [False, True, False, True])


__all__ = ["Sequence", "baron_kenny_table", "cate_tables", "effects_table", "mediation_table", "num"]
