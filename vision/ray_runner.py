"""The annotation pipeline on Ray: the same per-batch work as :func:`vision.annotate.annotate_folder`, spread over a
Ray cluster with Ray Data, writing the same Parquet parts; the driver never sees a row.

Flow (a Ray Data streaming pipeline)::

    from_items(parts)                  one row per Parquet part: its name (reserved by the driver), its
                                       ``vision.part_size`` file ids, paths and fingerprints
      -> map_batches(_decode_parts)    CPU tasks: vision.io.load_image on each path (shared filesystem), the part
                                       cut into the batches the local runner would form (see below)
      -> map_batches(_AnnotateActor)   actors (one GPU each where the cluster has GPUs): models loaded once in
                                       __init__; per part, BatchAnnotator.annotate_batch per batch, then the part
                                       written atomically into the output folder (vision.store.write_part)
      -> driver                        receives one small manifest row per part (counts, error causes, stage
                                       seconds) and keeps the run's summary

Identical output. The local runner cuts the pending files into parts of ``part_size`` files; inside a part the
decodable images form detector batches of ``batch_size`` in file order, and an undecodable file's error row is
appended the moment it is met (before the rows of the batch still being filled). Batched detection equals
one-image detection only up to floating-point summation order, so this runner forms exactly the same batches
(:func:`plan_part`), rows in exactly the same order, and parts under the same names (the driver reserves them in
input order). ``pandas.read_parquet(OUTPUT / "images")`` is then the same table, part files included, bit for bit
when the actors run torch with the same device and thread count as the local run (another thread count moves
float32 results in their last bits: summation order).

Parallelism. A part is the unit of work of an actor (it writes what it annotated): keep ``vision.part_size`` well
below (images / actors). Each part's images travel decoded from a decoding task to an actor as one block, so the
object store holds about ``part_size`` decoded images per part in flight. The driver only reads manifests: its
cost per image is a few microseconds, not the unpickling and writing of every row.

Resume, the output folder's lock and the check of the vision settings are the local runner's
(:mod:`vision.store`, :mod:`vision.lock`): only files not yet annotated, or changed since, are sent to the cluster;
an actor's part is written under a temporary name and renamed (a killed run leaves whole parts only), with the
file fingerprints and settings hash that :class:`vision.store.PartWriter` writes. The output folder must be on a
filesystem every node mounts at the same path.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from vision.annotate import AnnotationSummary, BatchAnnotator, annotation_spec, begin_run, list_input, output_lock
from vision.batch_annotator import STAGES
from vision.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageDecodeError, decode_or_error
from vision.ray_cluster import INSTALL_HINT, actor_resources, check_runner, get, import_ray, init_ray, plain, resolved
from vision.store import AnnotationError, PartWriter, write_part

log = logging.getLogger(__name__)

__all__ = ["INSTALL_HINT", "AnnotatorFromConfig", "annotate_folder_ray", "import_ray", "init_ray", "plan_part"]


def plan_part(decodable: Sequence[bool], batch_size: int) -> list[tuple[list[int], list[int]]]:
    """Cut one part into the events of :func:`vision.annotate.annotate_folder`, in the order it appends rows.

    Parameters
    ----------
    decodable : sequence of bool
        For each file of the part, in file order, whether it decoded.
    batch_size : int
        Images per detector call.

    Returns
    -------
    list of (error_positions, batch_positions)
        Positions into the part. Each event's error rows come first, then the rows of its batch; concatenating the
        events gives the part's row order. ``batch_positions`` has ``batch_size`` entries except in the last event,
        and may be empty there (trailing errors).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    events: list[tuple[list[int], list[int]]] = []
    errors: list[int] = []
    batch: list[int] = []
    for pos, ok in enumerate(decodable):
        if not ok:
            errors.append(pos)
            continue
        batch.append(pos)
        if len(batch) >= batch_size:
            events.append((errors, batch))
            errors, batch = [], []
    if errors or batch:
        events.append((errors, batch))
    return events


def _decode_parts(
    parts: pa.Table, *, batch_size: int, max_pixels: int, max_long_side: int | None
) -> Iterator[pa.Table]:
    """Ray Data task: decode each part's files and yield one row per part holding its events (a generator, so Ray
    Data streams parts out as separate blocks)."""
    import cv2

    # One decoding thread per task: Ray runs as many tasks as the CPUs it was given.
    cv2.setNumThreads(1)
    for name, ids, paths, files in zip(*(parts.column(c).to_pylist() for c in ("name", "ids", "paths", "files"))):
        started = time.perf_counter()
        results = [decode_or_error(p, max_pixels, max_long_side) for p in paths]
        events = [
            {
                "errors": [(ids[i], results[i].reason) for i in error_pos],
                "ids": [ids[i] for i in batch_pos],
                "images": [results[i] for i in batch_pos],
            }
            for error_pos, batch_pos in plan_part([not isinstance(r, ImageDecodeError) for r in results], batch_size)
        ]
        payload = {"events": events, "files": json.loads(files), "decode": time.perf_counter() - started}
        yield pa.table({"name": [name], "payload": pa.array([pickle.dumps(payload, protocol=5)], pa.large_binary())})


class _AnnotateActor:
    """Ray Data actor: builds the models once, then annotates whole parts and writes each into the output folder.

    Parameters
    ----------
    factory : callable returning BatchAnnotator
        Built inside the actor, on the device Ray gave it (``device=auto`` sees the actor's GPU).
    num_threads : int
        torch intra-op threads (the actor's CPU share; torch would otherwise take every core of the node).
    output : str
        The output folder (prepared and locked by the driver).
    spec_hash : str or None
        The vision settings' hash written into every images part.
    """

    def __init__(self, factory: Callable[[], BatchAnnotator], num_threads: int, output: str, spec_hash: str | None):
        from vision.device import configure_threads

        self.annotator = factory()
        configure_threads(num_threads)
        self.output = output
        self.spec_hash = spec_hash

    def __call__(self, parts: pa.Table) -> pa.Table:
        manifests = [
            self._annotate_part(name, pickle.loads(raw))
            for name, raw in zip(parts.column("name").to_pylist(), parts.column("payload").to_pylist())
        ]
        return pa.table({"manifest": [json.dumps(m) for m in manifests]})

    def _annotate_part(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        annotator = self.annotator
        before = dict(annotator.stage_seconds_)
        image_rows: list[dict[str, Any]] = []
        face_rows: list[dict[str, Any]] = []
        errors: list[tuple[str, str]] = []
        for event in payload["events"]:
            errors += event["errors"]
            image_rows += [annotator.error_row(i, reason) for i, reason in event["errors"]]
            rows, faces = annotator.annotate_batch(event["ids"], event["images"])
            image_rows += rows
            face_rows += faces
        started = time.perf_counter()
        schemas = (annotator.images_schema_, annotator.faces_schema_)
        write_part(self.output, name, image_rows, face_rows, schemas, payload["files"], self.spec_hash)
        stages = {k: v - before.get(k, 0.0) for k, v in annotator.stage_seconds_.items()}
        stages.update(decode=payload["decode"], write=time.perf_counter() - started)
        return {"name": name, "images": len(image_rows), "faces": len(face_rows), "errors": errors, "stages": stages}


class AnnotatorFromConfig:
    """Picklable factory: ``vision`` config (plain dict, interpolations resolved) -> BatchAnnotator, built where it
    is called (inside each Ray actor), through :func:`vision.annotate.annotator_from_config`."""

    def __init__(self, vision_cfg: Mapping[str, Any]):
        self.vision_cfg = plain(vision_cfg)

    def __call__(self) -> BatchAnnotator:
        from omegaconf import OmegaConf

        from vision.annotate import annotator_from_config

        return annotator_from_config(OmegaConf.create(self.vision_cfg))


# --------------------------------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------------------------------


def annotate_folder_ray(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    vision_cfg: Any,
    ray_cfg: Mapping[str, Any] | None = None,
    runner_cfg: Mapping[str, Any] | None = None,
    *,
    annotator_factory: Callable[[], BatchAnnotator] | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> AnnotationSummary:
    """Annotate every image under ``input_dir`` into ``output_dir`` on Ray; output as :func:`annotate_folder`'s.

    Parameters
    ----------
    input_dir : path-like
        Folder searched recursively. Decoding tasks open the files by path, so on a multi-node cluster it must be
        on a filesystem every node mounts at the same path (NFS, a FUSE-mounted bucket, ...).
    output_dir : path-like
        Receives ``images/part-*.parquet`` and ``faces/part-*.parquet``, written by the actors (same mount rule).
    vision_cfg : DictConfig or mapping
        The ``vision`` node: ``batch_size``, ``part_size``, ``max_pixels``, ``max_long_side``, ``extensions``, and
        the models (built in each actor with :func:`vision.annotate.annotator_from_config`).
    ray_cfg : mapping, optional
        The ``ray`` node, see :func:`vision.ray_cluster.init_ray`. A connection this call opens is shut down before
        it returns.
    runner_cfg : mapping, optional
        The ``runner`` node (``conf/runner/ray.yaml``): ``actors`` (int, or [min, max] for an autoscaling pool),
        ``num_gpus_per_actor`` (``auto``: 1 when the cluster has GPUs, else 0; fractions share a GPU),
        ``num_cpus_per_actor``, ``threads_per_actor`` (torch threads; 0: the actor's CPUs), ``decode_num_cpus``
        (CPUs per decoding task), ``batch_size`` (images per detector call; the local runner's
        ``vision.batch_size`` gives identical output).
    annotator_factory : callable returning BatchAnnotator, optional
        Builds the models inside each actor instead of ``vision_cfg``'s models (it is pickled to the actors).
    progress, on_start : callable, optional
        As in :func:`vision.annotate.annotate_folder`; ``progress`` is called once per part.

    Returns
    -------
    AnnotationSummary
        ``seconds`` runs from the submission of the pipeline to the last part written, actor start-up and model
        loading included; ``stage_seconds`` sums the actors' and decoding tasks' stage times.

    Raises
    ------
    ImportError
        When Ray is not installed.
    AnnotationError
        When the input folder does not exist, the output cannot be written, or the cluster cannot be reached.
    """
    ray = import_ray()
    vision = resolved(vision_cfg)
    runner = resolved(runner_cfg)
    check_runner(runner)
    batch_size = int(get(runner, "batch_size", vision.get("batch_size", 16)))
    part_size = int(vision.get("part_size", 256))
    if batch_size < 1 or part_size < 1:
        raise ValueError(f"runner.batch_size ({batch_size}) and vision.part_size ({part_size}) must be >= 1")
    paths, ids = list_input(Path(input_dir), vision.get("extensions") or IMAGE_EXTENSIONS)
    with output_lock(output_dir, float(vision.get("lock_timeout", 0))):
        writer = PartWriter(output_dir, None, None)
        todo, summary = begin_run(writer, paths, ids, annotation_spec(vision), on_start)
        # Absolute paths for the workers, symlinks kept as they are (resolving a looping link raises here).
        pending = [(i, os.path.abspath(p)) for i, p in todo]
        if pending:
            parts = _plan_parts(writer, pending, part_size)
            factory = annotator_factory or AnnotatorFromConfig(vision)
            started_ray = init_ray(ray_cfg)
            try:
                started = time.perf_counter()
                with _data_context(ray, show_progress_bars=bool(get(ray_cfg, "data_progress_bars", False))):
                    ds = _pipeline(ray, parts, vision, runner, factory, writer, batch_size=batch_size)
                    _collect(ds, parts, summary, progress)
                summary.seconds = time.perf_counter() - started
            finally:
                if started_ray:
                    ray.shutdown()
    return summary


@contextmanager
def _data_context(ray: Any, *, show_progress_bars: bool) -> Iterator[None]:
    """Ray Data's settings for this run, restored afterwards: parts may finish in any order (each is written by its
    actor under its reserved name), progress bars as the ``ray`` node says."""
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = False
    ctx.enable_progress_bars = show_progress_bars
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved


def _plan_parts(writer: PartWriter, pending: list[tuple[str, str]], part_size: int) -> list[dict[str, Any]]:
    """One work item per part, in input order, under the part names the local runner would use."""
    chunks = [pending[s : s + part_size] for s in range(0, len(pending), part_size)]
    names = writer.reserve(len(chunks))
    return [
        {
            "name": name,
            "ids": [i for i, _ in chunk],
            "paths": [p for _, p in chunk],
            "files": json.dumps({i: list(writer.fingerprints.get(i, (-1, -1))) for i, _ in chunk}),
        }
        for name, chunk in zip(names, chunks, strict=True)
    ]


def _pipeline(
    ray: Any,
    parts: list[dict[str, Any]],
    vision: Mapping[str, Any],
    runner: Mapping[str, Any],
    factory: Callable[[], BatchAnnotator],
    writer: PartWriter,
    *,
    batch_size: int,
) -> Any:
    compute, gpus, cpus, threads = actor_resources(ray, runner)
    decode_cpus = float(get(runner, "decode_num_cpus", 1))
    max_long_side = vision.get("max_long_side")
    log.info(
        "Ray Data: %d parts, %g decoding CPUs per task, actors %s with %g GPU / %g CPU / %d torch threads each",
        len(parts), decode_cpus, get(runner, "actors", 1), gpus, cpus, threads,
    )  # fmt: skip
    decode_kwargs = {
        "batch_size": batch_size,
        "max_pixels": int(get(vision, "max_pixels", DEFAULT_MAX_PIXELS)),
        "max_long_side": None if max_long_side is None else int(max_long_side),
    }
    actor_kwargs = {
        "factory": factory,
        "num_threads": threads,
        "output": str(Path(writer.output).resolve()),
        "spec_hash": writer.spec_hash,
    }
    return (
        ray.data.from_items(parts, override_num_blocks=len(parts))
        .map_batches(_decode_parts, batch_size=1, batch_format="pyarrow", num_cpus=decode_cpus, fn_kwargs=decode_kwargs)
        .map_batches(
            _AnnotateActor,
            batch_size=1,
            batch_format="pyarrow",
            compute=compute,
            num_gpus=gpus,
            num_cpus=cpus,
            fn_constructor_kwargs=actor_kwargs,
        )
    )


def _collect(
    ds: Any,
    parts: list[dict[str, Any]],
    summary: AnnotationSummary,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Read the actors' manifests (parts arrive in any order; each is already written) into the summary."""
    summary.stage_seconds = {stage: 0.0 for stage in STAGES}
    expected = {p["name"] for p in parts}
    for row in ds.iter_rows():
        manifest = json.loads(row["manifest"])
        expected.discard(manifest["name"])
        for image_id, reason in manifest["errors"]:
            summary.count_error(reason)
            log.warning("skipping %s: %s", image_id, reason)
        summary.ok += manifest["images"] - len(manifest["errors"])
        summary.faces += manifest["faces"]
        for stage, seconds in manifest["stages"].items():
            summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
        if progress is not None:
            progress(manifest["images"], manifest["faces"])
    if expected:
        raise AnnotationError(f"Ray pipeline ended without parts {sorted(expected)}; rerun to resume")
