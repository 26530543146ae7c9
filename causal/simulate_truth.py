"""The simulator's truth: sample and population ATE, CATEs by genre and country, the variance-weighted effect a
partially linear model targets, and the mediation effects, all computed from the drawn potential outcomes."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _group_means(values: np.ndarray, codes: np.ndarray, names: list[str]) -> dict[str, float]:
    sums = np.bincount(codes, weights=values, minlength=len(names))
    counts = np.bincount(codes, minlength=len(names))
    return {name: float(sums[k] / counts[k]) for k, name in enumerate(names) if counts[k]}


def _group_sizes(codes: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(names))
    return {name: int(counts[k]) for k, name in enumerate(names) if counts[k]}


def _truth(
    *,
    tau,
    treated,
    propensity,
    g_idx,
    c_idx,
    genre_names,
    country_names,
    genre_share,
    country_share,
    tau0,
    het_g,
    het_c,
    path_g,
    face_count_effect,
    face_size_effect,
    count_on_size,
    ate,
) -> dict:
    weights = propensity * (1 - propensity)
    cate = {
        "genre": _group_means(tau, g_idx, genre_names),
        "country": _group_means(tau, c_idx, country_names),
    }
    sizes = {
        "genre": _group_sizes(g_idx, genre_names),
        "country": _group_sizes(c_idx, country_names),
    }
    mean_het_c = float(country_share @ het_c)
    mean_genre_part = float(genre_share @ (het_g + path_g))
    population = {
        "genre": {g: tau0 + het_g[k] + path_g[k] + mean_het_c for k, g in enumerate(genre_names)},
        "country": {c: tau0 + mean_genre_part + het_c[k] for k, c in enumerate(country_names)},
    }
    indirect = count_on_size * face_size_effect
    total = face_count_effect + indirect
    return {
        "treatment": "face_present",
        "outcome": "take_rate",
        "n_units": int(len(tau)),
        "n_treated": int(treated.sum()),
        "ate": float(tau.mean()),
        "ate_population": float(ate),
        "att": float(tau[treated].mean()) if treated.any() else None,
        "atc": float(tau[~treated].mean()) if (~treated).any() else None,
        "ate_variance_weighted": float((weights * tau).sum() / weights.sum()),
        "cate_by_group": cate,
        "cate_by_group_population": population,
        "group_sizes": sizes,
        "propensity": {
            "mean": float(propensity.mean()),
            "min": float(propensity.min()),
            "max": float(propensity.max()),
            "sd_logit": float(np.std(special.logit(propensity))),
            "share_outside_0.05_0.95": float(((propensity < 0.05) | (propensity > 0.95)).mean()),
        },
        "mediation": {
            "treatment": "face_count",
            "mediator": "face_area_mean",
            "population": "artworks with face_present == 1",
            "direct": float(face_count_effect),
            "indirect": float(indirect),
            "total": float(total),
            "a_path": float(count_on_size),
            "b_path": float(face_size_effect),
            "proportion_mediated": float(indirect / total) if total != 0 else None,
        },
    }


def _structural_model_text() -> str:
    return (
        "Titles: genre g and country c from fixed shares; popularity z ~ N(0,1); release year uniform 1990-2024 "
        "(r = (year-2007)/10); title shock u (normal, sd title_sd, truncated at 2.5 sd). "
        "Face presence D ~ Bernoulli(e), logit e = c0 + overlap * (gamma_g + 0.7 z + 0.3 r), c0 set so mean e = "
        "face_share. Potential face count N = 1 + Binomial(max_faces-1, q_g); potential mean face size "
        "A = v + count_on_size * (N-1), v = floor + 0.2 Beta(2,4) independent of N. Observed face_count = D N, "
        "face_area_mean = D A. Expected take rate p = 0.2 + b_g + b_c + popularity_effect tanh(z) - 0.005 r + u "
        "+ D tau + eps, tau = tau0 + genre_heterogeneity h_g + country_heterogeneity h_c + face_count_effect N "
        "+ face_size_effect A, eps normal(sd noise_sd) truncated at 2.5 sd; tau0 set so the population ATE = ate. "
        "plays ~ Binomial(impressions, p), take_rate = plays / impressions, so E[take_rate | p] = p. "
        "ATE = mean tau; CATE(level) = mean tau in the level; among artworks with a face, one more face changes "
        "take rate by face_count_effect directly and by count_on_size * face_size_effect through face size."
    )
