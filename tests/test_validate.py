"""Config validation (causal/validate.py): every bad key of the shipped config is refused, naming its full key,
before any model is fitted; every shipped config passes; the key lists agree with each module's own check."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from causal import pipeline
from causal.nuisance import CrossFitNuisance
from causal.validate import ConfigError, allowed_keys, check_columns, validate_config

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")


def _compose(overrides=()):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def fitted(monkeypatch):
    """Names of the steps that started and of the nuisance fits made: empty means nothing was fitted."""
    calls: list[str] = []

    def no_fit(self, *args, **kwargs):
        calls.append("nuisance.fit")
        raise AssertionError("a nuisance model was fitted")

    def recording(name, func):
        def step(ctx):
            calls.append(f"step {name}")
            return func(ctx)

        return step

    monkeypatch.setattr(CrossFitNuisance, "fit", no_fit)
    for name, func in list(pipeline.STEPS.items()):
        monkeypatch.setitem(pipeline.STEPS, name, recording(name, func))
    return calls


# The shipped defaults with one bad key each. `+key=...` adds a key the way a typo in an experiment file does (on the
# command line Hydra already refuses a new key without `+`). A value only read by a step outside the default
# `steps` (sensitivity, mediation) is set on the shipped experiment whose steps read it.
FACE_PRESENCE = ["experiment=face_presence"]  # steps: ..., overlap, dml, sensitivity
BAD_KEYS = [
    (["+dml.comapre=[]"], "dml.comapre", "did you mean dml.compare"),
    (["+estimator.n_estimator=100"], "estimator.n_estimator", "did you mean estimator.n_estimators"),
    (["+nuisance.classifier.max_dpeth=3"], "nuisance.classifier.max_dpeth", "did you mean nuisance.classifier.max_d"),
    (["+nuisance.grid.regresor={max_depth: [2]}"], "nuisance.grid.regresor", "did you mean nuisance.grid.regressor"),
    (["+overlap.treshold=0.05"], "overlap.treshold", "did you mean overlap.threshold"),
    (["+sensitivity.refutations.n_sim=2"], "sensitivity.refutations.n_sim", "did you mean"),
    (["+mediation.ml.nfolds=3"], "mediation.ml.nfolds", "did you mean mediation.ml.n_folds"),
    (["+data.prepare.mising=drop"], "data.prepare.mising", "did you mean data.prepare.missing"),
    (["+data.n_title=50"], "data.n_title", "did you mean data.n_titles"),
    (["+roles.treatmnt=face_present"], "roles.treatmnt", "did you mean roles.treatment"),
    (["+sensitivty={}"], "sensitivty", "did you mean sensitivity"),
    (["steps=[screening,overlap,dml,explain]"], "steps", "unknown step(s) ['explain']"),
    (["steps=[screening,dml,dml]"], "steps", "more than once"),
    (["roles.modifiers=[]"], "roles.modifiers", "causal_forest needs effect modifiers"),
    (["dml.compare=[{name: causal_forest}]", "estimator=linear_dml", "roles.modifiers=[]"], "roles.modifiers", "dml"),
    (["dml.compare=[{name: linear_dml, fit_cate_intercep: true}]"], "dml.compare[0].fit_cate_intercep", "did you"),
    (["estimator.n_estimators=201"], "estimator.n_estimators", "not a multiple of estimator.subforest_size"),
    (["estimator.max_samples=0.8"], "estimator.max_samples", "not in (0, 0.5]"),
    (["alpha=1.5"], "alpha", "not in (0, 1)"),
    (["overlap.threshold=0.5"], "overlap.threshold", "not in [0, 0.5)"),
    (["overlap.rule=crumb"], "overlap.rule", "did you mean crump"),
    (["nuisance.folds=1"], "nuisance.folds", "not in [2, inf)"),
    (["nuisance.outcome_loss=weigthed"], "nuisance.outcome_loss", "did you mean weighted"),
    (["nuisance.stack=[outcom]"], "nuisance.stack", "did you mean outcome"),
    (["nuisance.outcome_mode=arm"], "nuisance.outcome_mode", "did you mean arms"),
    (["data=table"], "data.path", "required value is not set"),
    (["roles.groups=???"], "roles.groups", "required value is not set"),
    ([*FACE_PRESENCE, "sensitivity.ovb.benchmark_covariates=[popularity]"], "sensitivity.ovb.benchmark_covariates", ""),
    ([*FACE_PRESENCE, "sensitivity.refutations.kinds=[placebo]"], "sensitivity.refutations.kinds", "placebo_treat"),
    ([*FACE_PRESENCE, "sensitivity.analyses=[e_value,misclassification]"], "sensitivity.misclassification", "rates"),
    ([*FACE_PRESENCE, "sensitivity.analyses=[e_valu]"], "sensitivity.analyses", "did you mean e_value"),
    ([*FACE_PRESENCE, "sensitivity.refutations.subset_fraction=1.0"], "sensitivity.refutations.subset_fraction", ""),
    (["experiment=face_count_mediation", "mediation.primary=ml_dml"], "mediation.primary", "not among"),
    (["experiment=face_count_mediation", "mediation.n_boot=1"], "mediation.n_boot", "not in [2, inf)"),
    # Column checks: after the (simulated) data are loaded, still before the first step.
    (["screening.features=[face_present,face_cnt]"], "screening.features", "did you mean 'face_count'"),
    (["experiment=face_count_mediation", "mediation.cluster=titel_id"], "mediation.cluster", "did you mean 'title_id'"),
]


@pytest.mark.parametrize(("overrides", "key", "fragment"), BAD_KEYS, ids=[case[1] for case in BAD_KEYS])
def test_bad_key_is_refused_before_any_model_is_fitted(overrides, key, fragment, fitted, tmp_path):
    cfg = _compose(overrides)
    with pytest.raises(ConfigError) as caught:
        pipeline.run(cfg, tmp_path)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"config key {key}: ") and fragment in str(caught.value)
    assert fitted == []  # no step started, no nuisance model fitted
    assert not (tmp_path / "results.json").exists()


def test_the_spy_sees_a_fit(fitted, tmp_path):
    """The fixture above does catch a fitted model: a valid config reaches the nuisance fit (and the spy)."""
    results = pipeline.run(_compose(["data.n_titles=20", "steps=[overlap]"]), tmp_path)
    assert fitted == ["step overlap", "nuisance.fit"] and results["errors"][0]["step"] == "overlap"


def test_end_to_end_runner_refuses_before_the_annotate_stage(tmp_path, fitted):
    """causal.experiment.run_experiment checks the config before annotating (the slow vision stage)."""
    from causal.experiment import run_experiment

    annotated = []
    cfg = _compose([*FACE_PRESENCE, f"input={REPO / 'assets_sample' / 'images'}", "sensitivity.ovb.q=0"])
    with pytest.raises(ConfigError, match="config key sensitivity.ovb.q: 0 is not in"):
        run_experiment(cfg, tmp_path, annotate_stage=lambda *args, **kwargs: annotated.append(args))
    assert annotated == [] and fitted == []


def _shipped():
    experiments = [f"experiment={p.stem}" for p in sorted((REPO / "conf" / "experiment").glob("*.yaml"))]
    groups = [
        f"{g}={p.stem}" for g in ("data", "estimator", "nuisance") for p in sorted((REPO / "conf" / g).glob("*.y*"))
    ]
    return [[], *([e] for e in experiments), *([g] for g in groups)]


@pytest.mark.parametrize("overrides", _shipped(), ids=lambda o: " ".join(o) or "defaults")
def test_every_shipped_config_passes(overrides):
    cfg = _compose(overrides)
    if cfg.data.name == "table":  # data.path is data=table's one mandatory value (`???`)
        cfg = _compose([*overrides, "data.path=my.csv"])
    validate_config(cfg)
    roles = cfg.roles
    columns = [roles.treatment, roles.outcome, *roles.confounders, *roles.groups, roles.mediator, "title_id"]
    check_columns(cfg, columns)
    with pytest.raises(ConfigError, match=f"config key roles.treatment: column '{roles.treatment}' is not"):
        check_columns(cfg, columns[1:])


def test_step_nodes_outside_steps_are_not_value_checked():
    """The default sensitivity node names title_popularity; a table without it runs when sensitivity is not a step."""
    cfg = _compose(["roles.confounders=[genre]"])  # default steps: screening, overlap, dml
    validate_config(cfg)
    with pytest.raises(ConfigError, match="benchmark_covariates: \\['title_popularity'\\] are not confounders"):
        validate_config(_compose(["roles.confounders=[genre]", "steps=[overlap,dml,sensitivity]"]))


def test_misclassification_rates_from_the_evaluate_step_are_accepted():
    base = [*FACE_PRESENCE, "sensitivity.analyses=[misclassification]"]
    validate_config(_compose([*base, "labels=labels.csv", "evaluate.feed_misclassification=true"]))
    rates = ["sensitivity.misclassification.sensitivity=0.9", "sensitivity.misclassification.specificity=0.95"]
    validate_config(_compose([*base, *rates]))
    with pytest.raises(ConfigError, match="config key sensitivity.misclassification: .* no detector error rates"):
        validate_config(_compose([*base, rates[0]]))
    with pytest.raises(ConfigError, match="misclassification.metrics_file: /nonexistent.json is not a file"):
        validate_config(_compose([*base, "sensitivity.misclassification.metrics_file=/nonexistent.json"]))


def test_every_problem_is_listed_once():
    with pytest.raises(ConfigError) as caught:
        validate_config(_compose(["+dml.comapre=[]", "overlap.threshold=-1"]))
    assert sorted(key for key, _ in caught.value.problems) == ["dml.comapre", "overlap.threshold"]
    assert "\n" not in str(caught.value)  # one line for the console


# ------------------------------------------------------------------------------------- agreement with the modules
def test_key_lists_match_each_modules_own_check():
    """What validate allows is what each module accepts, so a key passes both checks or neither."""
    from causal import data, misclassification, overlap, sensitivity
    from causal import nuisance as nuis
    from causal.mediation import step as mediation

    assert allowed_keys("mediation") == mediation._STEP_KEYS
    assert allowed_keys("mediation.ml") == mediation._ML_KEYS
    assert allowed_keys("sensitivity") == sensitivity._STEP_KEYS
    assert allowed_keys("sensitivity.ovb") == sensitivity._OVB_KEYS
    assert allowed_keys("sensitivity.dml") == sensitivity._DML_KEYS
    assert allowed_keys("sensitivity.refutations") == sensitivity._REFUTE_KEYS
    assert allowed_keys("sensitivity.misclassification") == misclassification._STEP_KEYS | {"enabled"}
    assert allowed_keys("data.prepare") == set(data._PREPARE_KEYS)
    for key in allowed_keys("overlap"):
        overlap.from_config({key: overlap.from_config({})[key]})  # raises on a key it does not know
    with pytest.raises(ValueError, match="unknown key"):
        overlap.from_config({"treshold": 0.1})
    shipped = OmegaConf.to_container(_compose().nuisance, resolve=True)
    for key in allowed_keys("nuisance"):
        nuis.from_config({key: shipped.get(key)}, seed=0)  # raises on a key it does not know
    with pytest.raises(ValueError, match="unknown key"):
        nuis.from_config({"fold": 3}, seed=0)


def test_name_lists_match_the_modules():
    from causal import data, mediation, overlap, sensitivity, validate

    assert validate.ANALYSES == sensitivity.ANALYSES and validate.REFUTATIONS == sensitivity.REFUTATIONS
    assert tuple(mediation.MEDIATION_METHODS) == validate.MEDIATION_METHODS
    assert validate.OVERLAP_RULES == overlap.RULES and validate.OVERLAP_WEIGHTINGS == overlap.WEIGHTINGS
    assert validate.MISSING_POLICIES == data.MISSING_POLICIES


def test_overlap_defaults_in_code_are_the_shipped_config():
    """The library's defaults (diagnose, trim_mask, from_config) are the values conf/config.yaml ships, so a caller
    of the library and a user of the command get the same trimming rule."""
    import inspect

    from causal import overlap

    shipped = OmegaConf.to_container(_compose([]).overlap)
    assert overlap.from_config({}) == overlap.from_config(shipped) == shipped
    params = inspect.signature(overlap.diagnose).parameters
    assert {k: params[k].default for k in shipped} == shipped
    trim = inspect.signature(overlap.trim_mask).parameters
    assert (trim["rule"].default, trim["threshold"].default) == (shipped["rule"], shipped["threshold"])


# ----------------------------------------------------------------------------------------- structured configs
def test_shipped_yaml_repeats_the_structured_defaults_exactly():
    """conf/ repeats the schema's defaults for its readers: one truth, so the two may never differ."""
    from causal.config_schema import defaults, schema_nodes

    shipped = OmegaConf.to_container(_compose([]), resolve=False)
    checked = 0
    for path, cls in schema_nodes().items():
        node = shipped
        for part in path.split("."):
            node = node[part]
        for key, value in defaults(cls).items():
            if isinstance(value, dict):
                continue  # a nested node, compared as its own path
            # A key the YAML leaves out is an optional one: its default must then be None.
            assert node.get(key) == value, f"{path}.{key}: conf/ says {node.get(key)!r}, the schema {value!r}"
            checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    ("override", "key", "wanted"),
    [
        ("overlap.bins=many", "overlap.bins", "int"),
        ("mediation.ml.interaction=sometimes", "mediation.ml.interaction", "bool"),
        ("dml.moderation=maybe", "dml.moderation", "bool"),
        ("sensitivity.ovb.kd=[1,strong]", "sensitivity.ovb.kd", "list[float]"),
        ("evaluate.iou_threshold=half", "evaluate.iou_threshold", "float"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(override, key, wanted, fitted):
    with pytest.raises(ConfigError) as caught:
        validate_config(_compose(["steps=[screening,overlap,dml,mediation,sensitivity]", override]))
    # The type is named by the schema's check, or by a step's own range check where it runs first.
    own = ("must be an integer", "must be a number")
    assert any(k == key and ("must be " + wanted in m or m.startswith(own)) for k, m in caught.value.problems)
    assert fitted == []  # nothing was fitted: validation runs first


def test_schemas_are_in_hydras_config_store():
    from hydra.core.config_store import ConfigStore

    from causal.config_schema import SCHEMAS, register_configs

    register_configs()
    stored = ConfigStore.instance().list("schema")
    assert {f"{name}.yaml" for name in SCHEMAS} <= set(stored)
