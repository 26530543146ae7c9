"""The safe row filter of config ``data.query``: parsed with :mod:`ast`, evaluated with pandas boolean operations.

The query never reaches ``DataFrame.query``/``eval``, whose ``@`` names and attribute calls run arbitrary code from
a config string; only a whitelisted grammar of column comparisons is evaluated (:func:`select_rows`).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from causal.tables import DataError

log = logging.getLogger(__name__)


def select_rows(frame: pd.DataFrame, query: str, *, source: str = "table") -> pd.DataFrame:
    """Rows matching config ``data.query`` (e.g. ``"face_present == 1 and genre in ['drama', 'comedy']"``).

    The query is parsed here with :mod:`ast` and evaluated with pandas boolean operations; it never reaches
    ``DataFrame.query``/``eval``, whose ``@`` names and attribute calls run arbitrary code from a config string.
    Allowed: comparisons (``==, !=, <, <=, >, >=, in, not in``, chained ``a < b < c``) between columns (bare names,
    or ```back ticked``` names with spaces) and constants (numbers, strings, booleans, ``-x``, lists or tuples of
    constants for ``in``), combined with ``and``/``or``/``not`` (or parenthesised ``&``/``|``/``~``); a boolean
    column alone is a condition. Missing values compare false, except ``!=`` (pandas' rule).

    Raises
    ------
    DataError
        Naming ``data.query`` and the offending piece, when the query is anything else (function calls, ``@``,
        attribute access, arithmetic, unknown columns), fails on the table, or selects no row.
    """
    tree, names = _parse_query(query)
    try:
        mask = _QueryEvaluator(frame, query, names, source).condition(tree.body)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"config `data.query` {query!r} fails on {source}: {exc.__class__.__name__}: {exc}") from exc
    kept = frame.loc[mask.fillna(False).astype(bool).to_numpy()]
    if len(kept) == 0:
        raise DataError(f"config `data.query` {query!r} selects no row of {source}")
    log.info("%s: data.query %r keeps %d of %d rows", source, query, len(kept), len(frame))
    return kept.reset_index(drop=True)


_COMPARE_OPS = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


def _parse_query(query: str) -> tuple[ast.Expression, dict[str, str]]:
    """The query's syntax tree, with ```quoted``` column names replaced by placeholders (returned as a map)."""
    names: dict[str, str] = {}

    def placeholder(match: re.Match) -> str:
        key = f"__column_{len(names)}__"
        names[key] = match.group(1)
        return key

    text = re.sub(r"`([^`]*)`", placeholder, query)
    if "`" in text:
        raise DataError(f"config `data.query` {query!r}: unbalanced back tick")
    try:
        return ast.parse(text.strip(), mode="eval"), names
    except SyntaxError as exc:
        hint = "; '@' (pandas' local variables) is not allowed" if "@" in text else ""
        raise DataError(f"config `data.query` {query!r} is not a valid condition ({exc.msg}){hint}") from exc


class _QueryEvaluator:
    """Evaluates the whitelisted query grammar of :func:`select_rows` on a frame; anything else is refused."""

    def __init__(self, frame: pd.DataFrame, query: str, names: Mapping[str, str], source: str):
        self.frame, self.query, self.names, self.source = frame, query, names, source

    def refuse(self, node: ast.AST, why: str) -> DataError:
        piece = ast.unparse(node)
        for key, name in self.names.items():
            piece = piece.replace(key, f"`{name}`")
        return DataError(f"config `data.query` {self.query!r} refused on {self.source}: {why}: {piece!r}")

    def condition(self, node: ast.AST) -> pd.Series:
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(v) for v in node.values]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if isinstance(node.op, ast.And) else (out | part)
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr):
            left, right = self.condition(node.left), self.condition(node.right)
            return (left & right) if isinstance(node.op, ast.BitAnd) else (left | right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.Invert):
            return ~self.condition(node.operand)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Name):
            column = self.column(node)
            if not pd.api.types.is_bool_dtype(column.dtype):
                raise self.refuse(node, "a column alone is a condition only when it is boolean; compare it")
            return column.fillna(False).astype(bool)
        raise self.refuse(node, "only comparisons joined by and/or/not are allowed")

    def compare(self, node: ast.Compare) -> pd.Series:
        out = None
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, ast.In | ast.NotIn):
                column = self.column(left) if isinstance(left, ast.Name) else None
                if column is None or not isinstance(right, ast.List | ast.Tuple | ast.Set):
                    raise self.refuse(node, "`in` needs a column on the left and a list of constants on the right")
                part = column.isin([self.constant(e) for e in right.elts])
                part = ~part if isinstance(op, ast.NotIn) else part
            elif type(op) in _COMPARE_OPS:
                part = _COMPARE_OPS[type(op)](self.operand(left), self.operand(right))
                if not isinstance(part, pd.Series):
                    raise self.refuse(node, "a comparison must involve a column")
            else:
                raise self.refuse(node, "unsupported comparison")
            out = part if out is None else (out & part)
            left = right
        return out

    def operand(self, node: ast.AST) -> Any:
        return self.column(node) if isinstance(node, ast.Name) else self.constant(node)

    def column(self, node: ast.Name) -> pd.Series:
        name = self.names.get(node.id, node.id)
        if name not in self.frame.columns:
            shown = list(self.frame.columns)[:20]
            raise DataError(f"config `data.query` {self.query!r} fails on {self.source}: no column {name!r} in {shown}")
        return self.frame[name]

    def constant(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
            return node.value
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
            and not isinstance(node.operand.value, bool)
        ):
            return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd | ast.BitOr):
            raise self.refuse(node, "& and | bind tighter than comparisons: write `and`/`or` or parenthesise")
        raise self.refuse(node, "only column names and constants (numbers, strings, booleans) are allowed")
