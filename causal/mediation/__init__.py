"""Mediation: how much of a treatment's effect on the outcome runs through a mediator.

The creative question is whether face count hurts take rate because of the number of people or because each face
gets smaller (treatment ``face_count``, mediator ``face_area_mean``). Three estimators answer it, all returning the
``mediation`` block of the results contract::

    {"treatment", "mediator", "total", "direct", "indirect", "proportion_mediated", "verdict", ...}

where ``total``, ``direct`` and ``indirect`` are ``{"estimate", "stderr", "ci_low", "ci_high"}``.

* :func:`baron_kenny` -- the three regressions of Baron & Kenny (1986), classical standard errors and the Sobel test.
* :func:`linear_mediation` -- the product-of-coefficients indirect effect ``a * b`` and the direct effect ``c'``
  with nonparametric bootstrap percentile intervals (Preacher & Hayes, 2008).
* :func:`ml_mediation` -- natural direct and indirect effects in a partially linear model whose confounding
  functions are learned by cross-fitted machine-learning models (double machine learning, Chernozhukov et al.,
  2018), optionally with a treatment-mediator interaction.

All three adjust for the confounders named by the caller. Confounders may be numeric, boolean or categorical:
categorical (object, string, category) columns are one-hot encoded here with the first level dropped
(:func:`encode_covariates`), so a caller can pass the engagement table as it is.

Verdict rule (used by all three, with each method's own notion of "significant" at level ``alpha``):

* ``"none"``: the indirect effect is not significant;
* ``"full"``: the indirect effect is significant and the direct effect c' is not;
* ``"partial"``: both the indirect and the direct effect are significant.

The classical Baron & Kenny prerequisite that the total effect c be significant is reported
(``steps["c_significant"]``) but not required, following Zhao, Lynch & Chen (2010): an indirect effect can exist
when opposing direct and indirect paths cancel in c.
"""

from causal.mediation.baron_kenny import baron_kenny
from causal.mediation.common import VERDICTS, bootstrap_indices, encode_covariates, mediation_verdict
from causal.mediation.linear import linear_mediation
from causal.mediation.ml import ML_ASSUMPTIONS, cross_fit_predict, default_nuisance_regressor, ml_mediation
from causal.mediation.step import CONTRACT_KEYS, MEDIATION_METHODS, compare_methods, run_step

__all__ = [
    "CONTRACT_KEYS",
    "MEDIATION_METHODS",
    "ML_ASSUMPTIONS",
    "VERDICTS",
    "baron_kenny",
    "bootstrap_indices",
    "compare_methods",
    "cross_fit_predict",
    "default_nuisance_regressor",
    "encode_covariates",
    "linear_mediation",
    "mediation_verdict",
    "ml_mediation",
    "run_step",
]
