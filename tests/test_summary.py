"""The printed run summary says whether the overlap rule's trimming was applied, and when the ATE extrapolates."""

from causal.summary import _overlap, summary_lines


def _results(applied: bool) -> dict:
    return {
        "overlap": {
            "rule": "crump",
            "trimmed": 12,
            "applied": applied,
            "max_abs_smd": {"raw": 0.3, "weighted": 0.05},
        }
    }


def test_trimmed_count_reported_when_trimming_applied():
    (line,) = _overlap(_results(applied=True))
    assert "trimmed 12" in line and "not applied" not in line


def test_trimming_not_applied_is_not_reported_as_trimmed():
    (line,) = _overlap(_results(applied=False))
    assert "not applied" in line and "would trim 12" in line
    assert ", trimmed 12" not in line


def test_summary_says_when_the_headline_extrapolates():
    ate = {"estimate": 2.5, "ci_low": 2.4, "ci_high": 2.7, "estimand": "ate", "n": 4802, "n_units": 4802}
    base = {"treatment": "treated", "outcome": "outcome", "n_used": 4802, "n_units": 4802}
    # The record aipw() writes for ACIC 2016 instance 1 with the shipped clip (0.05): 47% of units clipped.
    lines = summary_lines({**base, "ate": {**ate, "n_clipped": 2267, "clip": 0.05}})
    assert any(line.startswith("Caution: 47% of the units (2,267 of 4,802)") for line in lines)
    assert not any("Caution" in line for line in summary_lines({**base, "ate": {**ate, "n_clipped": 20, "clip": 0.05}}))


def test_a_robust_verdict_points_to_the_extrapolation_caution():
    from causal.report_html import render_report

    # A linear estimate of 2.6 whose benchmark-adjusted interval stays above zero: the verdict is "robust".
    bound = {
        "benchmark": "x_1",
        "kd": 1,
        "ky": 1,
        "adjusted_estimate": 2.6,
        "adjusted_ci_low": 2.4,
        "adjusted_ci_high": 2.8,
    }
    sens = {"linear": {"estimate": 2.6, "ci_low": 2.5, "ci_high": 2.7, "bounds": [bound]}}
    ate = {"estimate": 2.5, "ci_low": 2.4, "ci_high": 2.7, "estimand": "ate", "n": 4802, "n_units": 4802, "clip": 0.05}
    base = {"treatment": "treated", "outcome": "outcome", "n_used": 4802, "n_units": 4802, "sensitivity": sens}
    lines = summary_lines({**base, "ate": {**ate, "n_clipped": 2267}})
    assert lines[1].startswith("ROBUST:") and lines[1].endswith("(see the caution below)")
    assert not summary_lines({**base, "ate": {**ate, "n_clipped": 20}})[1].endswith("(see the caution below)")
    verdict_block = render_report({**base, "ate": {**ate, "n_clipped": 2267}}).split('<div class="verdict robust">')[1]
    assert "Caution: 47% of the units" in verdict_block.split("</div>")[0]
