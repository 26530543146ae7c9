"""The headline numbers of a run as a short text table, for the command line (the report has the full story)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from causal.reporting.labels import DisplayNames
from causal.reporting.numbers import sig
from causal.reporting.planning import effect_words
from causal.reporting.text import extrapolation_note
from causal.reporting.verdict import robustness_verdict


def fmt_num(value: object, digits: int = 5) -> str:
    return sig(value, digits) if isinstance(value, float) else str(value)


def summary_lines(results: dict) -> list[str]:
    """A short human-readable table of the headline numbers, then one line per other block that ran."""
    lines = [f"{results['treatment']} -> {results['outcome']}: {results['n_used']} of {results['n_units']} units used"]
    lines += _verdict(results)
    lines += _estimate_table(results)
    note = extrapolation_note(results.get("ate") or {})
    lines += [note] if note else []
    lines += _planning(results)
    for section in _SECTIONS:
        lines += section(results)
    return lines


def _estimate_rows(results: dict) -> list[tuple[str, Any, Any, Any]]:
    rows = []
    for key, label in (("naive", "naive difference (all units)"), ("naive_trimmed", "naive (trimmed sample)")):
        if results.get(key):
            naive = results[key]
            rows.append((label, naive["difference_in_means"], naive["ci_low"], naive["ci_high"]))
    for key, label in (("ate", "ATE (doubly robust), HEADLINE"), ("ate_partially_linear", "variance-weighted effect")):
        if results.get(key):
            r = results[key]
            rows.append((label, r["estimate"], r["ci_low"], r["ci_high"]))
    corrected = (results.get("misclassification") or {}).get("ate_corrected")
    if corrected:
        label = "ATE corrected for detector errors"
        rows.append((label, corrected["estimate"], corrected["ci_low"], corrected["ci_high"]))
    truth = results.get("truth") or {}
    if "ate" in truth and results.get("ate"):  # the truth of face presence, not of a mediation run's treatment
        rows.append(("true ATE (simulator)", truth.get("ate_used", truth["ate"]), None, None))
    return rows


def _estimate_table(results: dict) -> list[str]:
    rows = _estimate_rows(results)
    if not rows:
        return []
    lines = [f"{'':34s}{'estimate':>12s}{'95% CI':>26s}"]
    for label, est, lo, hi in rows:
        ci = f"[{fmt_num(lo)}, {fmt_num(hi)}]" if lo is not None else ""
        lines.append(f"{label:34s}{fmt_num(est):>12s}{ci:>26s}")
    return lines


def _verdict(results: dict) -> list[str]:
    verdict = robustness_verdict(results, DisplayNames())
    if verdict is None:
        return []
    # Robust to a hidden confounder, not to extrapolation: said on the verdict's line where both apply.
    caution = verdict["verdict"] == "robust" and extrapolation_note(results.get("ate") or {})
    return [f"{verdict['verdict'].upper()}: {verdict['sentence']}" + (" (see the caution below)" if caution else "")]


def _planning(results: dict) -> list[str]:
    base, ate = results.get("baseline") or {}, results.get("ate")
    if not ate or base.get("control_mean") is None:
        return []
    return [f"in planning terms: {effect_words(ate, base['control_mean'], bool(base.get('is_rate')))}"]


def _cate(results: dict) -> list[str]:
    return [
        f"CATE by {col}: " + ", ".join(f"{r['level']} {fmt_num(r['estimate'], 3)}" for r in levels)
        for col, levels in (results.get("cate_by_group") or {}).items()
    ]


def _heterogeneity(results: dict) -> list[str]:
    het = (results.get("heterogeneity") or {}).get("blp") or {}
    if not het.get("beta_het"):
        return []
    slope, p = fmt_num(het["beta_het"]["estimate"], 3), fmt_num(het["p_value"], 3)
    return [f"heterogeneity (BLP slope): {slope}, p = {p}"]


def _overlap(results: dict) -> list[str]:
    ov = results.get("overlap")
    if not ov:
        return []
    smd = ov["max_abs_smd"]
    # Trimming is applied only under estimand=ate_overlap; otherwise the rule's count is what it would remove.
    applied = ov.get("applied", True)
    trim = f"trimmed {ov['trimmed']}" if applied else f"not applied (the rule would trim {ov['trimmed']})"
    return [
        f"overlap: rule {ov['rule']}, {trim}; max |SMD| {fmt_num(smd['raw'], 3)} raw, "
        f"{fmt_num(smd['weighted'], 3)} weighted"
    ]


def _mediation(results: dict) -> list[str]:
    med = results.get("mediation")
    if not med:
        return []
    lines = [
        f"mediation {med['treatment']} -> {med['mediator']}: indirect {fmt_num(med['indirect']['estimate'], 3)}, "
        f"direct {fmt_num(med['direct']['estimate'], 3)}, verdict {med['verdict']}"
    ]
    true = (results.get("truth") or {}).get("mediation") or {}
    if true.get("direct") is not None and true.get("treatment", med["treatment"]) == med["treatment"]:
        lines.append(
            f"true mediation effects (simulator): indirect {fmt_num(true['indirect'], 3)}, "
            f"direct {fmt_num(true['direct'], 3)}"
        )
    return lines


def _sensitivity(results: dict) -> list[str]:
    sens = results.get("sensitivity") or {}
    if sens.get("e_value") is None:
        return []
    refs = sens.get("refutations") or []
    passed = sum(bool(r.get("passed")) for r in refs)
    line = f"E-value {fmt_num(sens['e_value'], 3)}; refutations passed {passed}/{len(refs)}"
    gamma = (sens.get("rosenbaum") or {}).get("gamma_critical")
    if gamma is not None:
        line += f"; Rosenbaum gamma {fmt_num(gamma, 3)} (matched pairs stay significant up to this hidden bias)"
    return [line]


def _methods(results: dict) -> list[str]:
    agree = results.get("agreement") or {}
    if not results.get("estimates_by_method") or not agree:
        return []
    n = len(results["estimates_by_method"])
    return [f"{n} estimators side by side: {agree.get('verdict')} (joint test p = {fmt_num(agree.get('p_value'), 3)})"]


def _failures(results: dict) -> list[str]:
    lines = []
    for failed in results.get("errors") or []:
        skipped = f", so {', '.join(failed['skipped'])} did not run" if failed.get("skipped") else ""
        lines.append(f"step {failed['step']} FAILED ({failed['type']}){skipped}: no results for it")
    return lines


def _hypotheses(results: dict) -> list[str]:
    if not results.get("hypotheses"):
        return []
    from causal.discover_report import summary_lines as funnel_lines

    return funnel_lines(results)


_SECTIONS: tuple[Callable[[dict], list[str]], ...] = (
    _cate,
    _heterogeneity,
    _overlap,
    _mediation,
    _sensitivity,
    _methods,
    _hypotheses,
    _failures,
)
