"""Column names -> the words a reader sees: ``display_names`` in the config (column -> words) over the defaults here.

The defaults cover every column of the annotation images table (docs/ARCHITECTURE.md, data contracts), the
simulator's catalog columns and the generic table's example columns; any other column is shown with underscores as
spaces. Every table, plot and sentence of the report goes through :class:`DisplayNames`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_HUE_WORDS = {0: "red", 60: "yellow", 120: "green", 180: "cyan", 240: "blue", 300: "magenta"}


def _hue_name(degrees: int) -> str:
    word = _HUE_WORDS.get(degrees)
    return f"share of {word} pixels" if word else f"share of pixels with hue near {degrees}°"


DEFAULT_NAMES: dict[str, str] = {
    # annotation images table (vision stage)
    "image_id": "image",
    "width": "image width",
    "height": "image height",
    "status": "decoding status",
    "error": "decoding error",
    "face_present": "a face in the artwork",
    "face_count": "number of faces",
    "face_area_mean": "mean face size",
    "face_area_max": "largest face size",
    "face_area_total": "total face area",
    "face_prob_max": "detector confidence",
    "largest_face_cx": "horizontal position of the largest face",
    "largest_face_cy": "vertical position of the largest face",
    "img_brightness": "brightness",
    "img_contrast": "contrast",
    "img_saturation": "colour saturation",
    "img_colorfulness": "colourfulness",
    "img_colourfulness": "colourfulness",
    "img_chromatic_frac": "share of coloured pixels",
    **{f"img_hue_{d:03d}": _hue_name(d) for d in range(0, 360, 30)},
    "img_hue_dominant_deg": "dominant hue",
    "img_hue_dominant_share": "share of the dominant hue",
    "img_edge_density": "edge density (visual detail)",
    "img_border_r": "border redness",
    "img_border_g": "border greenness",
    "img_border_b": "border blueness",
    "img_border_brightness": "border brightness",
    "img_border_std": "border colour variation",
    "face_embedding_mean": "face appearance (embedding)",
    "image_embedding": "image appearance (embedding)",
    # the simulator's catalog
    "take_rate": "take rate",
    "title_id": "title",
    "genre": "genre",
    "country": "country",
    "title_popularity": "title popularity",
    "release_year": "release year",
    "impressions": "impressions",
    "plays": "plays",
    # the generic table example
    "treated": "the treatment",
    "outcome": "the outcome",
    "segment": "segment",
    "region": "region",
}


class DisplayNames:
    """``names(column)`` -> words; ``names.raw_names()`` -> the column names that have words of their own.

    Parameters
    ----------
    overrides : mapping of str to str, optional
        The config's ``display_names`` (column -> words); wins over :data:`DEFAULT_NAMES`.
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self.overrides = {str(k): str(v) for k, v in (overrides or {}).items()}
        self.names_ = {**DEFAULT_NAMES, **self.overrides}

    def __call__(self, column: Any) -> str:
        text = str(column)
        if text in self.names_:
            return self.names_[text]
        # encoded columns ("genre=drama", "face_embedding_mean_pc3") keep their suffix readable
        for sep in ("=", "[", "_pc"):
            head, found, tail = text.partition(sep)
            if found and head in self.names_:
                if found == "=":
                    return f"{self.names_[head]}: {tail}"
                return f"{self.names_[head]} {found.strip('_')}{tail}"
        return text.replace("_", " ")

    def raw_names(self) -> list[str]:
        """Column names that differ from their words (what prose must never show)."""
        return sorted(k for k, v in self.names_.items() if k != v and "_" in k)


def question(roles: Mapping[str, Any], names: DisplayNames) -> str:
    """The run's question from its roles: 'Does a face in the artwork change take rate?'."""
    t, y = names(roles.get("treatment", "the treatment")), names(roles.get("outcome", "the outcome"))
    return f"Does {t} change {y}?"
