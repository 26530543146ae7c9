"""Config problems: :class:`ConfigError` (raised before any model is fitted, naming the full dotted key) and the
collector the checks of :mod:`causal.validate` add to."""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot work, found before any model is fitted.

    Attributes
    ----------
    key : str
        Full dotted key of the first problem (e.g. ``sensitivity.ovb.benchmark_covariates``).
    problems : list of (str, str)
        Every (key, message) found, in config order.
    """

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = list(problems)
        self.key = self.problems[0][0]
        super().__init__("; ".join(f"config key {key}: {message}" for key, message in self.problems))


class _Problems(list):
    """Collects (key, message) pairs; one ConfigError at the end lists them all."""

    def add(self, key: str, message: str) -> None:
        self.append((key, message))

    def unknown_keys(self, node: Any, allowed: Collection[str], where: str) -> None:
        if not isinstance(node, Mapping):
            if node is not None:
                self.add(where, f"must be a mapping, got {node!r}")
            return
        for key in node:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
                hint = f"did you mean {_join(where, near[0])}? " if near else ""
                self.add(_join(where, key), f"unknown key; {hint}known: {', '.join(sorted(allowed))}")

    def number(
        self,
        node: Mapping | None,
        name: str,
        where: str,
        *,
        low: float | None = None,
        high: float | None = None,
        open_low: bool = False,
        open_high: bool = False,
        integer: bool = False,
    ) -> None:
        """``node[name]``, when set (not null), is a number in the given interval (an integer if ``integer``)."""
        value = (node or {}).get(name) if isinstance(node, Mapping) else None
        if value is None:
            return
        key = _join(where, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (integer and not float(value).is_integer())
        ):
            self.add(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
            return
        bad_low = low is not None and (value <= low if open_low else value < low)
        bad_high = high is not None and (value >= high if open_high else value > high)
        if bad_low or bad_high or (isinstance(value, float) and math.isnan(value)):
            self.add(key, f"{value!r} is not in {_interval(low, high, open_low, open_high)}")

    def choices(self, values: Any, allowed: Iterable[str], key: str, what: str) -> list[str]:
        """``values`` (one name or a list) are all in ``allowed``; returns the list."""
        values = [values] if isinstance(values, str) else list(values or [])
        allowed = list(allowed)
        bad = [v for v in values if v not in allowed]
        if bad:
            near = [m for v in bad for m in difflib.get_close_matches(str(v), allowed, n=1, cutoff=0.6)]
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            self.add(key, f"unknown {what} {bad}{hint}; choose from {allowed}")
        return values


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _interval(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    left = "(" if open_low or low is None else "["
    right = ")" if open_high or high is None else "]"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
