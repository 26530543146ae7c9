"""``results.json`` (plus the run's PNG plots) -> one self-contained ``report.html`` people can read.

Every plot is embedded as a base64 PNG ``data:`` URI and the page carries no script, so the file can be mailed or
opened offline and shows the same thing everywhere. Sections whose step did not run are left out. The page starts
with a plain-language summary for readers who are not statisticians, states the question and the four identifying
assumptions (consistency, positivity, SUTVA, unconfoundedness) each beside the check that speaks to it, then gives
the evidence: screening, overlap and balance, the effect beside the naive difference, effects by group, mediation,
sensitivity, the detector's error rates, and the run's config and package versions.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from causal.report import largest_levels, plot_label

log = logging.getLogger(__name__)

PACKAGES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "econml",
    "xgboost",
    "xgboost-cpu",
    "statsmodels",
    "matplotlib",
    "hydra-core",
    "torch",
)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Most rows of a per-level table in the page: a column with thousands of levels once made a 16 MB report.
MAX_TABLE_ROWS = 30

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.summary{background:#f4f8fb;border-left:4px solid #1f78b4;padding:.8em 1.1em;font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}.muted{color:#666;font-size:.9em}
.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318;font-weight:600}pre{background:#f6f6f6;padding:.8em;
overflow-x:auto;font-size:.8em}
"""


# ------------------------------------------------------------------------------------------------------ formatting
def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "–"
        return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return html.escape(str(value))


def _ci(effect: Mapping[str, Any] | None, digits: int = 4) -> str:
    if not effect or effect.get("ci_low") is None:
        return "–"
    return f"[{_num(effect['ci_low'], digits)}, {_num(effect['ci_high'], digits)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value, is_num in zip(row, numeric):
            text = _num(value) if is_num else (value if isinstance(value, _Raw) else html.escape(str(value)))
            cells.append(f'<td class="num">{text}</td>' if is_num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Trusted HTML inside a table cell (built here from escaped parts)."""


def _verdict(passed: bool | None) -> _Raw:
    if passed is None:
        return _Raw('<span class="muted">not checked</span>')
    return _Raw('<span class="ok">passed</span>' if passed else '<span class="bad">failed</span>')


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI; raises ``ValueError`` when the bytes are not a PNG."""
    if not png.startswith(_PNG_MAGIC):
        raise ValueError("not a PNG (bad signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{html.escape(alt)}" src="{png_data_uri(png)}">'


def _file_png(path: Path | None) -> bytes | None:
    if path is None or not path.is_file():
        return None
    data = path.read_bytes()
    if not data.startswith(_PNG_MAGIC):
        log.warning("%s is not a PNG; left out of the report", path)
        return None
    return data


def _figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------------------------ plots
def plot_effect_vs_naive(results: Mapping[str, Any]) -> bytes | None:
    """Point estimates with CIs: naive difference, the adjusted ATE(s), and the simulator's truth when known."""
    rows = []
    naive = results.get("naive")
    if naive:
        rows.append(("naive difference", naive["difference_in_means"], naive.get("ci_low"), naive.get("ci_high")))
    for key, label in (("ate", "ATE (adjusted)"), ("ate_partially_linear", "partially linear")):
        eff = results.get(key)
        if eff and eff.get("estimate") is not None:
            rows.append((label, eff["estimate"], eff.get("ci_low"), eff.get("ci_high")))
    corrected = (results.get("misclassification") or {}).get("ate_corrected")
    if corrected and corrected.get("estimate") is not None:
        rows.append(
            ("ATE, detector errors corrected", corrected["estimate"], corrected["ci_low"], corrected["ci_high"])
        )
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for y, (_, est, lo, hi) in zip(ys, rows):
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [y, y], color="#1f78b4", linewidth=2)
        ax.plot([est], [y], "o", color="#1f78b4")
    truth = results.get("truth") or {}
    true_ate = truth.get("ate_used", truth.get("ate"))
    if true_ate is not None:
        ax.axvline(true_ate, color="#e31a1c", linestyle=":", label="true ATE (simulator)")
        ax.legend(fontsize=8, frameon=False)
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.set_yticks(ys, [plot_label(r[0]) for r in rows])
    ax.set_xlabel(plot_label(f"effect of {results.get('treatment')} on {results.get('outcome')}"))
    ax.set_title("Adjusted effect vs naive difference (95% CI)")
    fig.tight_layout()
    return _figure_png(fig)


def plot_mediation_diagram(mediation: Mapping[str, Any]) -> bytes | None:
    """Treatment -> mediator -> outcome triangle with path coefficients a, b, the direct effect and the verdict."""
    methods = mediation.get("methods") or {}
    paths = next((m for m in methods.values() if isinstance(m, Mapping) and "path_a" in m), None) or {}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 6)
    ax.axis("off")
    nodes = {"T": (1.3, 1.2), "M": (5.0, 4.8), "Y": (8.7, 1.2)}
    names = {
        "T": mediation.get("treatment", "treatment"),
        "M": mediation.get("mediator"),
        "Y": mediation.get("outcome"),
    }
    for key, (x, y) in nodes.items():
        ax.text(
            x,
            y,
            plot_label(names[key]),
            ha="center",
            va="center",
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.5", "fc": "#eef4fa", "ec": "#1f78b4"},
        )

    def arrow(a: str, b: str, label: str, offset: tuple[float, float]) -> None:
        (x0, y0), (x1, y1) = nodes[a], nodes[b]
        ax.annotate(
            "",
            xy=(x1 - 0.12 * (x1 - x0), y1 - 0.2 * (y1 - y0)),
            xytext=(x0 + 0.12 * (x1 - x0), y0 + 0.2 * (y1 - y0)),
            arrowprops={"arrowstyle": "->", "color": "0.25", "lw": 1.5},
        )
        ax.text((x0 + x1) / 2 + offset[0], (y0 + y1) / 2 + offset[1], plot_label(label), ha="center", fontsize=8.5)

    def fmt(effect: Mapping[str, Any] | None) -> str:
        if not effect:
            return "?"
        return f"{effect['estimate']:.3g} [{effect['ci_low']:.3g}, {effect['ci_high']:.3g}]"

    arrow("T", "M", f"a = {fmt(paths.get('path_a'))}", (-1.3, 0.3))
    arrow("M", "Y", f"b = {fmt(paths.get('path_b'))}", (1.3, 0.3))
    arrow("T", "Y", f"direct c' = {fmt(mediation.get('direct'))}", (0, -0.55))
    ax.text(
        8.4,
        4.6,
        plot_label(f"indirect a·b = {fmt(mediation.get('indirect'))}\ntotal c = {fmt(mediation.get('total'))}"),
        ha="center",
        fontsize=8.5,
        color="#333",
    )
    ax.set_title(plot_label(f"Mediation: verdict '{mediation.get('verdict')}'"), fontsize=11)
    return _figure_png(fig)


# ---------------------------------------------------------------------------------------------------------- sections
# Weighted |SMD| above this is severe imbalance: regression adjustment is unreliable there (Rubin 2001; Stuart 2010).
SEVERE_SMD = 0.25


def overlap_problem(results: Mapping[str, Any]) -> str | None:
    """Why overlap (positivity) failed in this run, in words, or None when it did not.

    Failed: the overlap step itself failed (e.g. perfect separation stopped it), a level held only one arm, or the
    weighted max |SMD| stays above :data:`SEVERE_SMD`.
    """
    for err in results.get("errors") or []:
        if err.get("step") == "overlap" or "separated" in str(err.get("message", "")):
            return f"the overlap check stopped the run: {err.get('message')}"
    ov = results.get("overlap") or {}
    sep = ov.get("separation") or {}
    if sep.get("one_arm"):
        levels = ", ".join(f"{lv['covariate']} (all {lv['arm']})" for lv in sep["one_arm"][:3])
        return f"some levels hold units of one arm only: {levels}; {sep.get('trimmed', 0)} unit(s) trimmed"
    weighted = (ov.get("max_abs_smd") or {}).get("weighted")
    if weighted is not None and weighted > SEVERE_SMD:
        return f"after weighting the arms still differ (max |SMD| {_num(weighted, 3)} > {SEVERE_SMD})"
    return None


def _population(ate: Mapping[str, Any]) -> str:
    """' over all 2,000 units' etc.: the estimand's population and how many units it covers."""
    if not ate.get("population"):
        return ""
    n = ate.get("n")
    count = f" {n:,}" if isinstance(n, int) else ""
    words = {"ate": f"over all{count} units", "att": f"over the{count} treated units"}
    return " " + html.escape(words.get(ate.get("estimand"), f"over the{count} {ate['population']}"))


def plain_summary(results: Mapping[str, Any], evaluation: Mapping[str, Any] | None = None) -> str:
    """One paragraph in plain words: what was asked, what was found, how sure, and what could overturn it."""
    t, y = results.get("treatment", "the treatment"), results.get("outcome", "the outcome")
    parts = [
        f"We asked whether <b>{html.escape(str(t))}</b> changes <b>{html.escape(str(y))}</b>, "
        f"using {results.get('n_used', '?')} of {results.get('n_units', '?')} units."
    ]
    ate, naive = results.get("ate"), results.get("naive")
    if ate and ate.get("estimate") is not None:
        lo, hi = ate.get("ci_low"), ate.get("ci_high")
        sure = lo is not None and hi is not None and (lo > 0 or hi < 0)
        direction = "raises" if ate["estimate"] > 0 else "lowers"
        population = _population(ate)
        parts.append(
            f"After accounting for the other recorded differences between units, it {direction} {html.escape(str(y))} "
            f"by about {_num(ate['estimate'], 3)} on average{population} (95% interval {_ci(ate, 3)}); "
            + (
                "the interval excludes zero, so the data support a real effect."
                if sure and not overlap_problem(results)
                else "but treated and control units are not comparable (overlap failed, see below), so this "
                "number is not evidence of an effect."
                if overlap_problem(results)
                else "the interval includes zero, so the data cannot tell an effect from none."
            )
        )
        if naive:
            parts.append(
                f"A simple comparison of averages would have said {_num(naive['difference_in_means'], 3)}; "
                "the difference is what the adjustment removes."
            )
    groups = results.get("cate_by_group") or {}
    for col, rows in list(groups.items())[:2]:
        if rows:
            top = max(rows, key=lambda r: r["estimate"])
            low = min(rows, key=lambda r: r["estimate"])
            parts.append(
                f"By {html.escape(str(col))}, the effect is largest for {html.escape(str(top['level']))} "
                f"({_num(top['estimate'], 3)}) and smallest for {html.escape(str(low['level']))} "
                f"({_num(low['estimate'], 3)})."
            )
    med = results.get("mediation")
    if med and med.get("verdict"):
        words = {"full": "entirely", "partial": "partly", "none": "not"}
        parts.append(
            f"The effect of {html.escape(str(med.get('treatment')))} runs {words.get(med['verdict'], '?')} "
            f"through {html.escape(str(med.get('mediator')))}."
        )
        if med.get("disagreement"):
            parts.append(
                "The classic Baron &amp; Kenny regressions tell a different story "
                f"({html.escape(str((med.get('comparison') or {}).get('reading', '')))})."
            )
    sens = results.get("sensitivity") or {}
    if sens.get("e_value") is not None:
        parts.append(
            f"A hidden factor would have to be associated with both by a risk ratio of about "
            f"{_num(sens['e_value'], 3)} to explain the estimate away."
        )
    if evaluation:
        il = evaluation.get("image_level") or {}
        if il.get("sensitivity") is not None:
            text = (
                f"The face detector found faces in {_num(100 * il['sensitivity'], 3)}% of labelled images that have one"
            )
            if il.get("specificity") is not None:
                text += f" and wrongly in {_num(100 * (1 - il['specificity']), 3)}% of those without"
            parts.append(text + ".")
    if results.get("truth"):
        parts.append(
            "The engagement data here are <i>simulated</i> with a known true effect (marked in red), "
            "to show that the method recovers it."
        )
    return " ".join(parts)


def _assumptions(results: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> str:
    ov = results.get("overlap") or {}
    sens = results.get("sensitivity") or {}
    mis = results.get("misclassification") or {}
    rows = []
    il = (evaluation or {}).get("image_level") or {}
    if il.get("sensitivity") is not None:
        check = (
            f"detector on labelled images: sensitivity {_num(il['sensitivity'], 3)}, specificity "
            f"{_num(il['specificity'], 3)} (section Face detector)"
        )
    else:
        check = "no labelled detector evaluation in this run (give labels= to run one)"
    if mis.get("ate_corrected"):
        corrected = mis["ate_corrected"]
        check += f"; ATE corrected for detector errors {_num(corrected['estimate'], 3)} {_ci(corrected, 3)}"
    rows.append(
        (
            "Consistency",
            "The treatment is well defined: the detector's 'face present' is the face a viewer sees.",
            check,
        )
    )
    if ov:
        prop = ov.get("propensity") or {}
        rng = [prop.get(a, {}).get(k) for a in ("treated", "control") for k in ("min", "max")]
        rng = [v for v in rng if v is not None]
        span = f"propensities in [{_num(min(rng), 3)}, {_num(max(rng), 3)}]; " if rng else ""
        check = f"{span}{ov.get('trimmed', 0)} unit(s) trimmed by rule '{ov.get('rule')}' (section Overlap)"
    else:
        check = "overlap step not run"
    problem = overlap_problem(results)
    if problem or ov:
        check = _Raw(f"{_verdict(problem is None)} {html.escape(problem or check)}")
    rows.append(("Positivity (overlap)", "Every kind of unit could have been treated or not.", check))
    rows.append(
        (
            "SUTVA",
            "One unit's treatment does not change another's outcome (no interference, one version).",
            "not testable from these data; by design each artwork is scored on its own impressions "
            "(cluster by title in mediation.cluster to allow shared title shocks)",
        )
    )
    checks = []
    if ov.get("max_abs_smd"):
        checks.append(
            f"balance: max |SMD| {_num(ov['max_abs_smd']['raw'], 3)} raw -> "
            f"{_num(ov['max_abs_smd']['weighted'], 3)} weighted"
        )
    if sens.get("e_value") is not None:
        checks.append(f"E-value {_num(sens['e_value'], 3)} (CI {_num(sens.get('e_value_ci'), 3)})")
    if (sens.get("linear") or {}).get("robustness_value") is not None:
        checks.append(f"robustness value {_num(sens['linear']['robustness_value'], 3)}")
    refs = sens.get("refutations") or []
    if refs:
        checks.append(f"refutations passed {sum(bool(r.get('passed')) for r in refs)}/{len(refs)}")
    rows.append(
        (
            "Unconfoundedness",
            "Given the recorded confounders, treatment is as good as random.",
            "; ".join(checks) or "sensitivity step not run",
        )
    )
    return _table(["assumption", "what it means", "check in this run"], rows)


def _screening(rows: Sequence[Mapping[str, Any]], limit: int = 20) -> str:
    body = [
        (
            r.get("feature"),
            r.get("test", ""),
            r.get("estimate"),
            r.get("p_value"),
            r.get("p_adjusted"),
            {True: "yes", False: "no"}.get(r.get("significant"), ""),
        )
        for r in rows[:limit]
    ]
    more = f'<p class="muted">{len(rows) - limit} more in results.json.</p>' if len(rows) > limit else ""
    return (
        _table(
            ["feature", "test", "association", "p-value", "BH-adjusted p", "significant"],
            body,
            [False, False, True, True, True, False],
        )
        + more
    )


def _balance(ov: Mapping[str, Any], limit: int = 30) -> str:
    raw, weighted = ov.get("smd_raw") or {}, ov.get("smd_weighted") or {}
    names = sorted(raw, key=lambda k: -abs(raw[k] or 0))[:limit]
    rows = [(k, raw.get(k), weighted.get(k)) for k in names]
    return _table(["covariate", "SMD raw", f"SMD weighted ({ov.get('weighting', '')})"], rows, [False, True, True])


def _effects_table(results: Mapping[str, Any]) -> str:
    rows = []
    naive = results.get("naive")
    if naive:
        rows.append(("naive difference in means", naive["difference_in_means"], naive.get("stderr"), _ci(naive)))
    for key in ("ate", "ate_partially_linear", "ate_econml"):
        eff = results.get(key)
        if eff and eff.get("estimate") is not None:
            label = eff.get("method", key) + (_population(eff) if key == "ate" else "")
            rows.append((label, eff["estimate"], eff.get("stderr"), _ci(eff)))
    for kind, eff in (results.get("estimands") or {}).items():
        if kind != (results.get("ate") or {}).get("estimand") and eff.get("estimate") is not None:
            rows.append((f"{kind.upper()}{_population(eff)}", eff["estimate"], eff.get("stderr"), _ci(eff)))
    for name, est in (results.get("estimates") or {}).items():
        eff = est.get("ate") or {}
        if eff.get("estimate") is not None:
            rows.append((f"{name} (compare)", eff["estimate"], eff.get("stderr"), _ci(eff)))
    truth = results.get("truth") or {}
    if truth.get("ate") is not None:
        rows.append(("true ATE (simulator)", truth.get("ate_used", truth["ate"]), None, ""))
    return _table(["estimate", "value", "std. error", "95% CI"], rows, [False, True, True, False])


def _cate_tables(cate: Mapping[str, Sequence[Mapping[str, Any]]], limit: int = MAX_TABLE_ROWS) -> str:
    """One table per group column; beyond ``limit`` levels only the largest are listed and the rest summarised."""
    out = []
    for col, rows in cate.items():
        out.append(f"<h3>by {html.escape(str(col))}</h3>")
        shown = largest_levels(rows, limit)
        out.append(
            _table(
                ["level", "n", "effect", "95% CI"],
                [(r["level"], r["n"], r["estimate"], _ci(r)) for r in shown],
                [False, True, True, False],
            )
        )
        if len(shown) < len(rows):
            rest = sum(int(r.get("n") or 0) for r in rows) - sum(int(r.get("n") or 0) for r in shown)
            out.append(
                f'<p class="muted">{len(rows) - len(shown)} smaller levels ({rest} units) are in results.json.</p>'
            )
    return "".join(out)


def _mediation_table(med: Mapping[str, Any]) -> str:
    rows = [
        (name, med[name].get("estimate"), _ci(med[name]))
        for name in ("total", "direct", "indirect")
        if isinstance(med.get(name), Mapping)
    ]
    rows.append(("proportion mediated", med.get("proportion_mediated"), ""))
    return _table(["effect", "estimate", "95% CI"], rows, [False, True, False])


def _sensitivity(sens: Mapping[str, Any]) -> str:
    out = []
    rows = []
    if sens.get("e_value") is not None:
        rows.append(
            (
                "E-value (point / CI limit)",
                f"{_num(sens['e_value'], 3)} / {_num(sens.get('e_value_ci'), 3)}",
                (sens.get("e_value_detail") or {}).get("reading", ""),
            )
        )
    lin = sens.get("linear") or {}
    if lin.get("robustness_value") is not None:
        rows.append(
            (
                "robustness value RV (RV at alpha)",
                f"{_num(lin['robustness_value'], 3)} ({_num(lin.get('robustness_value_alpha'), 3)})",
                lin.get("reading", ""),
            )
        )
    dml_s = sens.get("dml") or {}
    if dml_s.get("robustness_value") is not None:
        rows.append(
            ("DML bounds", f"{_ci(dml_s, 3)}; RV {_num(dml_s['robustness_value'], 3)}", dml_s.get("reading", ""))
        )
    if rows:
        out.append(_table(["measure", "value", "reading"], rows))
    refs = sens.get("refutations") or []
    if refs:
        out.append("<h3>Refutation tests</h3>")
        out.append(
            _table(
                ["test", "estimate", "95% CI", "result", "reading"],
                [
                    (r.get("name"), r.get("estimate"), _ci(r), _verdict(r.get("passed")), r.get("reading", ""))
                    for r in refs
                ],
                [False, True, False, False, False],
            )
        )
    return "".join(out)


def _detector(evaluation: Mapping[str, Any]) -> str:
    il, fl = evaluation.get("image_level") or {}, evaluation.get("face_level") or {}
    rows = [
        ("AP@0.5 (faces)", evaluation.get("ap50")),
        ("face precision", fl.get("precision")),
        ("face recall", fl.get("recall")),
        ("image sensitivity (face present found)", il.get("sensitivity")),
        ("image specificity (no face, none found)", il.get("specificity")),
        ("false-positive images", il.get("fp")),
        ("missed images", il.get("fn")),
        ("images evaluated", evaluation.get("n_images")),
    ]
    return _table(["metric", "value"], [r for r in rows if r[1] is not None], [False, True])


def _versions() -> list[tuple[str, str]]:
    rows = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return rows


# ------------------------------------------------------------------------------------------------------------- main
def _failed_steps(results: Mapping[str, Any]) -> str:
    """A red list of the steps that failed in this run (their sections are missing below), or nothing."""
    errors = results.get("errors") or []
    if not errors:
        return ""
    items = []
    for err in errors:
        message = (str(err.get("message", "")).splitlines() or [""])[0]
        skipped = f" Not run because of it: {', '.join(err['skipped'])}." if err.get("skipped") else ""
        items.append(
            f"<li><b>{html.escape(str(err.get('step')))}</b> failed ({html.escape(str(err.get('type')))}: "
            f"{html.escape(message)}).{html.escape(skipped)}</li>"
        )
    return '<div class="bad"><b>Steps that failed in this run</b><ul>' + "".join(items) + "</ul></div>"


def render_report(
    results: Mapping[str, Any],
    *,
    plots_dir: str | Path | None = None,
    evaluation: Mapping[str, Any] | None = None,
    evaluation_dir: str | Path | None = None,
    config_yaml: str | None = None,
    title: str | None = None,
) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    results : mapping
        The run's results (``results.json``: docs/ARCHITECTURE.md results contract).
    plots_dir : path, optional
        Folder holding the PNGs named in ``results["plots"]`` (the run directory).
    evaluation : mapping, optional
        The detector evaluation's ``metrics.json`` (``vision.evaluate.evaluate_detections`` output).
    evaluation_dir : path, optional
        Folder with that evaluation's ``pr_curve.png``.
    config_yaml : str, optional
        The resolved run config, shown verbatim.
    title : str, optional
        Page title; default from the treatment and outcome.
    """
    plots_dir = Path(plots_dir) if plots_dir is not None else None
    named = results.get("plots") or {}

    def run_plot(key: str) -> bytes | None:
        return _file_png(plots_dir / named[key]) if plots_dir is not None and key in named else None

    t, y = results.get("treatment", "treatment"), results.get("outcome", "outcome")
    funnel = results.get("hypotheses") is not None and "ate" not in results  # steps: [discover] alone
    title = title or (f"Which components change {y}?" if funnel else f"Does {t} change {y}?")
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">source: {html.escape(str(results.get("source", "")))}; steps: '
        f"{html.escape(', '.join(map(str, results.get('steps', []))))}; seed {results.get('seed', '')}</p>",
        f'<div class="summary"><b>In short.</b> {plain_summary(results, evaluation)}</div>',
        _failed_steps(results),
        "<h2>Question and assumptions</h2>",
        f"<p>Question: what is the average causal effect of <b>{html.escape(str(t))}</b> on "
        f"<b>{html.escape(str(y))}</b>, and how does it vary between groups? The estimate is causal only under "
        "the four assumptions below; each row names the check in this run that speaks to it.</p>",
        _assumptions(results, evaluation),
    ]
    if results.get("screening"):
        parts += [
            "<h2>Screening: which features go with the outcome</h2>",
            "<p>Associations, not effects: the hypotheses worth testing, with p-values adjusted for testing "
            "many features at once (Benjamini–Hochberg).</p>",
            _screening(results["screening"]),
        ]
    if results.get("hypotheses") is not None:  # the hypothesis funnel (steps: [discover])
        from causal.discover_report import report_section

        parts.append(report_section(results))
    if results.get("overlap"):
        parts += [
            "<h2>Overlap and balance</h2>",
            "<p>The propensity is each unit's estimated chance of being treated. Treated and control units "
            "should share the same range; standardised mean differences (SMD) near 0 after weighting mean the "
            "groups are comparable (|SMD| &lt; 0.1 is the usual bar).</p>",
            _img(run_plot("propensity"), "propensity overlap"),
            f'<p class="bad">Overlap failed: {html.escape(overlap_problem(results) or "")}</p>'
            if overlap_problem(results)
            else "",
            _balance(results["overlap"]),
        ]
    if results.get("ate") or results.get("naive"):
        parts += [
            "<h2>Effect</h2>",
            _img(plot_effect_vs_naive(results), "effect vs naive difference"),
            _effects_table(results),
        ]
    if results.get("cate_by_group"):
        parts += [
            "<h2>Effect by group</h2>",
            _img(run_plot("cate_by_group"), "effects by group"),
            _cate_tables(results["cate_by_group"]),
        ]
    med = results.get("mediation")
    if med:
        parts += [
            "<h2>Mediation</h2>",
            f"<p>Does {html.escape(str(med.get('treatment')))} act through "
            f"{html.escape(str(med.get('mediator')))}? Verdict: <b>{html.escape(str(med.get('verdict')))}</b> "
            f"({html.escape(str(med.get('method', '')))}).</p>",
            _img(plot_mediation_diagram(med), "mediation diagram"),
            _mediation_table(med),
        ]
    sens = results.get("sensitivity")
    if sens:
        parts += [
            "<h2>Sensitivity to hidden confounding</h2>",
            _img(run_plot("ovb_contour"), "sensitivity contour"),
            _sensitivity(sens),
        ]
    mis = results.get("misclassification")
    if mis and mis.get("ate_corrected"):
        parts += [
            "<h2>Detector errors in the treatment</h2>",
            f"<p>{html.escape(str(mis.get('reading', '')))}</p>",
            _table(
                ["", "estimate", "95% CI"],
                [
                    (
                        "ATE on detected treatment",
                        (mis.get("ate_uncorrected") or {}).get("estimate"),
                        _ci(mis.get("ate_uncorrected")),
                    ),
                    ("ATE corrected", mis["ate_corrected"]["estimate"], _ci(mis["ate_corrected"])),
                ],
                [False, True, False],
            ),
        ]
    if evaluation:
        pr = _file_png(Path(evaluation_dir) / "pr_curve.png") if evaluation_dir is not None else None
        parts += [
            "<h2>Face detector</h2>",
            "<p>How often the detector that defines the treatment is right, on the labelled images.</p>",
            _img(pr, "detector precision-recall curve"),
            _detector(evaluation),
        ]
    parts += ["<h2>Run</h2>", _table(["package", "version"], _versions())]
    if config_yaml:
        parts += ["<details><summary>resolved config</summary>", f"<pre>{html.escape(config_yaml)}</pre></details>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(p for p in parts if p)
        + "\n</body></html>\n"
    )


def write_report(results: Mapping[str, Any], out_dir: str | Path, **kwargs: Any) -> Path:
    """Write ``report.html`` into ``out_dir`` (keyword arguments as :func:`render_report`); return its path.

    ``plots_dir`` defaults to ``out_dir``.
    """
    out_dir = Path(out_dir)
    kwargs.setdefault("plots_dir", out_dir)
    text = render_report(results, **kwargs)
    path = out_dir / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    log.info("wrote %s", path)
    return path


def report_for_run(results: Mapping[str, Any], out_dir: str | Path, cfg: Any = None) -> Path:
    """Write a run's ``report.html``: plots from ``out_dir``, the detector evaluation from ``out_dir/evaluation``
    (``metrics.json``, ``pr_curve.png``) when that step ran, and ``cfg`` (an OmegaConf config or a mapping) shown
    resolved.
    """
    import json

    out_dir = Path(out_dir)
    metrics_file = out_dir / "evaluation" / "metrics.json"
    evaluation = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    config_yaml = None
    if cfg is not None:
        from omegaconf import OmegaConf

        config_yaml = OmegaConf.to_yaml(cfg, resolve=True) if OmegaConf.is_config(cfg) else OmegaConf.to_yaml(dict(cfg))
    return write_report(
        results, out_dir, evaluation=evaluation, evaluation_dir=out_dir / "evaluation", config_yaml=config_yaml
    )
