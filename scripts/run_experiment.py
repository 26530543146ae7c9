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

This script is the composition root: it hands the vision stages to causal.experiment.run_experiment (causal never
imports vision), sets up Ray, prints the summary and turns failures into exit codes. The vision package (and so
torch) is imported only when annotate or evaluate runs.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from causal.data import DataError
from causal.experiment import run_experiment
from causal.summary import fmt_num, summary_lines
from causal.validate import ConfigError, validate_config

log = logging.getLogger("run_experiment")


def annotate_stage(*args: Any, **kwargs: Any) -> dict:
    from vision.stages import annotate_stage as stage  # torch only from here

    return stage(*args, **kwargs)


def evaluate_stage(*args: Any, **kwargs: Any) -> dict:
    from vision.stages import evaluate_stage as stage

    return stage(*args, **kwargs)


def _select(cfg: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(cfg, key, default=default)


class _Terminated(BaseException):  # like KeyboardInterrupt: no "except Exception" swallows it
    """SIGTERM as an exception, so that it gets Ctrl-C's clean-up and message."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Exit codes: 0 done; 1 bad data, or a step failed (the others' results are written); 2 a config error;
    130 / 143 interrupted (Ctrl-C / SIGTERM)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, _raise_terminated)
    started_ray = False
    try:
        validate_config(cfg)  # before Ray starts and before the annotate stage
        if _select(cfg, "estimator.use_ray", False):
            # EconML's and the nuisance cross-fit's Ray tasks run where `ray.address` says.
            from vision.ray_runner import init_ray

            started_ray = init_ray(_select(cfg, "ray"))
        results, info = run_experiment(cfg, out_dir, annotate_stage=annotate_stage, evaluate_stage=evaluate_stage)
    except ConfigError as err:
        # One line naming the key: the run stopped before any model was fitted.
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    except OmegaConfBaseException as err:
        what = "required value is not set (???)" if isinstance(err, MissingMandatoryValue) else "cannot be resolved"
        print(f"config error: config key {getattr(err, 'full_key', '?')}: {what}", file=sys.stderr)
        sys.exit(2)
    except (DataError, ValueError, FileNotFoundError, ImportError, ConnectionError) as err:
        # Bad data or config: the message names the file, column or key; a traceback would bury it.
        sys.exit(f"error: {err}")
    except (KeyboardInterrupt, _Terminated) as err:
        print(
            "interrupted: finished annotation parts and cached steps are kept; run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(143 if isinstance(err, _Terminated) else 130)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    _print_summary(results, info, out_dir)
    for failed in results.get("errors") or []:
        message = (failed["message"].splitlines() or [""])[0]
        skipped = f"; skipped {', '.join(failed['skipped'])}" if failed.get("skipped") else ""
        print(
            f"error: step {failed['step']} failed ({failed['type']}: {message}){skipped}; "
            f"the other steps' results are in {out_dir / 'results.json'}",
            file=sys.stderr,
        )
    if results.get("errors"):
        sys.exit(1)
    ate = results.get("ate") or {}
    return ate.get("estimate")


def _print_summary(results: dict, info: dict, out_dir: Path) -> None:
    ann = info.get("annotate")
    if ann:
        state = "reused" if ann["reused"] else f"{ann['seconds']:.1f}s"
        print(
            f"annotations: {ann['output']} ({ann['ok']} images, {ann['faces']} faces, {ann['errors']} errors; {state})"
        )
    if info.get("metrics"):
        il = info["metrics"].get("image_level") or {}
        print(
            f"detector on labels: AP@0.5 {fmt_num(info['metrics'].get('ap50'), 3)}, image sensitivity "
            f"{fmt_num(il.get('sensitivity'), 3)}, specificity {fmt_num(il.get('specificity'), 3)}"
        )
    if results:
        if info.get("causal_cached"):
            print("causal steps: unchanged config and inputs, reused the cached results")
        print("\n".join(summary_lines(results)))
        print(f"results: {out_dir / 'results.json'}")
    if info.get("report"):
        print(f"report:  {info['report']}")


if __name__ == "__main__":
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    main()
