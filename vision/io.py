"""Finding artwork files and decoding them safely into upright RGB arrays.

Every way a real catalog breaks (empty files, truncated files, non-images with image extensions, CMYK, 16-bit,
palette with transparency, EXIF rotation, animations, decompression bombs, unreadable files) ends either in a
correct RGB array or in an :class:`ImageDecodeError` whose message names the file and the cause. This module never
imports torch: it runs in decoding worker processes.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 64_000_000  # ~8000 x 8000: larger than any artwork, smaller than a decompression bomb

# EXIF orientations 5..8 swap width and height.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112


class ImageDecodeError(Exception):
    """A file that cannot be turned into an image; ``reason`` says why in words a user can act on."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Decoding workers (process pools, Ray tasks) send these back pickled; the default reduction would call
        # ImageDecodeError(message) and fail to unpickle, which broke the whole pool on one bad file.
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image and the size of the original it came from.

    Attributes
    ----------
    pixels : np.ndarray
        (h, w, 3) uint8 RGB, upright (EXIF orientation applied). May be smaller than the original when the decoder
        was allowed to shrink it (JPEG DCT scaling); ``scale`` maps its pixels to the original's.
    width, height : int
        Size of the upright original in pixels; boxes are reported in this frame.
    """

    pixels: np.ndarray
    width: int
    height: int

    @property
    def scale(self) -> float:
        """Original pixels per decoded pixel (>= 1)."""
        return self.width / self.pixels.shape[1]


def find_images(root: str | os.PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """All files under ``root`` (recursively) whose extension is an image extension, in a stable sorted order.

    Symlinked folders are followed once (a link back to a folder already being walked is skipped with a warning);
    symlinks to files are listed whatever their target, so a dangling or looping link becomes an error row rather
    than vanishing. Folders that cannot be listed are logged and skipped. The walk is iterative: nesting depth is
    limited only by the filesystem.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        When ``root`` does not exist or is not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"input folder does not exist: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"input is not a folder: {root}")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found: list[Path] = []
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [(os.fspath(root), frozenset())]
    while stack:
        folder, ancestors = stack.pop()
        for sub in _scan_folder(folder, exts, ancestors, found):
            stack.append(sub)
    found.sort(key=lambda p: image_id_for(p, root))
    return found


def _scan_folder(
    folder: str, exts: set[str], ancestors: frozenset[tuple[int, int]], found: list[Path]
) -> list[tuple[str, frozenset[tuple[int, int]]]]:
    """List one folder: image files go to ``found``; returns the sub-folders to walk with their ancestor set."""
    try:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            log.warning("skipping %s: a symlink back to a folder above it (a loop)", folder)
            return []
        ancestors = ancestors | {key}
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        log.warning("cannot list %s: %s; its files are not annotated", folder, err.strerror or err)
        return []
    subfolders = []
    for entry in entries:
        if _is_folder(entry):
            if entry.is_symlink():
                log.info("following symlinked folder %s -> %s", entry.path, os.path.realpath(entry.path))
            subfolders.append((entry.path, ancestors))
        elif os.path.splitext(entry.name)[1].lower() in exts:
            found.append(Path(entry.path))
    return subfolders


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:  # a symlink loop or an unreadable target: treated as a file (and reported as one)
        return False


def file_fingerprint(path: str | os.PathLike) -> tuple[int, int]:
    """``(size in bytes, mtime in ns)`` of the file behind ``path``; a dangling or looping symlink gives the link's
    own, and a path that cannot be stat'ed at all ``(-1, -1)``. Resume compares these to find changed files."""
    for stat_fn in (os.stat, os.lstat):
        try:
            st = stat_fn(path)
        except OSError:
            continue
        return int(st.st_size), int(st.st_mtime_ns)
    return -1, -1


def image_id_for(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """The image's id: its path relative to the input root, with POSIX separators."""
    return Path(os.path.relpath(path, root)).as_posix()


def load_image(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_long_side: int | None = None
) -> DecodedImage:
    """Decode ``path`` into an upright RGB uint8 array.

    Parameters
    ----------
    path : path-like
        The image file.
    max_pixels : int
        Images with more pixels than this are refused (decompression-bomb guard), before their pixels are decoded.
    max_long_side : int, optional
        When given, images whose long side exceeds it are downscaled (area interpolation) so the long side equals
        it; JPEGs are first decoded at a reduced DCT scale (1/2, 1/4, 1/8) that stays above it, which is several
        times faster than a full decode. The detector works at a fixed detection size anyway, and a smaller array
        is cheaper to send from a decoding worker. ``DecodedImage.width/height`` still describe the original.

    Returns
    -------
    DecodedImage

    Raises
    ------
    ImageDecodeError
        For every file that cannot be decoded, with the cause in the message.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as err:
        raise ImageDecodeError(path, _stat_failure(path, err)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageDecodeError(path, "not a regular file (a folder, device or pipe with an image extension)")
    if st.st_size == 0:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL warns (and past 2x the limit, raises) on huge images; our own limit below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return _decode(im, path, max_pixels=max_pixels, max_long_side=max_long_side)
    except ImageDecodeError:
        raise
    except PermissionError:
        raise ImageDecodeError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(path, "not a decodable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(path, f"over the pixel limit (decompression bomb guard): {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # PIL reports truncated or corrupt data as OSError/SyntaxError/ValueError/EOFError depending on the codec.
        raise ImageDecodeError(path, f"corrupt or truncated image data: {err}") from None


def _stat_failure(path: Path, err: OSError) -> str:
    """Words for a file that cannot even be stat'ed."""
    if err.errno == errno.ELOOP:
        return "symlink loop (the link points back to itself)"
    if err.errno == errno.ENOENT:
        if os.path.islink(path):
            return f"file not found: dangling symlink to {os.readlink(path)!r}"
        return "file not found (deleted while the run was going?)"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.ENAMETOOLONG:
        return "path too long for the filesystem"
    return f"cannot read file: {err.strerror or err}"


def decode_or_error(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, max_long_side: int | None = None
) -> DecodedImage | ImageDecodeError:
    """:func:`load_image`, with every failure returned (not raised) as an :class:`ImageDecodeError`.

    This is what decoding workers run: the result always pickles, so one bad file never breaks a process pool or a
    Ray task, and the caller writes one ``status=error`` row for it.
    """
    try:
        return load_image(path, max_pixels=max_pixels, max_long_side=max_long_side)
    except ImageDecodeError as err:
        return err
    except Exception as err:  # noqa: BLE001 - one bad file must never stop a run over millions
        return ImageDecodeError(path, f"unexpected decoder failure: {type(err).__name__}: {err}")


def _decode(im: Image.Image, path: Path, *, max_pixels: int, max_long_side: int | None) -> DecodedImage:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(path, f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            path,
            f"image is {width}x{height} = {width * height:,} pixels, over the pixel limit of {max_pixels:,} "
            "(vision.max_pixels; a guard against decompression bombs)",
        )
    orientation = _exif_orientation(im)
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)  # animated GIF/WebP/APNG: the first frame stands for the artwork
    if max_long_side and im.format == "JPEG" and max(width, height) > max_long_side:
        # draft() picks the largest DCT scale whose result is still >= the requested size.
        ratio = max_long_side / max(width, height)
        im.draft("RGB", (max(1, int(np.ceil(width * ratio))), max(1, int(np.ceil(height * ratio)))))
    im.load()
    if orientation not in (None, 1):
        try:
            im = ImageOps.exif_transpose(im)
        except Exception as err:  # noqa: BLE001 - malformed EXIF must not lose an otherwise good image
            log.warning("%s: cannot apply EXIF orientation %s (%s); keeping stored pixels", path, orientation, err)
        else:
            if orientation in _TRANSPOSING_ORIENTATIONS:
                width, height = height, width
    pixels = _to_rgb_array(im, path)
    if max_long_side and max(pixels.shape[:2]) > max_long_side:
        pixels = resize_long_side(pixels, max_long_side)
    return DecodedImage(pixels=pixels, width=width, height=height)


def resize_long_side(pixels: np.ndarray, long_side: int) -> np.ndarray:
    """Resize (h, w, 3) uint8 so that max(h, w) == long_side, keeping the aspect ratio (area interpolation)."""
    h, w = pixels.shape[:2]
    ratio = long_side / max(h, w)
    size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(pixels, size, interpolation=interpolation))


def _exif_orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - unreadable EXIF is treated as "no orientation"
        return None
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else None


def _to_rgb_array(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: PIL's convert("RGB") clips instead of scaling, which turns photos white.
        arr = np.asarray(im)
        grey = _rescale_to_uint8(arr)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        # Composite over white: transparent regions of posters/logos are page background, not black.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    arr = np.asarray(im)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageDecodeError(path, f"unsupported pixel layout after conversion: {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


def _rescale_to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float64)
    if arr.size == 0:
        return arr.astype(np.uint8)
    hi = float(np.nanmax(arr))
    lo = float(np.nanmin(arr))
    if lo >= 0 and hi <= 255:
        scaled = arr
    elif lo >= 0 and hi <= 65535:
        scaled = arr / 257.0  # 16-bit full range -> 8-bit full range
    else:
        scaled = (arr - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
