"""Decoding every kind of broken or unusual image file a catalog contains."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vision.io import DecodedImage, ImageDecodeError, find_images, image_id_for, load_image, resize_long_side


def _gradient(w: int = 120, h: int = 80) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None, None]
    img = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), np.full((h, w, 1), 90.0)], 2)
    return img.astype(np.uint8)


def test_plain_rgb_png_roundtrip(tmp_path: Path) -> None:
    arr = _gradient()
    Image.fromarray(arr).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert isinstance(out, DecodedImage)
    assert (out.width, out.height) == (120, 80)
    np.testing.assert_array_equal(out.pixels, arr)


@pytest.mark.parametrize(
    ("name", "content", "cause"),
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is not an image, just text with an image extension\n" * 4, "not a decodable image"),
        ("html.png", b"<html><body>404 not found</body></html>", "not a decodable image"),
    ],
)
def test_non_images_are_named_errors(tmp_path: Path, name: str, content: bytes, cause: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageDecodeError) as info:
        load_image(tmp_path / name)
    assert cause in info.value.reason
    assert name in str(info.value)


def test_truncated_jpeg_is_an_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_gradient(400, 300)).save(buf, format="JPEG", quality=90)
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError) as info:
        load_image(tmp_path / "cut.jpg")
    assert "truncated" in info.value.reason or "corrupt" in info.value.reason


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    with pytest.raises(ImageDecodeError, match="file not found"):
        load_image(tmp_path / "dangling.png")


def test_unreadable_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.fromarray(_gradient()).save(path)
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root ignores permission bits: make the open itself fail the way it does for other users
        real_open = builtins.open

        def deny(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(ImageDecodeError, match="permission denied"):
        load_image(path)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    rgb = Image.fromarray(_gradient())
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    out = load_image(tmp_path / "cmyk.jpg")
    assert out.pixels.shape == (80, 120, 3) and out.pixels.dtype == np.uint8
    assert np.abs(out.pixels.astype(int) - _gradient().astype(int)).mean() < 12


def test_16bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 100).astype(np.uint16), (20, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    out = load_image(tmp_path / "deep.png")
    grey = out.pixels[..., 0].astype(int)
    assert grey[0, 0] == 0 and grey[0, -1] == 255
    assert 120 <= grey[0, 50] <= 135  # mid-grey stays mid-grey (clipping would make it 255)


def test_palette_with_transparency_composited_on_white(tmp_path: Path) -> None:
    im = Image.new("P", (10, 10), 0)
    im.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    im.paste(1, (5, 0, 10, 10))
    im.info["transparency"] = 0  # palette index 0 (red) is transparent
    im.save(tmp_path / "pal.png", transparency=0)
    out = load_image(tmp_path / "pal.png").pixels
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 9], [0, 0, 255])


def test_rgba_and_greyscale(tmp_path: Path) -> None:
    rgba = np.dstack([_gradient(), np.full((80, 120), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(_gradient()[..., 0]).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png").pixels, _gradient())
    grey = load_image(tmp_path / "grey.png").pixels
    assert grey.shape == (80, 120, 3)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_gives_upright_pixels_and_size(tmp_path: Path, orientation: int) -> None:
    upright = _gradient(120, 80)
    # What a camera stores for each orientation: the upright image rotated the other way.
    stored = {3: np.rot90(upright, 2), 6: np.rot90(upright, 1), 8: np.rot90(upright, -1)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "r.jpg", exif=exif, quality=98)
    out = load_image(tmp_path / "r.jpg")
    assert (out.width, out.height) == (120, 80)
    assert out.pixels.shape == (80, 120, 3)
    assert np.abs(out.pixels.astype(int) - upright.astype(int)).mean() < 6


def test_animated_gif_and_webp_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 24), c) for c in [(250, 10, 10), (10, 250, 10), (10, 10, 250)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], duration=50, lossless=True)
    for name in ("anim.gif", "anim.webp"):
        px = load_image(tmp_path / name).pixels
        assert px.shape == (24, 32, 3)
        assert px[..., 0].mean() > 200 and px[..., 1].mean() < 60, name


def test_pixel_limit_refuses_bombs_before_decoding(tmp_path: Path) -> None:
    # A 9000 x 9000 one-bit PNG is a few kB on disk and 81 Mpx decoded: over the default 64 Mpx limit.
    Image.new("1", (9000, 9000), 0).save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 200_000
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        load_image(tmp_path / "bomb.png")
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        load_image(tmp_path / "bomb.png", max_pixels=1000)


def test_max_long_side_downscales_and_keeps_original_size(tmp_path: Path) -> None:
    big = np.asarray(Image.fromarray(_gradient(300, 200)).resize((1800, 1200)))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(big).save(tmp_path / "big.png")
    for name in ("big.jpg", "big.png"):
        out = load_image(tmp_path / name, max_long_side=450)
        assert out.pixels.shape == (300, 450, 3), name
        assert (out.width, out.height) == (1800, 1200)
        assert out.scale == pytest.approx(4.0)
        reference = resize_long_side(big, 450).astype(int)
        assert np.abs(out.pixels.astype(int) - reference).mean() < 4, name


def test_find_images_recursive_sorted_with_odd_names(tmp_path: Path) -> None:
    names = ["b.PNG", "a dir/with space 'q' \"dq\".jpg", "ünïcödé/poster é.webp", "notes.txt", "z/.hidden.jpeg"]
    for name in names:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    ids = [image_id_for(p, tmp_path) for p in find_images(tmp_path)]
    assert ids == sorted(ids)
    assert "notes.txt" not in ids
    assert set(ids) == {"b.PNG", "a dir/with space 'q' \"dq\".jpg", "ünïcödé/poster é.webp", "z/.hidden.jpeg"}


def test_find_images_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        find_images(tmp_path / "file.jpg")


def test_decode_errors_survive_pickling_for_worker_processes(tmp_path: Path) -> None:
    """Process pools and Ray send errors back pickled; the default exception reduction failed to unpickle."""
    import pickle

    from vision.io import decode_or_error

    (tmp_path / "zero.jpg").write_bytes(b"")
    err = decode_or_error(tmp_path / "zero.jpg")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, ImageDecodeError) and (back.path, back.reason) == (err.path, err.reason)
    assert str(back) == str(err)


def test_symlinks_dangling_and_looping_are_named_errors(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    found = [p.name for p in find_images(tmp_path)]
    assert found == ["dangling.png", "loop.jpg"]  # listed, so each becomes an error row rather than vanishing
    with pytest.raises(ImageDecodeError, match="dangling symlink"):
        load_image(tmp_path / "dangling.png")
    with pytest.raises(ImageDecodeError, match="symlink loop"):
        load_image(tmp_path / "loop.jpg")


def test_find_images_follows_symlinked_folders_once_and_skips_loops(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere" / "posters"
    real.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(real / "a.png")
    root = tmp_path / "catalog"
    root.mkdir()
    os.symlink(real, root / "linked")
    os.symlink(root, root / "linked-back-up")  # a loop: catalog/linked-back-up -> catalog
    ids = [image_id_for(p, root) for p in find_images(root)]
    assert ids == ["linked/a.png"]


def test_find_images_on_very_deep_folders(tmp_path: Path) -> None:
    """os.walk recursed once per level (RecursionError past ~1000); the walk is iterative now."""
    levels = [str(tmp_path / "d")]
    for _ in range(1100):
        levels.append(levels[-1] + "/d")
    try:
        for level in levels:  # os.makedirs recurses too: one level at a time
            os.mkdir(level)
        Image.new("RGB", (8, 8)).save(levels[-1] + "/deep.png")
        assert [p.name for p in find_images(tmp_path)] == ["deep.png"]
    finally:
        # pytest's own clean-up of old temporary folders (shutil.rmtree) recurses per level and would fail later.
        if os.path.exists(levels[-1] + "/deep.png"):
            os.unlink(levels[-1] + "/deep.png")
        for level in reversed(levels):
            if os.path.isdir(level):
                os.rmdir(level)
