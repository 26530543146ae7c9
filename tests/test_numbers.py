"""Numbers in reports and run summaries are written out, never in scientific notation for large values."""

import math

import pytest

from causal.reporting.numbers import sig
from causal.reporting.planning import effect_words, percent


@pytest.mark.parametrize(
    ("value", "digits", "signed", "expected"),
    [
        (1794.2, 3, False, "1790"),  # an earnings effect in dollars
        (1.6, 2, True, "+1.6"),
        (-0.0153, 3, True, "-0.0153"),
        (123456789.0, 3, False, "123000000"),
        (0.0000106, 3, False, "1.06e-05"),  # small values keep the exponent: shorter than their zeros
        (0.0, 3, True, "+0"),
    ],
)
def test_sig_rounds_without_exponent_for_large_values(value, digits, signed, expected):
    assert sig(value, digits, signed) == expected


def test_sig_keeps_non_finite_values_readable():
    assert sig(math.inf) == "inf"
    assert sig(math.nan) == "nan"


def test_relative_lift_of_160_percent_reads_as_a_percentage():
    assert percent(1.6) == "+160%"
    text = effect_words({"estimate": 1.91, "ci_low": 1.75, "ci_high": 2.08}, baseline=1.16, is_rate=False)
    assert "e+" not in text
    assert "a relative lift of +160% [+150%, +180%]" in text  # 1.91 / 1.16 to two significant digits
