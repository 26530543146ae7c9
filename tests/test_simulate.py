"""causal.simulate: the truth is internally consistent and is what estimators that do not see it recover."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hydra import compose, initialize_config_dir
from scipy import special, stats

from causal.data import DataError
from causal.simulate import COUNTRIES, GENRES, SimulatedCatalog, simulate_catalog, simulate_from_config

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def catalog() -> SimulatedCatalog:
    """About 20k artworks at the default (confounded) overlap."""
    return simulate_catalog(n_titles=2000, artworks_per_title=10, seed=11)


def _design(frame: pd.DataFrame, with_treatment: bool = True) -> pd.DataFrame:
    """The true structural design of the expected take rate (see the module docstring of causal.simulate)."""
    genre = pd.get_dummies(frame["genre"], prefix="g", drop_first=True, dtype=float)
    country = pd.get_dummies(frame["country"], prefix="c", drop_first=True, dtype=float)
    X = pd.concat(
        [
            genre,
            country,
            np.tanh(frame["title_popularity"]).rename("tanh_pop"),
            ((frame["release_year"] - 2007) / 10).rename("year"),
        ],
        axis=1,
    )
    if with_treatment:
        d = frame["face_present"].astype(float)
        X["D"] = d
        X = pd.concat([X, genre.mul(d, axis=0).add_prefix("D:"), country.mul(d, axis=0).add_prefix("D:")], axis=1)
    return sm.add_constant(X)


def _cluster_ols(y, X, groups):
    return sm.OLS(np.asarray(y, float), X).fit(cov_type="cluster", cov_kwds={"groups": pd.factorize(groups)[0]})


def test_truth_contract_and_json(catalog):
    truth = catalog.truth
    assert json.loads(json.dumps(truth)) == truth
    for key in ("ate", "ate_population", "cate_by_group", "mediation", "structural_model", "params"):
        assert key in truth
    assert set(truth["cate_by_group"]) == {"genre", "country"}
    assert set(truth["cate_by_group"]["genre"]) <= set(GENRES)
    assert set(truth["cate_by_group"]["country"]) <= set(COUNTRIES)
    med = truth["mediation"]
    assert (med["treatment"], med["mediator"]) == ("face_count", "face_area_mean")
    assert med["total"] == pytest.approx(med["direct"] + med["indirect"])
    assert med["indirect"] == pytest.approx(med["a_path"] * med["b_path"])
    data = catalog.data
    assert len(data) == 20000 and data["image_id"].is_unique
    assert data["take_rate"].between(0, 1).all() and data["take_rate"].gt(0).all()
    assert (data["face_count"] > 0).eq(data["face_present"]).all()
    assert data.loc[~data["face_present"], "largest_face_cx"].isna().all()
    assert (data["face_area_max"] >= data["face_area_mean"] - 1e-12).all()
    assert (data["face_area_total"] <= 1.0 + 1e-12).all()
    assert (data["plays"] <= data["impressions"]).all()


def test_cates_average_to_the_ate_with_group_weights(catalog):
    truth = catalog.truth
    n = truth["n_units"]
    for col in ("genre", "country"):
        cate, sizes = truth["cate_by_group"][col], truth["group_sizes"][col]
        assert sum(sizes.values()) == n
        assert sum(cate[k] * sizes[k] for k in cate) / n == pytest.approx(truth["ate"], rel=1e-12)
    # Population values: weighted by the catalog shares they average to the population ATE, exactly.
    pop = truth["cate_by_group_population"]
    genre_share = {g: v["share"] for g, v in GENRES.items()}
    country_share = {c: v["share"] for c, v in COUNTRIES.items()}
    assert sum(pop["genre"][g] * s for g, s in genre_share.items()) == pytest.approx(truth["ate_population"])
    assert sum(pop["country"][c] * s for c, s in country_share.items()) == pytest.approx(truth["ate_population"])
    # The unit-level effects agree with the summary.
    assert catalog.units["tau"].mean() == pytest.approx(truth["ate"], rel=1e-12)
    np.testing.assert_allclose(catalog.units["take_rate_1"] - catalog.units["take_rate_0"], catalog.units["tau"])
    # The sample ATE is close to the population one (sampling error of the genre / country mix).
    assert abs(truth["ate"] - truth["ate_population"]) < 0.002


def test_regression_on_the_true_structure_recovers_the_truth(catalog):
    data, truth, params = catalog.data, catalog.truth, catalog.truth["params"]
    X = _design(data)
    fit = _cluster_ols(data["take_rate"], X, data["title_id"])
    se = fit.bse
    assert abs(fit.params["tanh_pop"] - params["popularity_effect"]) < 4 * se["tanh_pop"]
    assert abs(fit.params["year"] - params["derived"]["year_effect"]) < 4 * se["year"]
    # ATE and CATE by genre: average the fitted effect over the units (the D part of the design).
    d_cols = [c for c in X.columns if c == "D" or c.startswith("D:")]
    V = fit.cov_params().loc[d_cols, d_cols].to_numpy()
    coef = fit.params[d_cols].to_numpy()
    effect_design = X[d_cols].copy()
    effect_design[:] = _design(data.assign(face_present=True))[d_cols].to_numpy()
    for mask, target in [(np.ones(len(data), bool), truth["ate"])] + [
        ((data["genre"] == g).to_numpy(), v) for g, v in truth["cate_by_group"]["genre"].items()
    ]:
        a = effect_design.loc[mask].mean().to_numpy()
        estimate, stderr = a @ coef, np.sqrt(a @ V @ a)
        assert abs(estimate - target) < 4 * stderr, (estimate, target, stderr)

    # Mediation among artworks with a face: a-path and b-path regressions.
    faces = data.loc[data["face_present"]]
    a_fit = _cluster_ols(faces["face_area_mean"], sm.add_constant(faces[["face_count"]]), faces["title_id"])
    med = truth["mediation"]
    assert abs(a_fit.params["face_count"] - med["a_path"]) < 4 * a_fit.bse["face_count"]
    Xb = pd.concat([_design(faces, with_treatment=False), faces[["face_count", "face_area_mean"]]], axis=1)
    b_fit = _cluster_ols(faces["take_rate"], Xb, faces["title_id"])
    assert abs(b_fit.params["face_count"] - med["direct"]) < 4 * b_fit.bse["face_count"]
    assert abs(b_fit.params["face_area_mean"] - med["b_path"]) < 4 * b_fit.bse["face_area_mean"]


def test_naive_difference_misses_the_ate_by_more_than_its_ci(catalog):
    data, truth = catalog.data, catalog.truth
    y, d = data["take_rate"].to_numpy(), data["face_present"].to_numpy()
    res = stats.ttest_ind(y[d], y[~d], equal_var=False)
    ci = res.confidence_interval(0.95)
    naive = y[d].mean() - y[~d].mean()
    assert not (ci.low <= truth["ate"] <= ci.high)
    assert naive - truth["ate"] > 5 * (ci.high - ci.low) / 2  # confounding inflates the naive difference


def test_without_confounding_the_naive_difference_is_unbiased():
    cat = simulate_catalog(n_titles=2000, artworks_per_title=10, seed=11, overlap=0.0)
    data = cat.data
    y, d = data["take_rate"].to_numpy(), data["face_present"].to_numpy()
    res = stats.ttest_ind(y[d], y[~d], equal_var=False)
    se = (res.confidence_interval(0.95).high - res.confidence_interval(0.95).low) / (2 * 1.96)
    assert abs(y[d].mean() - y[~d].mean() - cat.truth["ate"]) < 4 * se


def test_overlap_knob_changes_only_the_propensity_spread():
    cats = {o: simulate_catalog(n_titles=300, artworks_per_title=5, seed=2, overlap=o) for o in (0.0, 1.0, 2.0)}
    e0 = cats[0.0].units["propensity"]
    assert np.allclose(e0, 0.5)
    sd = {o: np.std(special.logit(c.units["propensity"])) for o, c in cats.items()}
    assert sd[2.0] == pytest.approx(2 * sd[1.0], rel=0.05) and sd[1.0] > 0.5
    outside = {o: c.truth["propensity"]["share_outside_0.05_0.95"] for o, c in cats.items()}
    assert outside[0.0] == 0 and outside[2.0] > outside[1.0]
    for c in cats.values():
        assert c.units["propensity"].mean() == pytest.approx(0.5, abs=1e-9)  # face_share holds
        # Titles and potential outcomes do not move with the overlap knob.
        pd.testing.assert_series_equal(c.units["tau"], cats[0.0].units["tau"])
        pd.testing.assert_series_equal(c.data["genre"], cats[0.0].data["genre"])


def test_seed_reproducibility():
    a = simulate_catalog(n_titles=50, artworks_per_title=4, seed=5, embedding_dim=3)
    b = simulate_catalog(n_titles=50, artworks_per_title=4, seed=5, embedding_dim=3)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.truth == b.truth
    c = simulate_catalog(n_titles=50, artworks_per_title=4, seed=6, embedding_dim=3)
    assert not np.allclose(a.data["take_rate"], c.data["take_rate"])
    assert len(a.data["image_embedding"].iloc[0]) == 3
    assert a.data.loc[~a.data["face_present"], "face_embedding_mean"].isna().all()


@pytest.mark.slow
def test_variance_weighted_target_of_a_partially_linear_fit_differs_from_the_ate():
    """With the true propensity (orthogonal score), a partially linear fit recovers ate_variance_weighted, not ate."""
    cat = simulate_catalog(n_titles=6000, artworks_per_title=10, seed=4)
    data, truth, e = cat.data, cat.truth, cat.units["propensity"].to_numpy()
    y, d = data["take_rate"].to_numpy(), data["face_present"].to_numpy(float)
    m_hat = sm.OLS(y, _design(data, with_treatment=False)).fit().fittedvalues.to_numpy()
    r_d, r_y = d - e, y - m_hat
    theta = (r_d @ r_y) / (r_d @ r_d)
    psi = r_d * (r_y - theta * r_d) / np.mean(r_d**2)
    cluster_sums = pd.Series(psi).groupby(data["title_id"].to_numpy()).sum()
    se = np.sqrt((cluster_sums**2).sum()) / len(y)
    assert abs(theta - truth["ate_variance_weighted"]) < 4 * se
    assert truth["ate"] - truth["ate_variance_weighted"] > 4 * se
    assert truth["ate"] - theta > 2 * se


def _fake_images(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    count = rng.choice([0, 0, 1, 2, 3, 9], n)
    frame = pd.DataFrame(
        {
            "image_id": [f"poster_{i}.jpg" for i in range(n)],
            "width": rng.integers(300, 900, n),
            "height": rng.integers(400, 1200, n),
            "status": "ok",
            "error": None,
            "face_present": count > 0,
            "face_count": count,
            "face_area_mean": np.where(count > 0, 0.1, 0.0),
            "face_prob_max": np.where(count > 0, rng.uniform(0.9, 1, n), np.nan),
            "largest_face_cx": np.where(count > 0, rng.uniform(0, 1, n), np.nan),
            "largest_face_cy": np.where(count > 0, rng.uniform(0, 1, n), np.nan),
            "colour_warmth": rng.uniform(0, 1, n),
            "image_embedding": [rng.standard_normal(4).astype(np.float32) for _ in range(n)],
        }
    )
    frame.loc[0, ["status", "error", "face_count", "face_present", "colour_warmth"]] = [
        "error",
        "cannot decode",
        1,
        True,
        99.0,
    ]
    return frame


def test_features_from_a_real_images_table():
    images = _fake_images()
    cat = simulate_catalog(n_titles=200, artworks_per_title=5, seed=1, features=images, max_faces=4)
    data, units = cat.data, cat.units
    # Image-level columns come from usable rows only; face counts from face rows, capped at max_faces.
    assert "poster_0.jpg" not in set(data["source_image_id"]) and data["colour_warmth"].max() < 1
    assert {"width", "height", "image_embedding"} <= set(data.columns)
    assert set(data["source_image_id"]) <= set(images["image_id"])
    assert set(units["face_count_1"]) <= {1, 2, 3, 4} and units["face_count_1"].max() == 4
    real_prob = set(images["face_prob_max"].dropna().round(12))
    assert set(data["face_prob_max"].dropna().round(12)) <= real_prob
    # Face size stays on the structural line: exogenous part = size - count_on_size * (count - 1).
    params = cat.truth["params"]
    exog = units["face_area_mean_1"] - params["count_on_size"] * (units["face_count_1"] - 1)
    floor = params["derived"]["size_floor"]
    assert exog.between(floor, floor + 0.2).all()
    truth = cat.truth
    sizes, cate = truth["group_sizes"]["genre"], truth["cate_by_group"]["genre"]
    assert sum(cate[g] * sizes[g] for g in cate) / truth["n_units"] == pytest.approx(truth["ate"])
    assert cat.truth["params"]["features"] == "real annotation table"


def test_features_errors_and_parameter_errors():
    no_faces = _fake_images().assign(face_count=0, face_present=False)
    with pytest.raises(DataError, match="no image in the table has a face"):
        simulate_catalog(n_titles=10, features=no_faces)
    with pytest.raises(DataError, match="'face_count' or 'face_present'"):
        simulate_catalog(n_titles=10, features=pd.DataFrame({"image_id": ["a"]}))
    with pytest.raises(ValueError, match="outside \\(0, 1\\).*noise_sd"):
        simulate_catalog(n_titles=200, noise_sd=0.2)
    with pytest.raises(ValueError, match="`overlap`"):
        simulate_catalog(n_titles=10, overlap=-1)


def test_simulate_from_config_rejects_unknown_keys():
    with pytest.raises(DataError, match=r"config `data\.n_title`"):
        simulate_from_config({"name": "simulated", "n_title": 3})
    cat = simulate_from_config({"name": "simulated", "n_titles": 20, "artworks_per_title": 2, "seed": None}, seed=9)
    assert cat.truth["params"]["seed"] == 9 and len(cat.data) == 40


def _primary_config(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "config.yaml").write_text(
        f"defaults:\n  - data: simulated\n  - _self_\nhydra:\n  searchpath:\n    - file://{CONF}\nseed: 7\n" + body
    )
    return folder


def test_data_configs_compose_with_hydra(tmp_path):
    annotations = tmp_path / "annotations" / "images"
    annotations.mkdir(parents=True)
    _fake_images().to_parquet(annotations / "part-00000.parquet")
    folder = _primary_config(tmp_path, f"paths:\n  annotations: {tmp_path / 'annotations'}\n")
    with initialize_config_dir(version_base="1.3", config_dir=str(folder)):
        simulated = compose(config_name="config", overrides=["data.n_titles=30"])
        sample = compose(config_name="config", overrides=["data=sample", "data.n_titles=30"])
        table = compose(config_name="config", overrides=["data=table", "data.path=x.csv"])
    assert simulated.data.name == "simulated" and simulated.data.ate == 0.015
    assert sample.data.name == "sample" and sample.data.ate == 0.015  # inherited from simulated.yaml
    assert sample.data.features_path == str(tmp_path / "annotations")
    assert table.data.name == "table" and table.data.path == "x.csv" and table.data.images is None
    cat = simulate_from_config(sample.data, seed=sample.seed)
    assert len(cat.data) == 300 and cat.truth["params"]["seed"] == 7
    assert cat.truth["params"]["features"] == "real annotation table"
    assert set(cat.data["source_image_id"]) <= set(_fake_images()["image_id"])


def test_sample_config_without_paths_falls_back_to_parametric(tmp_path):
    folder = _primary_config(tmp_path, "")
    with initialize_config_dir(version_base="1.3", config_dir=str(folder)):
        sample = compose(config_name="config", overrides=["data=sample", "data.n_titles=10"])
    assert sample.data.features_path is None
    assert simulate_from_config(sample.data, seed=1).truth["params"]["features"] == "parametric"
