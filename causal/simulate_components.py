"""Visual components added to a simulated catalog, with planted effects on take rate: a known truth for the funnel.

:func:`add_components` takes a :class:`causal.simulate.SimulatedCatalog` and adds one column per component below,
each drawn for every artwork from the title's genre and popularity (so a marginal association with take rate
appears through those confounders even where the component has no effect) plus noise, independently of every other
component and of the face columns given the confounders. The outcome then gains an additive planted effect:

``take_rate_i += sum_k effect_k * c_ik``  (continuous and binary components: a slope / a shift of the 1 level)

``take_rate_i += effect_k[level_ik]``  (categorical components: one shift per level, the first level 0)

Because each component is independent of the others and of the face columns given the confounders (genre,
country, popularity, year), the effect of a component adjusted for the confounders is exactly its planted effect:
``truth["components"][name]`` (0 for a null component). A categorical component's hypotheses compare one level
with the reference level (the first listed), whose true effect is the difference of the two planted shifts.
``plays`` is recomputed as ``round(take_rate * impressions)`` (it is an outcome-derived column, never a covariate).

The components mirror annotation columns (text area fraction, number of text blocks, the largest text block's
position band and relative height, people-count band, frontal figure, background warmth and saturation); in the
simulator they are synthetic and deliberately independent of ``face_present`` (a people band of ``"0"`` can sit on
an artwork with a face), so that each component's truth is its planted effect alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from causal.simulate import SimulatedCatalog
from causal.tables import DataError

# name -> (kind, levels). Levels of categorical components in reference-first order.
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "text_area_fraction": ("continuous", ()),
    "text_blocks": ("continuous", ()),
    "text_position": ("categorical", ("none", "top", "middle", "bottom")),
    "text_height": ("continuous", ()),
    "people_band": ("categorical", ("0", "1", "2-3", "4+")),
    "figure_frontal": ("binary", ()),
    "bg_warm": ("binary", ()),
    "bg_saturation": ("continuous", ()),
}
# Two planted effects (the rest 0): a larger title area lowers take rate; a frontal figure raises it.
DEFAULT_EFFECTS: dict[str, Any] = {"text_area_fraction": -0.05, "figure_frontal": 0.006}
# Per-genre shift of the components' latent scores: genres with higher baselines get more text / warm backgrounds.
_GENRE_SHIFT = {
    "drama": -0.3,
    "comedy": 0.4,
    "action": 0.6,
    "thriller": 0.0,
    "romance": 0.2,
    "documentary": -0.8,
    "horror": -0.5,
    "animation": 0.7,
}


def _latent(frame: pd.DataFrame, rng: np.random.Generator, weight: float) -> np.ndarray:
    """A confounded score: genre shift + weight * popularity + standard normal noise."""
    genre = frame["genre"].map(_GENRE_SHIFT).fillna(0.0).to_numpy(dtype=float)
    popularity = frame["title_popularity"].to_numpy(dtype=float)
    return genre + weight * np.tanh(popularity) + rng.standard_normal(len(frame))


def _draw(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Every component, in :data:`COMPONENTS` order (one latent score each, so they are conditionally independent)."""
    z = {
        name: _latent(frame, rng, weight)
        for name, weight in zip(COMPONENTS, (0.8, 0.5, 0.3, -0.4, 0.6, 0.7, 0.5, -0.6))
    }
    text = 1.0 / (1.0 + np.exp(-(z["text_area_fraction"] - 1.5)))  # mostly 0.05..0.4
    position = np.digitize(z["text_position"], [-1.0, 0.0, 1.0])
    people = np.digitize(z["people_band"], [-0.8, 0.4, 1.6])
    return pd.DataFrame(
        {
            "text_area_fraction": 0.5 * text,
            "text_blocks": np.clip(np.round(1.5 + z["text_blocks"]), 0, 6),
            "text_position": np.array(COMPONENTS["text_position"][1])[position],
            "text_height": np.clip(0.08 + 0.03 * z["text_height"], 0.01, None),
            "people_band": np.array(COMPONENTS["people_band"][1])[people],
            "figure_frontal": (z["figure_frontal"] > 0.2).astype(int),
            "bg_warm": (z["bg_warm"] > 0.0).astype(int),
            "bg_saturation": 1.0 / (1.0 + np.exp(-0.8 * z["bg_saturation"])),
        },
        index=frame.index,
    )


def _check_effects(effects: Mapping[str, Any]) -> dict[str, Any]:
    """Planted effects by component: numbers, or a level -> shift mapping for categorical components."""
    out: dict[str, Any] = {}
    for name, value in effects.items():
        if name not in COMPONENTS:
            raise DataError(f"config `data.components.{name}`: not a simulated component; known: {list(COMPONENTS)}")
        kind, levels = COMPONENTS[name]
        if kind == "categorical":
            if not isinstance(value, Mapping) or set(value) - set(levels[1:]):
                raise DataError(f"config `data.components.{name}`: a mapping of levels {list(levels[1:])} to shifts")
            out[name] = {str(k): float(v) for k, v in value.items()}
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"config `data.components.{name}`: a number (the planted effect), got {value!r}")
        else:
            out[name] = float(value)
    return out


def component_truth(effects: Mapping[str, Any]) -> dict[str, Any]:
    """``{component: effect}`` for every component: 0 for the unplanted ones, level shifts (reference 0) for the
    categorical ones."""
    truth: dict[str, Any] = {}
    for name, (kind, levels) in COMPONENTS.items():
        value = effects.get(name)
        if kind == "categorical":
            shifts = dict(value or {})
            truth[name] = {level: float(shifts.get(level, 0.0)) for level in levels}
        else:
            truth[name] = float(value or 0.0)
    return truth


def add_components(
    catalog: SimulatedCatalog, effects: Mapping[str, Any] | None = None, *, seed: int = 0
) -> SimulatedCatalog:
    """The catalog with the component columns and their planted effects added to ``take_rate``.

    Parameters
    ----------
    catalog : SimulatedCatalog
        Output of :func:`causal.simulate.simulate_catalog`.
    effects : mapping, optional
        Planted effect per component (continuous: per unit of the column; binary: of the 1 level; categorical: a
        mapping level -> shift against the reference level). Default :data:`DEFAULT_EFFECTS`; ``{}`` plants none.
    seed : int
        Seed of the components' noise.

    Returns
    -------
    SimulatedCatalog
        A new catalog; ``truth["components"]`` holds every component's true effect.
    """
    effects = _check_effects(DEFAULT_EFFECTS if effects is None else effects)
    rng = np.random.default_rng([int(seed), 16])
    data = catalog.data.copy()
    drawn = _draw(data, rng)
    shift = np.zeros(len(data))
    truth = component_truth(effects)
    for name, value in truth.items():
        if isinstance(value, dict):
            shift += drawn[name].map(value).to_numpy(dtype=float)
        else:
            shift += value * drawn[name].to_numpy(dtype=float)
    take = data["take_rate"].to_numpy(dtype=float) + shift
    if take.min() < 0 or take.max() > 1:
        raise DataError("config `data.components`: planted effects push take_rate outside [0, 1]; use smaller ones")
    data = pd.concat([data, drawn], axis=1)
    data["take_rate"] = take
    if "plays" in data and "impressions" in data:
        data["plays"] = np.round(take * data["impressions"].to_numpy()).astype("int64")
    new_truth = {**catalog.truth, "components": truth, "component_kinds": {k: v[0] for k, v in COMPONENTS.items()}}
    return replace(catalog, data=data, truth=new_truth)
