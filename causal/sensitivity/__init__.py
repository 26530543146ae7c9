"""Sensitivity to unmeasured confounding, and refutation tests of a fitted pipeline.

Unconfoundedness cannot be tested, so every estimate ships with figures that say how strong an unmeasured
confounder would have to be to change the conclusion, and with refutations that would catch a broken pipeline.
This package fills the ``sensitivity`` block of the results contract, one idea per module:

* :mod:`~causal.sensitivity.evalue` -- :func:`e_value`, :func:`e_value_from_smd`, :func:`e_value_for_effect`:
  VanderWeele & Ding (2017), the minimum strength of association (risk-ratio scale) an unmeasured confounder needs
  with both treatment and outcome to explain away the estimate (and the confidence limit nearest the null).
* :mod:`~causal.sensitivity.ovb` -- :func:`ovb_robustness` and its parts (:func:`robustness_value`,
  :func:`benchmark_bounds`, :func:`adjusted_effect`): Cinelli & Hazlett (2020) omitted-variable-bias analysis of the
  linear outcome model: partial R^2 of the treatment with the outcome, robustness values RV_q and RV_{q,alpha},
  bounds from benchmark covariates ("1x, 2x, 3x as strong as popularity").
* :mod:`~causal.sensitivity.plots` -- :func:`ovb_contour_plot`, the contour plot of the OVB analysis.
* :mod:`~causal.sensitivity.dml_bounds` -- :func:`dml_sensitivity`, :func:`dml_sensitivity_from_residuals`:
  Chernozhukov et al. (2022) bounds for the DML ATE through EconML (>= 0.16): ``sensitivity_interval``,
  ``robustness_value``, ``sensitivity_summary``.
* :mod:`~causal.sensitivity.refute` -- :func:`refute`: placebo treatment, random common cause, data subsets and
  dummy outcome, each with a verdict and its plain-language reading.
* :mod:`~causal.sensitivity.rosenbaum` -- :func:`rosenbaum_bounds`, :func:`gamma_critical`: Rosenbaum (2002)
  bounds on the signed-rank test of the matched pairs under hidden bias Gamma.
* :mod:`~causal.sensitivity.step` -- :func:`run_step`, the pipeline step (``causal.sensitivity:run_step``).
"""

from causal.sensitivity.dml_bounds import dml_sensitivity, dml_sensitivity_from_residuals
from causal.sensitivity.evalue import SMD_TO_RR, e_value, e_value_for_effect, e_value_from_smd
from causal.sensitivity.ovb import adjusted_effect, benchmark_bounds, ovb_robustness, robustness_value
from causal.sensitivity.plots import ovb_contour_plot
from causal.sensitivity.refute import RANDOM_COMMON_CAUSE, REFUTATIONS, FitFn, refute

# The step's config keys are re-exported too: causal.validate mirrors them and tests/test_validate.py compares both.
from causal.sensitivity.step import _DML_KEYS as _DML_KEYS
from causal.sensitivity.step import _OVB_KEYS as _OVB_KEYS
from causal.sensitivity.step import _REFUTE_KEYS as _REFUTE_KEYS
from causal.sensitivity.step import _ROSENBAUM_KEYS as _ROSENBAUM_KEYS
from causal.sensitivity.step import _STEP_KEYS as _STEP_KEYS
from causal.sensitivity.step import ANALYSES, run_step

__all__ = [
    "ANALYSES",
    "RANDOM_COMMON_CAUSE",
    "REFUTATIONS",
    "SMD_TO_RR",
    "FitFn",
    "adjusted_effect",
    "benchmark_bounds",
    "dml_sensitivity",
    "dml_sensitivity_from_residuals",
    "e_value",
    "e_value_for_effect",
    "e_value_from_smd",
    "ovb_contour_plot",
    "ovb_robustness",
    "refute",
    "robustness_value",
    "run_step",
]
