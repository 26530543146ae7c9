"""The streaming annotation pipeline: folder of artwork -> Parquet tables of images and faces.

Flow: files are decoded in worker processes (a bounded window of them in flight, so memory stays flat whatever the
folder size) -> batches go through the detector, the face embedder and the image features on the chosen device ->
rows are accumulated and written as Parquet parts every ``part_size`` images.

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
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from vision.features import face_aggregates, mean_embedding
from vision.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    DecodedImage,
    ImageDecodeError,
    decode_or_error,
    file_fingerprint,
    find_images,
    image_id_for,
)
from vision.lock import OutputLock, OutputLockedError
from vision.pose import face_poses, largest_face_pose
from vision.store import AnnotationError, PartWriter

log = logging.getLogger(__name__)

__all__ = ["AnnotationError", "AnnotationSummary", "BatchAnnotator", "annotate_folder", "annotator_from_config"]


class Detector(Protocol):
    def detect(self, images: Sequence[np.ndarray]) -> list[Any]: ...


class Embedder(Protocol):
    dim: int

    def embed(self, image: np.ndarray, detections: Any) -> np.ndarray: ...


class ImageEncoder(Protocol):
    dim: int

    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass
class AnnotationSummary:
    """What a run did. ``seconds`` and ``images_per_second`` count only the images processed in this run.

    ``skipped`` files were already annotated and unchanged; ``changed`` files were annotated again because their
    size or mtime changed; ``removed`` rows belonged to files no longer in the input folder.
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


# --------------------------------------------------------------------------------------------------------------------
# Per-batch work: pure functions of decoded images, reused by any runner (local loop, Ray actors).
# --------------------------------------------------------------------------------------------------------------------


class BatchAnnotator:
    """Turns a batch of decoded images into image rows and face rows (the data contract's columns).

    Parameters
    ----------
    detector : object with ``detect(list[np.ndarray]) -> list[FaceDetections]``
        Boxes and landmarks come back in the pixels of the arrays it was given.
    embedder : object with ``embed(image, detections) -> (n, d)`` and ``dim``, optional
        Face embedding backend; None leaves ``embedding`` and ``face_embedding_mean`` null.
    image_encoder : object with ``encode(list[np.ndarray]) -> (n, d)`` and ``dim``, optional
        Latent image vector; None leaves ``image_embedding`` null.
    color_features : callable ``(np.ndarray) -> dict[str, float]``, optional
        Cheap colour/composition features; None skips them.
    overlap_encoder : bool
        Run the image encoder in a background thread while the detector and the face embedder work on the same
        batch. Both release the GIL (torch, OpenCV), and neither library's own threads scale well on few cores:
        on 2 CPU cores this took the default models from 9.1 to 15.0 images/s. The numbers are the same.
    """

    def __init__(
        self,
        *,
        detector: Detector,
        embedder: Embedder | None = None,
        image_encoder: ImageEncoder | None = None,
        color_features: Callable[[np.ndarray], dict[str, float]] | None = None,
        overlap_encoder: bool = True,
        spec: Mapping[str, Any] | None = None,
    ):
        self.detector = detector
        self.embedder = embedder
        self.image_encoder = image_encoder
        self.color_features = color_features
        self.overlap_encoder = overlap_encoder
        self._encoder_pool: ThreadPoolExecutor | None = None
        self.color_feature_names_ = (
            tuple(color_features(np.zeros((8, 8, 3), dtype=np.uint8))) if color_features is not None else ()
        )
        self.images_schema_ = _images_schema(self.color_feature_names_)
        self.faces_schema_ = _faces_schema()
        self.spec = dict(spec) if spec is not None else self._default_spec()

    def _default_spec(self) -> dict[str, Any]:
        # Without a config, the models' types and the feature columns stand for the settings (coarser: a changed
        # threshold of the same detector class is not seen; annotator_from_config passes the full config).
        def name(obj: Any) -> str | None:
            return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"

        return {
            "detector": name(self.detector),
            "embedder": name(self.embedder),
            "image_encoder": name(self.image_encoder),
            "color_features": list(self.color_feature_names_),
        }

    def annotate_batch(
        self, image_ids: Sequence[str], decoded: Sequence[DecodedImage]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Annotate decoded images.

        Parameters
        ----------
        image_ids : sequence of str
            One id per image.
        decoded : sequence of DecodedImage
            Upright RGB arrays with their original sizes.

        Returns
        -------
        image_rows, face_rows : list of dict
            One image row per input; one face row per detected face; boxes and landmarks in original pixels.
        """
        if not decoded:
            return [], []
        pixels = [d.pixels for d in decoded]
        pending_vectors: Future | None = None
        if self.image_encoder is not None and self.overlap_encoder:
            if self._encoder_pool is None:
                self._encoder_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-encoder")
            pending_vectors = self._encoder_pool.submit(self.image_encoder.encode, pixels)
        try:
            detections = self.detector.detect(pixels)
            face_embeddings = [
                np.asarray(self.embedder.embed(image.pixels, det), dtype=np.float32)
                if self.embedder is not None and len(det) > 0
                else None
                for image, det in zip(decoded, detections, strict=True)
            ]
        finally:
            # Never leave the encoder running on buffers the caller may reuse, even when detection failed.
            image_vectors = pending_vectors.result() if pending_vectors is not None else None
        if image_vectors is None and self.image_encoder is not None:
            image_vectors = self.image_encoder.encode(pixels)
        image_rows: list[dict[str, Any]] = []
        face_rows: list[dict[str, Any]] = []
        for i, (image_id, image, det) in enumerate(zip(image_ids, decoded, detections, strict=True)):
            embeddings = face_embeddings[i]
            sx = image.width / image.pixels.shape[1]
            sy = image.height / image.pixels.shape[0]
            boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image.width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image.height)
            landmarks = np.asarray(det.landmarks, dtype=np.float64).reshape(-1, 5, 2) * np.array([sx, sy])
            probs = np.asarray(det.probs, dtype=np.float64).reshape(-1)
            row: dict[str, Any] = {
                "image_id": image_id,
                "width": image.width,
                "height": image.height,
                "status": "ok",
                "error": None,
                **face_aggregates(boxes, probs, image.width, image.height),
                **largest_face_pose(boxes, landmarks),
            }
            if self.color_features is not None:
                row.update(self.color_features(image.pixels))
            face_mean = mean_embedding(embeddings)
            row["face_embedding_mean"] = face_mean.tolist() if face_mean is not None else None
            row["image_embedding"] = (
                np.asarray(image_vectors[i], dtype=np.float32).tolist() if image_vectors is not None else None
            )
            image_rows.append(row)
            area = image.width * image.height
            poses = face_poses(landmarks)  # yaw, pitch, roll, frontal (vision.pose)
            for k in range(len(boxes)):
                x1, y1, x2, y2 = boxes[k]
                face_rows.append(
                    {
                        "image_id": image_id,
                        "face_index": k,
                        "x1": x1,
                        "y1": y1,
                        "x2": x2,
                        "y2": y2,
                        "prob": probs[k],
                        "area_frac": max(x2 - x1, 0.0) * max(y2 - y1, 0.0) / area,
                        "landmarks": landmarks[k].reshape(-1).tolist(),
                        "embedding": embeddings[k].tolist() if embeddings is not None else None,
                        **poses[k],
                    }
                )
        return image_rows, face_rows

    def __getstate__(self) -> dict[str, Any]:
        # A thread pool does not pickle (Ray ships annotators to actors); it is rebuilt on first use.
        return {**self.__dict__, "_encoder_pool": None}

    def close(self) -> None:
        """Stop the background encoder thread (also done at interpreter exit)."""
        if self._encoder_pool is not None:
            self._encoder_pool.shutdown(wait=True)
            self._encoder_pool = None

    def error_row(self, image_id: str, message: str) -> dict[str, Any]:
        """The images-table row of a file that could not be decoded: every feature null, ``status="error"``."""
        return {"image_id": image_id, "status": "error", "error": message}


def _images_schema(color_names: Iterable[str]) -> pa.Schema:
    fields = [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("face_present", pa.bool_()),
        pa.field("face_count", pa.int32()),
        pa.field("face_area_mean", pa.float64()),
        pa.field("face_area_max", pa.float64()),
        pa.field("face_area_total", pa.float64()),
        pa.field("face_prob_max", pa.float64()),
        pa.field("largest_face_cx", pa.float64()),
        pa.field("largest_face_cy", pa.float64()),
        pa.field("largest_face_yaw", pa.float64()),
        pa.field("largest_face_pitch", pa.float64()),
        pa.field("largest_face_roll", pa.float64()),
        pa.field("largest_face_frontal", pa.bool_()),
    ]
    fields += [pa.field(name, pa.float64()) for name in color_names]
    fields += [
        pa.field("face_embedding_mean", pa.list_(pa.float32())),
        pa.field("image_embedding", pa.list_(pa.float32())),
    ]
    return pa.schema(fields)


def _faces_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("face_index", pa.int32(), nullable=False),
            pa.field("x1", pa.float32()),
            pa.field("y1", pa.float32()),
            pa.field("x2", pa.float32()),
            pa.field("y2", pa.float32()),
            pa.field("prob", pa.float32()),
            pa.field("area_frac", pa.float64()),
            pa.field("landmarks", pa.list_(pa.float32())),
            pa.field("embedding", pa.list_(pa.float32())),
            pa.field("yaw", pa.float64()),
            pa.field("pitch", pa.float64()),
            pa.field("roll", pa.float64()),
            pa.field("frontal", pa.bool_()),
        ]
    )


# --------------------------------------------------------------------------------------------------------------------
# Decoding in worker processes with a bounded window.
# --------------------------------------------------------------------------------------------------------------------


def _init_decoder_worker(parent_pid: int) -> None:
    import signal
    import threading

    import cv2

    cv2.setNumThreads(1)
    # Ctrl-C reaches the whole process group: the parent decides how to stop, the worker must not print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed with SIGKILL cannot shut the pool down; without this the worker (and multiprocessing's
    # resource tracker, which waits for it) lingers for minutes.
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def decode_stream(
    paths: Sequence[Path], *, num_workers: int, max_pixels: int, max_long_side: int | None, prefetch: int = 8
) -> Iterator[DecodedImage | ImageDecodeError]:
    """Decode ``paths`` in order, in ``num_workers`` processes (0: in this process), at most ``prefetch`` ahead.

    Every failure comes back as an :class:`ImageDecodeError` in the file's place. When the consumer stops early
    (an exception, Ctrl-C, ``close()``), queued work is cancelled and the workers are stopped at once.
    """
    if num_workers <= 0:
        for path in paths:
            yield decode_or_error(str(path), max_pixels, max_long_side)
        return
    # spawn, not fork: the parent holds torch's thread pools, which do not survive fork.
    pool = ProcessPoolExecutor(
        max_workers=num_workers,
        mp_context=get_context("spawn"),
        initializer=_init_decoder_worker,
        initargs=(os.getpid(),),
    )
    finished = False
    try:
        window: deque[Future] = deque()
        for path in paths:
            window.append(pool.submit(decode_or_error, str(path), max_pixels, max_long_side))
            if len(window) > max(prefetch, num_workers):
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
        finished = True
    finally:
        _stop_pool(pool, graceful=finished)


def _stop_pool(pool: ProcessPoolExecutor, *, graceful: bool) -> None:
    if graceful:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:  # a worker mid-decode of a huge file would otherwise finish it first
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


# --------------------------------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------------------------------


def annotate_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    annotator: BatchAnnotator,
    *,
    batch_size: int = 16,
    part_size: int = 256,
    num_workers: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_long_side: int | None = None,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    lock_timeout: float = 0.0,
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
    annotator : BatchAnnotator
        The models. ``annotator.spec`` (the row-shaping settings) is checked against the folder's.
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
    progress : callable ``(n_images, n_faces)``, optional
        Called after every batch with the counts of that batch.
    on_start : callable ``(n_found, n_already_done)``, optional
        Called once the work list is known.

    Returns
    -------
    AnnotationSummary

    Raises
    ------
    AnnotationError
        Before any image is processed: the input folder is missing or holds no image file, the output cannot be
        written, another run holds it, or it was annotated with other vision settings.
    """
    input_dir = Path(input_dir)
    paths, ids = list_input(input_dir, extensions)
    spec = {**annotator.spec, **_decoding_spec(max_pixels, max_long_side)}
    with output_lock(output_dir, lock_timeout):
        writer = PartWriter(output_dir, annotator.images_schema_, annotator.faces_schema_)
        pending, summary = begin_run(writer, paths, ids, spec, on_start)
        stream = decode_stream(
            [p for _, p in pending],
            num_workers=num_workers,
            max_pixels=max_pixels,
            max_long_side=max_long_side,
            prefetch=max(2 * batch_size, 2 * num_workers),
        )
        started = time.perf_counter()
        try:
            _annotate_stream(zip((i for i, _ in pending), stream), annotator, writer, summary,
                             batch_size=batch_size, part_size=part_size, progress=progress)  # fmt: skip
        finally:
            stream.close()
            summary.seconds = time.perf_counter() - started
    return summary


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


def annotation_spec(vision_cfg: Any) -> dict[str, Any]:
    """The settings of a ``vision`` config node that shape the rows (models, features, decoding limits).

    Device, threads, batch and part size, workers and the file extensions do not change a row (beyond float
    rounding of batched arithmetic), so resuming under other values of these is allowed.
    """
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(vision_cfg, resolve=True) if OmegaConf.is_config(vision_cfg) else dict(vision_cfg)
    spec = {key: node.get(key) for key in ("detector", "embedder", "image_features")}
    return {**spec, **_decoding_spec(node.get("max_pixels", DEFAULT_MAX_PIXELS), node.get("max_long_side"))}


def _decoding_spec(max_pixels: int, max_long_side: int | None) -> dict[str, int | None]:
    return {"max_pixels": int(max_pixels), "max_long_side": None if max_long_side is None else int(max_long_side)}


def annotator_from_config(vision_cfg: Any) -> BatchAnnotator:
    """Build the models named by the ``vision`` config node (``conf/vision/``) on its device.

    ``detector`` and ``embedder`` are instantiated from their ``_target_`` with ``device=`` added; an embedder node
    that is null or has no ``_target_`` disables face embeddings. ``image_features.color`` and
    ``image_features.latent`` switch the two image-level feature families; ``overlap_encoder`` runs the image
    encoder beside the detector (see :class:`BatchAnnotator`).
    """
    from hydra.utils import instantiate

    from vision.device import configure_threads, resolve_device

    configure_threads(vision_cfg.get("num_threads"))
    device = str(resolve_device(vision_cfg.get("device", "auto")))
    detector = instantiate(vision_cfg.detector, device=device)
    embedder_cfg = vision_cfg.get("embedder")
    embedder = (
        instantiate(embedder_cfg, device=device) if embedder_cfg is not None and embedder_cfg.get("_target_") else None
    )
    features_cfg = vision_cfg.get("image_features") or {}
    color = None
    encoder = None
    if features_cfg.get("color", False) or features_cfg.get("latent", False):
        from vision import image_features

        if features_cfg.get("color", False):
            color = image_features.color_features
        if features_cfg.get("latent", False):
            encoder_cfg = features_cfg.get("encoder")
            encoder = (
                instantiate(encoder_cfg, device=device)
                if encoder_cfg is not None
                else image_features.EfficientNetLite0Encoder(device=device)
            )
    if features_cfg.get("text", False):  # opt-in: needs the PP-OCR model file (vision.text)
        from vision.text import TextImageFeatures

        color = TextImageFeatures(features_cfg.get("text_model"), then=color)
    return BatchAnnotator(
        detector=detector,
        embedder=embedder,
        image_encoder=encoder,
        color_features=color,
        overlap_encoder=bool(vision_cfg.get("overlap_encoder", True)),
        spec=annotation_spec(vision_cfg),
    )


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
    experiment runner both call it. Locally the models are built here; on Ray, inside the actors.
    """
    if runner_cfg is not None and runner_cfg.get("name") == "ray":
        from vision.ray_runner import annotate_folder_ray

        return annotate_folder_ray(
            input_dir, output_dir, vision_cfg, ray_cfg, runner_cfg, progress=progress, on_start=on_start
        )
    # A missing or empty input folder, or an output folder another run holds, fail before the models load.
    list_input(Path(input_dir), list(vision_cfg.extensions))
    with output_lock(output_dir, float(vision_cfg.get("lock_timeout", 0))):
        pass
    annotator = annotator_from_config(vision_cfg)
    try:
        return annotate_folder(
            input_dir, output_dir, annotator, **folder_options(vision_cfg), progress=progress, on_start=on_start
        )
    finally:
        annotator.close()


def folder_options(vision_cfg: Any) -> dict[str, Any]:
    """The :func:`annotate_folder` keyword arguments that a ``vision`` config node sets (all but the models)."""
    return {
        "batch_size": int(vision_cfg.batch_size),
        "part_size": int(vision_cfg.part_size),
        "num_workers": int(vision_cfg.num_workers),
        "max_pixels": int(vision_cfg.max_pixels),
        "max_long_side": vision_cfg.max_long_side,
        "extensions": list(vision_cfg.extensions),
        "lock_timeout": float(vision_cfg.get("lock_timeout", 0)),
    }
