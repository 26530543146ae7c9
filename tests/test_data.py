"""causal.data: reading, joining, validation (every error names the file and the column or key), encoding."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from causal.data import (
    CausalDataset,
    DataError,
    Roles,
    join_annotations,
    load_from_config,
    prepare,
    read_table,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "image_id": [f"img_{i:03d}.jpg" for i in range(n)],
            "t": rng.integers(0, 2, n),
            "y": rng.uniform(0.05, 0.3, n),
            "pop": rng.standard_normal(n),
            "genre": rng.choice(["drama", "comedy", "horror"], n, p=[0.5, 0.3, 0.2]),
            "country": rng.choice(["US", "GB"], n),
        }
    )


ROLES = Roles(treatment="t", outcome="y", confounders=["pop", "genre"], modifiers=["genre"], groups=["country"])


# ------------------------------------------------------------------------------------------------------------ roles
def test_roles_from_config_accepts_omegaconf_and_rejects_unknown_key():
    cfg = OmegaConf.create({"treatment": "t", "outcome": "y", "confounders": ["a", "b"], "groups": "g"})
    roles = Roles.from_config(cfg)
    assert roles == Roles(treatment="t", outcome="y", confounders=["a", "b"], groups=["g"])
    with pytest.raises(DataError, match=r"roles\.confounder`"):
        Roles.from_config({"treatment": "t", "outcome": "y", "confounder": ["a"]})


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"outcome": "y"}, "roles.treatment"),
        (OmegaConf.create({"treatment": "???", "outcome": "y"}), "roles.treatment"),
        ({"treatment": "t", "outcome": "t"}, "roles.treatment"),
        ({"treatment": "t", "outcome": "y", "confounders": ["y"]}, "roles.confounders"),
        ({"treatment": "t", "outcome": "y", "mediator": "m", "confounders": ["m"]}, "roles.confounders"),
        ({"treatment": "t", "outcome": "y", "modifiers": ["t"]}, "roles.modifiers"),
        ({"treatment": "t", "outcome": "y", "groups": ["a", "a"]}, "roles.groups"),
    ],
)
def test_roles_errors_name_the_key(cfg, key):
    with pytest.raises(DataError, match=key.replace(".", r"\.")):
        Roles.from_config(cfg)


# ---------------------------------------------------------------------------------------------------------- reading
def test_read_table_csv_parquet_and_folder_of_parts(tmp_path):
    frame = _frame(10)
    frame.to_csv(tmp_path / "e.csv", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "e.csv"), frame, check_dtype=False)
    frame.to_parquet(tmp_path / "e.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "e.parquet"), frame, check_dtype=False)

    parts = tmp_path / "annotations" / "images"
    parts.mkdir(parents=True)
    frame.iloc[:4].to_parquet(parts / "part-00000.parquet")
    frame.iloc[4:].to_parquet(parts / "part-00001.parquet")
    (parts / ".part-00002.parquet.tmp").write_bytes(b"half-written")  # atomic-write leftovers are ignored
    pd.testing.assert_frame_equal(read_table(parts), frame, check_dtype=False)
    # An annotation output root reads its images table.
    pd.testing.assert_frame_equal(read_table(tmp_path / "annotations"), frame, check_dtype=False)


def test_read_table_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: no such file"):
        read_table(tmp_path / "nope.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: cannot be read"):
        read_table(bad)
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.xlsx: unknown table format"):
        read_table(tmp_path / "x.xlsx")
    (tmp_path / "empty.csv").write_text("image_id,y\n")
    with pytest.raises(DataError, match="empty.csv: the table has no rows"):
        read_table(tmp_path / "empty.csv")
    folder = tmp_path / "parts"
    folder.mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(folder / "part-0.parquet")
    pd.DataFrame({"b": [1]}).to_parquet(folder / "part-1.parquet")
    with pytest.raises(DataError, match=r"part-1.parquet: columns differ"):
        read_table(folder)
    (tmp_path / "void").mkdir()
    with pytest.raises(DataError, match="void: folder holds no"):
        read_table(tmp_path / "void")


# ---------------------------------------------------------------------------------------------------------- joining
def _images():
    return pd.DataFrame(
        {
            "image_id": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"],
            "status": ["ok", "ok", "error", "ok", "ok"],
            "error": [None, None, "cannot decode", None, None],
            "face_present": [True, False, None, True, False],
            "face_count": [1, 0, None, 2, 0],
        }
    )


def test_join_counts_rows_lost_by_reason(caplog):
    engagement = pd.DataFrame({"image_id": ["a.jpg", "b.jpg", "c.jpg", "z.jpg"], "take_rate": [0.1, 0.2, 0.3, 0.4]})
    with caplog.at_level(logging.WARNING, logger="causal.data"):
        joined = join_annotations(_images(), engagement, images_source="ann/images", engagement_source="eng.csv")
    assert joined["image_id"].tolist() == ["a.jpg", "b.jpg"]
    assert joined.attrs["join"] == {
        "engagement_rows": 4,
        "image_rows": 5,
        "joined_rows": 2,
        "missing_in_annotations": 1,  # z.jpg
        "error_status": 1,  # c.jpg
        "missing_in_engagement": 2,  # d.jpg, e.jpg
    }
    assert "1 engagement row(s) have no image in ann/images" in caplog.text
    assert "1 have an image with status=error" in caplog.text


def test_join_losing_every_row_or_too_many_raises():
    engagement = pd.DataFrame({"image_id": ["c.jpg", "y.jpg"], "take_rate": [0.3, 0.4]})
    with pytest.raises(DataError, match=r"eng\.csv with ann.*lost every row: 1 engagement row.*1 have an image"):
        join_annotations(_images(), engagement, images_source="ann", engagement_source="eng.csv")
    engagement = pd.DataFrame({"image_id": ["a.jpg", "c.jpg", "y.jpg"], "take_rate": [0.1, 0.3, 0.4]})
    with pytest.raises(DataError, match=r"lost 2 of 3 engagement rows \(more than max_lost_fraction=0.5\)"):
        join_annotations(_images(), engagement, engagement_source="eng.csv", max_lost_fraction=0.5)


def test_join_matches_numeric_and_string_ids_and_checks_columns():
    images = pd.DataFrame({"image_id": ["1", "2"], "face_present": [True, False]})
    engagement = pd.DataFrame({"image_id": [1, 2], "take_rate": [0.1, 0.2]})
    assert len(join_annotations(images, engagement)) == 2
    with pytest.raises(DataError, match=r"eng\.csv: missing id column 'image_id'"):
        join_annotations(images, engagement.rename(columns={"image_id": "id"}), engagement_source="eng.csv")
    with pytest.raises(DataError, match=r"eng\.csv: column 'image_id' has 1 duplicated id"):
        join_annotations(images, pd.concat([engagement, engagement.iloc[:1]]), engagement_source="eng.csv")
    with pytest.raises(DataError, match=r"\['face_present'\] are in both tables"):
        join_annotations(images, engagement.assign(face_present=1))


# -------------------------------------------------------------------------------------------------------- preparing
def test_prepare_shapes_dtypes_and_dummy_coding():
    frame = _frame()
    data = prepare(frame, ROLES, source="eng.csv")
    assert isinstance(data, CausalDataset)
    n = len(frame)
    assert data.y.shape == (n,) and data.t.shape == (n,) and data.y.dtype == np.float64
    np.testing.assert_array_equal(data.t, frame["t"].to_numpy(float))
    assert list(data.frame.index) == list(range(n))
    # The most frequent genre (drama) is the reference level; the others are 0/1 columns.
    assert data.info["dummies"]["genre"]["reference"] == frame["genre"].value_counts().idxmax()
    assert list(data.W.columns) == ["pop", "genre=comedy", "genre=horror"]
    assert list(data.X.columns) == ["genre=comedy", "genre=horror"]
    assert (data.W.dtypes == np.float64).all()
    np.testing.assert_array_equal(data.W["genre=horror"], (frame["genre"] == "horror").to_numpy(float))
    assert data.groups["country"].tolist() == frame["country"].astype(str).tolist()
    assert data.m is None and data.source == "eng.csv"


def test_prepare_without_modifiers_gives_empty_X():
    data = prepare(_frame(), Roles(treatment="t", outcome="y", confounders=["pop"]))
    assert data.X.shape == (60, 0) and data.groups.shape == (60, 0)


def test_prepare_missing_column_names_column_role_and_file():
    roles = Roles(treatment="t", outcome="y", confounders=["pop", "budget"])
    with pytest.raises(DataError, match=r"eng\.csv: missing column\(s\) 'budget' \(roles\.confounders\)"):
        prepare(_frame(), roles, source="eng.csv")


def test_prepare_non_binary_treatment():
    frame = _frame().assign(t=lambda f: f["t"] * 2)
    with pytest.raises(DataError, match=r"eng\.csv: column 't' \(roles\.treatment\) must be binary.*\['0', '2'\]"):
        prepare(frame, ROLES, source="eng.csv")
    data = prepare(frame, ROLES, source="eng.csv", binary_treatment=False)
    assert set(data.t) == {0.0, 2.0}


def test_prepare_boolean_like_treatment_strings():
    frame = _frame().assign(t=lambda f: np.where(f["t"] == 1, "True", "false"))
    data = prepare(frame, ROLES)
    np.testing.assert_array_equal(data.t, (frame["t"] == "True").to_numpy(float))


def test_prepare_outcome_out_of_range_and_non_numeric():
    frame = _frame()
    frame.loc[[3, 7], "y"] = [1.5, -0.1]
    with pytest.raises(
        DataError, match=r"eng\.csv: column 'y' \(roles\.outcome\): 2 value\(s\) outside .*\[0\.0, 1\.0\]"
    ):
        prepare(frame, ROLES, source="eng.csv", outcome_range=(0, 1))
    frame = _frame().astype({"y": object})
    frame.loc[2, "y"] = "n/a"
    with pytest.raises(DataError, match=r"column 'y' \(roles\.outcome\) must be numeric.*n/a"):
        prepare(frame, ROLES, source="eng.csv")


def test_prepare_all_missing_and_constant_columns():
    frame = _frame().assign(pop=np.nan)
    with pytest.raises(DataError, match=r"eng\.csv: column 'pop' \(roles\.confounders\) is missing in every row"):
        prepare(frame, ROLES, source="eng.csv")
    frame = _frame().assign(genre="drama")
    with pytest.raises(DataError, match=r"eng\.csv: column 'genre' \(roles\.confounders\) is constant"):
        prepare(frame, ROLES, source="eng.csv")
    frame = _frame().assign(t=1)
    with pytest.raises(DataError, match=r"column 't' \(roles\.treatment\) is constant \(1\) over"):  # not np.int64(1)
        prepare(frame, ROLES, source="eng.csv")


def test_prepare_duplicate_ids():
    frame = _frame()
    frame.loc[5, "image_id"] = frame.loc[4, "image_id"]
    with pytest.raises(DataError, match=r"eng\.csv: column 'image_id' has 1 duplicated id.*img_004\.jpg"):
        prepare(frame, ROLES, source="eng.csv")


def test_prepare_drops_rows_missing_treatment_or_outcome_and_logs(caplog):
    frame = _frame()
    frame["t"] = frame["t"].astype(float)
    frame.loc[[1, 2], "t"] = np.nan
    frame.loc[[2, 9, 11], "y"] = np.nan
    with caplog.at_level(logging.WARNING, logger="causal.data"):
        data = prepare(frame, ROLES, source="eng.csv")
    assert data.n == len(frame) - 4
    assert data.info["dropped"] == {"t": 2, "y": 2}
    assert "dropping 2 row(s) with missing 't'" in caplog.text
    assert list(data.frame.index) == list(range(data.n))
    frame.loc[:, "y"] = np.nan
    with pytest.raises(DataError, match="'y' .* missing in every row"):
        prepare(frame, ROLES, source="eng.csv")


def test_missing_covariates_indicator_policy():
    frame = _frame()
    frame.loc[[0, 1], "pop"] = np.nan
    frame.loc[[2], "genre"] = None
    data = prepare(frame, ROLES)
    median = frame["pop"].median()
    assert data.W.loc[0, "pop"] == pytest.approx(median) and data.W.loc[1, "pop"] == pytest.approx(median)
    np.testing.assert_array_equal(data.W["pop__missing"].to_numpy()[:3], [1.0, 1.0, 0.0])
    assert data.W["pop__missing"].sum() == 2
    assert data.W.loc[2, "genre=missing"] == 1.0 and data.W["genre=missing"].sum() == 1
    assert data.info["imputed"]["pop"] == {"rows": 2, "value": pytest.approx(median)}


def test_missing_covariates_drop_and_error_policies():
    frame = _frame()
    frame.loc[[0, 1], "pop"] = np.nan
    assert prepare(frame, ROLES, missing="drop").n == len(frame) - 2
    with pytest.raises(DataError, match=r"eng\.csv: missing values in 'pop' \(roles\.confounders\): 2 rows"):
        prepare(frame, ROLES, missing="error", source="eng.csv")
    with pytest.raises(DataError, match="config `missing`"):
        prepare(frame, ROLES, missing="zero")


def test_rare_levels_pool_into_other():
    frame = _frame(200)
    frame["shop"] = [f"s{i % 40}" for i in range(200)]
    data = prepare(frame, Roles(treatment="t", outcome="y", confounders=["shop"]), max_levels=5)
    assert data.W.shape[1] == 4  # 5 levels kept incl. "other", minus the reference
    # Pooled levels form "other", here the most frequent level and so the reference.
    assert data.info["dummies"]["shop"] == {"reference": "other", "levels": ["s0", "s1", "s10", "s11"]}
    assert data.W.loc[data.frame["shop"] == "s5"].sum().sum() == 0


def test_embeddings_reduced_by_seeded_pca_fitted_on_rows_with_vectors():
    rng = np.random.default_rng(1)
    n, d = 80, 12
    frame = _frame(n)
    latent = rng.standard_normal((n, 2))
    vectors = latent @ rng.standard_normal((2, d)) + 0.01 * rng.standard_normal((n, d))
    frame["image_embedding"] = list(vectors.astype(np.float32))
    frame.loc[[3, 4], "image_embedding"] = None
    roles = Roles(treatment="t", outcome="y", confounders=["pop", "image_embedding"])
    data = prepare(frame, roles, n_components=3, seed=0)
    cols = ["image_embedding_pc1", "image_embedding_pc2", "image_embedding_pc3", "image_embedding__missing"]
    assert [c for c in data.W.columns if c.startswith("image_embedding")] == cols
    pca = data.info["pca"]["image_embedding"]
    assert pca["dim"] == d and pca["n_components"] == 3
    assert sum(pca["explained_variance_ratio"][:2]) > 0.99  # two latent directions
    assert (data.W.loc[[3, 4], cols[:3]] == 0).all().all()  # the PCA mean
    assert data.W["image_embedding__missing"].sum() == 2
    # Fitted on the rows with vectors only: their components are centred.
    np.testing.assert_allclose(data.W.loc[data.W["image_embedding__missing"] == 0, cols[:3]].mean(), 0, atol=1e-6)
    again = prepare(frame, roles, n_components=3, seed=0)
    pd.testing.assert_frame_equal(data.W, again.W)


def test_embedding_pca_fits_on_a_subsample_and_transforms_in_chunks(monkeypatch):
    import causal.encode as module

    rng = np.random.default_rng(4)
    frame = _frame(90)
    frame["image_embedding"] = list(rng.standard_normal((90, 2)) @ rng.standard_normal((2, 6)))
    roles = Roles(treatment="t", outcome="y", confounders=["image_embedding"])
    full = prepare(frame, roles, n_components=2)
    monkeypatch.setattr(module, "PCA_FIT_ROWS", 40)
    monkeypatch.setattr(module, "PCA_CHUNK_ROWS", 25)
    sub = prepare(frame, roles, n_components=2)
    assert sub.info["pca"]["image_embedding"]["fit_rows"] == 40
    # Exactly two latent directions: the subsample finds the same plane, so the components agree up to sign.
    for col in sub.W.columns:
        assert abs(np.corrcoef(sub.W[col], full.W[col])[0, 1]) > 0.999


def test_embeddings_from_csv_strings_and_ragged_vectors(tmp_path):
    frame = _frame(30)
    rng = np.random.default_rng(2)
    frame["face_embedding_mean"] = [np.round(rng.standard_normal(4), 4).tolist() for _ in range(30)]
    frame.to_csv(tmp_path / "e.csv", index=False)
    table = read_table(tmp_path / "e.csv")
    roles = Roles(treatment="t", outcome="y", confounders=["face_embedding_mean"])
    from_csv = prepare(table, roles, n_components=2)
    pd.testing.assert_frame_equal(from_csv.W, prepare(frame, roles, n_components=2).W)
    table.loc[4, "face_embedding_mean"] = "[0.1, oops]"
    with pytest.raises(DataError, match=r"e\.csv: column 'face_embedding_mean' .* not a JSON list"):
        prepare(table, roles, source="e.csv")
    frame.at[0, "face_embedding_mean"] = [1.0, 2.0]
    with pytest.raises(DataError, match=r"e\.csv: column 'face_embedding_mean' \(roles\.confounders\) holds vectors"):
        prepare(frame, roles, source="e.csv")


def test_mediator_array_and_bool_covariates():
    frame = _frame().assign(m=lambda f: f["pop"] ** 2, flag=lambda f: f["pop"] > 0)
    roles = Roles(treatment="t", outcome="y", confounders=["flag"], mediator="m")
    data = prepare(frame, roles)
    np.testing.assert_allclose(data.m, frame["m"])
    np.testing.assert_array_equal(data.W["flag"], frame["flag"].to_numpy(float))


# ------------------------------------------------------------------------------------------------------ from config
def test_load_from_config_table_with_annotations(tmp_path):
    images = _images()
    images.to_parquet(tmp_path / "images.parquet")
    engagement = pd.DataFrame(
        {
            "image_id": ["a.jpg", "b.jpg", "d.jpg", "e.jpg", "c.jpg"],
            "take_rate": [0.1, 0.2, 0.15, 0.3, 0.2],
            "genre": ["x", "y", "x", "y", "x"],
        }
    )
    engagement.to_csv(tmp_path / "eng.csv", index=False)
    cfg = OmegaConf.load(CONF / "data" / "table.yaml")
    cfg.path = str(tmp_path / "eng.csv")
    cfg.images = str(tmp_path / "images.parquet")
    roles = Roles(treatment="face_present", outcome="take_rate", confounders=["genre"], groups=["genre"])
    data, truth = load_from_config(cfg, roles)
    assert truth is None and data.n == 4 and "eng.csv x " in data.source
    np.testing.assert_array_equal(data.t, [1.0, 0.0, 1.0, 0.0])
    cfg.prepare.unknown = 1
    with pytest.raises(DataError, match=r"config `data\.prepare\.unknown`"):
        load_from_config(cfg, roles)
    missing_path = OmegaConf.load(CONF / "data" / "table.yaml")
    with pytest.raises(DataError, match=r"config `data\.path` is required"):
        load_from_config(missing_path, roles)


def test_load_from_config_simulated_refuses_outcome_derived_covariates():
    cfg = OmegaConf.load(CONF / "data" / "simulated.yaml")
    cfg.n_titles, cfg.artworks_per_title = 40, 5
    roles = Roles(
        treatment="face_present",
        outcome="take_rate",
        confounders=["genre", "country", "title_popularity", "release_year"],
        modifiers=["genre"],
        groups=["genre", "country"],
    )
    data, truth = load_from_config(cfg, roles, seed=3)
    assert data.n == 200 and truth["params"]["seed"] == 3
    roles.confounders.append("plays")
    with pytest.raises(DataError, match=r"config `roles\.confounders` uses 'plays'.*outcome_derived"):
        load_from_config(cfg, roles)


def test_load_from_config_query_selects_rows_for_the_mediation_experiment():
    cfg = OmegaConf.load(CONF / "data" / "simulated.yaml")
    cfg.n_titles, cfg.artworks_per_title = 40, 5
    cfg.query = "face_present == 1"
    cfg.prepare.binary_treatment = False
    roles = Roles(
        treatment="face_count",
        outcome="take_rate",
        confounders=["genre", "country", "title_popularity", "release_year"],
        mediator="face_area_mean",
    )
    data, truth = load_from_config(cfg, roles, seed=1)
    assert data.n == truth["n_treated"] and (data.t >= 1).all() and (data.m > 0).all()
    cfg.query = "no_such_column > 0"
    with pytest.raises(DataError, match=r"config `data\.query` 'no_such_column > 0' fails on simulator"):
        load_from_config(cfg, roles)
    cfg.query = "face_count > 99"
    with pytest.raises(DataError, match=r"config `data\.query` 'face_count > 99' selects no row"):
        load_from_config(cfg, roles)


def test_numbers_written_with_a_comma_are_refused_with_the_column_named(tmp_path):
    # A European CSV: read as text, popularity would be dummy-coded per value (60 unrelated levels).
    frame = _frame()
    frame["pop"] = frame["pop"].map(lambda v: f"{v:.3f}".replace(".", ","))
    path = tmp_path / "eng.csv"
    frame.to_csv(path, index=False)
    table = read_table(path)
    with pytest.raises(DataError, match=r"eng\.csv: column 'pop' \(roles\.confounders\) is text, but every value is a "
                       r"number written with a comma \(e\.g\. '-?\d+,\d{3}'\).*decimal=','"):  # fmt: skip
        prepare(table, ROLES, source="eng.csv")
    outcome = _frame().assign(y=lambda f: f["y"].map(lambda v: f"{v:.4f}".replace(".", ",")))
    with pytest.raises(DataError, match=r"column 'y' \(roles\.outcome\) must be numeric.*decimal=','"):
        prepare(outcome, ROLES, source="eng.csv")
    labels = _frame().assign(genre=lambda f: f["genre"] + ",1")  # text with commas stays a category
    assert prepare(labels, ROLES, source="eng.csv").W.shape[0] == 60
