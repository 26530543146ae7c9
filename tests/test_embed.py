"""Face embedding backends: alignment, SFace identity check on real photographs, facenet shapes/devices/loading."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vision.embed import (
    BOX_LANDMARKS,
    FACENET_WEIGHTS,
    SFACE_COSINE_THRESHOLD,
    SFACE_TEMPLATE,
    FaceEmbedder,
    FacenetEmbedder,
    SFaceEmbedder,
    align_faces,
    crop_faces,
    load_facenet,
    make_embedder,
    similarity_transform,
)

DATA = Path(__file__).resolve().parent / "data"
CONF = Path(__file__).resolve().parents[1] / "conf" / "vision"
CV2_MAJOR = int(cv2.__version__.split(".")[0])


def _detections(boxes, landmarks, probs=None):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(-1, 5, 2)
    probs = np.ones(len(boxes), dtype=np.float32) if probs is None else np.asarray(probs, dtype=np.float32)
    try:
        from vision.detect import FaceDetections
    except ImportError:  # the embedders only read the attributes
        return SimpleNamespace(boxes=boxes, probs=probs, landmarks=landmarks)
    return FaceDetections(boxes=boxes, probs=probs, landmarks=landmarks)


def _load(path, long_side: int = 480) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    image.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    return np.asarray(image)


@pytest.fixture(scope="module")
def faces():
    """Real photographs with MTCNN detections (all faces, and the largest face alone) for each person."""
    import matplotlib.cbook
    from facenet_pytorch import MTCNN

    paths = {
        "obama_2012": DATA / "embed_obama_2012.jpg",
        "obama_2009": DATA / "embed_obama_2009.jpg",
        "biden_2010": DATA / "embed_biden_2010.jpg",
        "hopper": matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False),
    }
    mtcnn = MTCNN(keep_all=True, device="cpu")
    out = {}
    for name, path in paths.items():
        image = _load(path)
        boxes, probs, landmarks = mtcnn.detect(image, landmarks=True)
        assert boxes is not None, f"MTCNN found no face in {path}"
        boxes, probs, landmarks = (np.asarray(a, dtype=np.float32) for a in (boxes, probs, landmarks))
        k = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        out[name] = SimpleNamespace(
            image=image,
            all=_detections(boxes, landmarks, probs),
            largest=_detections(boxes[k : k + 1], landmarks[k : k + 1], probs[k : k + 1]),
        )
    return out


@pytest.fixture(scope="module")
def sface():
    return SFaceEmbedder()


# ----------------------------------------------------------------------------------------------------------------
# alignment
# ----------------------------------------------------------------------------------------------------------------
def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    angle, scale, shift = 0.4, 2.7, np.array([31.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = SFACE_TEMPLATE + rng.normal(0, 5, size=SFACE_TEMPLATE.shape)
    dst = src @ rot.T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix, np.hstack([rot, shift[:, None]]), atol=1e-9)


def test_similarity_transform_never_reflects():
    src = SFACE_TEMPLATE
    mirrored = src * np.array([-1.0, 1.0])  # the best fit would be a reflection; a face alignment must not mirror
    det = np.linalg.det(similarity_transform(src, mirrored)[:, :2])
    assert det > 0


def test_alignment_matches_opencv_aligncrop(faces, sface):
    """Our warp reproduces FaceRecognizerSF.alignCrop (the preprocessing SFace was trained with) to rounding."""
    probe = cv2.FaceRecognizerSF.create(str(sface.model_path_), "")
    for item in faces.values():
        det = item.all
        bgr = cv2.cvtColor(item.image, cv2.COLOR_RGB2BGR)
        ours = align_faces(item.image, det.landmarks)
        for k in range(len(det.boxes)):
            x1, y1, x2, y2 = det.boxes[k]
            row = np.r_[x1, y1, x2 - x1, y2 - y1, det.landmarks[k].ravel(), det.probs[k]].astype(np.float32)
            reference = probe.alignCrop(bgr, row)[:, :, ::-1]
            diff = np.abs(ours[k].astype(int) - reference.astype(int))
            # Rounding only: fixed-point bilinear interpolation differs by a few grey levels on isolated pixels
            # between OpenCV builds (4.14: one pixel of 37,632 off by 4), never by a shift or a different crop.
            assert diff.max() <= 8 and (diff > 3).mean() < 1e-3 and diff.mean() < 0.5


@pytest.mark.skipif(CV2_MAJOR >= 5, reason="FaceRecognizerSF.feature fails on OpenCV 5 (the reason for cv2.dnn)")
def test_sface_embeddings_match_opencv_facerecognizersf(faces, sface):
    probe = cv2.FaceRecognizerSF.create(str(sface.model_path_), "")
    for item in faces.values():
        det = item.all
        ours = sface.embed(item.image, det)
        bgr = cv2.cvtColor(item.image, cv2.COLOR_RGB2BGR)
        for k in range(len(det.boxes)):
            x1, y1, x2, y2 = det.boxes[k]
            row = np.r_[x1, y1, x2 - x1, y2 - y1, det.landmarks[k].ravel(), det.probs[k]].astype(np.float32)
            reference = probe.feature(probe.alignCrop(bgr, row)).ravel()
            reference /= np.linalg.norm(reference)
            assert float(ours[k] @ reference) > 0.9999


# ----------------------------------------------------------------------------------------------------------------
# SFace
# ----------------------------------------------------------------------------------------------------------------
def test_sface_same_person_above_threshold_different_people_below(faces, sface):
    """Two different photographs of Obama (2009 speech, 2012 portrait) match; Obama, Biden and Grace Hopper do not."""
    emb = {name: sface.embed(item.image, item.largest)[0] for name, item in faces.items()}
    same = float(emb["obama_2012"] @ emb["obama_2009"])
    assert same > SFACE_COSINE_THRESHOLD
    for a, b in [
        ("obama_2012", "biden_2010"),
        ("obama_2009", "biden_2010"),
        ("obama_2012", "hopper"),
        ("obama_2009", "hopper"),
        ("biden_2010", "hopper"),
    ]:
        assert float(emb[a] @ emb[b]) < SFACE_COSINE_THRESHOLD, (a, b)


def test_sface_output_contract_and_batching(faces, sface):
    items = list(faces.values())
    images = [it.image for it in items] + [items[0].image]
    dets = [it.all for it in items] + [_detections(np.zeros((0, 4)), np.zeros((0, 5, 2)))]
    single = [sface.embed(im, d) for im, d in zip(images, dets, strict=True)]
    many = sface.embed_many(images, dets)
    assert isinstance(sface, FaceEmbedder) and sface.dim == 128 and sface.name == "sface"
    for s, m, d in zip(single, many, dets, strict=True):
        assert s.shape == (len(d.boxes), 128) and s.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(m, s, atol=1e-5)
    assert single[-1].shape == (0, 128)
    assert sum(len(d.boxes) for d in dets) > len(dets) - 1  # at least one image has several faces


def test_sface_batched_forward_equals_single_forwards(sface):
    """Whatever the load-time check decided, a batch of different faces gives the per-face results."""
    crops = np.random.default_rng(0).integers(0, 256, size=(5, 112, 112, 3), dtype=np.uint8)
    together = sface.embed_aligned(crops)
    alone = np.concatenate([sface.embed_aligned(crops[k : k + 1]) for k in range(len(crops))])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_sface_without_landmarks_aligns_from_the_box(faces, sface):
    """Missing landmarks fall back to typical positions in the box; identity survives that rough alignment."""
    item = faces["obama_2012"]
    box_only = _detections(item.largest.boxes, np.full((1, 5, 2), np.nan))
    rough = sface.embed(item.image, box_only)
    assert rough.shape == (1, 128) and np.isfinite(rough).all()
    same_face = float(rough[0] @ sface.embed(item.image, item.largest)[0])
    other_photo = float(rough[0] @ sface.embed(faces["obama_2009"].image, faces["obama_2009"].largest)[0])
    assert same_face > 0.8
    assert other_photo > SFACE_COSINE_THRESHOLD
    assert BOX_LANDMARKS.shape == (5, 2)


def test_sface_survives_pickling(faces, sface):
    item = faces["biden_2010"]
    clone = pickle.loads(pickle.dumps(sface))
    np.testing.assert_allclose(clone.embed(item.image, item.all), sface.embed(item.image, item.all), atol=1e-6)


def test_sface_bad_inputs_name_the_problem(tmp_path, sface):
    with pytest.raises(FileNotFoundError, match="vision.embedder.model_path"):
        SFaceEmbedder(model_path=tmp_path / "missing.onnx")
    not_onnx = tmp_path / "x.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="vision.embedder.model_path"):
        SFaceEmbedder(model_path=not_onnx)
    det = _detections([[0, 0, 10, 10]], np.full((1, 5, 2), np.nan))
    with pytest.raises(ValueError, match="uint8"):
        sface.embed(np.zeros((20, 20), dtype=np.uint8), det)


# ----------------------------------------------------------------------------------------------------------------
# facenet (random weights: the published ones are downloaded at run time, which tests cannot do)
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def facenet():
    return FacenetEmbedder(pretrained=None, device="cpu", batch_size=2)


def test_facenet_crops_follow_facenet_pytorch_extract_face(faces):
    from facenet_pytorch.models.utils.detect_face import extract_face

    item = faces["obama_2012"]
    for margin in (0, 20):
        ours = crop_faces(item.image, item.all.boxes, 160, margin)
        reference = np.stack(
            [extract_face(item.image, b, 160, margin).permute(1, 2, 0).numpy() for b in item.all.boxes]
        )
        np.testing.assert_array_equal(ours, reference.astype(np.uint8))


def test_facenet_shapes_norms_and_batching(faces, facenet):
    items = [faces["obama_2012"], faces["biden_2010"]]
    dets = [it.all for it in items]
    single = [facenet.embed(it.image, d) for it, d in zip(items, dets, strict=True)]
    many = facenet.embed_many([it.image for it in items], dets)
    for s, m, d in zip(single, many, dets, strict=True):
        assert s.shape == (len(d.boxes), 512) and s.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(m, s, atol=1e-4)  # batch_size=2 splits the 3 faces differently
    empty = facenet.embed(items[0].image, _detections(np.zeros((0, 4)), np.zeros((0, 5, 2))))
    assert empty.shape == (0, 512) and empty.dtype == np.float32
    assert facenet.name == "facenet" and facenet.dim == 512 and isinstance(facenet, FaceEmbedder)


def test_facenet_device_handling():
    from vision.device import resolve_device

    auto = FacenetEmbedder(pretrained=None, device="auto")
    assert auto.device_ == resolve_device("auto")
    assert {p.device.type for p in auto.model_.parameters()} == {auto.device_.type}
    assert not auto.model_.training
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            FacenetEmbedder(pretrained=None, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_facenet_on_cuda_matches_cpu(faces):
    item = faces["obama_2009"]
    torch.manual_seed(0)
    gpu = FacenetEmbedder(pretrained=None, device="cuda")
    cpu = FacenetEmbedder(pretrained=None, device="cpu")
    cpu.model_.load_state_dict({k: v.cpu() for k, v in gpu.model_.state_dict().items()})
    np.testing.assert_allclose(gpu.embed(item.image, item.all), cpu.embed(item.image, item.all), atol=1e-3)


@pytest.mark.slow
def test_facenet_loads_a_local_weights_file(tmp_path, faces, facenet):
    """A file shaped like facenet-pytorch's (with its training classifier) loads and reproduces the source model."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(1)
    source = InceptionResnetV1(pretrained=None, classify=True, num_classes=7).eval()
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    loaded = FacenetEmbedder(pretrained="vggface2", weights_path=path, device="cpu")
    item = faces["biden_2010"]
    crops = loaded.crop(item.image, item.all)
    with torch.inference_mode():
        x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 128.0
        source.classify = False
        expected = source(x).numpy()
    np.testing.assert_allclose(loaded.embed(item.image, item.all), expected, atol=1e-5)

    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="vision.embedder.weights_path"):
        load_facenet("vggface2", wrong)
    with pytest.raises(FileNotFoundError, match=r"vision\.embedder\.weights_path.*20180402-114759-vggface2\.pt"):
        load_facenet("vggface2", tmp_path / "absent.pt")


def test_facenet_offline_without_weights_fails_with_instructions(tmp_path, monkeypatch):
    import facenet_pytorch.models.inception_resnet_v1 as irv1

    calls = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(irv1, "download_url_to_file", no_network)
    with pytest.raises(RuntimeError) as info:
        FacenetEmbedder(pretrained="casia-webface", device="cpu")
    message = str(info.value)
    assert calls == [FACENET_WEIGHTS["casia-webface"]]
    assert FACENET_WEIGHTS["casia-webface"] in message
    assert "vision.embedder.weights_path" in message and "checkpoints" in message
    with pytest.raises(ValueError, match="vision.embedder.pretrained"):
        load_facenet("imagenet")


# ----------------------------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------------------------
def test_hydra_configs_instantiate_each_backend():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    sface_cfg = OmegaConf.load(CONF / "embedder" / "sface.yaml")
    assert isinstance(instantiate(sface_cfg, device="cpu"), SFaceEmbedder)
    facenet_cfg = OmegaConf.load(CONF / "embedder" / "facenet.yaml")
    assert facenet_cfg.pretrained == "vggface2" and facenet_cfg.weights_path is None
    facenet_cfg.pretrained = None  # the published weights need the internet
    built = instantiate(facenet_cfg, device="cpu")
    assert isinstance(built, FacenetEmbedder) and built.device_.type == "cpu"
    assert OmegaConf.load(CONF / "embedder" / "none.yaml").get("_target_") is None


def test_make_embedder_by_name():
    assert make_embedder("none") is None and make_embedder(None) is None
    assert isinstance(make_embedder("facenet", device="cpu", pretrained=None), FacenetEmbedder)
    with pytest.raises(ValueError, match="vision.embedder"):
        make_embedder("arcface")
