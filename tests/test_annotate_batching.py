"""Batched model calls give the rows of one-at-a-time calls, and a run reports where its time went."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vision.annotate import annotate_folder
from vision.batch_annotator import STAGES, BatchAnnotator
from vision.io import DecodedImage

SAMPLE = Path(__file__).resolve().parents[1] / "assets_sample" / "images"


class OneAtATime:
    """The embedder's ``embed`` alone: the annotator then calls it image by image, as it did before batching."""

    def __init__(self, embedder):
        self.inner = embedder
        self.dim = embedder.dim

    def embed(self, image, detections):
        return self.inner.embed(image, detections)


@pytest.fixture(scope="module")
def models():
    from vision.detect import MTCNNDetector
    from vision.embed import SFaceEmbedder

    return MTCNNDetector(detection_size=512, device="cpu"), SFaceEmbedder()


def _decoded(paths) -> list[DecodedImage]:
    out = []
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        out.append(DecodedImage(pixels=rgb, width=rgb.shape[1], height=rgb.shape[0]))
    return out


def test_batched_face_embeddings_equal_one_at_a_time(models, astronaut) -> None:
    detector, sface = models
    # Several faces per batch: the sample's group photos plus the astronaut, and an image without a face.
    paths = sorted(SAMPLE.rglob("*.jpg"))[:6]
    decoded = _decoded(paths) + [
        DecodedImage(pixels=astronaut, width=astronaut.shape[1], height=astronaut.shape[0]),
        DecodedImage(pixels=np.full((200, 300, 3), 90, np.uint8), width=300, height=200),
    ]
    ids = [f"img-{k}" for k in range(len(decoded))]
    batched = BatchAnnotator(detector=detector, embedder=sface)
    single = BatchAnnotator(detector=detector, embedder=OneAtATime(sface))
    rows_b, faces_b = batched.annotate_batch(ids, decoded)
    rows_s, faces_s = single.annotate_batch(ids, decoded)
    assert len(faces_b) == len(faces_s) >= 3
    assert len({f["image_id"] for f in faces_b}) >= 2  # faces of several images shared the call
    for a, b in zip(faces_b + rows_b, faces_s + rows_s, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if key in ("embedding", "face_embedding_mean") and a[key] is not None:
                np.testing.assert_allclose(a[key], b[key], atol=1e-6, err_msg=key)
            else:
                assert a[key] == b[key], key


def test_run_reports_time_by_stage(tmp_path: Path, models, astronaut) -> None:
    detector, sface = models
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(astronaut).save(folder / f"a{k}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")

    def colour(pixels: np.ndarray) -> dict[str, float]:
        return {"mean_red": float(pixels[..., 0].mean())}

    built = []

    def factory() -> BatchAnnotator:
        built.append(1)
        return BatchAnnotator(detector=detector, embedder=sface, color_features=colour)

    spec = BatchAnnotator(detector=detector, embedder=sface, color_features=colour).spec
    summary = annotate_folder(folder, tmp_path / "out", factory, spec=spec, batch_size=2, num_workers=1)
    assert built == [1] and summary.ok == 3 and summary.errors == 1 and summary.faces == 3
    assert set(summary.stage_seconds) == set(STAGES)
    for stage in ("decode", "detect", "embed", "color", "rows", "write"):
        assert summary.stage_seconds[stage] > 0, stage
    assert summary.stage_seconds["encode"] == 0  # no image encoder
    assert sum(summary.stage_seconds.values()) <= summary.seconds + 1e-3
    assert summary.load_seconds > 0
    images = pd.read_parquet(tmp_path / "out" / "images")
    assert sorted(images["image_id"]) == ["a0.png", "a1.png", "a2.png", "broken.jpg"]
    with pytest.raises(TypeError, match="spec="):
        annotate_folder(folder, tmp_path / "out2", factory)
