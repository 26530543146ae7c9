"""Build the photographic key-art composites of ``assets_sample/`` and their face boxes.

Each composite pastes crops of the bundled public-domain/CC0 photographs (``assets_sample/images/photos``) onto a
background (gradient, colour field, or a heavily blurred crop of a face-free poster) and draws a title with
matplotlib's DejaVu font. A pasted crop is a region *around* the photograph's labeled face box, so the face box in
the composite is the source box under the same transform (flip, scale, translation) as the crop: exact by
construction, no hand labels. Crops never overlap and titles sit in a band that holds no face, so no labeled face is
occluded and no unlabeled face appears.

The layouts (canvas size, format, face count and size class) are listed in ``SPECS``; everything else (background,
colours, positions, scales, flips, titles) comes from one seeded generator, so the same seed and the same library
versions give the same files.

Usage::

    python scripts/make_sample_keyart.py                     # rebuild assets_sample/images/keyart + labels rows
    python scripts/make_sample_keyart.py --seed 7 --out /tmp/keyart --labels /tmp/labels.csv

The labels file is rewritten with its existing non-key-art rows kept in order and the key-art rows replaced.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

REPO = Path(__file__).resolve().parents[1]
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"

# (file name, width, height, number of faces, face-size class). Size classes give the face box width as a fraction
# of the canvas' short side: small faces test the detector's minimum size, large ones its upper scales.
SIZE_CLASSES = {"small": (0.06, 0.10), "medium": (0.12, 0.22), "large": (0.28, 0.45), "mixed": (0.06, 0.35)}
SPECS: list[tuple[str, int, int, int, str]] = [
    # no face (negatives with title text and textures)
    ("keyart_00_portrait_noface.jpg", 600, 900, 0, "medium"),
    ("keyart_01_landscape_noface.jpg", 1280, 720, 0, "medium"),
    ("keyart_02_square_noface.png", 500, 500, 0, "medium"),
    ("keyart_03_landscape_noface.webp", 640, 360, 0, "medium"),
    # one face
    ("keyart_04_portrait_1_large.jpg", 1000, 1500, 1, "large"),
    ("keyart_05_portrait_1_medium.jpg", 400, 600, 1, "medium"),
    ("keyart_06_portrait_1_small.jpg", 1066, 1600, 1, "small"),
    ("keyart_07_landscape_1_large.jpg", 1600, 900, 1, "large"),
    ("keyart_08_landscape_1_medium.png", 640, 360, 1, "medium"),
    ("keyart_09_landscape_1_small.jpg", 960, 540, 1, "small"),
    ("keyart_10_square_1_large.png", 512, 512, 1, "large"),
    ("keyart_11_square_1_medium.webp", 800, 800, 1, "medium"),
    # two faces
    ("keyart_12_portrait_2_medium.jpg", 800, 1200, 2, "medium"),
    ("keyart_13_portrait_2_mixed.png", 300, 450, 2, "mixed"),
    ("keyart_14_landscape_2_large.jpg", 1280, 720, 2, "large"),
    ("keyart_15_landscape_2_small.jpg", 1600, 900, 2, "small"),
    ("keyart_16_square_2_medium.jpg", 1200, 1200, 2, "medium"),
    ("keyart_17_banner_2_mixed.jpg", 1600, 600, 2, "mixed"),
    # three or more faces
    ("keyart_18_portrait_3_medium.jpg", 600, 900, 3, "medium"),
    ("keyart_19_landscape_3_mixed.jpg", 1280, 720, 3, "mixed"),
    ("keyart_20_square_3_small.png", 600, 600, 3, "small"),
    ("keyart_21_portrait_4_small.jpg", 1000, 1500, 4, "small"),
    ("keyart_22_landscape_4_medium.jpg", 1600, 900, 4, "medium"),
    ("keyart_23_square_5_mixed.jpg", 1024, 1024, 5, "mixed"),
    ("keyart_24_portrait45_6_small.jpg", 800, 1000, 6, "small"),
    ("keyart_25_landscape_3_small.jpg", 480, 270, 3, "small"),
]

TITLE_WORDS = [
    "THE", "LAST", "HARBOR", "NIGHT", "SIGNAL", "ECHO", "RIVER", "CROWN", "SILENT", "ORBIT", "GLASS", "WINTER",
    "KINGDOM", "SHADOW", "LINE", "RETURN", "OF", "DISTANT", "FIRE", "BLUE", "HOUR", "NORTH", "PROTOCOL", "SEASON",
]  # fmt: skip
TAGLINES = ["Coming soon", "Now streaming", "A new series", "Based on a true story", "Season 2", "Only in cinemas"]
MIN_FACE_PX = 22  # below this no practical detector is expected to fire; keep the sample fair


@dataclass(frozen=True)
class SourceFace:
    """A labeled photograph: RGB pixels and the face box (x1, y1, x2, y2; original pixels, x2/y2 exclusive)."""

    image_id: str
    image: Image.Image
    box: tuple[float, float, float, float]


def load_sources(images_root: Path, labels_path: Path) -> list[SourceFace]:
    """Read the single-face photographs under ``photos/`` and their boxes from the labels file."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    with open(labels_path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["image_id"].startswith("photos/") and row["x1"]:
                boxes.setdefault(row["image_id"], []).append(tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2")))
    sources = []
    for image_id in sorted(boxes):
        if len(boxes[image_id]) != 1:
            raise ValueError(f"{labels_path}: {image_id} must have exactly one face box to be used as a source")
        image = Image.open(images_root / image_id).convert("RGB")
        sources.append(SourceFace(image_id, image, boxes[image_id][0]))
    if not sources:
        raise ValueError(f"{labels_path}: no labeled face under photos/ to build composites from")
    return sources


def crop_region(src: SourceFace) -> tuple[int, int, int, int]:
    """A head-and-shoulders region around the face box, clipped to the photograph."""
    x1, y1, x2, y2 = src.box
    w, h = x2 - x1, y2 - y1
    return (
        max(0, int(x1 - 0.5 * w)),
        max(0, int(y1 - 0.45 * h)),
        min(src.image.width, int(np.ceil(x2 + 0.5 * w))),
        min(src.image.height, int(np.ceil(y2 + 0.9 * h))),
    )


def gradient(size: tuple[int, int], c0: np.ndarray, c1: np.ndarray, angle: float) -> Image.Image:
    """A linear gradient from colour ``c0`` to ``c1`` along direction ``angle`` (radians)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx / max(w - 1, 1)) * np.cos(angle) + (yy / max(h - 1, 1)) * np.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    arr = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def background(size: tuple[int, int], rng: np.random.Generator, textures: list[Image.Image]) -> Image.Image:
    """One of: linear gradient, radial vignette over a colour field, grainy colour field, blurred texture crop."""
    w, h = size
    kind = rng.choice(["gradient", "radial", "field", "blur"] if textures else ["gradient", "radial", "field"])
    c0, c1 = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    if kind == "gradient":
        return gradient(size, c0, c1, float(rng.uniform(0, np.pi)))
    if kind == "radial":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2)).clip(0, 1.4) / 1.4
        arr = c0 * (1 - r[..., None]) + (c0 * 0.15) * r[..., None]
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if kind == "field":
        arr = np.broadcast_to(c0, (h, w, 3)) + rng.normal(0, 6, (h, w, 1))
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    tex = textures[int(rng.integers(len(textures)))]
    # A random crop covering at least half of the texture, stretched to the canvas and blurred beyond recognition.
    cw, ch = int(tex.width * rng.uniform(0.5, 1.0)), int(tex.height * rng.uniform(0.5, 1.0))
    x0, y0 = int(rng.integers(0, tex.width - cw + 1)), int(rng.integers(0, tex.height - ch + 1))
    img = tex.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.Resampling.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(radius=max(w, h) * 0.02))
    tint = Image.new("RGB", size, tuple(int(c) for c in c0))
    return Image.blend(img, tint, 0.35)


def feather_mask(size: tuple[int, int], face: tuple[float, float, float, float]) -> Image.Image:
    """An opaque mask whose soft edge stays inside the margin around ``face`` (crop coordinates)."""
    w, h = size
    margin = min(face[0], face[1], w - face[2], h - face[3])
    inset = max(1, int(margin * 0.4))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((inset, inset, w - 1 - inset, h - 1 - inset), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(radius=inset / 2))


def fit_font(
    draw: ImageDraw.ImageDraw, text: str, font_file: Path, max_w: float, max_h: float
) -> ImageFont.FreeTypeFont:
    """The largest DejaVu font size at which ``text`` fits in ``max_w`` x ``max_h`` pixels."""
    size = max(8, int(max_h))
    while size > 8:
        font = ImageFont.truetype(str(font_file), size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        if x1 - x0 <= max_w and y1 - y0 <= max_h:
            return font
        size = int(size * 0.9)
    return ImageFont.truetype(str(font_file), 8)


def compose(
    spec: tuple[str, int, int, int, str],
    sources: list[SourceFace],
    textures: list[Image.Image],
    rng: np.random.Generator,
) -> tuple[Image.Image, list[tuple[float, float, float, float]]]:
    """Render one composite; return it and its face boxes (canvas pixels, x2/y2 exclusive)."""
    _, w, h, n_faces, size_class = spec
    canvas = background((w, h), rng, textures)
    band_h = int(h * rng.uniform(0.15, 0.22))
    band_top = bool(rng.integers(2))
    area = (0, band_h, w, h) if band_top else (0, 0, w, h - band_h)  # faces live here, the title in the band
    short = min(w, h)
    lo, hi = SIZE_CLASSES[size_class]
    boxes: list[tuple[float, float, float, float]] = []
    placed: list[tuple[int, int, int, int]] = []
    order = rng.permutation(len(sources))  # every source once before any repeats
    for i in range(n_faces):
        src = sources[int(order[i % len(sources)])]
        rx1, ry1, rx2, ry2 = crop_region(src)
        fx1, fy1, fx2, fy2 = src.box[0] - rx1, src.box[1] - ry1, src.box[2] - rx1, src.box[3] - ry1
        face_w = max(MIN_FACE_PX, short * rng.uniform(lo, hi))
        for attempt in range(400):
            scale = face_w / (fx2 - fx1)
            cw, ch = round((rx2 - rx1) * scale), round((ry2 - ry1) * scale)
            if cw <= area[2] - area[0] and ch <= area[3] - area[1]:
                px = int(rng.integers(area[0], area[2] - cw + 1))
                py = int(rng.integers(area[1], area[3] - ch + 1))
                if all(px + cw <= a or a2 <= px or py + ch <= b or b2 <= py for a, b, a2, b2 in placed):
                    break
            if attempt % 40 == 39:  # crowded: shrink, but never below the fair minimum
                face_w = max(MIN_FACE_PX, face_w * 0.85)
        else:
            raise RuntimeError(f"{spec[0]}: could not place face {i + 1} of {n_faces} without overlap")
        crop = src.image.crop((rx1, ry1, rx2, ry2))
        if rng.random() < 0.5:  # mirror: the face box mirrors about the crop's vertical centre line
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            fx1, fx2 = (rx2 - rx1) - fx2, (rx2 - rx1) - fx1
        # Exact per-axis scale after rounding the crop size, so the box follows the pixels.
        sx, sy = cw / (rx2 - rx1), ch / (ry2 - ry1)
        box = (fx1 * sx, fy1 * sy, fx2 * sx, fy2 * sy)
        crop = crop.resize((cw, ch), Image.Resampling.LANCZOS)
        crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.85, 1.15)))
        crop = ImageEnhance.Color(crop).enhance(float(rng.uniform(0.7, 1.3)))
        canvas.paste(crop, (px, py), feather_mask((cw, ch), box))
        placed.append((px, py, px + cw, py + ch))
        boxes.append((box[0] + px, box[1] + py, box[2] + px, box[3] + py))

    draw = ImageDraw.Draw(canvas)
    n_words = int(rng.integers(1, 4))
    title = " ".join(rng.choice(TITLE_WORDS, n_words, replace=False))
    font = fit_font(draw, title, FONT_DIR / "DejaVuSans-Bold.ttf", 0.9 * w, 0.55 * band_h)
    tag = str(rng.choice(TAGLINES))
    tag_font = fit_font(draw, tag, FONT_DIR / "DejaVuSans.ttf", 0.6 * w, 0.22 * band_h)
    y0 = 0 if band_top else h - band_h
    colour = tuple(int(c) for c in rng.integers(200, 256, 3))
    draw.text(
        (w / 2, y0 + 0.42 * band_h), title, font=font, fill=colour, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0)
    )
    draw.text((w / 2, y0 + 0.85 * band_h), tag, font=tag_font, fill=colour, anchor="mm")
    return canvas, boxes


def save(image: Image.Image, path: Path) -> None:
    """Save by extension with fixed encoder settings (deterministic for fixed library versions)."""
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        image.save(path, "JPEG", quality=88, optimize=True)
    elif ext == ".png":
        image.save(path, "PNG", optimize=True)
    elif ext == ".webp":
        image.save(path, "WEBP", quality=85, method=4)
    else:
        raise ValueError(f"unsupported output extension {ext!r} for {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=REPO / "assets_sample" / "images", help="sample images root")
    parser.add_argument("--labels", type=Path, default=REPO / "assets_sample" / "labels.csv", help="labels file")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: IMAGES/keyart)")
    parser.add_argument("--seed", type=int, default=20240607)
    args = parser.parse_args(argv)
    out = args.out or args.images / "keyart"
    out.mkdir(parents=True, exist_ok=True)
    try:
        prefix = out.resolve().relative_to(args.images.resolve()).as_posix() + "/"
    except ValueError:
        prefix = out.name + "/"

    sources = load_sources(args.images, args.labels)
    textures = []
    with open(args.labels, newline="") as fh:
        for row in csv.DictReader(fh):  # face-free posters only: a blurred texture must not hide a face
            if row["image_id"].startswith("posters/") and not row["x1"]:
                textures.append(Image.open(args.images / row["image_id"]).convert("RGB"))

    rng = np.random.default_rng(args.seed)
    new_rows = []
    for spec in SPECS:
        image, boxes = compose(spec, sources, textures, rng)
        save(image, out / spec[0])
        image_id = prefix + spec[0]
        if not boxes:
            new_rows.append({"image_id": image_id, "x1": "", "y1": "", "x2": "", "y2": "", "style": "composite"})
        for b in boxes:
            x1, y1, x2, y2 = (f"{v:.1f}" for v in b)
            new_rows.append({"image_id": image_id, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "style": "composite"})
        print(f"{image_id}: {image.width}x{image.height}, {len(boxes)} face(s)")

    with open(args.labels, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        kept = [r for r in reader if not r["image_id"].startswith(prefix)]
    for r in new_rows:
        if "domain" in fields:
            r["domain"] = "photographic"
    with open(args.labels, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept + new_rows)
    print(f"wrote {len(SPECS)} composites to {out} and {len(new_rows)} label rows to {args.labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
