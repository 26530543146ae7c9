"""Shared fixtures: paths to the bundled sample and to real photographs with faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets_sample"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph with one frontal face (NASA, public domain), shipped in scikit-image's and our sample."""
    candidates = sorted(SAMPLE.glob("images/**/skimage_astronaut.png"))
    assert candidates, "assets_sample/ lost skimage_astronaut.png (a shipped test image)"
    return np.asarray(Image.open(candidates[0]).convert("RGB"))


def make_bad_input_folder(root: Path, face: np.ndarray) -> dict[str, str | None]:
    """Every awkward kind of file a real catalog has, beside good images; returns image_id -> expected error cause
    (None: the file decodes and gets an ok row). A folder named like an image is walked, not a row."""
    import io
    import os

    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}

    def put(name: str, cause: str | None) -> Path:
        expected[name] = cause
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        return root / name

    Image.fromarray(face).save(put("good face.png", None))
    Image.fromarray(face).save(put("ünïcödé 'quoted' \"poster\".jpg", None), quality=92)
    put("zero.jpg", "empty file").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="JPEG")
    put("truncated.jpg", "corrupt or truncated").write_bytes(buf.getvalue()[:3000])
    put("not-an-image.png", "not a decodable image").write_text("<html>404</html>")
    Image.fromarray(face).convert("CMYK").save(put("cmyk.jpg", None))
    Image.fromarray(face[..., 1].astype(np.uint16) * 257).save(put("deep16.png", None))
    pal = Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(put("palette-transparent.png", None), transparency=0)
    Image.fromarray(face).convert("L").save(put("grey.png", None))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers rotate it back
    Image.fromarray(np.ascontiguousarray(np.rot90(face, 1))).save(put("exif-rotated.jpg", None), exif=exif)
    frames = [Image.fromarray(face), Image.new("RGB", face.shape[1::-1], (0, 0, 0))]
    frames[0].save(put("animated.gif", None), save_all=True, append_images=frames[1:], duration=40)
    frames[0].save(put("animated.webp", None), save_all=True, append_images=frames[1:], duration=40)
    Image.new("1", (9000, 9000), 0).save(put("bomb.png", "over the pixel limit"))
    Image.new("L", (1, 1), 0).save(put("one-pixel.png", None))
    Image.new("RGBA", (300, 200), (0, 0, 0, 0)).save(put("transparent.webp", None))
    Image.fromarray(face).save(put("folder.jpg/inside.png", None))  # a directory named like an image
    os.symlink(root / "gone.png", put("dangling-link.png", "dangling symlink"))
    os.symlink("loop-link.jpg", put("loop-link.jpg", "symlink loop"))
    return expected


def check_bad_input_rows(out: Path, expected: dict[str, str | None], face: np.ndarray) -> None:
    """One row per file of :func:`make_bad_input_folder`, with the expected cause, faces found in the photos."""
    from vision.store import read_annotations

    images, faces = read_annotations(out)
    assert sorted(images["image_id"]) == sorted(expected)  # one row per file, the folder named .jpg is not one
    by_id = images.set_index("image_id")
    for image_id, cause in expected.items():
        row = by_id.loc[image_id]
        if cause is None:
            assert row["status"] == "ok", (image_id, row["error"])
        else:
            assert row["status"] == "error" and cause in row["error"], (image_id, row["error"])
    photos = [i for i, c in expected.items() if c is None and by_id.loc[i, "width"] == face.shape[1]]
    assert len(photos) >= 8 and (by_id.loc[photos, "face_count"] >= 1).mean() >= 0.8
    assert set(faces["image_id"]) <= set(by_id.index[by_id["status"] == "ok"])
    # Nullable types: an error row has no face_present, and a mask still works.
    assert str(images["face_present"].dtype) == "boolean" and str(images["face_count"].dtype) == "Int32"
    assert images[images["face_present"]]["image_id"].isin(photos).all()


@pytest.fixture
def default_annotate_config():
    """Compose ``conf/annotate.yaml`` exactly as the annotate script would, with only the given overrides."""
    from hydra import compose, initialize_config_dir

    def compose_(*overrides: str):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose(config_name="annotate", overrides=list(overrides))

    return compose_
