"""Data setups of scripts/bench_accuracy.py: offline tables whose answer is known.

Each setup gives a :class:`Replication`: the covariate matrix the learners see, the 0/1 treatment, the outcome, the
estimand and its truth. Synthetic setups know every unit's effect (the truth is the sample's mean effect over the
estimand's population); a real table (``lalonde_cps``) has a published experimental answer with its interval, and
the seed only changes the learners' fold splits and random states.

* ``nw_a`` .. ``nw_d`` -- Nie & Wager (2021) setups A-D as in causalml's ``synthetic_data(mode=1..4)``, p = 6,
  sigma = 1: A difficult nuisance, easy effect; B randomised trial; C easy propensity, difficult baseline, constant
  effect; D unrelated treatment and control arms.
* ``kang_schafer`` -- Kang & Schafer (2007): the learners see only the transformed covariates; effect
  10 + 5 Z1 (varies with the propensity, so the ATE differs from a variance-weighted average).
* ``simulator`` -- the project's simulated catalog (``causal.simulate``) with n artworks, its encoded confounders.
* ``ihdp_b`` -- Hill (2011) response surface B on the IHDP covariates (747 children, 25 covariates, treated
  children of non-white mothers removed), as shipped with EconML (``econml.data.dgps.ihdp_surface_B``); the seed
  draws the coefficients and the noise; n is always 747.
* ``lalonde_cps`` -- LaLonde's (1986) job-training table in Dehejia & Wahba's (1999) subsample: the 185 NSW
  trainees against the 15,992 CPS-1 comparison men (package ``causaldata``: ``nsw_mixtape``, ``cps_mixtape``;
  shipped inside the package, nothing downloaded). Estimand: the effect on the treated (1978 earnings, dollars);
  truth: the experimental answer, treated minus the NSW's randomised controls, 1,794 with standard error 633
  (Dehejia & Wahba, 1999, Table 3), recomputed here from the same table. Covariates: age, education, black,
  hispanic, married, no degree, 1974 and 1975 earnings and their zero indicators (Dehejia & Wahba's set, without
  their hand-made squares and interactions).
* ``acic2016`` -- the 2016 Atlantic Causal Inference Conference competition (Dorie et al. 2019): 4,802 units, 58
  covariates of a real study (three categorical, one-hot coded here), simulated treatment and outcome; the ten
  instances shipped inside the package ``causallib`` (``datasets/data/acic_challenge_2016``; read from the
  package's files, not imported: causallib pins pandas < 3, so install it with ``pip install --no-deps
  causallib``); replication ``seed`` is instance ``seed % 10 + 1``; truth: the sample mean of mu1 - mu0.
* ``nhefs`` -- NHEFS (Hernan & Robins, *Causal Inference: What If*, ch. 12-13), also inside ``causallib``:
  quitting smoking (``qsmk``) on weight gain 1971-1982 (kg), the 1,566 people with a 1982 weight; covariates
  sex, race, age, education, smoking intensity and years, exercise, activity and 1971 weight (the book's set,
  without its squares). Truth: the book's standardised estimate, 3.5 kg with 95% interval [2.6, 4.5] (ch. 13);
  inverse probability weighting gives 3.4 [2.4, 4.5] (ch. 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

REPO = Path(__file__).resolve().parents[1]
SETUPS = ("nw_a", "nw_b", "nw_c", "nw_d", "kang_schafer", "simulator", "ihdp_b", "lalonde_cps", "acic2016", "nhefs")
# Real covariate tables: their own rows, whatever --sizes says.
FIXED_SIZE = {"ihdp_b": 747, "lalonde_cps": 16177, "acic2016": 4802, "nhefs": 1566}
# Dehejia & Wahba (1999), Table 3: the NSW experimental estimate of the effect on the treated and its standard error.
LALONDE_EXPERIMENTAL = (1794.0, 633.0)
# Hernan & Robins, What If, ch. 13: the standardised (parametric g-formula) effect of quitting smoking, kg.
NHEFS_PUBLISHED = (3.5, 2.6, 4.5)


@dataclass
class Replication:
    """One data set: ``x`` (n, p), ``t`` (n,) 0/1, ``y`` (n,), the ``estimand`` (``ate`` or ``att``) and its
    ``truth``; ``published`` is the (low, high) 95% interval of a published answer, when the truth is one;
    ``clusters`` the rows' cluster labels where the data declare them (the simulator's titles, ``data.cluster``);
    ``oracle`` the true nuisances (e, mu1, mu0), each of shape (n,), where the setup knows them (Nie & Wager, Kang &
    Schafer): AIPW with them is what perfect nuisance models would give, the noise floor of a row."""

    x: np.ndarray
    t: np.ndarray
    y: np.ndarray
    truth: float
    estimand: str = "ate"
    published: tuple[float, float] | None = None
    clusters: np.ndarray | None = None
    oracle: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def nie_wager(mode: str, n: int, seed: int, p: int = 6, sigma: float = 1.0) -> tuple:
    """Setups A-D of Nie & Wager (2021), as causalml's ``synthetic_data``; returns (X, t, y, tau, (e, mu1, mu0))."""
    rng = np.random.default_rng(seed)
    if mode == "a":
        x = rng.uniform(size=(n, p))
        b = np.sin(np.pi * x[:, 0] * x[:, 1]) + 2 * (x[:, 2] - 0.5) ** 2 + x[:, 3] + 0.5 * x[:, 4]
        e = np.clip(np.sin(np.pi * x[:, 0] * x[:, 1]), 0.1, 0.9)
        tau = (x[:, 0] + x[:, 1]) / 2
    else:
        x = rng.normal(size=(n, p))
        if mode == "b":
            b = np.maximum.reduce([x[:, 0] + x[:, 1], x[:, 2], np.zeros(n)]) + np.maximum(x[:, 3] + x[:, 4], 0)
            e = np.full(n, 0.5)
            tau = x[:, 0] + np.log1p(np.exp(x[:, 1]))
        elif mode == "c":
            b = 2 * np.log1p(np.exp(x[:, 0] + x[:, 1] + x[:, 2]))
            e = 1 / (1 + np.exp(x[:, 1] + x[:, 2]))
            tau = np.ones(n)
        else:
            b = (np.maximum(x[:, 0] + x[:, 1] + x[:, 2], 0) + np.maximum(x[:, 3] + x[:, 4], 0)) / 2
            e = 1 / (1 + np.exp(-x[:, 0]) + np.exp(-x[:, 1]))
            tau = np.maximum(x[:, 0] + x[:, 1] + x[:, 2], 0) - np.maximum(x[:, 3] + x[:, 4], 0)
    t = (rng.uniform(size=n) < e).astype(int)
    y = b + (t - 0.5) * tau + sigma * rng.normal(size=n)
    return x, t, y, tau, (e, b + tau / 2, b - tau / 2)


def kang_schafer(n: int, seed: int) -> tuple:
    """Kang & Schafer (2007) with a treatment effect 10 + 5 Z1; the learners see the transformed covariates. Returns
    (X, t, y, tau, (e, mu1, mu0))."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4))
    e = special.expit(-z[:, 0] + 0.5 * z[:, 1] - 0.25 * z[:, 2] - 0.1 * z[:, 3])
    t = (rng.uniform(size=n) < e).astype(int)
    tau = 10 + 5 * z[:, 0]
    mu0 = 210 + 27.4 * z[:, 0] + 13.7 * (z[:, 1] + z[:, 2] + z[:, 3])
    y = mu0 + rng.normal(size=n) + t * tau
    x = np.column_stack(
        [
            np.exp(z[:, 0] / 2),
            z[:, 1] / (1 + np.exp(z[:, 0])) + 10,
            (z[:, 0] * z[:, 2] / 25 + 0.6) ** 3,
            (z[:, 1] + z[:, 3] + 20) ** 2,
        ]
    )
    return x, t, y, tau, (e, mu0 + tau, mu0)


def compose(overrides: list[str]):
    """The project's config (conf/config.yaml) composed with Hydra overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def simulator(n: int, seed: int) -> tuple:
    """The project's catalog: the encoded confounders and modifiers the pipeline's nuisances see; returns
    (X, t, y, tau, cluster labels of ``data.cluster``)."""
    from causal.context import to_plain
    from causal.data import Roles, load_from_config
    from causal.simulate import simulate_from_config

    cfg = compose([f"data.n_titles={max(n // 10, 1)}", f"seed={seed}"])
    roles = Roles.from_config({**to_plain(cfg.roles), "mediator": None})
    ds, _ = load_from_config(cfg.data, roles, seed=seed)
    units = simulate_from_config(cfg.data, seed=seed).units
    tau = units.set_index("image_id")["tau"].reindex(ds.frame["image_id"]).to_numpy()
    extra = [c for c in ds.X.columns if c not in ds.W.columns]
    x = pd.concat([ds.W, ds.X[extra]], axis=1).to_numpy(dtype=float)
    clusters = ds.frame[cfg.data.cluster].to_numpy() if cfg.data.get("cluster") else None
    return x, ds.t.astype(int), ds.y, tau, clusters


def ihdp_b(seed: int) -> tuple:
    """IHDP response surface B (EconML's copy of Hill's covariates); drops EconML's intercept column."""
    from econml.data.dgps import ihdp_surface_B

    y, t, x, tau = ihdp_surface_B(random_state=seed)
    return np.asarray(x[:, 1:], dtype=float), np.asarray(t, dtype=int), np.asarray(y, dtype=float), tau


LALONDE_COVARIATES = ("age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75")


def lalonde_cps() -> Replication:
    """NSW trainees (Dehejia & Wahba's subsample) against CPS-1 controls; truth: the experimental ATT."""
    from causaldata import cps_mixtape, nsw_mixtape

    nsw = nsw_mixtape.load_pandas().data
    cps = cps_mixtape.load_pandas().data
    treated = nsw[nsw["treat"] == 1]
    experimental = float(treated["re78"].mean() - nsw.loc[nsw["treat"] == 0, "re78"].mean())
    if abs(experimental - LALONDE_EXPERIMENTAL[0]) > 1:
        raise RuntimeError(f"causaldata's NSW table gives {experimental:.0f}, not Dehejia & Wahba's 1794")
    table = pd.concat([treated, cps], ignore_index=True)
    x = table[list(LALONDE_COVARIATES)].astype(float)
    x["u74"] = (x["re74"] == 0).astype(float)
    x["u75"] = (x["re75"] == 0).astype(float)
    est, se = LALONDE_EXPERIMENTAL
    return Replication(
        x=x.to_numpy(),
        t=table["treat"].to_numpy(dtype=int),
        y=table["re78"].to_numpy(dtype=float),
        truth=est,
        estimand="att",
        published=(est - 1.96 * se, est + 1.96 * se),
    )


def causallib_data(*parts: str) -> pd.DataFrame:
    """A CSV shipped inside the ``causallib`` wheel, read without importing causallib (see the module doc)."""
    import importlib.util

    spec = importlib.util.find_spec("causallib")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this setup reads its data from the causallib wheel: pip install --no-deps causallib")
    return pd.read_csv(Path(spec.submodule_search_locations[0], "datasets", "data", *parts))


def acic2016(seed: int) -> Replication:
    """ACIC 2016 instance ``seed % 10 + 1``: covariates one-hot coded, truth the sample mean of mu1 - mu0."""
    x = causallib_data("acic_challenge_2016", "x.csv")
    x = pd.get_dummies(x, columns=[c for c in x if not pd.api.types.is_numeric_dtype(x[c])], dtype=float)
    sim = causallib_data("acic_challenge_2016", f"zymu_{seed % 10 + 1}.csv")
    t = sim["z"].to_numpy(dtype=int)
    y = np.where(t == 1, sim["y1"], sim["y0"]).astype(float)
    return Replication(x=x.to_numpy(dtype=float), t=t, y=y, truth=float(np.mean(sim["mu1"] - sim["mu0"])))


def nhefs() -> Replication:
    """NHEFS: quitting smoking on weight gain; truth and interval: Hernan & Robins's standardised estimate."""
    data = causallib_data("nhefs", "NHEFS.csv").dropna(subset=["wt82"])
    x = data[["sex", "race", "age", "smokeintensity", "smokeyrs", "wt71"]].astype(float)
    x = x.join(pd.get_dummies(data[["education", "exercise", "active"]].astype(str), dtype=float))
    est, low, high = NHEFS_PUBLISHED
    return Replication(
        x=x.to_numpy(dtype=float),
        t=data["qsmk"].to_numpy(dtype=int),
        y=data["wt82_71"].to_numpy(dtype=float),
        truth=est,
        published=(low, high),
    )


def make_data(setup: str, n: int, seed: int) -> Replication:
    """The replication ``seed`` of ``setup`` with ``n`` units (ignored by the real tables)."""
    if setup == "lalonde_cps":
        return lalonde_cps()
    if setup == "acic2016":
        return acic2016(seed)
    if setup == "nhefs":
        return nhefs()
    if setup == "simulator":
        x, t, y, tau, clusters = simulator(n, seed)
        return Replication(x=x, t=t, y=y, truth=float(np.mean(tau)), clusters=clusters)
    oracle = None
    if setup == "ihdp_b":
        x, t, y, tau = ihdp_b(seed)
    elif setup.startswith("nw_"):
        x, t, y, tau, oracle = nie_wager(setup[-1], n, seed)
    elif setup == "kang_schafer":
        x, t, y, tau, oracle = kang_schafer(n, seed)
    else:
        raise ValueError(f"unknown setup {setup!r}; choose from {list(SETUPS)}")
    return Replication(x=x, t=t, y=y, truth=float(np.mean(tau)), oracle=oracle)
