"""The ``creative-insights`` console command, and the experiment entry point that ``scripts/run_experiment.py`` wraps.

    creative-insights experiment [Hydra overrides]      # = python scripts/run_experiment.py [overrides]
    creative-insights annotate input=DIR output=DIR     # = python scripts/annotate.py [overrides]
    creative-insights evaluate labels=CSV images=DIR    # = python scripts/evaluate_detector.py [overrides]
    creative-insights --help

The configs ship in the wheel (the repository's ``conf/`` as the package ``creative_insights_conf``), so the command
works from any directory. Commands and stages of the vision package are plugins: the wheel registers them under the
entry-point groups ``creative_insights.commands`` and ``creative_insights.stages``, and causal looks them up by name
and loads them only when used. So causal never imports vision (or torch), and a causal-only run never loads them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from causal.config_schema import register_configs
from causal.data import DataError
from causal.experiment import run_experiment
from causal.summary import fmt_num, summary_lines
from causal.validate import ConfigError, validate_config

log = logging.getLogger(__name__)
register_configs()  # the structured configs (causal/config_schema.py) under schema/<node>, before any composition

CONFIG_PACKAGE = "pkg://creative_insights_conf"
# Where the plugins live when the package metadata has no entry points (a source tree used without installing).
_DEFAULT_PLUGINS = {
    "creative_insights.stages": {
        "annotate": "vision.stages:annotate_stage",
        "evaluate": "vision.stages:evaluate_stage",
        "init_ray": "vision.ray_runner:init_ray",
    },
    "creative_insights.commands": {"annotate": "vision.cli:main", "evaluate": "vision.evaluate_cli:main"},
}
USAGE = """usage: creative-insights COMMAND [Hydra overrides ...]

commands:
  experiment   annotate -> evaluate -> causal steps -> report.html (conf/config.yaml), e.g.
               creative-insights experiment experiment=face_presence input=posters labels=labels.csv
  annotate     faces and image features of a folder to Parquet (conf/annotate.yaml), e.g.
               creative-insights annotate input=posters output=annotations
  evaluate     the face detector on labelled images: AP@0.5, PR curve, error list (conf/evaluate.yaml), e.g.
               creative-insights evaluate labels=labels.csv images=posters

Each command takes Hydra overrides (key=value, group=option) and Hydra's own flags (--cfg job, -m, --help).
"""


def plugin(group: str, name: str) -> Callable[..., Any]:
    """A callable registered under an entry-point group, imported only now; ImportError names the missing piece."""
    targets = {ep.name: ep.value for ep in entry_points(group=group)} or _DEFAULT_PLUGINS.get(group, {})
    if name not in targets:
        raise ImportError(f"no {group} plugin named {name!r} (installed: {sorted(targets)})")
    module, _, attr = targets[name].partition(":")
    return getattr(import_module(module), attr)


def _stage(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return plugin("creative_insights.stages", name)(*args, **kwargs)

    return call


_INTERRUPTED = "interrupted: finished annotation parts and cached steps are kept; run the same command again to resume"


def _exit_on_signal(signum: int, frame: object) -> None:
    # Exit at once rather than raise: an exception raised inside a library callback (XGBoost's data iterator, a
    # joblib worker) is caught and re-raised as that library's error, which the pipeline would record as a failed
    # step and go on. Nothing is lost: annotation parts, cache entries and results.json are written atomically.
    sys.stderr.write(_INTERRUPTED + "\n")
    sys.stderr.flush()
    os._exit(130 if signum == signal.SIGINT else 143)


def experiment_command(cfg: DictConfig) -> float | None:
    """Run an experiment from a composed config and talk to the person who started it.

    Exit codes: 0 done; 1 bad data, or a step failed (the others' results are written); 2 a config error;
    130 / 143 interrupted (Ctrl-C / SIGTERM). Returns the ATE estimate (Hydra sweeps collect it).
    """
    from hydra.core.hydra_config import HydraConfig

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _exit_on_signal)
    results, info = _run_or_exit(cfg, out_dir)
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
    return (results.get("ate") or {}).get("estimate")


def _run_or_exit(cfg: DictConfig, out_dir: Path) -> tuple[dict, dict]:
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    started_ray = False
    try:
        validate_config(cfg)  # before Ray starts and before the annotate stage
        if OmegaConf.select(cfg, "estimator.use_ray", default=False) or OmegaConf.select(
            cfg, "discover.use_ray", default=False
        ):
            # EconML's and the nuisance cross-fit's Ray tasks run where `ray.address` says.
            started_ray = _stage("init_ray")(OmegaConf.select(cfg, "ray"))
        return run_experiment(cfg, out_dir, annotate_stage=_stage("annotate"), evaluate_stage=_stage("evaluate"))
    except ConfigError as err:
        # One line naming the key: the run stopped before any model was fitted.
        _exit(f"config error: {err}", 2)
    except OmegaConfBaseException as err:
        what = "required value is not set (???)" if isinstance(err, MissingMandatoryValue) else "cannot be resolved"
        _exit(f"config error: config key {getattr(err, 'full_key', '?')}: {what}", 2)
    except (DataError, ValueError, FileNotFoundError, ImportError, ConnectionError) as err:
        # Bad data or config: the message names the file, column or key; a traceback would bury it.
        _exit(f"error: {err}", 1)
    except KeyboardInterrupt:  # where no handler could be set (a sweep job outside the main thread)
        _exit(_INTERRUPTED, 130)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _exit(message: str, code: int) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def _print_summary(results: dict, info: dict, out_dir: Path) -> None:
    ann = info.get("annotate")
    if ann:
        state = "reused" if ann["reused"] else f"{ann['seconds']:.1f}s"
        print(
            f"annotations: {ann['output']} ({ann['ok']} images, {ann['faces']} faces, {ann['errors']} errors; {state})"
        )
    if info.get("metrics"):
        _print_detector(info["metrics"])
    if results:
        if info.get("causal_cached"):
            print("causal steps: unchanged config and inputs, reused the cached results")
        print("\n".join(summary_lines(results)))
        print(f"results: {out_dir / 'results.json'}")
    if info.get("report"):
        print(f"report:  {info['report']}")


def _print_detector(metrics: dict) -> None:
    il = metrics.get("image_level") or {}

    def rate(name: str) -> str:
        low, high = il.get(f"{name}_ci") or (None, None)
        interval = f" [{fmt_num(low, 2)}, {fmt_num(high, 2)}]" if low is not None else ""
        return f"{fmt_num(il.get(name), 3)}{interval}"

    print(
        f"detector on labels: AP@0.5 {fmt_num(metrics.get('ap50'), 3)} (faces at its cut-off), image sensitivity "
        f"{rate('sensitivity')}, specificity {rate('specificity')} (95% Wilson intervals)"
    )
    for note in metrics.get("reliability") or []:
        print(f"  note: {note}")


def main(argv: list[str] | None = None) -> None:
    """``creative-insights COMMAND [overrides]``: dispatch to the command's Hydra application."""
    import hydra

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = args[0], args[1:]
    if command == "experiment":
        app = hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="config")(experiment_command)
    else:
        try:
            app = plugin("creative_insights.commands", command)
        except ImportError as err:
            _exit(f"error: unknown command {command!r} ({err})\n\n{USAGE}", 2)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if not any(a.startswith("hydra.job.name=") for a in rest):
        rest.append(f"hydra.job.name={command}")  # else Hydra names the job (and its log file) after this module
    sys.argv = [f"creative-insights {command}", *rest]  # Hydra reads its overrides from sys.argv
    app()
