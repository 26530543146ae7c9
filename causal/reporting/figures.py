"""The report's own plots: the effect beside the naive difference, and the mediation diagram (PNG bytes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from causal.report import plot_label
from causal.reporting.html import figure_png, pyplot
from causal.reporting.numbers import sig

Names = Callable[[Any], str]
TRUTH_COLOUR = "#e31a1c"


def effect_rows(results: Mapping[str, Any]) -> list[tuple[str, float, float | None, float | None]]:
    """(label, estimate, ci_low, ci_high) of every effect the run reports, the headline named as such."""
    rows = []
    naive, trimmed = results.get("naive"), results.get("naive_trimmed")
    if naive:
        rows.append(
            ("naive difference, all units", naive["difference_in_means"], naive.get("ci_low"), naive.get("ci_high"))
        )
    if trimmed:
        rows.append(
            (
                "naive difference, trimmed sample",
                trimmed["difference_in_means"],
                trimmed.get("ci_low"),
                trimmed.get("ci_high"),
            )
        )
    for key, label in (("ate", "HEADLINE: ATE (doubly robust)"), ("ate_partially_linear", "variance-weighted effect")):
        eff = results.get(key)
        if eff and eff.get("estimate") is not None:
            rows.append((label, eff["estimate"], eff.get("ci_low"), eff.get("ci_high")))
    corrected = (results.get("misclassification") or {}).get("ate_corrected")
    if corrected and corrected.get("estimate") is not None:
        rows.append(
            ("ATE, detector errors corrected", corrected["estimate"], corrected["ci_low"], corrected["ci_high"])
        )
    return rows


def plot_effect_vs_naive(results: Mapping[str, Any], names: Names = str) -> bytes | None:
    """Point estimates with CIs: naive difference, the adjusted effects, and the simulator's truth (red) when known."""
    rows = effect_rows(results)
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 0.55 * len(rows) + 1.3))
    ys = list(range(len(rows)))[::-1]
    for y, (label, est, lo, hi) in zip(ys, rows):
        colour = "#08306b" if label.startswith("HEADLINE") else "#6baed6"
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color=colour, linewidth=2.5 if colour == "#08306b" else 1.8)
        ax.plot([est], [y], "o", color=colour)
    truth = results.get("truth") or {}
    true_ate = truth.get("ate_used", truth.get("ate"))
    if true_ate is not None:
        ax.axvline(true_ate, color=TRUTH_COLOUR, linestyle=":", linewidth=2, label="true ATE (simulator)")
        ax.legend(fontsize=8, frameon=False)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_yticks(ys, [plot_label(r[0]) for r in rows])
    ax.set_xlabel(plot_label(f"effect of {names(results.get('treatment'))} on {names(results.get('outcome'))}"))
    ax.set_title("Adjusted effect vs naive difference (95% CI)")
    fig.tight_layout()
    return figure_png(fig)


def _fmt(effect: Mapping[str, Any] | None) -> str:
    if not effect or effect.get("estimate") is None:
        return "?"
    if effect.get("ci_low") is None:
        return sig(effect["estimate"])
    return f"{sig(effect['estimate'])} [{sig(effect['ci_low'])}, {sig(effect['ci_high'])}]"


def plot_mediation_diagram(
    mediation: Mapping[str, Any], names: Names = str, truth: Mapping[str, Any] | None = None
) -> bytes | None:
    """Treatment -> mediator -> outcome with path coefficients a, b, the direct effect, the verdict and (red) the
    simulator's true direct and indirect effects when known. Every label sits outside the boxes."""
    methods = mediation.get("methods") or {}
    paths = next((m for m in methods.values() if isinstance(m, Mapping) and "path_a" in m), None) or {}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.4, 4.6))
    ax.set_xlim(0, 12)
    ax.set_ylim(-1.4, 6)
    ax.axis("off")
    nodes = {"T": (1.8, 1.2), "M": (6.0, 4.9), "Y": (10.2, 1.2)}
    names_of = {
        "T": mediation.get("treatment", "treatment"),
        "M": mediation.get("mediator"),
        "Y": mediation.get("outcome"),
    }
    box = {"boxstyle": "round,pad=0.5", "fc": "#eef4fa", "ec": "#1f78b4"}
    for key, (x, y) in nodes.items():
        ax.text(x, y, plot_label(names(names_of[key])), ha="center", va="center", fontsize=10, bbox=box)

    def arrow(a: str, b: str) -> None:
        (x0, y0), (x1, y1) = nodes[a], nodes[b]
        ax.annotate(
            "",
            xy=(x1 - 0.18 * (x1 - x0), y1 - 0.2 * (y1 - y0)),
            xytext=(x0 + 0.18 * (x1 - x0), y0 + 0.2 * (y1 - y0)),
            arrowprops={"arrowstyle": "->", "color": "0.25", "lw": 1.5},
        )

    arrow("T", "M")
    arrow("M", "Y")
    arrow("T", "Y")
    ax.text(6.0, 2.9, "a, b: Baron & Kenny paths", ha="center", va="center", fontsize=7.5, color="0.35")
    ax.text(3.6, 3.2, plot_label(f"a = {_fmt(paths.get('path_a'))}"), ha="right", va="center", fontsize=8.5)
    ax.text(8.4, 3.2, plot_label(f"b = {_fmt(paths.get('path_b'))}"), ha="left", va="center", fontsize=8.5)
    ax.text(
        6.0,
        0.75,
        plot_label(f"direct = {_fmt(mediation.get('direct'))}  ({mediation.get('method', '')})"),
        ha="center",
        va="top",
        fontsize=9,
    )
    lines = f"indirect = {_fmt(mediation.get('indirect'))}    total = {_fmt(mediation.get('total'))}"
    ax.text(6.0, -0.2, plot_label(lines), ha="center", va="top", fontsize=9)
    if truth and truth.get("direct") is not None:
        true_text = (
            f"true (simulator): direct {truth['direct']:.3g}, indirect {truth['indirect']:.3g}, "
            f"total {truth['total']:.3g}"
        )
        ax.text(6.0, -0.95, plot_label(true_text), ha="center", va="top", fontsize=9, color=TRUTH_COLOUR)
    ax.set_title(plot_label(f"Mediation: verdict '{mediation.get('verdict')}'"), fontsize=11)
    return figure_png(fig)
