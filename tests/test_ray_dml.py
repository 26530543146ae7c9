"""estimator.use_ray: cross-fitting folds (and the nuisance grid search) as Ray tasks give the local numbers."""

from __future__ import annotations

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
        classifier_grid={"max_depth": [2, 3]},
        regressor_grid={"max_depth": [2, 3]},
        tune=True,
        n_folds=3,
        tune_folds=2,
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
    assert remote.classifier_params_ == local.classifier_params_
    assert remote.regressor_params_ == local.regressor_params_
    for role in ("classifier", "regressor"):
        assert remote.tuning_[role]["candidates"] == local.tuning_[role]["candidates"]
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
