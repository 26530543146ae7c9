"""An experiment end to end: annotate -> evaluate -> data -> causal steps -> report, with a step cache.

The composition of the stages lives here, so that the entry point (``scripts/run_experiment.py``) is a thin Hydra
wrapper and tests import the same code. The vision stages are passed in by the caller (``annotate_stage``,
``evaluate_stage``): causal never imports vision or torch, and a causal-only run never loads them.

Annotations go to ``paths.annotations`` (default: ``<paths.outputs>/annotations/<input>-<vision hash>``), shared by
every run with the same vision config. With ``paths.cache`` set, the evaluation and the causal steps reuse their
stored outputs when their config and input files are unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from causal.cache import StepCache, cache_key
from causal.context import to_plain
from causal.engagement import use_engagement
from causal.pipeline import STEPS, run
from causal.report import write_results
from causal.report_html import report_for_run
from causal.validate import validate_config

log = logging.getLogger(__name__)

VISION_STEPS = ("annotate", "evaluate")
REPORT_STEP = "report"
# Keys that do not change what the causal steps compute (where files go, the vision stage, the report). Not
# display_names: the CATE plot and the OVB contour are drawn by the causal steps in those words.
_NOT_CAUSAL = ("hydra", "paths", "input", "labels", "vision", "evaluate", "report", "runner", "ray")


def _select(cfg: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(cfg, key, default=default)


def _set(cfg: DictConfig, key: str, value: Any) -> None:
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, force_add=True)


def _short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def split_steps(steps: list[str]) -> tuple[list[str], list[str], bool]:
    """``steps`` -> (vision steps, causal steps, report?) after checking every name is known."""
    known = [*VISION_STEPS, *STEPS, REPORT_STEP]
    unknown = [s for s in steps if s not in known]
    if unknown:
        raise ValueError(f"config key steps: unknown step(s) {unknown}; known: {known}")
    vision = [s for s in steps if s in VISION_STEPS]
    causal = [s for s in steps if s in STEPS and s not in VISION_STEPS and s != REPORT_STEP]
    return vision, causal, REPORT_STEP in steps


def annotations_dir(cfg: DictConfig) -> Path | None:
    """``paths.annotations``, or <paths.outputs>/annotations/<parent_folder>-<vision config hash> for ``input``."""
    explicit = _select(cfg, "paths.annotations")
    if explicit:
        return Path(explicit)
    if not _select(cfg, "input"):
        return None
    root = Path(_select(cfg, "paths.outputs", "outputs"))
    slug = "_".join(Path(cfg.input).resolve().parts[-2:])  # e.g. assets_sample_images
    return root / "annotations" / f"{slug}-{_short_hash(to_plain(cfg.vision))}"


def causal_key(cfg: DictConfig) -> str:
    """Cache key of the causal steps: their config (minus paths, vision, report) and their input files' stamps."""
    plain = to_plain(cfg)
    for key in _NOT_CAUSAL:
        plain.pop(key, None)
    data = plain.get("data") or {}
    inputs = [data.get("path"), data.get("images"), data.get("features_path")]
    mis = ((plain.get("sensitivity") or {}).get("misclassification")) or {}
    if mis.get("metrics_file"):
        # The metrics file sits in each run's own folder: key on its content, not its path.
        mis["metrics_file"] = hashlib.sha256(Path(mis["metrics_file"]).read_bytes()).hexdigest()
    return cache_key("causal", plain, [p for p in inputs if isinstance(p, str)])


def run_experiment(
    cfg: DictConfig,
    out_dir: Path,
    *,
    annotate_stage: Callable[..., dict] | None = None,
    evaluate_stage: Callable[..., dict] | None = None,
) -> tuple[dict, dict]:
    """Run the configured stages into ``out_dir``; return (results, info) where info has per-stage notes.

    The whole config is checked before the annotate stage (:func:`causal.validate.validate_config`, the checks
    that need no table); the column checks run once the data are loaded, before any model is fitted. A causal step
    that fails is recorded under ``results["errors"]``; such results are not cached.

    Parameters
    ----------
    cfg : DictConfig
        The composed experiment config (conf/config.yaml).
    out_dir : Path
        The run folder: results.json, report.html, plots, evaluation/.
    annotate_stage, evaluate_stage : callable, optional
        The vision stages (``vision.stages.annotate_stage`` / ``evaluate_stage``), passed in by the entry point:
        causal never imports vision. Needed only when ``steps`` has ``annotate`` / ``evaluate``.
    """
    validate_config(cfg)  # checks the engagement file before it replaces the data node
    use_engagement(cfg)
    vision_steps, causal_steps, _ = split_steps(list(cfg.steps))
    cache = StepCache(_select(cfg, "paths.cache"))
    info: dict[str, Any] = {"timings": {}}
    ann = annotations_dir(cfg)
    if ann is not None:
        _set(cfg, "paths.annotations", str(ann))
    if "annotate" in vision_steps:
        _annotate(cfg, ann, annotate_stage, info)
    metrics = None
    if "evaluate" in vision_steps:
        metrics = _evaluate(cfg, ann, out_dir, cache, evaluate_stage, info)
        if metrics is not None and "sensitivity" in causal_steps:
            _feed_misclassification(cfg, out_dir)
    results: dict = _causal(cfg, causal_steps, out_dir, cache, info) if causal_steps else {}
    # The report is written by every run that has something to show (REPORT_STEP only documents the order).
    if results or metrics:
        info["report"] = _write_report(cfg, out_dir, results)
    info["metrics"] = metrics
    return results, info


def _needs(stage: Callable[..., dict] | None, step: str) -> Callable[..., dict]:
    if stage is None:
        raise ValueError(
            f"config key steps: step {step} needs the vision stages; run it through scripts/run_experiment.py "
            f"(or pass {step}_stage=vision.stages.{step}_stage)"
        )
    return stage


def _annotate(cfg: DictConfig, ann: Path | None, stage: Callable[..., dict] | None, info: dict) -> None:
    if not _select(cfg, "input"):
        log.info("step annotate skipped: no input= folder given (annotations: paths.annotations=%s)", ann)
        return
    start = time.perf_counter()
    info["annotate"] = _needs(stage, "annotate")(cfg.vision, cfg.input, ann)
    info["timings"]["annotate"] = time.perf_counter() - start


def _evaluate(
    cfg: DictConfig, ann: Path | None, out_dir: Path, cache: StepCache, stage: Callable[..., dict] | None, info: dict
) -> dict | None:
    """The detector's metrics on ``labels`` (stored in and restored from the step cache), or None without labels."""
    labels = _select(cfg, "labels")
    if not labels:
        log.info("step evaluate skipped: no labels= given")
        return None
    if ann is None or not (ann / "faces").is_dir():
        raise ValueError("step evaluate: no annotations to evaluate (run annotate or set paths.annotations)")
    start = time.perf_counter()
    opts = to_plain(_select(cfg, "evaluate", {})) or {}
    opts = {k: opts[k] for k in ("iou_threshold", "score_threshold", "group_by") if k in opts}
    key = cache_key("evaluate", {"labels": labels, **opts}, [labels, ann / "faces", ann / "images"])
    if cache.restore("evaluate", key, out_dir):
        info["evaluate_cached"] = True
    else:
        images = _select(cfg, "input")
        _needs(stage, "evaluate")(labels, ann, out_dir / "evaluation", images_dir=images, **opts)
        names = ("metrics.json", "pr_curve.png", "errors.csv", "contact_sheet.png")
        files = [f"evaluation/{n}" for n in names if (out_dir / "evaluation" / n).is_file()]
        cache.store("evaluate", key, out_dir, files)
    info["timings"]["evaluate"] = time.perf_counter() - start
    return json.loads((out_dir / "evaluation" / "metrics.json").read_text())


def _feed_misclassification(cfg: DictConfig, out_dir: Path) -> None:
    """With ``evaluate.feed_misclassification``, the detector's measured error rates feed the corrected ATE."""
    if not _select(cfg, "evaluate.feed_misclassification", False):
        return
    if not _select(cfg, "sensitivity.misclassification.metrics_file"):
        _set(cfg, "sensitivity.misclassification.metrics_file", str(out_dir / "evaluation" / "metrics.json"))
    analyses = list(_select(cfg, "sensitivity.analyses", []))
    if "misclassification" not in analyses:
        _set(cfg, "sensitivity.analyses", [*analyses, "misclassification"])


def _causal(cfg: DictConfig, causal_steps: list[str], out_dir: Path, cache: StepCache, info: dict) -> dict:
    """The causal steps through :func:`causal.pipeline.run`, stored in and restored from the step cache."""
    causal_cfg = copy.deepcopy(cfg)
    _set(causal_cfg, "steps", causal_steps)
    key = causal_key(causal_cfg)
    start = time.perf_counter()
    if cache.restore("causal", key, out_dir):
        info["causal_cached"] = True
        results = json.loads((out_dir / "results.json").read_text())
    else:
        before = {p for p in out_dir.rglob("*") if p.is_file()}
        results = run(causal_cfg, out_dir)
        written = [p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file() and p not in before]
        if not results.get("errors"):  # a failed step would otherwise be replayed from the cache
            keep = [n for n in written if not n.startswith(".hydra") and not n.endswith(".log")]
            cache.store("causal", key, out_dir, keep)
    info["timings"]["causal"] = time.perf_counter() - start
    return results


def _write_report(cfg: DictConfig, out_dir: Path, results: dict) -> Path | None:
    """report.html; when it fails, the failure joins ``results["errors"]`` (and results.json) instead of hiding the
    results already written."""
    try:
        return report_for_run(
            results or {"treatment": _select(cfg, "roles.treatment"), "outcome": _select(cfg, "roles.outcome")},
            out_dir,
            cfg,
        )
    except Exception as err:  # the results are complete; the report only shows them
        log.exception("step report failed")
        if results:
            results.setdefault("errors", []).append(
                {"step": "report", "type": type(err).__name__, "message": str(err), "skipped": []}
            )
            write_results(results, out_dir)
        return None
