"""The streaming annotation pipeline: folder of artwork -> Parquet tables of images and faces.

Flow: the decoding worker processes start and take the first files (:mod:`vision.decode_pool`; a bounded window in
flight, so memory stays flat whatever the folder size) while the models load (:mod:`vision.annotator_config`) ->
batches go through the detector, the face embedder and the image features on the chosen device
(:mod:`vision.batch_annotator`) -> rows are written as Parquet parts every ``part_size`` images. The summary says
where the time went, stage by stage.

Trust on real folders. Every file gets exactly one images row: a file that cannot be decoded (empty, truncated,
not an image, a dangling or looping symlink, a bomb) gets a ``status=error`` row naming the cause, and the run goes
on. One run writes an output folder at a time (:mod:`vision.lock`). Parts are written atomically, and resume is
keyed by each file's size and mtime as well as its name, under the same vision settings (:mod:`vision.store`): a
run killed at any moment (kill -9 included) loses at most its unfinished part, never duplicates a row, and a rerun
brings the tables up to date with the folder. ``vision.store.read_annotations(OUTPUT)`` reads the result with
nullable pandas types (``pandas.read_parquet(OUTPUT / "images")`` works too).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vision.annotator_config import annotation_spec, annotator_from_config, decoding_spec, folder_options
from vision.batch_annotator import STAGES, BatchAnnotator
from vision.decode_pool import DecodeStream
from vision.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    DecodedImage,
    ImageDecodeError,
    file_fingerprint,
    find_images,
    image_id_for,
)
from vision.lock import OutputLock, OutputLockedError
from vision.store import AnnotationError, PartWriter

log = logging.getLogger(__name__)

__all__ = [
    "AnnotationError",
    "AnnotationSummary",
    "BatchAnnotator",
    "annotate_folder",
    "annotate_from_config",
    "annotation_spec",
    "annotator_from_config",
    "folder_options",
]


@dataclass
class AnnotationSummary:
    """What a run did. ``seconds`` and ``images_per_second`` count only the images processed in this run.

    ``skipped`` files were already annotated and unchanged; ``changed`` files were annotated again because their
    size or mtime changed; ``removed`` rows belonged to files no longer in the input folder. ``load_seconds`` is
    the time spent building the models inside the run (when :func:`annotate_folder` was given a factory; the
    decoding workers start before it, so it overlaps the first decodes). ``stage_seconds`` splits the work by
    stage (:data:`vision.batch_annotator.STAGES`); ``encode`` may overlap ``detect`` and ``embed``.
    """

    found: int = 0
    skipped: int = 0
    ok: int = 0
    errors: int = 0
    faces: int = 0
    seconds: float = 0.0
    changed: int = 0
    removed: int = 0
    error_causes: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def count_error(self, reason: str) -> None:
        """Count one failed file under its cause (the reason's words before any ``:`` or ``(``)."""
        self.errors += 1
        cause = reason.split(":", 1)[0].split(" (", 1)[0]
        self.error_causes[cause] = self.error_causes.get(cause, 0) + 1

    @property
    def processed(self) -> int:
        return self.ok + self.errors

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def stage_line(self) -> str:
        """``decode 1.20 s, detect 3.40 s, ...`` for logs and summaries (stages that took no time are left out)."""
        return ", ".join(f"{k} {v:.2f} s" for k, v in self.stage_seconds.items() if v > 0)


# --------------------------------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------------------------------


def annotate_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    annotator: BatchAnnotator | Callable[[], BatchAnnotator],
    *,
    batch_size: int = 16,
    part_size: int = 256,
    num_workers: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_long_side: int | None = None,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    lock_timeout: float = 0.0,
    spec: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> AnnotationSummary:
    """Annotate every image under ``input_dir`` into ``output_dir``, resuming what an earlier run wrote.

    Parameters
    ----------
    input_dir : path-like
        Folder searched recursively for files with ``extensions``.
    output_dir : path-like
        Receives ``images/part-*.parquet`` and ``faces/part-*.parquet`` (see :mod:`vision.store`).
    annotator : BatchAnnotator or callable returning one
        The models. A callable is called once the decoding workers have started, so the models load while the
        first files decode; this function then closes the annotator it built.
    batch_size : int
        Images per detector/encoder call.
    part_size : int
        Images per Parquet part: the most work a killed run can lose.
    num_workers : int
        Decoding processes (0 decodes in this process).
    max_pixels : int
        Pixel limit per image (decompression-bomb guard).
    max_long_side : int, optional
        Decode at most this long side (see :func:`vision.io.load_image`); None keeps full resolution.
    lock_timeout : float
        Seconds to wait when another run writes ``output_dir`` (0: fail at once; negative: wait without limit).
    spec : mapping, optional
        The row-shaping settings checked against the folder's; default ``annotator.spec`` (required when
        ``annotator`` is a callable).
    progress : callable ``(n_images, n_faces)``, optional
        Called after every batch with the counts of that batch.
    on_start : callable ``(n_found, n_already_done)``, optional
        Called once the work list is known.

    Returns
    -------
    AnnotationSummary
        ``seconds`` runs from the models being ready to the last part written.

    Raises
    ------
    AnnotationError
        Before any image is processed: the input folder is missing or holds no image file, the output cannot be
        written, another run holds it, or it was annotated with other vision settings.
    """
    if spec is None:
        if not isinstance(annotator, BatchAnnotator):
            raise TypeError("annotate_folder: pass spec= when annotator is a factory")
        spec = annotator.spec
    paths, ids = list_input(Path(input_dir), extensions)
    spec = {**spec, **decoding_spec(max_pixels, max_long_side)}
    with output_lock(output_dir, lock_timeout):
        writer = PartWriter(output_dir, None, None)
        pending, summary = begin_run(writer, paths, ids, spec, on_start)
        stream = DecodeStream([p for _, p in pending], num_workers=num_workers, max_pixels=max_pixels,
                              max_long_side=max_long_side, prefetch=max(2 * batch_size, 2 * num_workers))  # fmt: skip
        try:
            _run_stream(stream, [i for i, _ in pending], annotator, writer, summary,
                        batch_size=batch_size, part_size=part_size, progress=progress)  # fmt: skip
        finally:
            stream.close()
    return summary


def _run_stream(
    stream: DecodeStream,
    ids: list[str],
    annotator: BatchAnnotator | Callable[[], BatchAnnotator],
    writer: PartWriter,
    summary: AnnotationSummary,
    **options: Any,
) -> None:
    """Build the models if given a factory (the decoders already run), then annotate the stream, timing stages."""
    owned = not isinstance(annotator, BatchAnnotator)
    if owned:
        loading = time.perf_counter()
        annotator = annotator()
        summary.load_seconds = time.perf_counter() - loading
        log.info("models loaded in %.2f s", summary.load_seconds)
    writer.images_schema, writer.faces_schema = annotator.images_schema_, annotator.faces_schema_
    before = dict(annotator.stage_seconds_)
    started = time.perf_counter()
    try:
        _annotate_stream(zip(ids, stream), annotator, writer, summary, **options)
    finally:
        summary.seconds = time.perf_counter() - started
        summary.stage_seconds = {stage: 0.0 for stage in STAGES}
        for stage, seconds in annotator.stage_seconds_.items():
            summary.stage_seconds[stage] += seconds - before.get(stage, 0.0)
        summary.stage_seconds["decode"] = stream.wait_seconds
        summary.stage_seconds["write"] = writer.write_seconds
        log.info("stage times: %s", summary.stage_line())
        if owned:
            annotator.close()


def list_input(input_dir: Path, extensions: Iterable[str]) -> tuple[list[Path], list[str]]:
    """The image files under ``input_dir`` and their ids; AnnotationError when there is none to annotate."""
    try:
        paths = find_images(input_dir, extensions)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise AnnotationError(f"{err} (config key: input)") from err
    if not paths:
        raise AnnotationError(
            f"no image files under {input_dir} (extensions {sorted(set(extensions))}, config key vision.extensions)"
        )
    return paths, [image_id_for(p, input_dir) for p in paths]


def begin_run(
    writer: PartWriter,
    paths: Sequence[Path],
    ids: Sequence[str],
    spec: Mapping[str, Any],
    on_start: Callable[[int, int], None] | None,
) -> tuple[list[tuple[str, Path]], AnnotationSummary]:
    """Reconcile the output folder with the input files (under the lock): the ``(id, path)`` still to annotate and a
    summary that counts what was skipped, changed and removed. Shared by the local and the Ray runner."""
    resume = writer.prepare({i: file_fingerprint(p) for i, p in zip(ids, paths, strict=True)}, spec)
    pending = [(i, p) for i, p in zip(ids, paths, strict=True) if i not in resume.kept]
    summary = AnnotationSummary(found=len(paths), skipped=len(paths) - len(pending))
    summary.changed, summary.removed = len(resume.changed), len(resume.deleted)
    if on_start is not None:
        on_start(summary.found, summary.skipped)
    log.info("%d images found, %d already annotated, %d to do", summary.found, summary.skipped, len(pending))
    return pending, summary


def output_lock(output_dir: str | os.PathLike, timeout: float) -> OutputLock:
    """The output folder's single-writer lock; failing to get it is an :class:`AnnotationError`."""
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AnnotationError(f"cannot write to output folder {output_dir}: {err.strerror or err}") from err
    return _AnnotationLock(output_dir, timeout)


class _AnnotationLock(OutputLock):
    def acquire(self) -> OutputLock:
        try:
            return super().acquire()
        except OutputLockedError as err:
            raise AnnotationError(str(err)) from None


def _annotate_stream(
    results: Iterable[tuple[str, DecodedImage | ImageDecodeError]],
    annotator: BatchAnnotator,
    writer: PartWriter,
    summary: AnnotationSummary,
    *,
    batch_size: int,
    part_size: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Batch decoded images through the models and write a part every ``part_size`` rows. Rows not yet in a part
    when this is interrupted are discarded (the next run annotates those files again)."""
    image_rows: list[dict[str, Any]] = []
    face_rows: list[dict[str, Any]] = []
    batch_ids: list[str] = []
    batch: list[DecodedImage] = []

    def flush_batch() -> None:
        if batch:
            rows, faces = annotator.annotate_batch(batch_ids, batch)
            image_rows.extend(rows)
            face_rows.extend(faces)
            summary.ok += len(rows)
            summary.faces += len(faces)
            if progress is not None:
                progress(len(rows), len(faces))
            batch_ids.clear()
            batch.clear()

    for image_id, result in results:
        if isinstance(result, ImageDecodeError):
            image_rows.append(annotator.error_row(image_id, result.reason))
            summary.count_error(result.reason)
            log.warning("skipping %s", result)
            if progress is not None:
                progress(1, 0)
        else:
            batch_ids.append(image_id)
            batch.append(result)
            if len(batch) >= batch_size:
                flush_batch()
        if len(image_rows) + len(batch) >= part_size:
            flush_batch()
            writer.write(image_rows, face_rows)
            image_rows.clear()
            face_rows.clear()
    flush_batch()
    if image_rows:
        writer.write(image_rows, face_rows)


def annotate_from_config(
    vision_cfg: Any,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    runner_cfg: Any = None,
    ray_cfg: Any = None,
    progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> AnnotationSummary:
    """Annotate a folder with the settings of a ``vision`` config node, locally or on Ray (``runner_cfg.name``).

    The one place where config keys become :func:`annotate_folder` arguments; the annotate script and the
    experiment runner both call it. Locally the models are built inside :func:`annotate_folder` once its decoding
    workers have started (they overlap); on Ray, inside the actors.
    """
    if runner_cfg is not None and runner_cfg.get("name") == "ray":
        from vision.ray_runner import annotate_folder_ray

        return annotate_folder_ray(
            input_dir, output_dir, vision_cfg, ray_cfg, runner_cfg, progress=progress, on_start=on_start
        )
    return annotate_folder(
        input_dir,
        output_dir,
        lambda: annotator_from_config(vision_cfg),
        spec=annotation_spec(vision_cfg),
        **folder_options(vision_cfg),
        progress=progress,
        on_start=on_start,
    )
