"""Per-batch work: decoded images -> image rows and face rows (the data contract's columns), with the time spent in
each model. Pure functions of the decoded images, reused by every runner (the local loop, Ray actors)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from vision.features import face_aggregates, mean_embedding
from vision.io import DecodedImage
from vision.pose import face_poses, largest_face_pose

__all__ = ["STAGES", "BatchAnnotator", "faces_schema", "images_schema"]

#: The stages whose seconds a run reports (``AnnotationSummary.stage_seconds``): decode is the time the driver
#: waited for decoded images, encode the image encoder's own time (it may overlap detect and embed), write the
#: Parquet parts.
STAGES = ("decode", "detect", "embed", "encode", "color", "rows", "write")


class Detector(Protocol):
    def detect(self, images: Sequence[np.ndarray]) -> list[Any]: ...


class Embedder(Protocol):
    dim: int

    def embed(self, image: np.ndarray, detections: Any) -> np.ndarray: ...


class ImageEncoder(Protocol):
    dim: int

    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


class BatchAnnotator:
    """Turns a batch of decoded images into image rows and face rows (the data contract's columns).

    Parameters
    ----------
    detector : object with ``detect(list[np.ndarray]) -> list[FaceDetections]``
        Boxes and landmarks come back in the pixels of the arrays it was given.
    embedder : object with ``embed(image, detections) -> (n, d)`` and ``dim``, optional
        Face embedding backend; None leaves ``embedding`` and ``face_embedding_mean`` null. When it also has
        ``embed_many(images, detections)``, all faces of a batch go to it in one call (one forward pass per
        ``embedder.batch_size`` faces where the backend batches).
    image_encoder : object with ``encode(list[np.ndarray]) -> (n, d)`` and ``dim``, optional
        Latent image vector; None leaves ``image_embedding`` null.
    color_features : callable ``(np.ndarray) -> dict[str, float]``, optional
        Cheap colour/composition features; None skips them.
    overlap_encoder : bool
        Run the image encoder in a background thread while the detector and the face embedder work on the same
        batch. Both release the GIL (torch, OpenCV), and neither library's own threads scale well on few cores:
        on 2 CPU cores this took the default models from 9.1 to 15.0 images/s. The numbers are the same.
    spec : mapping, optional
        The row-shaping settings (checked against an output folder's on resume); default: the models' types.

    Attributes
    ----------
    stage_seconds_ : dict of str to float
        Seconds spent so far in ``detect``, ``embed``, ``encode``, ``color`` and ``rows`` (see :data:`STAGES`).
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
        self.images_schema_ = images_schema(self.color_feature_names_)
        self.faces_schema_ = faces_schema()
        self.spec = dict(spec) if spec is not None else self._default_spec()
        self.stage_seconds_: dict[str, float] = {}

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

    @contextmanager
    def _timed(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds_[stage] = self.stage_seconds_.get(stage, 0.0) + time.perf_counter() - started

    def _encode(self, pixels: list[np.ndarray]) -> np.ndarray:
        with self._timed("encode"):
            return self.image_encoder.encode(pixels)

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
        detections, face_embeddings, image_vectors = self._run_models([d.pixels for d in decoded])
        image_rows: list[dict[str, Any]] = []
        face_rows: list[dict[str, Any]] = []
        for i, (image_id, image, det) in enumerate(zip(image_ids, decoded, detections, strict=True)):
            vector = image_vectors[i] if image_vectors is not None else None
            if self.color_features is not None:
                with self._timed("color"):
                    colors = self.color_features(image.pixels)
            else:
                colors = {}
            with self._timed("rows"):
                row, faces = _rows_for_image(image_id, image, det, face_embeddings[i], vector)
            image_rows.append({**row, **colors, **_embedding_columns(face_embeddings[i], vector)})
            face_rows.extend(faces)
        return image_rows, face_rows

    def _run_models(self, pixels: list[np.ndarray]) -> tuple[list[Any], list[np.ndarray | None], np.ndarray | None]:
        pending_vectors: Future | None = None
        if self.image_encoder is not None and self.overlap_encoder:
            if self._encoder_pool is None:
                self._encoder_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-encoder")
            pending_vectors = self._encoder_pool.submit(self._encode, pixels)
        try:
            with self._timed("detect"):
                detections = self.detector.detect(pixels)
            with self._timed("embed"):
                face_embeddings = self._embed_faces(pixels, detections)
        finally:
            # Never leave the encoder running on buffers the caller may reuse, even when detection failed.
            image_vectors = pending_vectors.result() if pending_vectors is not None else None
        if image_vectors is None and self.image_encoder is not None:
            image_vectors = self._encode(pixels)
        return detections, face_embeddings, image_vectors

    def _embed_faces(self, pixels: list[np.ndarray], detections: list[Any]) -> list[np.ndarray | None]:
        """One (n_faces, d) float32 array per image with faces, None for images without faces or no embedder."""
        if self.embedder is None:
            return [None] * len(pixels)
        with_faces = [k for k, det in enumerate(detections) if len(det) > 0]
        out: list[np.ndarray | None] = [None] * len(pixels)
        if not with_faces:
            return out
        embed_many = getattr(self.embedder, "embed_many", None)
        if embed_many is not None:
            vectors = embed_many([pixels[k] for k in with_faces], [detections[k] for k in with_faces])
        else:
            vectors = [self.embedder.embed(pixels[k], detections[k]) for k in with_faces]
        for k, v in zip(with_faces, vectors, strict=True):
            out[k] = np.asarray(v, dtype=np.float32)
        return out

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


def _embedding_columns(embeddings: np.ndarray | None, vector: np.ndarray | None) -> dict[str, Any]:
    face_mean = mean_embedding(embeddings)
    return {
        "face_embedding_mean": face_mean.tolist() if face_mean is not None else None,
        "image_embedding": np.asarray(vector, dtype=np.float32).tolist() if vector is not None else None,
    }


def _rows_for_image(
    image_id: str, image: DecodedImage, det: Any, embeddings: np.ndarray | None, vector: np.ndarray | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The image row (without colour and embedding columns) and the face rows, boxes mapped to original pixels."""
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
    area = image.width * image.height
    poses = face_poses(landmarks)  # yaw, pitch, roll, frontal (vision.pose)
    faces = []
    for k in range(len(boxes)):
        x1, y1, x2, y2 = boxes[k]
        faces.append(
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
    return row, faces


def images_schema(color_names: Iterable[str]) -> pa.Schema:
    """The images table's Arrow schema (``docs/ARCHITECTURE.md``), colour columns after the face aggregates."""
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


def faces_schema() -> pa.Schema:
    """The faces table's Arrow schema (``docs/ARCHITECTURE.md``)."""
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
