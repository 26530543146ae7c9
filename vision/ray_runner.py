"""The annotation pipeline on Ray: the same per-batch work as :func:`vision.annotate.annotate_folder`, spread over a
Ray cluster with Ray Data, writing the same Parquet layout.

Flow (a Ray Data streaming pipeline)::

    from_items(parts)                  one row per Parquet part: its ``vision.part_size`` file paths
      -> map_batches(_decode_parts)    CPU tasks: vision.io.load_image on each path (shared filesystem), then the
                                       part is cut into the batches the local runner would form (see below)
      -> map_batches(_AnnotateActor)   actors (one GPU each where the cluster has GPUs): models loaded once in
                                       __init__, BatchAnnotator.annotate_batch per batch
      -> driver                        vision.annotate.PartWriter writes each part once all its batches are in

Identical output. The local runner cuts the pending files into parts of ``part_size`` files; inside a part the
decodable images form detector batches of ``batch_size`` in file order, and an undecodable file's error row is
appended the moment it is met (before the rows of the batch still being filled). Batched detection equals
one-image detection only up to floating-point summation order, so this runner forms exactly the same batches
(:func:`plan_part`) and rows in exactly the same order; Ray Data's ``preserve_order`` keeps parts in input order.
``pandas.read_parquet(OUTPUT / "images")`` is then the same table, part files included, bit for bit when the
actors run torch with the same device and thread count as the local run (another thread count moves float32 results
in their last bits: summation order).

Parallelism. When the decoding tasks and the actors ask for the same resources (CPU-only clusters), Ray Data fuses
the two stages into the actors, and a part is then the unit of work: keep ``vision.part_size`` well below
(images / actors). With GPU actors, decoding runs in separate CPU tasks and every batch can go to any actor. The
driver unpickles and writes every part: it bounds the cluster's throughput (a few hundred images/s per driver).

Resume, the output folder's lock and the check of the vision settings are the local runner's
(:mod:`vision.store`, :mod:`vision.lock`): only files not yet annotated, or changed since, are sent to the cluster.
Ray is imported lazily: without it, this module imports and :func:`annotate_folder_ray` raises an error that says
what to install.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from vision.annotate import AnnotationSummary, BatchAnnotator, annotation_spec, begin_run, list_input, output_lock
from vision.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageDecodeError, decode_or_error
from vision.store import AnnotationError, PartWriter

log = logging.getLogger(__name__)

INSTALL_HINT = 'Ray is not installed; install the optional extra: pip install "creative-insights[ray]"'


def import_ray() -> Any:
    """Import ``ray`` (and ``ray.data``), or raise ImportError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the `data` extra of ray; fail here, not mid-run
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return ray


def _get(cfg: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default)
    return default if value is None else value


def init_ray(ray_cfg: Mapping[str, Any] | None = None) -> bool:
    """Connect to Ray as the ``ray`` config node says, unless this process is already connected.

    Parameters
    ----------
    ray_cfg : mapping, optional
        ``address``: null starts a local Ray instance on this machine; ``"auto"`` joins the cluster started here
        with ``ray start``; ``"ray://HOST:10001"`` joins a remote cluster through Ray Client. ``num_cpus`` /
        ``num_gpus`` / ``object_store_memory`` size a local instance (null: what the machine has).
        ``include_dashboard``, ``namespace``, ``runtime_env`` (e.g. ``{py_modules: [...]}`` for a cluster where the
        project is not installed), ``log_to_driver`` are passed to ``ray.init``.

    Returns
    -------
    bool
        True when this call connected (the caller then owns the connection and shuts it down); False when Ray was
        already initialised, e.g. by a test fixture or an outer script.

    Raises
    ------
    ConnectionError
        When ``ray.address`` cannot be reached (checked with a 10 s TCP connect first: ``ray.init`` itself keeps
        retrying a dead address for minutes).
    ValueError
        When ``ray.address`` is not of a recognised form.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = _get(ray_cfg, "address")
    kwargs: dict[str, Any] = {
        "address": address,
        "include_dashboard": bool(_get(ray_cfg, "include_dashboard", False)),
        "log_to_driver": bool(_get(ray_cfg, "log_to_driver", True)),
    }
    for key in ("namespace", "runtime_env"):
        value = _get(ray_cfg, key)
        if value is not None:
            kwargs[key] = _plain(value)
    if address is None:
        # Sizing only applies to an instance this process starts; a cluster has its own.
        for key in ("num_cpus", "num_gpus", "object_store_memory"):
            value = _get(ray_cfg, key)
            if value is not None:
                kwargs[key] = value
    if address not in (None, "auto", "local"):
        _check_reachable(str(address))
    log.info("ray.init(%s)", ", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise ConnectionError(f"cannot connect to the Ray cluster at ray.address={address!r}: {err}") from err
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on an unreachable ``host:port`` (ray.init retries a dead address for minutes)."""
    host_port = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"ray.address: expected null, 'auto', 'HOST:PORT' or 'ray://HOST:PORT', got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at ray.address={address!r}: {err}") from None


def _plain(node: Any) -> Any:
    """OmegaConf containers -> plain dict / list (Ray pickles its arguments; DictConfig is heavy and fragile)."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)) or type(node).__name__ == "ListConfig":
        return [_plain(v) for v in node]
    return node


# --------------------------------------------------------------------------------------------------------------------
# The local runner's batching, made explicit.
# --------------------------------------------------------------------------------------------------------------------


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
    """Ray Data task: decode each part's files and yield one row per event (a generator, so Ray Data can stream
    events out as separate blocks instead of holding a whole part's pixels in one)."""
    import cv2

    # One decoding thread per task: Ray runs as many tasks as the CPUs it was given.
    cv2.setNumThreads(1)
    for part, ids, paths in zip(
        parts.column("part").to_pylist(), parts.column("ids").to_pylist(), parts.column("paths").to_pylist()
    ):
        results = [decode_or_error(p, max_pixels, max_long_side) for p in paths]
        events = plan_part([not isinstance(r, ImageDecodeError) for r in results], batch_size)
        for k, (error_pos, batch_pos) in enumerate(events):
            payload = {
                "errors": [(ids[i], results[i].reason) for i in error_pos],
                "ids": [ids[i] for i in batch_pos],
                "images": [results[i] for i in batch_pos],
            }
            yield pa.table(
                {
                    "part": pa.array([part], pa.int64()),
                    "event": pa.array([k], pa.int32()),
                    "n_events": pa.array([len(events)], pa.int32()),
                    "payload": pa.array([pickle.dumps(payload, protocol=5)], pa.large_binary()),
                }
            )


class _AnnotateActor:
    """Ray Data actor: builds the models once, then annotates one event (one detector batch) per call.

    Parameters
    ----------
    factory : callable returning BatchAnnotator
        Built inside the actor, on the device Ray gave it (``device=auto`` sees the actor's GPU).
    num_threads : int
        torch intra-op threads (the actor's CPU share; torch would otherwise take every core of the node).
    """

    def __init__(self, factory: Callable[[], BatchAnnotator], num_threads: int):
        from vision.device import configure_threads

        self.annotator = factory()
        configure_threads(num_threads)
        self.schemas = pickle.dumps((self.annotator.images_schema_, self.annotator.faces_schema_), protocol=5)

    def __call__(self, events: pa.Table) -> pa.Table:
        payloads = []
        for raw in events.column("payload").to_pylist():
            event = pickle.loads(raw)
            rows = [self.annotator.error_row(i, reason) for i, reason in event["errors"]]
            image_rows, face_rows = self.annotator.annotate_batch(event["ids"], event["images"])
            payloads.append(pickle.dumps((rows + image_rows, face_rows, len(image_rows)), protocol=5))
        return pa.table(
            {
                "part": events.column("part"),
                "event": events.column("event"),
                "n_events": events.column("n_events"),
                "rows": pa.array(payloads, pa.large_binary()),
                "schemas": pa.array([self.schemas] * len(payloads), pa.large_binary()),
            }
        )


class AnnotatorFromConfig:
    """Picklable factory: ``vision`` config (plain dict, interpolations resolved) -> BatchAnnotator, built where it
    is called (inside each Ray actor), through :func:`vision.annotate.annotator_from_config`."""

    def __init__(self, vision_cfg: Mapping[str, Any]):
        self.vision_cfg = _plain(vision_cfg)

    def __call__(self) -> BatchAnnotator:
        from omegaconf import OmegaConf

        from vision.annotate import annotator_from_config

        return annotator_from_config(OmegaConf.create(self.vision_cfg))


# --------------------------------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------------------------------


def _resolved(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if type(cfg).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return _plain(cfg)


def _check_runner(runner: Mapping[str, Any]) -> None:
    """Validate the ``runner`` node before anything starts, naming the bad key."""
    actors = _get(runner, "actors", 1)
    pool_ok = (
        isinstance(actors, (list, tuple))
        and len(actors) == 2
        and all(isinstance(a, int) and a >= 1 for a in actors)
        and actors[0] <= actors[1]
    )
    if not (pool_ok or (isinstance(actors, int) and not isinstance(actors, bool) and actors >= 1)):
        raise ValueError(f"runner.actors: an integer >= 1 or [min, max] with 1 <= min <= max, got {actors!r}")
    gpus = _get(runner, "num_gpus_per_actor", "auto")
    if gpus != "auto" and not (isinstance(gpus, (int, float)) and gpus >= 0):
        raise ValueError(f"runner.num_gpus_per_actor: a number >= 0 or 'auto', got {gpus!r}")
    for key in ("num_cpus_per_actor", "decode_num_cpus"):
        value = _get(runner, key, 1)
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"runner.{key}: a number > 0, got {value!r}")
    threads = _get(runner, "threads_per_actor", 0)
    if not (isinstance(threads, int) and threads >= 0):
        raise ValueError(f"runner.threads_per_actor: an integer >= 0 (0: the actor's CPUs), got {threads!r}")


def _actor_resources(ray: Any, runner: Mapping[str, Any]) -> tuple[Any, float, float, int]:
    """(compute strategy, num_gpus, num_cpus, torch threads) of the annotation actors from a checked ``runner``."""
    actors = _get(runner, "actors", 1)
    if isinstance(actors, (list, tuple)):
        compute = ray.data.ActorPoolStrategy(min_size=actors[0], max_size=actors[1])
    else:
        compute = ray.data.ActorPoolStrategy(size=actors)
    gpus = _get(runner, "num_gpus_per_actor", "auto")
    if gpus == "auto":
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    cpus = float(_get(runner, "num_cpus_per_actor", 1))
    threads = int(_get(runner, "threads_per_actor", 0)) or max(1, math.ceil(cpus))
    return compute, float(gpus), cpus, threads


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
        Receives ``images/part-*.parquet`` and ``faces/part-*.parquet``; written by this (driver) process only.
    vision_cfg : DictConfig or mapping
        The ``vision`` node: ``batch_size``, ``part_size``, ``max_pixels``, ``max_long_side``, ``extensions``, and
        the models (built in each actor with :func:`vision.annotate.annotator_from_config`).
    ray_cfg : mapping, optional
        The ``ray`` node, see :func:`init_ray`. A Ray connection this call opens is shut down before it returns.
    runner_cfg : mapping, optional
        The ``runner`` node (``conf/runner/ray.yaml``): ``actors`` (int, or [min, max] for an autoscaling pool),
        ``num_gpus_per_actor`` (``auto``: 1 when the cluster has GPUs, else 0; fractions share a GPU),
        ``num_cpus_per_actor``, ``threads_per_actor`` (torch threads; 0: the actor's CPUs), ``decode_num_cpus``
        (CPUs per decoding task), ``batch_size`` (images per detector call; the local runner's
        ``vision.batch_size`` gives identical output).
    annotator_factory : callable returning BatchAnnotator, optional
        Builds the models inside each actor instead of ``vision_cfg``'s models (it is pickled to the actors).
    progress, on_start : callable, optional
        As in :func:`vision.annotate.annotate_folder`.

    Returns
    -------
    AnnotationSummary
        ``seconds`` runs from the submission of the pipeline to the last part written, actor start-up and model
        loading included (the local runner builds its models before its clock starts).

    Raises
    ------
    ImportError
        When Ray is not installed.
    AnnotationError
        When the input folder does not exist, the output cannot be written, or the cluster cannot be reached.
    """
    ray = import_ray()
    vision = _resolved(vision_cfg)
    runner = _resolved(runner_cfg)
    _check_runner(runner)
    batch_size = int(_get(runner, "batch_size", vision.get("batch_size", 16)))
    part_size = int(vision.get("part_size", 256))
    if batch_size < 1 or part_size < 1:
        raise ValueError(f"runner.batch_size ({batch_size}) and vision.part_size ({part_size}) must be >= 1")
    extensions = vision.get("extensions") or IMAGE_EXTENSIONS

    input_dir = Path(input_dir)
    paths, ids = list_input(input_dir, extensions)
    spec = annotation_spec(vision)
    with output_lock(output_dir, float(vision.get("lock_timeout", 0))):
        # Schemas come from the first actor's annotator, so the driver never loads a model; prepare() needs none.
        writer = PartWriter(output_dir, None, None)
        todo, summary = begin_run(writer, paths, ids, spec, on_start)
        # Absolute paths for the workers, symlinks kept as they are (resolving a looping link raises here).
        pending = [(i, os.path.abspath(p)) for i, p in todo]
        if pending:
            _run_on_ray(ray, pending, writer, summary, vision, ray_cfg, runner, annotator_factory, progress)
    return summary


def _run_on_ray(
    ray: Any,
    pending: list[tuple[str, str]],
    writer: PartWriter,
    summary: AnnotationSummary,
    vision: Mapping[str, Any],
    ray_cfg: Mapping[str, Any] | None,
    runner: Mapping[str, Any],
    annotator_factory: Callable[[], BatchAnnotator] | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    batch_size = int(_get(runner, "batch_size", vision.get("batch_size", 16)))
    max_long_side = vision.get("max_long_side")
    factory = annotator_factory or AnnotatorFromConfig(vision)
    started_ray = init_ray(ray_cfg)
    try:
        started = time.perf_counter()
        _run_pipeline(
            ray,
            pending,
            writer,
            summary,
            factory=factory,
            runner=runner,
            batch_size=batch_size,
            part_size=int(vision.get("part_size", 256)),
            max_pixels=int(_get(vision, "max_pixels", DEFAULT_MAX_PIXELS)),
            max_long_side=None if max_long_side is None else int(max_long_side),
            progress=progress,
            show_progress_bars=bool(_get(ray_cfg, "data_progress_bars", False)),
        )
        summary.seconds = time.perf_counter() - started
    finally:
        if started_ray:
            ray.shutdown()


def _run_pipeline(
    ray: Any,
    pending: list[tuple[str, str]],
    writer: PartWriter,
    summary: AnnotationSummary,
    *,
    factory: Callable[[], BatchAnnotator],
    runner: Mapping[str, Any],
    batch_size: int,
    part_size: int,
    max_pixels: int,
    max_long_side: int | None,
    progress: Callable[[int, int], None] | None,
    show_progress_bars: bool,
) -> None:
    compute, gpus, cpus, threads = _actor_resources(ray, runner)
    decode_cpus = float(_get(runner, "decode_num_cpus", 1))
    parts = [
        {
            "part": k,
            "ids": [i for i, _ in pending[s : s + part_size]],
            "paths": [p for _, p in pending[s : s + part_size]],
        }
        for k, s in enumerate(range(0, len(pending), part_size))
    ]
    log.info(
        "Ray Data: %d parts, %d decoding CPUs per task, actors %s with %g GPU / %g CPU / %d torch threads each",
        len(parts),
        decode_cpus,
        _get(runner, "actors", 1),
        gpus,
        cpus,
        threads,
    )
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = show_progress_bars
    try:
        ds = (
            ray.data.from_items(parts, override_num_blocks=len(parts))
            .map_batches(
                _decode_parts,
                batch_size=1,
                batch_format="pyarrow",
                num_cpus=decode_cpus,
                fn_kwargs={"batch_size": batch_size, "max_pixels": max_pixels, "max_long_side": max_long_side},
            )
            .map_batches(
                _AnnotateActor,
                batch_size=1,
                batch_format="pyarrow",
                compute=compute,
                num_gpus=gpus,
                num_cpus=cpus,
                fn_constructor_kwargs={"factory": factory, "num_threads": threads},
            )
        )
        _write_parts(ds, writer, summary, progress)
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved


def _write_parts(
    ds: Any,
    writer: PartWriter,
    summary: AnnotationSummary,
    progress: Callable[[int, int], None] | None,
) -> None:
    # Parts are written in input order as soon as all their events are in; with preserve_order they arrive in order,
    # so the buffer holds at most one part.
    buffered: dict[int, dict[int, tuple[list, list]]] = {}
    n_events: dict[int, int] = {}
    next_part = 0
    for row in ds.iter_rows():
        part, event = int(row["part"]), int(row["event"])
        if writer.images_schema is None:
            writer.images_schema, writer.faces_schema = pickle.loads(row["schemas"])
        image_rows, face_rows, n_ok = pickle.loads(row["rows"])
        buffered.setdefault(part, {})[event] = (image_rows, face_rows)
        n_events[part] = int(row["n_events"])
        for r in image_rows[: len(image_rows) - n_ok]:
            summary.count_error(r["error"])
            log.warning("skipping %s: %s", r["image_id"], r["error"])
        summary.ok += n_ok
        summary.faces += len(face_rows)
        if progress is not None:
            progress(len(image_rows), len(face_rows))
        while next_part in buffered and len(buffered[next_part]) == n_events[next_part]:
            events = buffered.pop(next_part)
            writer.write(
                [r for k in range(len(events)) for r in events[k][0]],
                [f for k in range(len(events)) for f in events[k][1]],
            )
            next_part += 1
    if buffered:
        raise AnnotationError(f"Ray pipeline ended with incomplete parts {sorted(buffered)}; rerun to resume")
