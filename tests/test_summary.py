"""The printed run summary says whether the overlap rule's trimming was applied."""

from causal.summary import _overlap


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
