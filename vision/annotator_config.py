"""A ``vision`` config node (``conf/vision/``) -> the models of a :class:`~vision.batch_annotator.BatchAnnotator`,
the row-shaping settings that resume checks, and the :func:`~vision.annotate.annotate_folder` options.

Library functions take plain arguments; this module is where config keys become them for annotation. Model
packages (torch, torchvision, OpenCV's dnn) are imported only when a model is built.
"""

from __future__ import annotations

from typing import Any

from vision.batch_annotator import BatchAnnotator
from vision.io import DEFAULT_MAX_PIXELS

__all__ = ["annotation_spec", "annotator_from_config", "decoding_spec", "folder_options"]


def annotation_spec(vision_cfg: Any) -> dict[str, Any]:
    """The settings of a ``vision`` config node that shape the rows (models, features, decoding limits).

    Device, threads, batch and part size, workers and the file extensions do not change a row (beyond float
    rounding of batched arithmetic), so resuming under other values of these is allowed.
    """
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(vision_cfg, resolve=True) if OmegaConf.is_config(vision_cfg) else dict(vision_cfg)
    spec = {key: node.get(key) for key in ("detector", "embedder", "image_features")}
    return {**spec, **decoding_spec(node.get("max_pixels", DEFAULT_MAX_PIXELS), node.get("max_long_side"))}


def decoding_spec(max_pixels: int, max_long_side: int | None) -> dict[str, int | None]:
    """The decoding limits as they enter the row-shaping settings."""
    return {"max_pixels": int(max_pixels), "max_long_side": None if max_long_side is None else int(max_long_side)}


def annotator_from_config(vision_cfg: Any) -> BatchAnnotator:
    """Build the models named by the ``vision`` config node (``conf/vision/``) on its device.

    ``detector`` and ``embedder`` are instantiated from their ``_target_`` with ``device=`` added; an embedder node
    that is null or has no ``_target_`` disables face embeddings. ``image_features.color`` and
    ``image_features.latent`` switch the two image-level feature families; ``overlap_encoder`` runs the image
    encoder beside the detector (see :class:`~vision.batch_annotator.BatchAnnotator`).
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
    color, encoder = _image_features(vision_cfg.get("image_features") or {}, device)
    return BatchAnnotator(
        detector=detector,
        embedder=embedder,
        image_encoder=encoder,
        color_features=color,
        overlap_encoder=bool(vision_cfg.get("overlap_encoder", True)),
        spec=annotation_spec(vision_cfg),
    )


def _image_features(features_cfg: Any, device: str) -> tuple[Any, Any]:
    """(colour feature function or None, image encoder or None) from an ``image_features`` node."""
    color = None
    encoder = None
    if features_cfg.get("color", False) or features_cfg.get("latent", False):
        from vision import image_features

        if features_cfg.get("color", False):
            color = image_features.color_features
        if features_cfg.get("latent", False):
            from hydra.utils import instantiate

            encoder_cfg = features_cfg.get("encoder")
            encoder = (
                instantiate(encoder_cfg, device=device)
                if encoder_cfg is not None
                else image_features.EfficientNetLite0Encoder(device=device)
            )
    if features_cfg.get("text", False):  # opt-in: needs the PP-OCR model file (vision.text)
        from vision.text import TextImageFeatures

        color = TextImageFeatures(features_cfg.get("text_model"), then=color)
    return color, encoder


def folder_options(vision_cfg: Any) -> dict[str, Any]:
    """The :func:`~vision.annotate.annotate_folder` keyword arguments that a ``vision`` config node sets (all but
    the models)."""
    return {
        "batch_size": int(vision_cfg.batch_size),
        "part_size": int(vision_cfg.part_size),
        "num_workers": int(vision_cfg.num_workers),
        "max_pixels": int(vision_cfg.max_pixels),
        "max_long_side": vision_cfg.max_long_side,
        "extensions": list(vision_cfg.extensions),
        "lock_timeout": float(vision_cfg.get("lock_timeout", 0)),
    }
