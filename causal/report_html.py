"""``results.json`` (plus the run's PNG plots) -> one self-contained ``report.html`` people can read.

Every plot is embedded as a base64 PNG ``data:`` URI (artwork thumbnails as small JPEGs) and the page carries no
script, so the file can be mailed or opened offline and shows the same thing everywhere. Sections whose step did not
run are left out. The page starts with the robustness verdict (the benchmark comparison in words; a fragile result is
labelled fragile) and a plain-language summary, states the question (built from the roles) and the four
identifying assumptions each beside the check that speaks to it, then gives the evidence: the artwork, screening,
overlap and balance, the effect in planning terms (baseline, effect, relative lift) beside the naive difference,
effects by group, mediation, sensitivity, the detector's error rates, and the run's config and package versions.
Column names are shown in words (:mod:`causal.reporting.labels`, config key ``display_names``). The building blocks
live in :mod:`causal.reporting`.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from causal.context import to_plain
from causal.methods_report import methods_section
from causal.reporting import diagnostics, effects, sections
from causal.reporting.figures import plot_effect_vs_naive, plot_mediation_diagram
from causal.reporting.gallery import analysed_image_ids, gallery_html
from causal.reporting.html import CSS, file_png, img, png_data_uri
from causal.reporting.labels import DisplayNames, question
from causal.reporting.text import headline, overlap_problem, plain_summary

log = logging.getLogger(__name__)

__all__ = [
    "overlap_problem",
    "plain_summary",
    "plot_effect_vs_naive",
    "plot_mediation_diagram",
    "png_data_uri",
    "render_report",
    "report_for_run",
    "write_report",
]


def _screening_part(results: Mapping[str, Any], names: DisplayNames) -> list[str]:
    return [
        "<h2>Screening: which features go with the outcome</h2>",
        "<p>Associations, not effects: the hypotheses worth testing, with p-values adjusted for testing many features "
        "at once (Benjamini–Hochberg). The effect size r is on one scale for every kind of feature (Pearson r for a "
        "number, point-biserial r for a yes/no feature, the square root of eta² for a category); the raw test and "
        "its statistic are beside it.</p>",
        sections.screening(results["screening"], names),
    ]


def _overlap_part(results: Mapping[str, Any], names: DisplayNames, run_plot: Any) -> list[str]:
    problem = overlap_problem(results)
    return [
        "<h2>Overlap and balance</h2>",
        "<p>The propensity is each unit's estimated chance of being treated. Treated and control units should share "
        "the same range; standardised mean differences (SMD) near 0 after weighting mean the groups are comparable "
        "(|SMD| &lt; 0.1 is the usual bar).</p>",
        img(run_plot("propensity"), "propensity overlap"),
        f'<p class="bad">Overlap failed: {html.escape(problem)}</p>' if problem else "",
        sections.balance(results["overlap"], names),
    ]


def _effect_part(results: Mapping[str, Any], names: DisplayNames) -> list[str]:
    return [
        "<h2>Effect</h2>",
        "<p>The headline is the doubly robust average treatment effect (ATE). The partially linear coefficient is a "
        "variance-weighted average of the effects (it weights units whose treatment is hardest to predict), and the "
        "naive difference compares raw averages without any adjustment. The relative lift divides the effect and "
        "its interval by the baseline (the control units' mean outcome), taken as known.</p>",
        img(plot_effect_vs_naive(results, names), "effect vs naive difference"),
        effects.effects_table(results),
    ]


def _mediation_part(med: Mapping[str, Any], names: DisplayNames, truth: Mapping[str, Any] | None) -> list[str]:
    t, m = html.escape(names(med.get("treatment"))), html.escape(names(med.get("mediator")))
    return [
        "<h2>Mediation</h2>",
        f"<p>Does {t} act through {m}? Verdict: <b>{html.escape(str(med.get('verdict')))}</b> "
        f"({html.escape(str(med.get('method', '')))}). The machine-learning natural direct and indirect effects are "
        "the answer; the Baron &amp; Kenny regressions are the classic cross-check.</p>",
        img(plot_mediation_diagram(med, names, truth), "mediation diagram"),
        effects.mediation_table(med, truth),
        effects.baron_kenny_table(med, names),
    ]


def _linked_parts(links: Sequence[str], out_dir: Path | None, names: DisplayNames) -> list[str]:
    """Each linked run's summary and mediation section (the demo's face-count mediation), with a link to its report."""
    parts = []
    for link in links or ():
        folder = Path(link) if out_dir is None or Path(link).is_absolute() else out_dir / link
        res_file = folder / "results.json"
        if not res_file.is_file():
            log.warning("linked run %s has no results.json; left out of the report", folder)
            continue
        other = json.loads(res_file.read_text())
        title = question(other.get("roles") or other, names)
        parts += [
            f"<h2>Linked analysis: {html.escape(title)}</h2>",
            f'<p><a href="{html.escape(str(Path(link) / "report.html"))}">Its full report</a>. '
            f"{plain_summary(other, None, names)}</p>",
        ]
        if other.get("mediation"):
            truth = (other.get("truth") or {}).get("mediation")
            parts += _mediation_part(other["mediation"], names, truth)[1:]
    return parts


def _detector_part(evaluation: Mapping[str, Any], evaluation_dir: str | Path | None) -> list[str]:
    pr = file_png(Path(evaluation_dir) / "pr_curve.png") if evaluation_dir is not None else None
    return [
        "<h2>Face detector</h2>",
        "<p>How often the detector that defines the treatment is right, on the labelled images.</p>",
        img(pr, "detector precision-recall curve"),
        diagnostics.detector(evaluation),
    ]


def _misclassification_part(mis: Mapping[str, Any]) -> list[str]:
    from causal.reporting.html import ci, table

    rows = [
        (
            "ATE on detected treatment",
            (mis.get("ate_uncorrected") or {}).get("estimate"),
            ci(mis.get("ate_uncorrected")),
        ),
        ("ATE corrected", mis["ate_corrected"]["estimate"], ci(mis["ate_corrected"])),
    ]
    return [
        "<h2>Detector errors in the treatment</h2>",
        f"<p>{html.escape(str(mis.get('reading', '')))}</p>",
        table(["", "estimate", "95% CI"], rows, [False, True, False]),
    ]


def render_report(
    results: Mapping[str, Any],
    *,
    plots_dir: str | Path | None = None,
    evaluation: Mapping[str, Any] | None = None,
    evaluation_dir: str | Path | None = None,
    config_yaml: str | None = None,
    title: str | None = None,
    display_names: Mapping[str, str] | None = None,
    gallery: str = "",
    links: Sequence[str] = (),
) -> str:
    """The report as one HTML string.

    Parameters
    ----------
    results : mapping
        The run's results (``results.json``: docs/ARCHITECTURE.md results contract).
    plots_dir : path, optional
        Folder holding the PNGs named in ``results["plots"]`` (the run directory); also the base of ``links``.
    evaluation : mapping, optional
        The detector evaluation's ``metrics.json`` (``vision.evaluate.evaluate_detections`` output).
    evaluation_dir : path, optional
        Folder with that evaluation's ``pr_curve.png``.
    config_yaml : str, optional
        The resolved run config, shown verbatim.
    title : str, optional
        Page title; default the question built from the treatment and outcome.
    display_names : mapping, optional
        Column -> words over :data:`causal.reporting.labels.DEFAULT_NAMES` (config ``display_names``).
    gallery : str
        The artwork section's HTML (:func:`causal.reporting.gallery.gallery_html`); '' for none.
    links : sequence of str
        Run folders (relative to ``plots_dir``) whose summary and mediation are shown and linked (config
        ``report.links``).
    """
    names = DisplayNames(display_names)
    plots_dir = Path(plots_dir) if plots_dir is not None else None
    named = results.get("plots") or {}

    def run_plot(key: str) -> bytes | None:
        return file_png(plots_dir / named[key]) if plots_dir is not None and key in named else None

    funnel = results.get("hypotheses") is not None and "ate" not in results  # steps: [discover] alone
    outcome = names(results.get("outcome", "outcome"))
    title = title or (f"Which components change {outcome}?" if funnel else question(results, names))
    parts = _opening_parts(results, evaluation, names, title)
    if gallery:
        parts += ["<h2>The artwork</h2>", gallery]
    parts += _analysis_parts(results, names, run_plot)
    parts += _linked_parts(links, plots_dir, names)
    if evaluation:
        parts += _detector_part(evaluation, evaluation_dir)
    parts += ["<h2>Run</h2>", diagnostics.table(["package", "version"], diagnostics.versions())]
    if config_yaml:
        parts += ["<details><summary>resolved config</summary>", f"<pre>{html.escape(config_yaml)}</pre></details>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(p for p in parts if p)
        + "\n</body></html>\n"
    )


def _opening_parts(results: Mapping[str, Any], evaluation: Any, names: DisplayNames, title: str) -> list[str]:
    """Title, the headline verdict, the plain summary, failed steps, and the question with its assumptions."""
    t, y = (
        html.escape(names(results.get("treatment", "treatment"))),
        html.escape(names(results.get("outcome", "outcome"))),
    )
    return [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">source: {html.escape(str(results.get("source", "")))}; steps: '
        f"{html.escape(', '.join(map(str, results.get('steps', []))))}; seed {results.get('seed', '')}</p>",
        headline(results, names),
        f'<div class="summary"><b>In short.</b> {plain_summary(results, evaluation, names)}</div>',
        diagnostics.failed_steps(results),
        "<h2>Question and assumptions</h2>",
        f"<p>Question: what is the average causal effect of <b>{t}</b> on <b>{y}</b>, and how does it vary between "
        "groups? The estimate is causal only under the four assumptions below; each row names the check in this "
        "run that speaks to it.</p>",
        sections.assumptions(results, evaluation, names),
    ]


def _analysis_parts(results: Mapping[str, Any], names: DisplayNames, run_plot: Any) -> list[str]:
    """One section per analysis the run holds, in the order a reader needs them."""
    parts: list[str] = []
    if results.get("screening"):
        parts += _screening_part(results, names)
    if results.get("hypotheses") is not None:  # the hypothesis funnel (steps: [discover])
        from causal.discover_report import report_section

        parts.append(report_section(results))
    if results.get("overlap"):
        parts += _overlap_part(results, names, run_plot)
    if results.get("ate") or results.get("naive"):
        parts += _effect_part(results, names)
    if results.get("cate_by_group"):
        parts += ["<h2>Effect by group</h2>", img(run_plot("cate_by_group"), "effects by group")]
        parts.append(effects.cate_tables(results, names))
    if results.get("mediation"):
        parts += _mediation_part(results["mediation"], names, (results.get("truth") or {}).get("mediation"))
    if results.get("sensitivity"):
        parts += [
            "<h2>Sensitivity to hidden confounding</h2>",
            headline(results, names),
            img(run_plot("ovb_contour"), "sensitivity contour"),
            diagnostics.sensitivity(results["sensitivity"], names),
        ]
    parts.append(methods_section(results))  # estimators side by side, Rosenbaum bounds, calibration
    if (results.get("misclassification") or {}).get("ate_corrected"):
        parts += _misclassification_part(results["misclassification"])
    return parts


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
    (``metrics.json``, ``pr_curve.png``, ``errors.csv``) when that step ran, the artwork gallery when the config
    names an annotation folder (``paths.annotations``), ``display_names`` and ``report.links`` from ``cfg`` (an
    OmegaConf config or a mapping), shown resolved.
    """
    from omegaconf import OmegaConf

    out_dir = Path(out_dir)
    metrics_file = out_dir / "evaluation" / "metrics.json"
    evaluation = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    plain = to_plain(cfg) or {}
    config_yaml = OmegaConf.to_yaml(OmegaConf.create(plain)) if cfg is not None else None
    names = DisplayNames(plain.get("display_names"))
    try:
        gallery = gallery_html(
            (plain.get("paths") or {}).get("annotations"),
            input_dir=plain.get("input"),
            treatment=str(results.get("treatment", "face_present")),
            errors_csv=out_dir / "evaluation" / "errors.csv",
            analysed_ids=analysed_image_ids(out_dir / "unit_effects.parquet"),
            names=names,
        )
    except (OSError, ValueError, KeyError, TypeError) as err:  # the artwork illustrates; it never costs the report
        log.warning("report: gallery left out: %s", err)
        gallery = ""
    return write_report(
        results,
        out_dir,
        evaluation=evaluation,
        evaluation_dir=out_dir / "evaluation",
        config_yaml=config_yaml,
        display_names=plain.get("display_names"),
        gallery=gallery,
        links=list((plain.get("report") or {}).get("links") or []),
    )
