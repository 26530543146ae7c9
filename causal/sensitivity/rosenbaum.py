"""Rosenbaum bounds for matched pairs: how much hidden bias (Gamma) the matched comparison can withstand.

Within a matched pair, an unobserved confounder may make one unit up to Gamma times as likely as the other to be
the treated one (Gamma = 1: the pair is as good as randomised). For Wilcoxon's signed-rank statistic T (the sum of
the ranks of |d_s| over pairs with a positive difference d_s = Y_treated - Y_control), the largest p-value any
bias of strength Gamma can produce is the upper tail of a sum of independent terms that equal the rank q_s with
probability p+ = Gamma / (1 + Gamma) (Rosenbaum, 2002, Observational Studies, 2nd ed., section 4.3.3)::

    E = p+ * sum_s q_s,    V = p+ (1 - p+) * sum_s q_s^2,    p_upper(Gamma) = 1 - Phi((T - E) / sqrt(V))

(the large-sample normal approximation; p- = 1 / (1 + Gamma) gives the lower bound). Ties take average ranks;
pairs with a zero difference are ranked with the others but add nothing to T, E or V (Rosenbaum's convention, as
DOS2's ``senWilcox``; rbounds' ``psens`` keeps them in E and V). ``gamma_critical`` is the largest Gamma at which
the upper-bound p-value is still below alpha: the effect stays significant under any hidden bias up to it. The test
is one-sided in the direction of the observed effect (the differences are negated when the effect is negative).

:func:`signed_rank_bound_exact` gives the same upper bound from the exact distribution of that sum (Rosenbaum 1987;
DOS2's ``senWilcoxExact``), for small samples: at Gamma = 1 it is the exact signed-rank test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

DEFAULT_GAMMAS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
MAX_GAMMA = 1000.0


def _ranks(differences: np.ndarray) -> tuple[float, np.ndarray]:
    """(T, ranks of the nonzero differences), ranks taken over all |d| with average ties."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    q = stats.rankdata(np.abs(d))
    return float(np.sum(q[d > 0])), q[d != 0]


def signed_rank_bounds(differences: Sequence[float], gamma: float) -> tuple[float, float]:
    """(lower, upper) bounds on the one-sided p-value of the signed-rank test (H1: positive effect) at ``gamma``."""
    if gamma < 1:
        raise ValueError(f"Gamma must be >= 1, got {gamma}")
    t, q = _ranks(np.asarray(differences))
    if q.size == 0:
        return 1.0, 1.0
    out = []
    for p in (1 / (1 + gamma), gamma / (1 + gamma)):
        mean, var = p * q.sum(), p * (1 - p) * np.sum(q**2)
        out.append(float(stats.norm.sf((t - mean) / np.sqrt(var))))
    return out[0], out[1]


def signed_rank_bound_exact(differences: Sequence[float], gamma: float, *, drop_zeros: bool = False) -> float:
    """Exact upper bound on the one-sided p-value of the signed-rank test (H1: positive effect) at ``gamma``.

    Under the bounding assignment each pair adds its rank q_s to T with probability Gamma / (1 + Gamma),
    independently; the tail P(T >= t_obs) is computed by convolving those two-point laws (average ranks are
    multiples of 1/2, so the support is an integer grid in half-ranks). ``drop_zeros=True`` ranks only the nonzero
    differences (Wilcoxon's convention, as R's ``wilcox.test`` / ``exactRankTests::wilcox.exact`` and rbounds'
    ``psens``); the default ranks them with the others (Pratt's, Rosenbaum's). Cost grows with n^3: meant for up to
    a few hundred pairs.
    """
    if gamma < 1:
        raise ValueError(f"Gamma must be >= 1, got {gamma}")
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if drop_zeros:
        d = d[d != 0]
    t, q = _ranks(d)
    if q.size == 0:
        return 1.0
    half = np.rint(2 * q).astype(np.int64)  # ranks in half units: exact integers
    p = gamma / (1 + gamma)
    law = np.zeros(int(half.sum()) + 1)
    law[0] = 1.0
    for k in half:
        shifted = np.zeros_like(law)
        shifted[k:] = law[: law.size - k]
        law = (1 - p) * law + p * shifted
    return float(min(1.0, law[int(round(2 * t)) :].sum()))


def gamma_critical(differences: Sequence[float], alpha: float = 0.05, max_gamma: float = MAX_GAMMA) -> float | None:
    """The largest Gamma at which the upper-bound p-value is below ``alpha`` (positive effect).

    ``None`` when the effect is not significant even at Gamma = 1; ``max_gamma`` when it is still significant
    there.
    """
    d = np.asarray(differences, dtype=np.float64)
    if signed_rank_bounds(d, 1.0)[1] >= alpha:
        return None
    if signed_rank_bounds(d, max_gamma)[1] < alpha:
        return float(max_gamma)
    return float(optimize.brentq(lambda g: signed_rank_bounds(d, g)[1] - alpha, 1.0, max_gamma, xtol=1e-10))


def rosenbaum_bounds(
    differences: Sequence[float], *, alpha: float = 0.05, gammas: Sequence[float] = DEFAULT_GAMMAS
) -> dict[str, Any]:
    """The ``sensitivity.rosenbaum`` block for matched-pair differences (treated minus control).

    Returns
    -------
    dict
        ``gamma_critical`` (None: not significant at Gamma = 1), ``alpha``, ``n_pairs``, ``direction``
        (``positive`` or ``negative``: the tested side), ``statistic`` (T on that side), ``table`` (per Gamma:
        ``gamma``, ``p_lower``, ``p_upper``) and ``sentence``.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        raise ValueError("Rosenbaum bounds need at least one matched pair")
    t, q = _ranks(d)
    negative = t < 0.5 * q.sum()  # fewer positive ranks than the null expectation: the effect is negative
    side = -d if negative else d
    critical = gamma_critical(side, alpha)
    table = []
    for g in gammas:
        low, high = signed_rank_bounds(side, float(g))
        table.append({"gamma": float(g), "p_lower": low, "p_upper": high})
    return {
        "gamma_critical": critical,
        "alpha": float(alpha),
        "n_pairs": int(d.size),
        "direction": "negative" if negative else "positive",
        "statistic": _ranks(side)[0],
        "table": table,
        "sentence": _sentence(critical, alpha, int(d.size)),
    }


def _sentence(critical: float | None, alpha: float, n_pairs: int) -> str:
    if critical is None:
        return (
            f"Over {n_pairs} matched pairs the signed-rank test is not significant at {alpha:g} even without "
            "hidden bias (Gamma = 1)."
        )
    return (
        f"Over {n_pairs} matched pairs the effect stays significant at {alpha:g} unless an unobserved confounder "
        f"makes one unit of a pair more than {critical:.3g} times as likely as the other to be treated "
        "(Gamma critical; 1 = no robustness, 2 or more is usually called robust)."
    )
