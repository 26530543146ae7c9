"""Which columns play which part in the analysis (treatment, outcome, confounders, ...): always configuration."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from causal.tables import DataError

_ROLE_KEYS = frozenset({"treatment", "outcome", "confounders", "modifiers", "mediator", "groups"})
#: Characters that make a list entry a shell-style pattern (``fnmatch``): ``x*``, ``emb_??``, ``[ab]_score``, ``*``.
PATTERN_CHARS = frozenset("*?[")


def is_pattern(name: str) -> bool:
    """Whether a ``roles.confounders`` / ``modifiers`` / ``groups`` entry is a pattern rather than a column name."""
    return any(ch in PATTERN_CHARS for ch in name)


def _role_values(cfg: Mapping) -> dict[str, Any]:
    """The role keys of a config node (None when absent); raise on an unknown or unset (``???``) key."""
    for key in cfg:
        if key not in _ROLE_KEYS:
            raise DataError(f"config `roles.{key}`: unknown key; known keys are {', '.join(sorted(_ROLE_KEYS))}")
    values: dict[str, Any] = {}
    for key in _ROLE_KEYS:
        try:
            values[key] = cfg.get(key, None)
        except Exception as exc:  # OmegaConf raises on `???` (mandatory value not set)
            raise DataError(f"config `roles.{key}` is not set ({exc.__class__.__name__})") from exc
    return values


def _column_list(key: str, raw: Any) -> list[str]:
    """A list-valued role (None -> [], one name -> [name]); raise on a non-string item or a repeated name."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    try:
        items = list(raw)
    except TypeError as exc:
        raise DataError(f"config `roles.{key}` must be a list of column names, got {raw!r}") from exc
    if not all(isinstance(item, str) for item in items):
        raise DataError(f"config `roles.{key}` must be a list of column names, got {items!r}")
    if len(set(items)) != len(items):
        raise DataError(f"config `roles.{key}` lists a column twice: {items!r}")
    return items


@dataclass
class Roles:
    """Which columns play which part in the analysis; always from configuration, never from code.

    Parameters
    ----------
    treatment, outcome : str
        Column names of the treatment ``T`` and the outcome ``Y``.
    confounders : list of str
        Columns ``W`` to adjust for.
    modifiers : list of str
        Effect modifiers ``X`` (the CATE is a function of these); may be empty.
    mediator : str or None
        Column on the path treatment -> mediator -> outcome, for the mediation step.
    groups : list of str
        Columns whose levels the CATE is reported by.
    """

    treatment: str
    outcome: str
    confounders: list[str] = field(default_factory=list)
    modifiers: list[str] = field(default_factory=list)
    mediator: str | None = None
    groups: list[str] = field(default_factory=list)

    _LIST_KEYS = ("confounders", "modifiers", "groups")

    @classmethod
    def from_config(cls, cfg: Mapping) -> Roles:
        """Build roles from the ``roles`` config node (a dict or an OmegaConf ``DictConfig``).

        Raises
        ------
        DataError
            On an unknown key, a missing ``treatment``/``outcome``, a wrong type, or a column playing two roles
            that exclude each other (e.g. the outcome listed as a confounder, the mediator as a confounder).
        """
        if cfg is None or not isinstance(cfg, Mapping):
            raise DataError(f"config `roles` must be a mapping, got {type(cfg).__name__}")
        values = _role_values(cfg)
        for key in ("treatment", "outcome"):
            if values[key] is None or values[key] == "???" or values[key] == "":
                raise DataError(f"config `roles.{key}` is required (a column name)")
            if not isinstance(values[key], str):
                raise DataError(f"config `roles.{key}` must be one column name, got {values[key]!r}")
        if values["mediator"] is not None and not isinstance(values["mediator"], str):
            raise DataError(f"config `roles.mediator` must be one column name or null, got {values['mediator']!r}")
        for key in cls._LIST_KEYS:
            values[key] = _column_list(key, values[key])
        roles = cls(**values)
        roles.check()
        return roles

    def check(self) -> None:
        """Raise :class:`DataError` when a column plays roles that exclude each other."""
        if self.treatment == self.outcome:
            raise DataError(f"config `roles.treatment` and `roles.outcome` are the same column {self.treatment!r}")
        covariates = {"confounders": self.confounders, "modifiers": self.modifiers}
        for key, columns in covariates.items():
            for name, col in (("treatment", self.treatment), ("outcome", self.outcome), ("mediator", self.mediator)):
                if col is not None and col in columns:
                    raise DataError(
                        f"config `roles.{key}` contains {col!r}, which is `roles.{name}`; "
                        f"a {name} cannot be adjusted for"
                    )
        if self.mediator is not None and self.mediator in (self.treatment, self.outcome):
            raise DataError(f"config `roles.mediator` {self.mediator!r} is also the treatment or the outcome")

    def has_patterns(self) -> bool:
        """Whether a list role holds a shell-style pattern still to match against a table's columns."""
        return any(is_pattern(col) for key in self._LIST_KEYS for col in getattr(self, key))

    def expand(self, columns: Iterable[str], exclude: Iterable[str] = (), source: str = "the table") -> Roles:
        """These roles with every pattern replaced by the matching columns, in the table's order.

        A pattern never matches the treatment, the outcome, the mediator, a column named elsewhere in the same
        role, or ``exclude`` (the id column, ``data.outcome_derived``, the randomised flag): ``confounders: ['*']``
        adjusts for every other column of the table.

        Raises
        ------
        DataError
            When a pattern matches no column (naming the key, the pattern and ``source``).
        """
        columns = [str(c) for c in columns]
        banned = {self.treatment, self.outcome, self.mediator, *exclude}
        values: dict[str, list[str]] = {}
        for key in self._LIST_KEYS:
            named = [c for c in getattr(self, key) if not is_pattern(c)]
            out: list[str] = []
            for entry in getattr(self, key):
                if not is_pattern(entry):
                    out.append(entry)
                    continue
                hits = [c for c in columns if fnmatch.fnmatchcase(c, entry) and c not in banned and c not in named]
                if not hits:
                    raise DataError(
                        f"config `roles.{key}`: the pattern {entry!r} matches no column of {source} other than the "
                        f"treatment, outcome, mediator and id columns; columns: {', '.join(columns[:30])}"
                        + (" ..." if len(columns) > 30 else "")
                    )
                out.extend(hits)
            values[key] = list(dict.fromkeys(out))
        expanded = replace(self, **values)
        expanded.check()
        return expanded

    def columns(self) -> list[str]:
        """Every column named by a role, each once, in role order."""
        cols = [self.treatment, self.outcome, *self.confounders, *self.modifiers]
        if self.mediator is not None:
            cols.append(self.mediator)
        cols.extend(self.groups)
        return list(dict.fromkeys(cols))

    def key_of(self, column: str) -> str:
        """The config key (``roles.<key>``) through which ``column`` entered, for messages."""
        for key in ("treatment", "outcome", "mediator"):
            if getattr(self, key) == column:
                return f"roles.{key}"
        for key in self._LIST_KEYS:
            if column in getattr(self, key):
                return f"roles.{key}"
        return "roles"

    def to_dict(self) -> dict[str, Any]:
        return {
            "treatment": self.treatment,
            "outcome": self.outcome,
            "confounders": list(self.confounders),
            "modifiers": list(self.modifiers),
            "mediator": self.mediator,
            "groups": list(self.groups),
        }
