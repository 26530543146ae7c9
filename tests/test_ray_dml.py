"""estimator.use_ray: cross-fitting folds (and the nuisance grid search) as Ray tasks give the local numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causal import dml
from causal.nuisance import CrossFitNuisance

try:
    import ray
except ImportError:
    ray = None

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(ray is None, reason='ray is not installed: pip install -e ".[ray]"'),
]

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.2}
FOREST = {"name": "causal_forest", "n_estimators": 40, "subforest_size": 4, "min_samples_leaf": 20, "n_jobs": 1}


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def catalog():
    """n = 2000 units; T depends on x0, x1; Y on x0, x2 and T, with an effect that varies by a 3-level group."""
    rng = np.random.default_rng(11)
    n = 2000
    x = rng.normal(size=(n, 4))
    group = rng.integers(0, 3, size=n)
    e = 1.0 / (1.0 + np.exp(-(0.8 * x[:, 0] - 0.5 * x[:, 1])))
    t = rng.binomial(1, e)
    tau = 0.5 + 0.25 * group
    y = x[:, 0] + np.sin(2 * x[:, 2]) + tau * t + rng.normal(scale=0.5, size=n)
    features = np.column_stack([x, group])
    X = pd.DataFrame({"group": group.astype(float)})
    return features, t, y, X, pd.DataFrame({"group": group.astype(str)}), float(tau.mean())


def _crossfit(catalog, use_ray: bool) -> CrossFitNuisance:
    features, t, y, *_ = catalog
    return CrossFitNuisance(
        classifier_params=SMALL,
        regressor_params=SMALL,
        n_folds=3,
        random_state=5,
        use_ray=use_ray,
        ray_remote_func_options={"num_cpus": 1},
    ).fit(features, t, y)


@pytest.fixture(scope="module")
def fits(ray_local, catalog):
    return {use_ray: _crossfit(catalog, use_ray) for use_ray in (False, True)}


@pytest.mark.slow
def test_crossfit_on_ray_equals_the_local_crossfit(fits):
    local, remote = fits[False], fits[True]
    np.testing.assert_array_equal(remote.propensity_, local.propensity_)
    np.testing.assert_array_equal(remote.outcome_, local.outcome_)
    # The nuisances are good enough for the DML comparison below to be a comparison of real fits.
    assert local.scores_["propensity_auc"] > 0.65 and local.scores_["outcome_r2"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [FOREST, {"name": "linear_dml"}])
def test_dml_fit_with_use_ray_equals_the_local_fit(fits, catalog, estimator):
    _, t, y, X, groups, true_ate = catalog
    results = {}
    for use_ray in (False, True):
        nuis = fits[use_ray]
        fit = dml.estimate(
            {**estimator, "use_ray": use_ray, "ray_remote_func_options": {"num_cpus": 1}},
            y=y,
            t=t,
            X=X,
            propensity=nuis.propensity_,
            outcome=nuis.outcome_,
            groups=groups,
            seed=5,
        )
        assert fit.estimator.use_ray is use_ray  # EconML got the flag (its own cross-fit step ran as a Ray task)
        results[use_ray] = fit.results
    assert results[True]["ate"] == results[False]["ate"]
    assert results[True]["cate_by_group"] == results[False]["cate_by_group"]
    # ... and they are a real fit: the sample's true ATE (mean of 0.5 + 0.25 * group) is within 4 standard errors.
    ate = results[True]["ate"]
    assert abs(ate["estimate"] - true_ate) < 4 * ate["stderr"]


@pytest.mark.slow
def test_pipeline_with_estimator_use_ray_gives_the_same_results(ray_local, tmp_path):
    """The configured pipeline end to end: grid search through Ray's joblib backend, folds as Ray tasks, the forest
    with EconML's use_ray; every number in results.json is the local run's."""
    from hydra import compose, initialize_config_dir

    from causal.pipeline import run

    shrink = [
        "data.n_titles=100",
        "nuisance=xgboost_grid",
        "nuisance.folds=3",
        "nuisance.tune_folds=2",
        "nuisance.grid.classifier.n_estimators=[40]",
        "nuisance.grid.regressor.n_estimators=[40]",
        "estimator=causal_forest",
        "estimator.n_estimators=40",
    ]
    for use_ray in (False, True):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*shrink, f"estimator.use_ray={use_ray}"])
        assert cfg.nuisance.use_ray is use_ray  # the nuisance cross-fit follows estimator.use_ray
        run(cfg, tmp_path / str(use_ray))
    local, remote = (json.loads((tmp_path / str(u) / "results.json").read_text()) for u in (False, True))
    # The run echoes its estimator config; that flag is the one thing allowed to differ.
    assert (local["estimator"].pop("use_ray"), remote["estimator"].pop("use_ray")) == (False, True)
    assert remote == local
    assert local["ate"]["stderr"] > 0 and local["nuisance"]["tuned"]
