"""The headline numbers of a run as a short text table, for the command line (the report has the full story)."""

from __future__ import annotations


def fmt_num(value: object, digits: int = 5) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def summary_lines(results: dict) -> list[str]:
    """A short human-readable table of the headline numbers."""
    lines = [f"{results['treatment']} -> {results['outcome']}: {results['n_used']} of {results['n_units']} units used"]
    rows = []
    naive = results.get("naive")
    if naive:
        rows.append(("naive difference", naive["difference_in_means"], naive["ci_low"], naive["ci_high"]))
    for key, label in (("ate", "ATE (doubly robust)"), ("ate_partially_linear", "partially linear (var-weighted)")):
        if results.get(key):
            r = results[key]
            rows.append((label, r["estimate"], r["ci_low"], r["ci_high"]))
    corrected = (results.get("misclassification") or {}).get("ate_corrected")
    if corrected:
        rows.append(
            ("ATE corrected for detector errors", corrected["estimate"], corrected["ci_low"], corrected["ci_high"])
        )
    truth = results.get("truth") or {}
    if "ate" in truth:
        rows.append(("true ATE (simulator)", truth.get("ate_used", truth["ate"]), None, None))
    if rows:
        lines.append(f"{'':34s}{'estimate':>12s}{'95% CI':>26s}")
        for label, est, lo, hi in rows:
            ci = f"[{fmt_num(lo)}, {fmt_num(hi)}]" if lo is not None else ""
            lines.append(f"{label:34s}{fmt_num(est):>12s}{ci:>26s}")
    for col, levels in (results.get("cate_by_group") or {}).items():
        cells = ", ".join(f"{r['level']} {fmt_num(r['estimate'], 3)}" for r in levels)
        lines.append(f"CATE by {col}: {cells}")
    het = (results.get("heterogeneity") or {}).get("blp") or {}
    if het.get("beta_het"):
        lines.append(
            f"heterogeneity (BLP slope): {fmt_num(het['beta_het']['estimate'], 3)}, p = {fmt_num(het['p_value'], 3)}"
        )
    ov = results.get("overlap")
    if ov:
        smd = ov["max_abs_smd"]
        lines.append(
            f"overlap: rule {ov['rule']}, trimmed {ov['trimmed']}; max |SMD| {fmt_num(smd['raw'], 3)} raw, "
            f"{fmt_num(smd['weighted'], 3)} weighted"
        )
    med = results.get("mediation")
    if med:
        lines.append(
            f"mediation {med['treatment']} -> {med['mediator']}: indirect {fmt_num(med['indirect']['estimate'], 3)}, "
            f"direct {fmt_num(med['direct']['estimate'], 3)}, verdict {med['verdict']}"
        )
    sens = results.get("sensitivity") or {}
    if sens.get("e_value") is not None:
        refs = sens.get("refutations") or []
        passed = sum(bool(r.get("passed")) for r in refs)
        lines.append(f"E-value {fmt_num(sens['e_value'], 3)}; refutations passed {passed}/{len(refs)}")
    for failed in results.get("errors") or []:
        skipped = f", so {', '.join(failed['skipped'])} did not run" if failed.get("skipped") else ""
        lines.append(f"step {failed['step']} FAILED ({failed['type']}){skipped}: no results for it")
    return lines
