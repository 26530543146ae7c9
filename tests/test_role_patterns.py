"""Shell-style patterns in roles.confounders / modifiers / groups, matched against the table's columns."""

import numpy as np
import pandas as pd
import pytest

from causal.data import load_from_config
from causal.roles import Roles
from causal.tables import DataError
from causal.validate import ConfigError, check_columns


def _table(tmp_path, n=200):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "unit_id": np.arange(n),
            "x2": rng.normal(size=n),
            "treated": rng.integers(0, 2, n),
            "x1": rng.normal(size=n),
            "y_lagged": rng.normal(size=n),
            "segment": rng.choice(["a", "b"], n),
            "constant": 1.0,
            "outcome": rng.normal(size=n),
        }
    )
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def test_expand_keeps_table_order_and_never_matches_treatment_outcome_or_excluded():
    roles = Roles(treatment="treated", outcome="outcome", confounders=["segment", "*"], groups=["seg*"])
    out = roles.expand(["unit_id", "x2", "treated", "x1", "segment", "outcome"], exclude=["unit_id"])
    assert out.confounders == ["segment", "x2", "x1"]  # named first, then the pattern's matches in table order
    assert out.groups == ["segment"]
    assert not out.has_patterns()


def test_a_pattern_matching_nothing_names_the_key_and_the_pattern():
    roles = Roles(treatment="t", outcome="y", confounders=["z*"])
    with pytest.raises(DataError, match=r"roles.confounders.*'z\*' matches no column of my.csv"):
        roles.expand(["t", "y", "x1"], source="my.csv")


def test_star_adjusts_for_every_other_informative_column(tmp_path):
    roles = Roles.from_config({"treatment": "treated", "outcome": "outcome", "confounders": ["*"]})
    cfg = {"name": "table", "path": str(tmp_path / "table.csv"), "id_column": "unit_id"}
    _table(tmp_path)
    dataset, truth = load_from_config(cfg, roles)
    # The id column and the constant column are left out; nothing else is.
    assert dataset.roles.confounders == ["x2", "x1", "y_lagged", "segment"]
    assert truth is None


def test_outcome_derived_columns_are_never_matched(tmp_path):
    roles = Roles.from_config({"treatment": "treated", "outcome": "outcome", "confounders": ["x*", "y_*"]})
    cfg = {"name": "table", "path": str(_table(tmp_path)), "id_column": "unit_id", "outcome_derived": ["y_lagged"]}
    with pytest.raises(DataError, match=r"'y_\*' matches no column"):
        load_from_config(cfg, roles)


def test_column_check_accepts_a_matching_pattern_and_rejects_one_that_matches_nothing():
    base = {"roles": {"treatment": "t", "outcome": "y", "confounders": ["x*"]}, "steps": ["dml"]}
    check_columns(base, ["t", "y", "x1"])
    with pytest.raises(ConfigError, match=r"roles.confounders.*'x\*' matches no column"):
        check_columns(base, ["t", "y", "w1"])
