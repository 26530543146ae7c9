"""ATE of a binary treatment that a detector measures with error, corrected for the detector's mistakes.

The treatment ``face_present`` is not observed: a face detector reports T* instead of the true T, with image-level
sensitivity Se = P(T* = 1 | T = 1) and specificity Sp = P(T* = 0 | T = 0) measured on a labelled sample
(``vision.evaluate``'s ``metrics.json``) or given in config. A missed face puts a treated unit among the controls
and vice versa, so the naive ATE on T* is biased toward 0. :func:`misclassification_corrected_ate` reports the
corrected ATE beside the uncorrected one, with an interval that carries the uncertainty of Se and Sp.

Derivation
----------
Assume non-differential misclassification: given the true treatment, the detector's errors do not depend on the
outcome or the covariates, P(T* = 1 | T, Y, W) = P(T* = 1 | T), with the same Se and Sp for every unit. Write
e(W) = P(T* = 1 | W) (the observed propensity), pi(W) = P(T = 1 | W), J = Se + Sp - 1 > 0 (the detector beats
chance), and Delta(W) = E[Y | T=1, W] - E[Y | T=0, W], so ATE = E[Delta(W)] under unconfoundedness given W. Then

1. e = Se * pi + (1 - Sp) * (1 - pi), hence pi(W) = (e(W) - (1 - Sp)) / J.
2. With Y = mu0(W) + Delta(W) T + eps, E[eps | T, W] = 0, and T* independent of eps given (T, W):
   Cov(Y, T* | W) = Delta(W) Cov(T, T* | W) = Delta(W) * J * pi (1 - pi).
3. The observed contrast Delta*(W) = E[Y | T*=1, W] - E[Y | T*=0, W] = Cov(Y, T* | W) / (e (1 - e)). Therefore
   Delta(W) = k(W) Delta*(W) with k = e (1 - e) / (J pi (1 - pi)), the familiar attenuation 1 / (PPV + NPV - 1)
   of a 2x2 misclassification matrix, stratum by stratum.

The ATE is theta = E[k(e(W)) Delta*(W)]. Its efficient influence function gives the doubly robust score used here::

    psi = k(e) * phi* + k'(e) * Delta*(W) * (T* - e) - theta
    phi* = mu1*(W) - mu0*(W) + T* (Y - mu1*(W)) / e - (1 - T*) (Y - mu0*(W)) / (1 - e)

with mu_t*(W) = E[Y | T* = t, W] (phi* is the usual AIPW pseudo-outcome for T*, whose mean is the uncorrected
ATE) and k'(e) = k * (1/e - 1/(1-e) - (1/J) (1/pi - 1/(1-pi))). The second term corrects for k depending on the
estimated propensity. With Se = Sp = 1 the score is exactly AIPW. Without covariates it reduces to the
matrix-method correction (mean(Y | T*=1) - mean(Y | T*=0)) / (PPV + NPV - 1).

Interval: Monte Carlo over the rates and the sampling error together. Se and Sp get Beta posteriors from their
evaluation counts (Jeffreys prior: Beta(x + 1/2, n - x + 1/2)); for each draw the estimate is recomputed from the
same nuisance predictions and a normal sampling error with that draw's standard error is added; the percentile
interval of these draws is reported. Without counts the rates are taken as known and only sampling error remains.

Assumptions (returned in the output): non-differential misclassification with constant Se, Sp; J > 0;
unconfoundedness and overlap given W for the *true* treatment; the observed propensity lies in (1 - Sp, Se)
(otherwise the implied true propensity is outside (0, 1): such units are clipped and counted); the evaluation
sample's Se and Sp transfer to the catalog (same image distribution, same detector threshold).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from causal.crossfit import cross_predict, make_folds
from causal.detector_rates import DetectorRates

log = logging.getLogger(__name__)

ASSUMPTIONS = (
    "non-differential misclassification: the detector's errors depend on the true treatment only, with one "
    "sensitivity and one specificity for all units (not on the outcome or covariates)",
    "the detector beats chance: sensitivity + specificity > 1",
    "the rates measured on the labelled evaluation sample hold in the analysed catalog",
    "unconfoundedness and overlap given the covariates for the true treatment",
    "the observed propensity lies in (1 - specificity, sensitivity); units outside are clipped and counted",
)


def _check_binary(t: np.ndarray) -> np.ndarray:
    values = set(np.unique(t).tolist())
    if not values <= {0, 1}:  # 0 == 0.0 == False and 1 == 1.0 == True in a set
        raise ValueError(f"observed treatment must be binary 0/1, got values {sorted(values)[:5]}")
    if len(values) < 2:
        raise ValueError("observed treatment is constant: no contrast to estimate")
    return t.astype(float)


def cross_fit_nuisances(
    y: np.ndarray,
    t_obs: np.ndarray,
    w: np.ndarray,
    *,
    propensity_model: Any = None,
    outcome_model: Any = None,
    n_folds: int = 5,
    seed: int = 0,
    groups: np.ndarray | None = None,
    fit_propensity: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Out-of-fold e(W) = P(T*=1|W), mu1*(W) = E[Y|T*=1,W] and mu0*(W) = E[Y|T*=0,W] (one model per arm).

    Parameters
    ----------
    y : array of shape (n_units,)
    t_obs : array of shape (n_units,), 0/1
    w : array of shape (n_units, n_features)
    propensity_model : scikit-learn classifier with ``predict_proba``, optional
    outcome_model : scikit-learn regressor, optional
        Defaults: histogram gradient boosting.
    n_folds : int
    seed : int
    groups : array of shape (n_units,), optional
        Cluster labels kept within one fold.
    fit_propensity : bool
        False when the caller already has e(W) (the pipeline's cross-fitted propensity); ``e`` is then None.

    Returns
    -------
    (e, mu1, mu0) : arrays of shape (n_units,) (``e`` None when not fitted)
    """
    clf = propensity_model if propensity_model is not None else HistGradientBoostingClassifier(random_state=seed)
    reg = outcome_model if outcome_model is not None else HistGradientBoostingRegressor(random_state=seed)
    folds = make_folds(len(y), n_folds=n_folds, seed=seed, stratify=t_obs, groups=groups)
    e = cross_predict(clf, w, t_obs, folds) if fit_propensity else None
    mu1, mu0 = (cross_predict(reg, w, y, folds, train_mask=t_obs == arm) for arm in (1.0, 0.0))
    return e, mu1, mu0


def _scores(
    se: np.ndarray,
    sp: np.ndarray,
    e: np.ndarray,
    phi: np.ndarray,
    delta: np.ndarray,
    t_obs: np.ndarray,
    clip: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrected per-unit scores, shape (n_rates, n_units), and the clipped-unit mask at each rate pair."""
    j = (se + sp - 1)[:, None]
    pi_raw = (e[None, :] - (1 - sp)[:, None]) / j
    clipped = (pi_raw < clip) | (pi_raw > 1 - clip)
    pi = np.clip(pi_raw, clip, 1 - clip)
    k = e * (1 - e) / (j * pi * (1 - pi))
    dlog_pi = np.where(clipped, 0.0, (1 / pi - 1 / (1 - pi)) / j)
    k_prime = k * (1 / e - 1 / (1 - e) - dlog_pi)
    return k * phi + k_prime * delta * (t_obs - e), clipped


def _stderr(scores: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Standard error of the mean of each row of ``scores`` (n_rows, n_units); cluster-robust with groups."""
    n = scores.shape[1]
    centred = scores - scores.mean(axis=1, keepdims=True)
    if groups is None:
        return np.sqrt((centred**2).sum(axis=1)) / n
    _, codes = np.unique(groups, return_inverse=True)
    sums = np.zeros((codes.max() + 1, scores.shape[0]))
    np.add.at(sums, codes, centred.T)
    return np.sqrt((sums**2).sum(axis=0)) / n


def _effect(estimate: float, stderr: float, low: float, high: float) -> dict[str, float]:
    return {"estimate": float(estimate), "stderr": float(stderr), "ci_low": float(low), "ci_high": float(high)}


def misclassification_corrected_ate(
    y: np.ndarray,
    t_observed: np.ndarray,
    w: np.ndarray | None = None,
    *,
    rates: DetectorRates,
    propensity: np.ndarray | None = None,
    outcome_treated: np.ndarray | None = None,
    outcome_control: np.ndarray | None = None,
    propensity_model: Any = None,
    outcome_model: Any = None,
    n_folds: int = 5,
    n_draws: int = 2000,
    clip: float = 0.01,
    alpha: float = 0.05,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """ATE of the true binary treatment from the detector's treatment T*, corrected for its misclassification.

    See the module docstring for the derivation and the assumptions. The uncorrected ATE (AIPW on T* with the same
    nuisances) is reported beside the corrected one.

    Parameters
    ----------
    y : array of shape (n_units,)
        Outcome (e.g. take rate).
    t_observed : array of shape (n_units,)
        The detector's 0/1 treatment (e.g. ``face_present``).
    w : array of shape (n_units, n_features), optional
        Numeric confounders. Without them (and without nuisance predictions) the correction is the 2x2 matrix
        method on the difference in means.
    rates : DetectorRates
        Sensitivity and specificity (and evaluation counts).
    propensity : array of shape (n_units,), optional
        Cross-fitted P(T*=1|W) already computed by the pipeline (its ``e_hat``).
    outcome_treated, outcome_control : array of shape (n_units,), optional
        Cross-fitted E[Y|T*=1,W] and E[Y|T*=0,W]; fitted here (one model per arm) when not given.
    propensity_model, outcome_model : scikit-learn estimators, optional
        Learners for the nuisances fitted here (see :func:`cross_fit_nuisances`).
    n_folds : int
        Cross-fitting folds.
    n_draws : int
        Monte Carlo draws of (Se, Sp, sampling error) for the interval.
    clip : float
        Bound keeping the observed propensity e and the implied true propensity pi inside [clip, 1 - clip].
    alpha : float
        1 - confidence level.
    seed : int
        Seeds the folds, the default learners and the Monte Carlo draws.
    groups : array of shape (n_units,), optional
        Cluster labels (e.g. title): cluster-robust standard errors and group-wise folds.

    Returns
    -------
    dict
        ``sensitivity``, ``specificity``, ``n_positive``, ``n_negative``, ``rates_source``, ``ate_uncorrected``,
        ``ate_corrected`` (rate and sampling uncertainty), ``ate_corrected_fixed_rates`` (sampling only), each
        ``{"estimate", "stderr", "ci_low", "ci_high"}``; ``rate_uncertainty`` (how the rates' uncertainty entered),
        ``attenuation`` (uncorrected / corrected), ``prevalence_observed``, ``prevalence_corrected``, ``n_clipped``,
        ``n_units``, ``method``, ``assumptions``, ``reading``.
    """
    y = np.asarray(y, dtype=float).ravel()
    t_obs = _check_binary(np.asarray(t_observed).ravel())
    n = len(y)
    if t_obs.shape != (n,) or not np.isfinite(y).all():
        raise ValueError(f"y must be {len(t_obs)} finite values, got shape {y.shape}")
    if not 0 < clip < 0.5:
        raise ValueError(f"clip must be in (0, 0.5), got {clip}")
    if n_draws < 100:
        raise ValueError(f"n_draws must be at least 100 for a percentile interval, got {n_draws}")
    groups = None if groups is None else np.asarray(groups)
    given = {"propensity": propensity, "outcome_treated": outcome_treated, "outcome_control": outcome_control}
    learners = {"propensity_model": propensity_model, "outcome_model": outcome_model, "n_folds": n_folds}
    e, mu1, mu0 = _nuisances(y, t_obs, w, given, learners, seed=seed, groups=groups)
    e = np.clip(e, clip, 1 - clip)
    delta = mu1 - mu0
    phi = delta + t_obs * (y - mu1) / e - (1 - t_obs) * (y - mu0) / (1 - e)
    z = stats.norm.ppf(1 - alpha / 2)

    naive, naive_se = phi.mean(), _stderr(phi[None, :], groups)[0]
    se0, sp0 = np.array([rates.sensitivity]), np.array([rates.specificity])
    psi0, clipped0 = _scores(se0, sp0, e, phi, delta, t_obs, clip)
    theta, theta_se = psi0[0].mean(), _stderr(psi0, groups)[0]
    n_clipped = int(clipped0.sum())
    if n_clipped:
        log.warning(
            "%d of %d units have an observed propensity outside (1 - Sp, Se) = (%.3f, %.3f): clipped",
            n_clipped,
            n,
            1 - rates.specificity,
            rates.sensitivity,
        )
    draws = _monte_carlo(rates, n_draws, seed, (e, phi, delta, t_obs), clip, groups)
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    out = _describe_rates(rates, t_obs)
    out.update(
        n_units=n,
        ate_uncorrected=_effect(naive, naive_se, naive - z * naive_se, naive + z * naive_se),
        ate_corrected=_effect(theta, np.std(draws, ddof=1), low, high),
        ate_corrected_fixed_rates=_effect(theta, theta_se, theta - z * theta_se, theta + z * theta_se),
        attenuation=float(naive / theta) if theta != 0 else float("nan"),
        n_clipped=n_clipped,
        n_draws=n_draws,
        assumptions=list(ASSUMPTIONS),
    )
    out["reading"] = (
        f"With detector sensitivity {rates.sensitivity:.3f} and specificity {rates.specificity:.3f}, the ATE on "
        f"the detected treatment ({naive:.4g}) understates the effect of the true treatment, estimated at "
        f"{theta:.4g} [{low:.4g}, {high:.4g}] (interval includes the uncertainty of the rates: "
        f"{out['rate_uncertainty']})."
    )
    log.info("misclassification-corrected ATE %.4g [%.4g, %.4g] (uncorrected %.4g)", theta, low, high, naive)
    return out


def _nuisances(
    y: np.ndarray,
    t_obs: np.ndarray,
    w: np.ndarray | None,
    given: dict[str, Any],
    learners: dict[str, Any],
    *,
    seed: int,
    groups: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(e, mu1, mu0): the given predictions, fitted ones for those missing, or arm means without covariates."""
    n = len(y)

    def checked(name: str) -> np.ndarray:
        a = np.asarray(given[name], dtype=float).ravel()
        if a.shape != (n,) or not np.isfinite(a).all():
            raise ValueError(f"{name} must be {n} finite values, got shape {a.shape}")
        return a

    have_outcomes = given["outcome_treated"] is not None and given["outcome_control"] is not None
    if have_outcomes and given["propensity"] is not None:
        return checked("propensity"), checked("outcome_treated"), checked("outcome_control")
    if w is None or np.asarray(w).shape[1:] == (0,):
        if any(v is not None for v in given.values()):
            raise ValueError("give all three nuisance predictions, or the covariates w to fit the missing ones")
        e = np.full(n, t_obs.mean())
        return e, np.full(n, y[t_obs == 1].mean()), np.full(n, y[t_obs == 0].mean())
    w = np.asarray(w, dtype=float)
    if w.ndim != 2 or len(w) != n or not np.isfinite(w).all():
        raise ValueError(f"w must be a finite (n_units={n}, n_features) array, got shape {w.shape}")
    e, mu1, mu0 = cross_fit_nuisances(
        y, t_obs, w, **learners, seed=seed, groups=groups, fit_propensity=given["propensity"] is None
    )
    if given["propensity"] is not None:
        e = checked("propensity")
    if have_outcomes:
        mu1, mu0 = checked("outcome_treated"), checked("outcome_control")
    return e, mu1, mu0


def _monte_carlo(
    rates: DetectorRates, n_draws: int, seed: int, parts: tuple, clip: float, groups: np.ndarray | None
) -> np.ndarray:
    """Corrected ATE draws over (Se, Sp) posterior draws plus normal sampling error; shape (n_draws,)."""
    e, phi, delta, t_obs = parts
    rng = np.random.default_rng(seed)
    se_draws, sp_draws = rates.draw(n_draws, rng)
    draws = np.empty(n_draws)
    chunk = max(1, int(1e6 // len(phi)))  # about 8 MB per (draws x units) temporary
    for start in range(0, n_draws, chunk):
        sl = slice(start, start + chunk)
        psi, _ = _scores(se_draws[sl], sp_draws[sl], e, phi, delta, t_obs, clip)
        draws[sl] = psi.mean(axis=1) + rng.standard_normal(psi.shape[0]) * _stderr(psi, groups)
    return draws


def _describe_rates(rates: DetectorRates, t_obs: np.ndarray) -> dict[str, Any]:
    """The rates, where they came from, how their uncertainty entered, and the prevalence before and after."""
    prevalence_obs = float(t_obs.mean())
    j = rates.sensitivity + rates.specificity - 1
    rate_text = (
        f"Beta posteriors (Jeffreys prior) from {rates.n_positive} positive and {rates.n_negative} negative "
        "labelled images, combined with sampling error by Monte Carlo"
        if rates.has_counts
        else "none: no evaluation counts, the rates are taken as exact (the interval carries sampling error only)"
    )
    return {
        "method": "aipw_misclassification_corrected",
        "sensitivity": float(rates.sensitivity),
        "specificity": float(rates.specificity),
        "n_positive": rates.n_positive,
        "n_negative": rates.n_negative,
        "rates_source": rates.source,
        "rate_uncertainty": rate_text,
        "prevalence_observed": prevalence_obs,
        "prevalence_corrected": float(np.clip((prevalence_obs + rates.specificity - 1) / j, 0, 1)),
    }


_STEP_KEYS = {
    "metrics_file",
    "level",
    "sensitivity",
    "specificity",
    "n_positive",
    "n_negative",
    "n_draws",
    "clip",
    "cluster",
}


def run_step(ctx: Any) -> dict[str, Any]:
    """Pipeline step: the results contract's ``misclassification`` block for a binary detected treatment.

    Config: the ``sensitivity.misclassification`` node (or a top-level ``misclassification`` node): the rates from
    ``metrics_file`` (``vision.evaluate``'s ``metrics.json``, key ``level``) or plain ``sensitivity`` /
    ``specificity`` (with optional ``n_positive`` / ``n_negative``), ``n_draws``, ``clip`` and ``cluster`` (a column
    for cluster-robust errors, e.g. ``title_id``). The observed propensity is the pipeline's cached cross-fitted
    ``e_hat``, and the per-arm outcome models mu1*, mu0* are its per-arm outcome predictions (chosen learners, repeats
    averaged).
    """
    from causal.nuisance import derive_seed, make_regressor

    cfg = ctx.step_config("misclassification") or ctx.step_config("sensitivity").get("misclassification") or {}
    unknown = sorted(set(cfg) - _STEP_KEYS - {"enabled"})
    if unknown:
        raise ValueError(f"config key sensitivity.misclassification: unknown key(s) {unknown}")
    rates = DetectorRates.from_config(cfg)
    ds, keep = ctx.dataset, np.asarray(ctx.keep, dtype=bool)
    groups = None
    if cfg.get("cluster"):
        if cfg["cluster"] not in ds.frame.columns:
            raise ValueError(f"config key sensitivity.misclassification.cluster: no column {cfg['cluster']!r}")
        groups = ds.frame.loc[keep, cfg["cluster"]].to_numpy()
    nuisance_cfg = ctx.step_config("nuisance")
    nuis = ctx.nuisance
    seed = derive_seed(ctx.seed, "misclassification")
    params = getattr(nuis, "regressor_params_", None) or nuisance_cfg.get("regressor")
    learner = make_regressor(params, seed=seed, n_jobs=int(nuisance_cfg.get("n_jobs", 1)))
    out = misclassification_corrected_ate(
        ds.y[keep],
        ds.t[keep],
        ctx.features.loc[keep].to_numpy(dtype=float),
        rates=rates,
        propensity=nuis.propensity_[keep],
        # The shared cross-fit's per-arm outcome models of the observed treatment: nothing is refitted here.
        outcome_treated=nuis.outcome_treated_[keep],
        outcome_control=nuis.outcome_control_[keep],
        outcome_model=learner,
        n_folds=int(nuisance_cfg.get("folds", 5)),
        n_draws=int(cfg.get("n_draws", 2000)),
        clip=float(cfg.get("clip", 0.01)),
        alpha=ctx.alpha,
        seed=seed,
        groups=groups,
    )
    return out
