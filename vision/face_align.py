"""Face crops for the embedders: alignment onto the SFace/ArcFace template from five landmarks (Umeyama's
similarity transform, as OpenCV's ``FaceRecognizerSF.alignCrop``), facenet-pytorch's square crops, and the small
array helpers the backends share (input check, L2 normalisation, batching faces of several images together)."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: Landmarks (left eye, right eye, nose, mouth left, mouth right; image left/right) of an aligned 112x112 face, as
#: in OpenCV's ``FaceRecognizerSF.alignCrop`` (the ArcFace template) that SFace was trained on.
SFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
#: Typical landmark positions inside an MTCNN face box, as fractions of its width and height (medians over 15
#: frontal faces, made left-right symmetric); used to align faces whose landmarks are missing. Measured: SFace
#: cosine 0.85-0.98 between the box- and landmark-aligned embeddings of the same face.
BOX_LANDMARKS = np.array([[0.27, 0.38], [0.73, 0.38], [0.50, 0.59], [0.29, 0.74], [0.71, 0.74]], dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form, the estimate OpenCV's ``alignCrop`` uses; unlike ``cv2.estimateAffinePartial2D`` it
    has no random sampling, so the result is exact and deterministic.

    Parameters
    ----------
    src, dst : np.ndarray
        (k, 2) corresponding points, k >= 2.

    Returns
    -------
    np.ndarray
        (2, 3) float64 affine matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # a reflection is never a valid face alignment
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / variance)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def usable_landmarks(boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """Landmarks per face; where they are missing or degenerate, ``BOX_LANDMARKS`` placed in the face box."""
    n = len(boxes)
    lm = np.full((n, 5, 2), np.nan) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    lm = lm.reshape(n, 5, 2)
    eye_distance = np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)
    bad = ~np.isfinite(lm).all(axis=(1, 2)) | ~(eye_distance >= 1.0)
    if bad.any():
        b = np.asarray(boxes, dtype=np.float64).reshape(n, 4)[bad]
        size = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
        lm = lm.copy()
        lm[bad] = b[:, None, :2] + BOX_LANDMARKS[None] * size[:, None, :]
        log.debug("%d face(s) without usable landmarks aligned from their boxes", int(bad.sum()))
    return lm


def align_faces(
    image: np.ndarray,
    landmarks: np.ndarray,
    boxes: np.ndarray | None = None,
    size: int = 112,
    template: np.ndarray = SFACE_TEMPLATE,
) -> np.ndarray:
    """Warp each face onto the canonical template.

    Parameters
    ----------
    image : np.ndarray
        (H, W, 3) uint8 RGB.
    landmarks : np.ndarray
        (n, 5, 2) pixel coordinates in ``image``: left eye, right eye, nose, mouth left, mouth right.
    boxes : np.ndarray, optional
        (n, 4) x1, y1, x2, y2; used only for faces whose landmarks are missing (NaN) or degenerate.
    size : int
        Output side in pixels; ``template`` is given for 112 and scaled to ``size``.

    Returns
    -------
    np.ndarray
        (n, size, size, 3) uint8 RGB crops.
    """
    import cv2

    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    if boxes is not None:
        landmarks = usable_landmarks(np.asarray(boxes).reshape(-1, 4), landmarks)
    dst = np.asarray(template, dtype=np.float64) * (size / 112.0)
    out = np.empty((len(landmarks), size, size, 3), dtype=np.uint8)
    for k, points in enumerate(landmarks):
        # alignCrop's defaults: bilinear, constant (black) border outside the image.
        out[k] = cv2.warpAffine(image, similarity_transform(points, dst), (size, size), flags=cv2.INTER_LINEAR)
    return out


def check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    return image


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))


def concat_crops(crops: list[np.ndarray], size: int) -> np.ndarray:
    return np.concatenate(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)


def split_rows(rows: np.ndarray, counts: list[int], dim: int) -> list[np.ndarray]:
    bounds = np.cumsum([0, *counts])
    return [rows[a:b].reshape(-1, dim) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def crop_faces(image: np.ndarray, boxes: np.ndarray, image_size: int = 160, margin: float = 0) -> np.ndarray:
    """Square face crops following facenet-pytorch's ``extract_face`` (box + margin, area resize).

    Parameters
    ----------
    image : np.ndarray
        (H, W, 3) uint8 RGB.
    boxes : np.ndarray
        (n, 4) x1, y1, x2, y2 in ``image`` pixels.
    margin : float
        Margin around the box, in pixels of the output crop (facenet-pytorch's definition).

    Returns
    -------
    np.ndarray
        (n, image_size, image_size, 3) uint8.
    """
    import cv2

    h, w = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.empty((len(boxes), image_size, image_size, 3), dtype=np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        mx = margin * (x2 - x1) / (image_size - margin)
        my = margin * (y2 - y1) / (image_size - margin)
        # extract_face truncates to int; keep at least one pixel so boxes at the border still give a crop.
        left = int(min(max(x1 - mx / 2, 0), w - 1))
        top = int(min(max(y1 - my / 2, 0), h - 1))
        right = max(int(min(x2 + mx / 2, w)), left + 1)
        bottom = max(int(min(y2 + my / 2, h)), top + 1)
        out[k] = cv2.resize(image[top:bottom, left:right], (image_size, image_size), interpolation=cv2.INTER_AREA)
    return out
