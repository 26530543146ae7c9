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

The vision package (and so torch) is imported only when annotate or evaluate runs: causal never imports either.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from causal.cache import StepCache, cache_key
from causal.data import DataError
from causal.pipeline import STEPS, run
from causal.report import write_results
from causal.report_html import report_for_run
from causal.validate import ConfigError, validate_config

log = logging.getLogger("run_experiment")

VISION_STEPS = ("annotate", "evaluate")
REPORT_STEP = "report"
# Keys that do not change what the causal steps compute (where files go, the vision stage, the report).
_NOT_CAUSAL = ("hydra", "paths", "input", "labels", "vision", "evaluate", "report", "runner", "ray")


def _fmt(value: object, digits: int = 5) -> str:
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def summary_lines(results: dict) -> list[str]:
    """A short human-readable table of the headline numbers."""
    lines = [f"{results['treatment']} -> {results['outcome']}: {results['n_used']} of {results['n_units']} units used"]
    rows = []
    naive = results.get("naive")
    if naive:
        rows.append(("naive difference", naive["difference_in_means"], naive["ci_low"], naive["ci_high"]))
    for key, label in (("ate", "ATE (doubly robust)"), ("ate_partially_linear", "partially linear (var-weighted)")):
        if results.get(key):
            r = results[key]
            rows.append((label, r["estimate"], r["ci_low"], r["ci_high"]))
    corrected = (results.get("misclassification") or {}).get("ate_corrected")
    if corrected:
        rows.append(
            ("ATE corrected for detector errors", corrected["estimate"], corrected["ci_low"], corrected["ci_high"])
        )
    truth = results.get("truth") or {}
    if "ate" in truth:
        rows.append(("true ATE (simulator)", truth.get("ate_used", truth["ate"]), None, None))
    if rows:
        lines.append(f"{'':34s}{'estimate':>12s}{'95% CI':>26s}")
        for label, est, lo, hi in rows:
            ci = f"[{_fmt(lo)}, {_fmt(hi)}]" if lo is not None else ""
            lines.append(f"{label:34s}{_fmt(est):>12s}{ci:>26s}")
    for col, levels in (results.get("cate_by_group") or {}).items():
        cells = ", ".join(f"{r['level']} {_fmt(r['estimate'], 3)}" for r in levels)
        lines.append(f"CATE by {col}: {cells}")
    het = (results.get("heterogeneity") or {}).get("blp") or {}
    if het.get("beta_het"):
        lines.append(
            f"heterogeneity (BLP slope): {_fmt(het['beta_het']['estimate'], 3)}, p = {_fmt(het['p_value'], 3)}"
        )
    ov = results.get("overlap")
    if ov:
        lines.append(
            f"overlap: rule {ov['rule']}, trimmed {ov['trimmed']}; max |SMD| {_fmt(ov['max_abs_smd']['raw'], 3)} raw, "
            f"{_fmt(ov['max_abs_smd']['weighted'], 3)} weighted"
        )
    med = results.get("mediation")
    if med:
        lines.append(
            f"mediation {med['treatment']} -> {med['mediator']}: indirect {_fmt(med['indirect']['estimate'], 3)}, "
            f"direct {_fmt(med['direct']['estimate'], 3)}, verdict {med['verdict']}"
        )
    sens = results.get("sensitivity") or {}
    if sens.get("e_value") is not None:
        refs = sens.get("refutations") or []
        passed = sum(bool(r.get("passed")) for r in refs)
        lines.append(f"E-value {_fmt(sens['e_value'], 3)}; refutations passed {passed}/{len(refs)}")
    for failed in results.get("errors") or []:
        skipped = f", so {', '.join(failed['skipped'])} did not run" if failed.get("skipped") else ""
        lines.append(f"step {failed['step']} FAILED ({failed['type']}){skipped}: no results for it")
    return lines


def _select(cfg: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(cfg, key, default=default)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


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
    return root / "annotations" / f"{slug}-{_short_hash(_plain(cfg.vision))}"


def causal_key(cfg: DictConfig) -> str:
    """Cache key of the causal steps: their config (minus paths, vision, report) and their input files' stamps."""
    plain = _plain(cfg)
    for key in _NOT_CAUSAL:
        plain.pop(key, None)
    data = plain.get("data") or {}
    inputs = [data.get("path"), data.get("images"), data.get("features_path")]
    mis = ((plain.get("sensitivity") or {}).get("misclassification")) or {}
    if mis.get("metrics_file"):
        # The metrics file sits in each run's own folder: key on its content, not its path.
        mis["metrics_file"] = hashlib.sha256(Path(mis["metrics_file"]).read_bytes()).hexdigest()
    return cache_key("causal", plain, [p for p in inputs if isinstance(p, str)])


def run_experiment(cfg: DictConfig, out_dir: Path) -> tuple[dict, dict]:
    """Run the configured stages into ``out_dir``; return (results, info) where info has per-stage notes.

    The whole config is checked before the annotate stage (:func:`causal.validate.validate_config`, the checks
    that need no table); the column checks run once the data are loaded, before any model is fitted. A causal step
    that fails is recorded under ``results["errors"]``; such results are not cached.
    """
    validate_config(cfg)
    vision_steps, causal_steps, _ = split_steps(list(cfg.steps))
    cache = StepCache(_select(cfg, "paths.cache"))
    info: dict[str, Any] = {"timings": {}}
    ann = annotations_dir(cfg)
    if ann is not None:
        _set(cfg, "paths.annotations", str(ann))

    if "annotate" in vision_steps and not _select(cfg, "input"):
        log.info("step annotate skipped: no input= folder given (annotations: paths.annotations=%s)", ann)
    elif "annotate" in vision_steps:
        from vision.stages import annotate_stage  # torch only from here

        start = time.perf_counter()
        info["annotate"] = annotate_stage(cfg.vision, cfg.input, ann)
        info["timings"]["annotate"] = time.perf_counter() - start

    metrics = None
    if "evaluate" in vision_steps:
        labels = _select(cfg, "labels")
        if not labels:
            log.info("step evaluate skipped: no labels= given")
        else:
            if ann is None or not (ann / "faces").is_dir():
                raise ValueError("step evaluate: no annotations to evaluate (run annotate or set paths.annotations)")
            from vision.stages import evaluate_stage

            start = time.perf_counter()
            opts = _plain(_select(cfg, "evaluate", {})) or {}
            opts = {k: opts[k] for k in ("iou_threshold", "score_threshold", "group_by") if k in opts}
            key = cache_key("evaluate", {"labels": labels, **opts}, [labels, ann / "faces", ann / "images"])
            if cache.restore("evaluate", key, out_dir):
                info["evaluate_cached"] = True
            else:
                evaluate_stage(labels, ann, out_dir / "evaluation", **opts)
                cache.store(
                    "evaluate",
                    key,
                    out_dir,
                    [f"evaluation/{n}" for n in ("metrics.json", "pr_curve.png", "errors.csv")],
                )
            metrics = json.loads((out_dir / "evaluation" / "metrics.json").read_text())
            info["timings"]["evaluate"] = time.perf_counter() - start
            if "sensitivity" in causal_steps and _select(cfg, "evaluate.feed_misclassification", False):
                # The detector's measured error rates feed the misclassification-corrected ATE.
                if not _select(cfg, "sensitivity.misclassification.metrics_file"):
                    _set(
                        cfg, "sensitivity.misclassification.metrics_file", str(out_dir / "evaluation" / "metrics.json")
                    )
                analyses = list(_select(cfg, "sensitivity.analyses", []))
                if "misclassification" not in analyses:
                    _set(cfg, "sensitivity.analyses", [*analyses, "misclassification"])

    results: dict = {}
    if causal_steps:
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
                cache.store(
                    "causal",
                    key,
                    out_dir,
                    [n for n in written if not n.startswith(".hydra") and not n.endswith(".log")],
                )
        info["timings"]["causal"] = time.perf_counter() - start
    # The report is written by every run that has something to show (REPORT_STEP only documents the order).
    if results or metrics:
        info["report"] = _write_report(cfg, out_dir, results)
    info["metrics"] = metrics
    return results, info


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
        results, info = run_experiment(cfg, out_dir)
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
            f"detector on labels: AP@0.5 {_fmt(info['metrics'].get('ap50'), 3)}, image sensitivity "
            f"{_fmt(il.get('sensitivity'), 3)}, specificity {_fmt(il.get('specificity'), 3)}"
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
