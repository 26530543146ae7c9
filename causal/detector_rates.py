"""A face detector's image-level error rates (sensitivity, specificity and the counts behind them), as the
misclassification correction uses them: read from a detector evaluation's ``metrics.json`` or given in config, with
Beta posterior draws for their uncertainty."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DetectorRates:
    """Image-level sensitivity and specificity of the treatment detector, with the counts they come from.

    Parameters
    ----------
    sensitivity : float
        P(detector says treated | truly treated), in (0, 1].
    specificity : float
        P(detector says untreated | truly untreated), in (0, 1].
    n_positive, n_negative : int, optional
        Number of truly treated / untreated labelled images the rates were measured on. Without them the rates are
        treated as known exactly.
    source : str
        Where the rates came from (a file path or ``"config"``), for the report.
    """

    sensitivity: float
    specificity: float
    n_positive: int | None = None
    n_negative: int | None = None
    source: str = "config"

    def __post_init__(self) -> None:
        for name in ("sensitivity", "specificity"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 1):
                raise ValueError(f"{self.source}: {name} must be in (0, 1], got {value!r}")
        if self.sensitivity + self.specificity <= 1:
            raise ValueError(
                f"{self.source}: sensitivity + specificity = {self.sensitivity + self.specificity:.3f} <= 1: the "
                "detector is no better than chance and the treatment cannot be corrected"
            )
        for name in ("n_positive", "n_negative"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 1):
                raise ValueError(f"{self.source}: {name} must be a positive integer, got {value!r}")
        if (self.n_positive is None) != (self.n_negative is None):
            raise ValueError(f"{self.source}: give both n_positive and n_negative, or neither")

    @property
    def has_counts(self) -> bool:
        return self.n_positive is not None

    @classmethod
    def from_metrics(
        cls, metrics: Mapping[str, Any] | str | os.PathLike, *, level: str = "image_level"
    ) -> DetectorRates:
        """Read the rates from a detector evaluation (``metrics.json`` or its parsed content).

        Accepted layouts: ``{level: {"sensitivity", "specificity"}, "n_positive", "n_negative"}``, the same keys
        at the top level, counts inside ``level``, or confusion counts ``tp``, ``fn``, ``tn``, ``fp`` (inside
        ``level`` or at the top level), from which the rates and counts are derived.

        Parameters
        ----------
        metrics : mapping or path
            The parsed metrics or the path of the JSON file.
        level : str
            Key of the image-level block.
        """
        metrics, source = _read_metrics(metrics)
        block = metrics.get(level, {})
        if not isinstance(block, Mapping):
            raise ValueError(f"{source}: key {level!r} must be an object")

        se, n_pos = _rate(block, metrics, "sensitivity", "n_positive", hits="tp", misses="fn")
        sp, n_neg = _rate(block, metrics, "specificity", "n_negative", hits="tn", misses="fp")
        if se is None or sp is None:
            missing = [k for k, v in (("sensitivity", se), ("specificity", sp)) if v is None]
            raise ValueError(
                f"{source}: no {' / '.join(missing)} under {level!r} or at the top level (keys: {sorted(metrics)})"
            )
        return cls(
            float(se), float(sp), None if n_pos is None else int(n_pos), None if n_neg is None else int(n_neg), source
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> DetectorRates:
        """From the ``sensitivity.misclassification`` config block.

        ``metrics_file`` (a ``metrics.json`` path) wins when set; otherwise ``sensitivity`` and ``specificity``
        (and optionally ``n_positive``, ``n_negative``) are plain values.
        """
        if cfg.get("metrics_file"):
            return cls.from_metrics(cfg["metrics_file"], level=cfg.get("level", "image_level"))
        if cfg.get("sensitivity") is None or cfg.get("specificity") is None:
            raise ValueError("config misclassification: set metrics_file, or both sensitivity and specificity")
        return cls(
            float(cfg["sensitivity"]), float(cfg["specificity"]), cfg.get("n_positive"), cfg.get("n_negative"), "config"
        )

    def draw(self, n_draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Posterior draws of (Se, Sp), each of shape (n_draws,): Beta with Jeffreys prior, or constants."""
        if not self.has_counts:
            return np.full(n_draws, self.sensitivity), np.full(n_draws, self.specificity)
        x_se, x_sp = self.sensitivity * self.n_positive, self.specificity * self.n_negative
        se = rng.beta(x_se + 0.5, self.n_positive - x_se + 0.5, size=n_draws)
        sp = rng.beta(x_sp + 0.5, self.n_negative - x_sp + 0.5, size=n_draws)
        return se, sp


def _read_metrics(metrics: Mapping[str, Any] | str | os.PathLike) -> tuple[Mapping[str, Any], str]:
    """The parsed metrics and a name for error messages (the file's path, or "metrics")."""
    if isinstance(metrics, Mapping):
        return metrics, "metrics"
    path = Path(metrics)
    try:
        parsed = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"detector metrics file {path} not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(parsed, Mapping):
        raise ValueError(f"{path}: expected a JSON object, got {type(parsed).__name__}")
    return parsed, str(path)


def _rate(block: Mapping, metrics: Mapping, rate: str, count: str, *, hits: str, misses: str) -> tuple[Any, Any]:
    """A rate and its count from ``block`` or the top level, else derived from the confusion counts."""

    def find(key: str) -> Any:
        for scope in (block, metrics):
            if scope.get(key) is not None:
                return scope[key]
        return None

    value, n = find(rate), find(count)
    k, miss = find(hits), find(misses)
    if value is None and k is not None and miss is not None:
        value, n = k / (k + miss), k + miss
    return value, n
