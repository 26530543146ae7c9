"""Numbers for people: significant digits without scientific notation for large values.

Python's ``g`` format switches to an exponent once a value has more integer digits than significant digits, so a
relative lift of 160% reads "+1.6e+02%" and an earnings effect of 1,794 dollars "1.79e+03". Reports and run
summaries use :func:`sig` instead: the same rounding, written out ("+160%", "1790"). Small values keep ``g``'s
exponent (1.06e-05), which is shorter than their zeros.
"""

from __future__ import annotations

import math


def sig(value: float, digits: int = 3, signed: bool = False) -> str:
    """``value`` rounded to ``digits`` significant digits; positional notation for magnitudes of 1 and above.

    Parameters
    ----------
    value : float
    digits : int
        Significant digits (Python's ``g`` precision).
    signed : bool
        Always write the sign ('+0.5').

    Returns
    -------
    str
        E.g. ``sig(1794.2) == '1790'``, ``sig(1.6, 2, signed=True) == '+1.6'``, ``sig(0.0000106) == '1.06e-05'``;
        'nan' / 'inf' as Python writes them.
    """
    sign = "+" if signed else ""
    text = f"{value:{sign}.{digits}g}"
    if "e+" in text and math.isfinite(value):
        text = f"{float(text):{sign}.0f}"
    return text
