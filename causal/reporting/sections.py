"""The report's tables: assumptions, screening, balance, effects in planning terms, group effects, mediation,
sensitivity, the detector, versions and failed steps. Every column name goes through the display names."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from causal.reporting.html import Raw, ci, num, table, verdict_span
from causal.reporting.text import overlap_problem

Names = Callable[[Any], str]


def is_artwork(results: Mapping[str, Any], evaluation: Mapping[str, Any] | None) -> bool:
    """Whether the treatment comes from the vision stage (an annotation column or a detector evaluation)."""
    from causal.reporting.labels import DEFAULT_NAMES

    t = str(results.get("treatment", ""))
    vision_columns = {k for k in DEFAULT_NAMES if k.startswith(("face_", "img_", "largest_face"))}
    return bool(evaluation) or t in vision_columns


def _consistency(results: Mapping[str, Any], evaluation: Mapping[str, Any] | None, names: Names) -> tuple:
    mis = results.get("misclassification") or {}
    il = (evaluation or {}).get("image_level") or {}
    if not is_artwork(results, evaluation):
        return (
            "Consistency",
            "The treatment is well defined: one version, recorded without error.",
            "not testable from the table; check how the treatment column was recorded",
        )
    if il.get("sensitivity") is not None:
        check = (
            f"detector on labelled images: sensitivity {num(il['sensitivity'], 3)}, specificity "
            f"{num(il['specificity'], 3)} (section Face detector)"
        )
    else:
        check = "no labelled detector evaluation in this run (give labels= to run one)"
    if mis.get("ate_corrected"):
        corrected = mis["ate_corrected"]
        check += f"; ATE corrected for detector errors {num(corrected['estimate'], 3)} {ci(corrected, 3)}"
    return (
        "Consistency",
        "The treatment is well defined: the detector's 'face present' is the face a viewer sees.",
        check,
    )


def _positivity(results: Mapping[str, Any]) -> tuple:
    ov = results.get("overlap") or {}
    if ov:
        prop = ov.get("propensity") or {}
        rng = [prop.get(a, {}).get(k) for a in ("treated", "control") for k in ("min", "max")]
        rng = [v for v in rng if v is not None]
        span = f"propensities in [{num(min(rng), 3)}, {num(max(rng), 3)}]; " if rng else ""
        check: Any = f"{span}{ov.get('trimmed', 0)} unit(s) trimmed by rule '{ov.get('rule')}' (section Overlap)"
    else:
        check = "overlap step not run"
    problem = overlap_problem(results)
    if problem or ov:
        check = Raw(f"{verdict_span(problem is None)} {html.escape(problem or check)}")
    return ("Positivity (overlap)", "Every kind of unit could have been treated or not.", check)


def _unconfoundedness(results: Mapping[str, Any]) -> tuple:
    from causal.reporting.verdict import robustness_verdict

    ov, sens = results.get("overlap") or {}, results.get("sensitivity") or {}
    checks = []
    if ov.get("max_abs_smd"):
        checks.append(
            f"balance: max |SMD| {num(ov['max_abs_smd']['raw'], 3)} raw -> "
            f"{num(ov['max_abs_smd']['weighted'], 3)} weighted"
        )
    v = robustness_verdict(results)
    if v is not None:
        checks.append(f"benchmark comparison: {v['verdict']}")
    if sens.get("e_value") is not None:
        checks.append(f"E-value {num(sens['e_value'], 3)} (CI {num(sens.get('e_value_ci'), 3)})")
    if (sens.get("linear") or {}).get("robustness_value") is not None:
        checks.append(f"robustness value {num(sens['linear']['robustness_value'], 3)}")
    refs = sens.get("refutations") or []
    if refs:
        checks.append(f"refutations passed {sum(bool(r.get('passed')) for r in refs)}/{len(refs)}")
    return (
        "Unconfoundedness",
        "Given the recorded confounders, treatment is as good as random.",
        "; ".join(checks) or "sensitivity step not run",
    )


def assumptions(results: Mapping[str, Any], evaluation: Mapping[str, Any] | None, names: Names = str) -> str:
    """The four identifying assumptions, each beside its check; the wording depends on whether the data are
    artwork annotated by the vision stage or a generic table."""
    if is_artwork(results, evaluation):
        sutva = (
            "not testable from these data; by design each artwork is scored on its own impressions "
            "(cluster by title in mediation.cluster to allow shared title shocks)"
        )
    else:
        sutva = "not testable from the table; holds when units do not share or compete for the outcome"
    rows = [
        _consistency(results, evaluation, names),
        _positivity(results),
        ("SUTVA", "One unit's treatment does not change another's outcome (no interference, one version).", sutva),
        _unconfoundedness(results),
    ]
    return table(["assumption", "what it means", "check in this run"], rows)


_TESTS = {"pearson": "Pearson r", "diff_means": "difference in means", "anova": "ANOVA, eta²"}


def screening(rows: Sequence[Mapping[str, Any]], names: Names = str, limit: int = 20) -> str:
    """One comparable effect size (correlation r with the outcome) per feature, the raw test beside it."""
    body = [
        (
            names(r.get("feature")),
            r.get("effect_r"),
            f"{_TESTS.get(r.get('test'), r.get('test', ''))} {num(r.get('estimate'), 3)}",
            r.get("p_value"),
            r.get("p_adjusted"),
            {True: "yes", False: "no"}.get(r.get("significant"), ""),
        )
        for r in rows[:limit]
    ]
    more = f'<p class="muted">{len(rows) - limit} more in results.json.</p>' if len(rows) > limit else ""
    header = ["feature", "effect size r", "raw test: statistic", "p-value", "BH-adjusted p", "significant"]
    return table(header, body, [False, True, False, True, True, False]) + more


def balance(ov: Mapping[str, Any], names: Names = str, limit: int = 30) -> str:
    raw, weighted = ov.get("smd_raw") or {}, ov.get("smd_weighted") or {}
    keys = sorted(raw, key=lambda k: -abs(raw[k] or 0))[:limit]
    rows = [(names(k), raw.get(k), weighted.get(k)) for k in keys]
    return table(["covariate", "SMD raw", f"SMD weighted ({ov.get('weighting', '')})"], rows, [False, True, True])
