"""The simulator's structural model in code: the per-genre and per-country constants and one function per stage
(titles, face propensity, potential face features, potential outcomes, exposure, the observed columns). Each stage
draws from its own random stream, so the stages can be read and changed one at a time without moving the others'
draws. The model is written out in the docstring of :mod:`causal.simulate`."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import optimize, special

from causal.simulate_visuals import _face_rows

# Per-genre constants: catalog share, baseline take-rate shift b_g, propensity shift gamma_g, face-effect pattern h_g
# (times genre_heterogeneity), face-count probability q_g. Chosen so that (a) genres with many faces also have higher
# baselines (confounding), (b) the effect is large where the propensity is extreme (documentary, romance,
# horror) and small where it is near 1/2, so the variance-weighted average that a partially linear model estimates
# falls below the ATE.
GENRES: dict[str, dict[str, float]] = {
    "drama": {"share": 0.22, "base": 0.000, "propensity": 0.1, "effect": -1.0, "count": 0.30},
    "comedy": {"share": 0.16, "base": 0.020, "propensity": 0.6, "effect": 0.5, "count": 0.35},
    "action": {"share": 0.14, "base": 0.030, "propensity": 0.0, "effect": -1.0, "count": 0.25},
    "thriller": {"share": 0.10, "base": 0.000, "propensity": -0.1, "effect": -1.0, "count": 0.20},
    "romance": {"share": 0.08, "base": 0.010, "propensity": 1.5, "effect": 2.0, "count": 0.15},
    "documentary": {"share": 0.10, "base": -0.030, "propensity": -1.5, "effect": 2.0, "count": 0.10},
    "horror": {"share": 0.08, "base": -0.020, "propensity": -0.8, "effect": 1.0, "count": 0.10},
    "animation": {"share": 0.12, "base": 0.020, "propensity": 0.4, "effect": 0.5, "count": 0.45},
}
# Per-country constants: share, baseline shift b_c, face-effect pattern h_c (times country_heterogeneity).
COUNTRIES: dict[str, dict[str, float]] = {
    "US": {"share": 0.30, "base": 0.010, "effect": 0.0},
    "IN": {"share": 0.12, "base": 0.015, "effect": 1.0},
    "GB": {"share": 0.10, "base": 0.000, "effect": -0.5},
    "KR": {"share": 0.08, "base": 0.005, "effect": 1.0},
    "JP": {"share": 0.08, "base": -0.010, "effect": -1.0},
    "FR": {"share": 0.10, "base": -0.010, "effect": -0.5},
    "ES": {"share": 0.10, "base": 0.000, "effect": 0.0},
    "BR": {"share": 0.12, "base": 0.005, "effect": 0.5},
}

INTERCEPT = 0.2
POPULARITY_PROPENSITY = 0.7
YEAR_PROPENSITY = 0.3
YEAR_EFFECT = -0.005
TRUNCATE = 2.5
SIZE_SCALE = 0.2  # v = floor + SIZE_SCALE * Beta(2, 4)
SIZE_BETA = (2.0, 4.0)
MIN_IMPRESSIONS = 1000
P_MARGIN = 1e-3


def _truncnorm(rng: np.random.Generator, size: int, sd: float) -> np.ndarray:
    """Normal(0, sd) truncated at +-TRUNCATE sd by resampling; symmetric, so the mean stays zero."""
    out = rng.standard_normal(size)
    bad = np.abs(out) > TRUNCATE
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > TRUNCATE
    return sd * out


def _count_probability(
    q_genre: np.ndarray, slope_genre: np.ndarray, g_idx: np.ndarray, pop: np.ndarray, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit face-count probability under popularity confounding, and its expectation per genre over z ~ N(0, 1)
    (Gauss-Hermite quadrature), which the population ATE's tau0 needs."""
    k = 1.0 + slope_genre
    q_unit = special.expit(special.logit(q_genre)[g_idx] + strength * k[g_idx] * np.tanh(2.0 * pop))
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    grid = special.expit(special.logit(q_genre)[:, None] + strength * k[:, None] * np.tanh(2.0 * nodes)[None, :])
    return q_unit, grid @ weights


def _genre_vec(key: str) -> np.ndarray:
    return np.array([GENRES[g][key] for g in GENRES])


def _country_vec(key: str) -> np.ndarray:
    return np.array([COUNTRIES[c][key] for c in COUNTRIES])


def _draw_titles(rng: np.random.Generator, n_titles: int, m: int, title_sd: float) -> SimpleNamespace:
    """Titles (genre, country, popularity, year, title shock) and their artworks' copies of them."""
    t = SimpleNamespace(genre_names=list(GENRES), country_names=list(COUNTRIES), n_titles=n_titles, m=m)
    genre_share = np.array([GENRES[g]["share"] for g in t.genre_names])
    country_share = np.array([COUNTRIES[c]["share"] for c in t.country_names])
    t.genre_share, t.country_share = genre_share / genre_share.sum(), country_share / country_share.sum()
    g_idx_t = rng.choice(len(t.genre_names), size=n_titles, p=t.genre_share)
    c_idx_t = rng.choice(len(t.country_names), size=n_titles, p=t.country_share)
    pop_t = rng.standard_normal(n_titles)
    year_t = rng.integers(1990, 2025, size=n_titles)
    t.title_shock_t = _truncnorm(rng, n_titles, title_sd)
    t.n = n_titles * m
    t.title_of = np.repeat(np.arange(n_titles), m)
    t.g_idx, t.c_idx = g_idx_t[t.title_of], c_idx_t[t.title_of]
    t.pop, t.year = pop_t[t.title_of], year_t[t.title_of]
    t.year_std = (t.year - 2007) / 10.0
    t.genre = np.array(t.genre_names, dtype=object)[t.g_idx]
    t.country = np.array(t.country_names, dtype=object)[t.c_idx]
    return t


def _propensity(
    t: SimpleNamespace, ss: np.random.SeedSequence, overlap: float, face_share: float, explore_share: float
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """P(face) per artwork, the logit intercept that makes its mean ``face_share``, and the explore flags."""
    score = _genre_vec("propensity")[t.g_idx] + POPULARITY_PROPENSITY * t.pop + YEAR_PROPENSITY * t.year_std
    spread = overlap * score
    if overlap == 0:
        intercept = float(special.logit(face_share))
    else:
        intercept = float(optimize.brentq(lambda c: special.expit(c + spread).mean() - face_share, -30, 30))
    propensity = special.expit(intercept + spread)
    explore = None
    if explore_share > 0:  # its own stream (the 7th child seed): the other draws stay as without explore rows
        explore = np.random.default_rng(ss.spawn(1)[0]).random(t.n) < explore_share
        propensity = np.where(explore, face_share, propensity)
    return propensity, intercept, explore


def _potential_faces(
    t: SimpleNamespace,
    rng: np.random.Generator,
    features: pd.DataFrame | None,
    max_faces: int,
    count_popularity: float,
    size_floor: float,
    count_on_size: float,
) -> SimpleNamespace:
    """Face count and mean face size each artwork would have with a face, and their genre means."""
    f = SimpleNamespace(all_rows=None, face_rows=None, face_pick=None)
    if features is not None:
        f.all_rows, f.face_rows = _face_rows(features, max_faces)
        f.face_pick = rng.integers(0, len(f.face_rows), size=t.n)
        f.n_faces = f.face_rows["face_count"].to_numpy()[f.face_pick].astype(int)
        f.mean_count_by_genre = np.full(len(t.genre_names), float(f.face_rows["face_count"].mean()))
    elif count_popularity:
        q_unit, mean_q = _count_probability(
            _genre_vec("count"), _genre_vec("propensity"), t.g_idx, t.pop, count_popularity
        )
        f.n_faces = 1 + rng.binomial(max_faces - 1, q_unit)
        f.mean_count_by_genre = 1 + (max_faces - 1) * mean_q
    else:
        q = _genre_vec("count")
        f.n_faces = 1 + rng.binomial(max_faces - 1, q[t.g_idx])
        f.mean_count_by_genre = 1 + (max_faces - 1) * q
    size_exog = size_floor + SIZE_SCALE * rng.beta(*SIZE_BETA, size=t.n)
    f.face_size = size_exog + count_on_size * (f.n_faces - 1)
    mean_v = size_floor + SIZE_SCALE * SIZE_BETA[0] / sum(SIZE_BETA)
    f.mean_size_by_genre = mean_v + count_on_size * (f.mean_count_by_genre - 1)
    return f


def _potential_outcomes(
    t: SimpleNamespace, f: SimpleNamespace, rng: np.random.Generator, effects: dict[str, float], noise_sd: float
) -> SimpleNamespace:
    """Take rates without and with a face (p0, p1) and the unit effect tau; ``tau0`` makes the ATE ``ate``."""
    o = SimpleNamespace()
    o.het_g = effects["genre"] * _genre_vec("effect")
    o.het_c = effects["country"] * _country_vec("effect")
    o.path_g = effects["count"] * f.mean_count_by_genre + effects["size"] * f.mean_size_by_genre
    o.tau0 = effects["ate"] - float(t.genre_share @ (o.het_g + o.path_g)) - float(t.country_share @ o.het_c)
    o.tau = o.tau0 + o.het_g[t.g_idx] + o.het_c[t.c_idx] + effects["count"] * f.n_faces + effects["size"] * f.face_size
    mu = (
        INTERCEPT
        + _genre_vec("base")[t.g_idx]
        + _country_vec("base")[t.c_idx]
        + effects["popularity"] * np.tanh(t.pop)
        + YEAR_EFFECT * t.year_std
        + t.title_shock_t[t.title_of]
    )
    o.p0 = mu + _truncnorm(rng, t.n, noise_sd)
    o.p1 = o.p0 + o.tau
    lowest, highest = float(min(o.p0.min(), o.p1.min())), float(max(o.p0.max(), o.p1.max()))
    if lowest <= P_MARGIN or highest >= 1 - P_MARGIN:
        raise ValueError(
            f"simulate_catalog: expected take rates reach [{lowest:.4f}, {highest:.4f}], outside (0, 1); "
            "lower noise_sd, title_sd, popularity_effect or the effect sizes"
        )
    return o


def _exposure(
    t: SimpleNamespace, rng: np.random.Generator, impressions_median: float, p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Impressions (log-normal, more for popular titles) and plays drawn from them at each artwork's take rate."""
    log_imp = np.log(impressions_median) + 0.5 * t.pop + 0.5 * rng.standard_normal(t.n)
    impressions = np.maximum(MIN_IMPRESSIONS, np.round(np.exp(log_imp))).astype(np.int64)
    return impressions, rng.binomial(impressions, p)


def _observed_table(
    t: SimpleNamespace, treated: np.ndarray, f: SimpleNamespace, rng: np.random.Generator
) -> pd.DataFrame:
    """The observed columns up to the visual features: ids, title covariates, the face columns."""
    # Build the id strings per title and per slot, then combine (a million f-strings take seconds).
    title_names = np.array([f"title_{j:05d}" for j in range(t.n_titles)], dtype=object)
    slot_names = np.array([f"/artwork_{k:02d}.jpg" for k in range(t.m)], dtype=object)
    title_id = title_names[t.title_of]
    image_id = title_id + slot_names[np.tile(np.arange(t.m), t.n_titles)]
    data = pd.DataFrame(
        {
            "image_id": image_id,
            "title_id": title_id,
            "genre": t.genre,
            "country": t.country,
            "title_popularity": t.pop,
            "release_year": t.year.astype(np.int64),
        }
    )
    spread_max = rng.random(t.n)
    data["face_present"] = treated
    data["face_count"] = np.where(treated, f.n_faces, 0).astype(np.int64)
    data["face_area_mean"] = np.where(treated, f.face_size, 0.0)
    data["face_area_max"] = np.where(treated, f.face_size * (1 + (f.n_faces - 1) * spread_max), 0.0)
    data["face_area_total"] = np.where(treated, f.face_size * f.n_faces, 0.0)
    return data


def _derived(tau0: float, intercept: float, size_floor: float) -> dict[str, float]:
    return {
        "tau0": tau0,
        "propensity_intercept": intercept,
        "size_floor": size_floor,
        "intercept": INTERCEPT,
        "popularity_propensity": POPULARITY_PROPENSITY,
        "year_propensity": YEAR_PROPENSITY,
        "year_effect": YEAR_EFFECT,
        "truncation_sd": TRUNCATE,
    }
