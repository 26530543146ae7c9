"""The report's diagnostic tables: sensitivity to hidden confounding, the face detector, versions, failed steps."""

from __future__ import annotations

import html
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from causal.reporting.html import ci, num, table, verdict_span

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


def benchmarks(lin: Mapping[str, Any], names: Any = str) -> str:
    """The OVB benchmark rows: a hidden factor k times as strong as a covariate, and the estimate it would leave."""
    rows = [
        (
            f"{b['kd']:g} x {names(b['benchmark'])}"
            if b["kd"] == b["ky"]
            else f"{b['kd']:g} / {b['ky']:g} x {names(b['benchmark'])}",
            b.get("r2dz_x"),
            b.get("r2yz_dx"),
            b.get("adjusted_estimate"),
            f"[{num(b.get('adjusted_ci_low'), 3)}, {num(b.get('adjusted_ci_high'), 3)}]",
        )
        for b in lin.get("bounds") or []
    ]
    if not rows:
        return ""
    header = [
        "hidden factor as strong as",
        "partial R² with treatment",
        "partial R² with outcome",
        "estimate left",
        "95% CI",
    ]
    return table(header, rows, [False, True, True, True, False])


def sensitivity(sens: Mapping[str, Any], names: Any = str) -> str:
    out = []
    rows = []
    if sens.get("e_value") is not None:
        rows.append(
            (
                "E-value (point / CI limit)",
                f"{num(sens['e_value'], 3)} / {num(sens.get('e_value_ci'), 3)}",
                (sens.get("e_value_detail") or {}).get("reading", ""),
            )
        )
    lin = sens.get("linear") or {}
    if lin.get("robustness_value") is not None:
        rows.append(
            (
                "robustness value RV (RV at alpha)",
                f"{num(lin['robustness_value'], 3)} ({num(lin.get('robustness_value_alpha'), 3)})",
                lin.get("reading", ""),
            )
        )
    dml_s = sens.get("dml") or {}
    if dml_s.get("robustness_value") is not None:
        rows.append(("DML bounds", f"{ci(dml_s, 3)}; RV {num(dml_s['robustness_value'], 3)}", dml_s.get("reading", "")))
    if rows:
        out.append(table(["measure", "value", "reading"], rows))
    out.append(benchmarks(lin, names))
    refs = sens.get("refutations") or []
    if refs:
        out.append("<h3>Refutation tests</h3>")
        out.append(
            table(
                ["test", "estimate", "95% CI", "result", "reading"],
                [
                    (
                        str(r.get("name", "")).replace("_", " "),
                        r.get("estimate"),
                        ci(r),
                        verdict_span(r.get("passed")),
                        r.get("reading", ""),
                    )
                    for r in refs
                ],
                [False, True, False, False, False],
            )
        )
    return "".join(out)


def detector(evaluation: Mapping[str, Any]) -> str:
    """The detector's figures on the labelled images, rates with their 95% Wilson intervals, and a plain warning
    when a rate rests on too few images."""
    il, fl = evaluation.get("image_level") or {}, evaluation.get("face_level") or {}

    def interval(block: Mapping[str, Any], key: str) -> str:
        low, high = block.get(f"{key}_ci") or (None, None)
        return "" if low is None or high is None else f"{low:.2f} to {high:.2f}"

    rows = [
        ("AP@0.5 (faces at the detector's cut-off)", evaluation.get("ap50"), ""),
        ("face precision", fl.get("precision"), interval(fl, "precision")),
        ("face recall", fl.get("recall"), interval(fl, "recall")),
        ("image sensitivity (face present found)", il.get("sensitivity"), interval(il, "sensitivity")),
        ("image specificity (no face, none found)", il.get("specificity"), interval(il, "specificity")),
        ("false-positive images", il.get("fp"), ""),
        ("missed images", il.get("fn"), ""),
        ("images evaluated", evaluation.get("n_images"), ""),
    ]
    out = table(["metric", "value", "95% interval"], [r for r in rows if r[1] is not None], [False, True, False])
    notes = [f'<p class="bad">{html.escape(note)}.</p>' for note in evaluation.get("reliability") or []]
    return out + "".join(notes)


def versions() -> list[tuple[str, str]]:
    rows = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return rows


def failed_steps(results: Mapping[str, Any]) -> str:
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
