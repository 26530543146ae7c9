"""Run an experiment end to end from config: annotate -> evaluate -> data -> causal steps -> report.

Examples
--------
python scripts/run_experiment.py experiment=face_presence data=sample input=assets_sample/images \
    labels=assets_sample/labels.csv                                # the demo: annotate, evaluate, estimate, report
python scripts/run_experiment.py                                   # simulator only, causal forest, tuned XGBoost
python scripts/run_experiment.py experiment=face_presence estimator=linear_dml seed=3
python scripts/run_experiment.py data=table data.path=my.csv roles.treatment=t roles.outcome=y \
    'roles.confounders=[a,b,c]' 'roles.groups=[g]' hydra.run.dir=out/run1
python scripts/run_experiment.py -m estimator=linear_dml,causal_forest seed=1,2 hydra/launcher=joblib

`steps` selects the stages, in this order: annotate and evaluate (vision; need `input` and `labels`), then the
causal steps (screening, overlap, dml, mediation, sensitivity), then report. Outputs land in Hydra's run
directory: results.json, report.html, PNG plots, timings.json, evaluation/ (detector metrics) and the resolved
config under .hydra/. Annotations go to `paths.annotations` (default: outputs/annotations/<input>-<vision hash>),
shared by every run with the same vision config. With `paths.cache` set, the evaluation and the causal steps reuse
their stored outputs when their config and input files are unchanged.

The same as ``creative-insights experiment`` (causal/cli.py), with the repository's conf/: the vision stages are
plugins handed to causal.experiment.run_experiment (causal never imports vision), loaded (with torch) only when
annotate or evaluate runs. Exit codes: 0 done; 1 bad data or a failed step (the other steps' results are
written); 2 a config error; 130 / 143 interrupted.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from causal.cli import experiment_command


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return experiment_command(cfg)


if __name__ == "__main__":
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    main()
