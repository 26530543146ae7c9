"""The annotate command: ``creative-insights annotate`` (a plugin of the console command) and
``scripts/annotate.py`` both run :func:`annotate_command` on a config composed from ``conf/annotate.yaml``.

Re-running with the same output resumes: unchanged images already written are skipped, changed ones are annotated
again, rows of deleted files are removed.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vision.annotate import AnnotationError, AnnotationSummary, annotate_from_config

log = logging.getLogger(__name__)

CONFIG_PACKAGE = "pkg://creative_insights_conf"  # conf/ as shipped in the wheel


class _Terminated(BaseException):  # like KeyboardInterrupt: no "except Exception" swallows it
    """SIGTERM, turned into an exception so that the same clean-up as for Ctrl-C runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def annotate_command(cfg: DictConfig) -> None:
    """Annotate ``cfg.input`` into ``cfg.output`` with the ``vision`` settings and talk to the person who started it.

    Exit codes: 0 done (undecodable files are error rows, not failures); 2 a problem with the input, output or
    config (before any work); 130 / 143 interrupted (Ctrl-C / SIGTERM).
    """
    for key in ("input", "output"):
        if OmegaConf.is_missing(cfg, key):
            _fail(f"missing {key}=... (e.g. input=assets_sample/images output=out/annotations)")
    input_dir, output_dir = Path(cfg.input), Path(cfg.output)
    # The bar starts once the work list is known, so an error before that prints no empty bar.
    bar = tqdm(total=0, unit="img", disable=True)
    faces_seen = 0

    def on_start(found: int, done: int) -> None:
        nonlocal bar
        bar = tqdm(total=found - done, unit="img", disable=not cfg.progress, dynamic_ncols=True)
        if done:
            tqdm.write(f"resuming: {done} of {found} images already in {output_dir}")

    def on_progress(n_images: int, n_faces: int) -> None:
        nonlocal faces_seen
        faces_seen += n_faces
        bar.update(n_images)
        bar.set_postfix(faces=faces_seen, refresh=False)

    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        summary = annotate_from_config(
            cfg.vision, input_dir, output_dir, runner_cfg=cfg.runner, ray_cfg=cfg.ray,
            progress=on_progress, on_start=on_start,
        )  # fmt: skip
    except (AnnotationError, ImportError, ValueError, FileNotFoundError, ConnectionError) as err:
        bar.close()
        _fail(str(err))
    except (KeyboardInterrupt, _Terminated) as err:
        bar.close()
        code = 143 if isinstance(err, _Terminated) else 130
        print(
            f"interrupted: every finished part is kept in {output_dir}; run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(code)
    bar.close()
    (output_dir / "annotate_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    _print_summary(summary, output_dir)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _print_summary(summary: AnnotationSummary, output_dir: Path) -> None:
    print(
        f"ok {summary.ok}  errors {summary.errors}  faces {summary.faces}  skipped (already done) {summary.skipped}  "
        f"changed (annotated again) {summary.changed}  removed (file gone) {summary.removed}  "
        f"seconds {summary.seconds:.1f}  images/s {summary.images_per_second:.2f}"
    )
    if summary.stage_seconds:
        models = f"models loaded in {summary.load_seconds:.1f} s; " if summary.load_seconds > 0 else ""
        print(f"{models}time by stage: {summary.stage_line()}")
    if summary.error_causes:
        print("errors by cause: " + json.dumps(summary.error_causes))
    print(f"images table: {output_dir / 'images'}\nfaces table:  {output_dir / 'faces'}")


def main() -> None:
    """Entry point of ``creative-insights annotate`` (configs from the installed package)."""
    import hydra

    hydra.main(version_base="1.3", config_path=CONFIG_PACKAGE, config_name="annotate")(annotate_command)()
