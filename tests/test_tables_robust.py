"""Issue 11, table side: real inputs never break a run late or leave wrong rows.

`NA` strings are data unless `data.na_values` says otherwise, non-finite covariates are refused before any model,
`data.query` is parsed (never evaluated as code), labels with `$` plot, high-cardinality modifiers pool rare levels,
and a treatment separated by a covariate stops the estimate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causal.data import DataError, Roles, prepare, select_rows


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "image_id": [f"img_{i:03d}.jpg" for i in range(n)],
            "t": rng.integers(0, 2, n),
            "y": rng.uniform(0.05, 0.3, n),
            "pop": rng.standard_normal(n),
            "genre": rng.choice(["drama", "comedy", "horror"], n, p=[0.5, 0.3, 0.2]),
            "country": rng.choice(["US", "NA", "GB"], n),
        }
    )


ROLES = Roles(treatment="t", outcome="y", confounders=["pop", "genre"], modifiers=["genre"], groups=["country"])


# ------------------------------------------------------------------------------------------------------- data.query
def test_query_comparisons_membership_and_boolean_logic_select_the_right_rows():
    frame = _frame()
    cases = {
        "t == 1": frame["t"] == 1,
        "t == 1 and genre in ['drama', 'comedy']": (frame["t"] == 1) & frame["genre"].isin(["drama", "comedy"]),
        "not pop > 0 or country == 'NA'": ~(frame["pop"] > 0) | (frame["country"] == "NA"),
        "(t == 0) & (genre != 'horror') | (pop < -1)": ((frame["t"] == 0) & (frame["genre"] != "horror"))
        | (frame["pop"] < -1),
        "-0.5 < pop <= 0.5": (frame["pop"] > -0.5) & (frame["pop"] <= 0.5),
        "genre not in ('drama',)": frame["genre"] != "drama",
    }
    for query, expected in cases.items():
        kept = select_rows(frame, query)
        assert kept["image_id"].tolist() == frame.loc[expected, "image_id"].tolist(), query
        assert list(kept.index) == list(range(len(kept)))


def test_query_back_ticked_column_names_and_boolean_columns():
    frame = _frame().assign(**{"has face": lambda f: f["t"] == 1})
    assert select_rows(frame, "`has face`").equals(select_rows(frame, "t == 1"))
    assert len(select_rows(frame, "`has face` == False")) == int((frame["t"] == 0).sum())


@pytest.mark.parametrize(
    ("query", "piece"),
    [
        ('@pd.io.common.os.system("touch owned")', "'@'"),
        ('__import__("os").system("touch owned")', "__import__"),
        ("pop.abs() > 1", "pop.abs()"),
        ("pop + 1 > 2", "pop + 1"),
        ("t == 1 & genre == 'drama'", "1 & genre"),
        ("genre", "'genre'"),
        ("1 < 2", "1 < 2"),
        ("genre in country", "genre in country"),
        ("[x for x in genre] == 1", "for x in genre"),
    ],
)
def test_query_refuses_anything_but_column_comparisons(query, piece, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"config `data\.query`") as info:
        select_rows(_frame(), query, source="eng.csv")
    assert piece in str(info.value)
    assert not (tmp_path / "owned").exists()


def test_query_unknown_column_and_type_mismatch_name_the_key():
    with pytest.raises(DataError, match=r"config `data\.query` 'budget > 0' fails on eng\.csv: no column 'budget'"):
        select_rows(_frame(), "budget > 0", source="eng.csv")
    with pytest.raises(DataError, match=r"config `data\.query` 'genre < 3' fails on eng\.csv: TypeError"):
        select_rows(_frame(), "genre < 3", source="eng.csv")


def test_non_binary_treatment_message_names_the_full_config_key():
    frame = _frame().assign(t=lambda f: f["t"] * 2)
    with pytest.raises(DataError, match=r"config `data\.prepare\.binary_treatment=false`"):
        prepare(frame, ROLES, source="eng.csv")
