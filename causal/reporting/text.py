"""The report's sentences: the robustness headline, the plain-language summary, the overlap problem in words."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

from causal.estimands import EXTRAPOLATED_SHARE
from causal.reporting.html import ci, num
from causal.reporting.planning import amount, effect_words
from causal.reporting.verdict import robustness_verdict

Names = Callable[[Any], str]
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
        return f"after weighting the arms still differ (max |SMD| {num(weighted, 3)} > {SEVERE_SMD})"
    return None


def extrapolation_note(ate: Mapping[str, Any]) -> str | None:
    """A warning when many units' propensities were clipped: their effect comes from the outcome models alone.

    Where units of one arm have no comparable units of the other (propensity near 0 or 1), the doubly robust
    correction has nothing to correct with, so the estimate over them is the outcome models' extrapolation, and the
    interval does not fully include that error (a stacked outcome's model-averaged standard error counts only its
    members' disagreement). None below :data:`EXTRAPOLATED_SHARE` of the units.
    """
    clipped, units, bound = ate.get("n_clipped"), ate.get("n_units") or ate.get("n"), ate.get("clip")
    if not clipped or not units or bound is None or clipped / units < EXTRAPOLATED_SHARE:
        return None
    side = f"above {1 - bound:g}" if ate.get("estimand") == "att" else f"below {bound:g} or above {1 - bound:g}"
    return (
        f"Caution: {clipped / units:.0%} of the units ({clipped:,} of {units:,}) have a propensity score {side}: "
        "the other arm has no comparable units there, so the estimate for them rests on the outcome models' "
        "extrapolation, an error its interval does not fully include; the effect over the overlap population "
        "(estimand=ate_overlap) does not extrapolate."
    )


def population(ate: Mapping[str, Any]) -> str:
    """' over all 2,000 units' etc.: the estimand's population and how many units it covers."""
    if not ate.get("population"):
        return ""
    n = ate.get("n")
    count = f" {n:,}" if isinstance(n, int) else ""
    words = {"ate": f"over all{count} units", "att": f"over the{count} treated units"}
    return " " + html.escape(words.get(ate.get("estimand"), f"over the{count} {ate['population']}"))


def _sensitivity_beside(results: Mapping[str, Any]) -> str:
    sens = results.get("sensitivity") or {}
    beside = []
    if sens.get("e_value") is not None:
        beside.append(f"E-value {num(sens['e_value'], 3)}")
    refs = sens.get("refutations") or []
    if refs:
        beside.append(f"refutation tests passed {sum(bool(r.get('passed')) for r in refs)} of {len(refs)}")
    return "; ".join(beside)


def headline(results: Mapping[str, Any], names: Names = str) -> str:
    """The robustness verdict as a coloured block at the top of the page, or '' when no benchmark was run."""
    v = robustness_verdict(results, names)
    beside = _sensitivity_beside(results)
    if v is None:
        return ""
    word = {
        "fragile": "Fragile result.",
        "robust": "Robust to a hidden factor of this strength.",
        "no effect": "No clear effect.",
    }
    note = (
        " Passing refutation tests and a sizeable E-value do not outweigh this: they do not measure a confounder of "
        "the benchmark's strength."
        if v["verdict"] == "fragile" and beside
        else ""
    )
    extra = f" Beside it: {html.escape(beside)}." if beside else ""
    # Robust to a hidden confounder says nothing about extrapolation: the verdict's block says so where it applies.
    caution = extrapolation_note(results.get("ate") or {})
    limit = f" {html.escape(caution)}" if caution and v["verdict"] == "robust" else ""
    css = {"fragile": "fragile", "robust": "robust"}.get(v["verdict"], "noeffect")
    return (
        f'<div class="verdict {css}"><b>{word[v["verdict"]]}</b> {html.escape(v["sentence"])}{extra}{note}{limit}</div>'
    )


def _effect_sentence(results: Mapping[str, Any], names: Names) -> str:
    ate, y = results["ate"], names(results.get("outcome", "the outcome"))
    base = results.get("baseline") or {}
    lo, hi = ate.get("ci_low"), ate.get("ci_high")
    sure = lo is not None and hi is not None and (lo > 0 or hi < 0)
    direction = "raises" if ate["estimate"] > 0 else "lowers"
    problem = overlap_problem(results)
    if problem:
        tail = (
            "but treated and control units are not comparable (overlap failed, see below), so this number is not "
            "evidence of an effect."
        )
    elif sure:
        tail = "the interval excludes zero, so the data support a real effect."
    else:
        tail = "the interval includes zero, so the data cannot tell an effect from none."
    words = effect_words(ate, base.get("control_mean"), bool(base.get("is_rate")))
    note = extrapolation_note(ate)
    return (
        f"The headline estimate (doubly robust ATE{population(ate)}): it {direction} {html.escape(y)} by "
        f"{html.escape(words)} (95% intervals); {tail}" + (f" {html.escape(note)}" if note else "")
    )


def naive_sentence(results: Mapping[str, Any]) -> str:
    """The naive difference (all units), the trimmed sample's when trimming applied, and what moved the number."""
    naive, trimmed, ate = results.get("naive"), results.get("naive_trimmed"), results.get("ate") or {}
    if not naive:
        return ""
    is_rate = bool((results.get("baseline") or {}).get("is_rate"))

    def num(value: Any, _digits: int = 3) -> str:
        return amount(value, is_rate)

    n = naive.get("n_treated", 0) + naive.get("n_control", 0)
    text = (
        f"A simple comparison of averages over all {n:,} units would have said {num(naive['difference_in_means'], 3)}"
    )
    if trimmed:
        m = trimmed.get("n_treated", 0) + trimmed.get("n_control", 0)
        return (
            text + f"; on the {m:,} units kept after trimming it is {num(trimmed['difference_in_means'], 3)}. "
            f"Trimming moved the simple comparison from {num(naive['difference_in_means'], 3)} to "
            f"{num(trimmed['difference_in_means'], 3)}; the adjustment for confounders moved it from there to "
            f"{num(ate.get('estimate'), 3)}."
        )
    return text + "; the difference from the headline is what the adjustment for confounders removes."


def _cate_sentences(results: Mapping[str, Any], names: Names) -> list[str]:
    is_rate = bool((results.get("baseline") or {}).get("is_rate"))

    def num(value: Any, _digits: int = 3) -> str:
        return amount(value, is_rate)

    out = []
    for col, rows in list((results.get("cate_by_group") or {}).items())[:2]:
        if rows:
            top = max(rows, key=lambda r: r["estimate"])
            low = min(rows, key=lambda r: r["estimate"])
            out.append(
                f"By {html.escape(names(col))}, the effect is largest for {html.escape(str(top['level']))} "
                f"({num(top['estimate'], 3)}) and smallest for {html.escape(str(low['level']))} "
                f"({num(low['estimate'], 3)})."
            )
    return out


def _mediation_sentences(med: Mapping[str, Any], names: Names) -> list[str]:
    words = {"full": "entirely", "partial": "partly", "none": "not"}
    out = [
        f"The effect of {html.escape(names(med.get('treatment')))} on {html.escape(names(med.get('outcome')))} runs "
        f"{words.get(med['verdict'], '?')} through {html.escape(names(med.get('mediator')))}."
    ]
    if med.get("disagreement"):
        out.append(
            "The classic Baron &amp; Kenny regressions tell a different story "
            f"({html.escape(str((med.get('comparison') or {}).get('reading', '')))})."
        )
    return out


def _detector_sentence(evaluation: Mapping[str, Any]) -> str:
    il = evaluation.get("image_level") or {}
    if il.get("sensitivity") is None:
        return ""
    text = f"The face detector found faces in {num(100 * il['sensitivity'], 3)}% of labelled images that have one"
    if il.get("specificity") is not None:
        text += f" and wrongly in {num(100 * (1 - il['specificity']), 3)}% of those without"
    return text + "."


def _truth_sentence(results: Mapping[str, Any]) -> str:
    if not results.get("truth"):
        return ""
    where = []
    if results.get("ate") or results.get("naive"):
        where.append("the dotted red line in the Effect plot")
    if results.get("mediation"):
        where.append("the red text under the mediation diagram and the 'true' column of its table")
    shown = f" ({' and '.join(where)})" if where else ""
    return (
        f"The engagement data here are <i>simulated</i> with a known true effect{shown}, to show that the method "
        "recovers it."
    )


def plain_summary(results: Mapping[str, Any], evaluation: Mapping[str, Any] | None = None, names: Names = str) -> str:
    """One paragraph in plain words: what was asked, what was found, how sure, and what could overturn it."""
    t, y = names(results.get("treatment", "the treatment")), names(results.get("outcome", "the outcome"))
    parts = [
        f"We asked whether <b>{html.escape(t)}</b> changes <b>{html.escape(y)}</b>, "
        f"using {results.get('n_used', '?')} of {results.get('n_units', '?')} units."
    ]
    if (results.get("ate") or {}).get("estimate") is not None:
        parts.append(_effect_sentence(results, names))
        parts.append(naive_sentence(results))
    parts += _cate_sentences(results, names)
    if (results.get("mediation") or {}).get("verdict"):
        parts += _mediation_sentences(results["mediation"], names)
    verdict = robustness_verdict(results, names)
    if verdict is not None:
        parts.append(html.escape(verdict["sentence"]))
    sens = results.get("sensitivity") or {}
    if sens.get("e_value") is not None:
        parts.append(
            f"By the E-value, a hidden factor would have to be associated with both by a risk ratio of about "
            f"{num(sens['e_value'], 3)} to explain the estimate away."
        )
    if evaluation:
        parts.append(_detector_sentence(evaluation))
    parts.append(_truth_sentence(results))
    return " ".join(p for p in parts if p)


__all__ = ["ci", "extrapolation_note", "headline", "naive_sentence", "overlap_problem", "plain_summary", "population"]
