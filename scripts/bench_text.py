"""Text detection (vision.text) on artwork with rendered titles of known boxes: precision, recall, feature errors.

    pip install --no-deps rapidocr-onnxruntime==1.4.4      # the PP-OCRv4 detection model (Apache-2.0)
    python scripts/bench_text.py                             # keyart + photos of assets_sample, 2 variants each
    python scripts/bench_text.py --variants 1 --save-dir /tmp/text_samples

Each sample: a background with one to three rendered lines (a title in the top or bottom band, sometimes a tagline
and a credit line) in random sizes (2% to 12% of the image height), colours (light or dark, a contrasting outline on
half of them) and positions. Backgrounds: the bundled key art (assets_sample/images/keyart, which carries titles of
its own) blurred with a radius of 4% of its width so that no readable text is left, and the three bundled
photographs as they are; the boxes found on the backgrounds alone are printed (false positives there). The true
box of a line is Pillow's ink bounding box. A detected box matches a true one at IoU >= 0.5 (one to one);
precision = matched / detected, recall = matched / true. Printed with the errors of the image features
(``text_area_fraction``, ``text_position``, ``text_height``) computed from the detected against the true boxes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO = Path(__file__).resolve().parents[1]
_VOCABULARY = (
    "the last night of midnight city river storm gold silent empire house dark summer return broken glass kingdom "
    "shadow ocean fire long road home secret garden wild heart winter light stranger love war"
)
WORDS = _VOCABULARY.split()


def _line(rng: np.random.Generator, words: tuple[int, int], upper: bool) -> str:
    text = " ".join(rng.choice(WORDS, size=int(rng.integers(*words))))
    return text.upper() if upper else text.title()


def render(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, np.ndarray]:
    """``image`` with 1-3 rendered text lines and their ink boxes (n, 4)."""
    img = image.convert("RGB")
    draw = ImageDraw.Draw(img)
    w, h = img.size
    boxes = []
    band = rng.choice(["top", "bottom"])
    lines = [("title", (1, 4), 0.05 + 0.07 * rng.random())]
    if rng.random() < 0.6:
        lines.append(("tagline", (3, 7), 0.025 + 0.015 * rng.random()))
    if rng.random() < 0.4:
        lines.append(("credit", (4, 9), 0.02 + 0.01 * rng.random()))
    y = (0.05 + 0.1 * rng.random()) * h if band == "top" else (0.95 - 0.1 * rng.random()) * h
    for _, words, size in lines:
        font = ImageFont.load_default(size=max(10, int(size * h)))
        text = _line(rng, words, upper=bool(rng.random() < 0.7))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left > 0.95 * w:  # too long for the image: fewer words
            text = " ".join(text.split()[:2])
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = (w - (right - left)) * (0.5 if rng.random() < 0.7 else rng.uniform(0.02, 0.98)) - left
        ty = y - top if band == "top" else y - bottom
        light = rng.random() < 0.6
        fill = tuple(int(v) for v in (rng.integers(200, 256, 3) if light else rng.integers(0, 60, 3)))
        stroke = int(max(1, size * h / 15)) if rng.random() < 0.5 else 0
        draw.text(
            (x, ty), text, font=font, fill=fill, stroke_width=stroke, stroke_fill=(0, 0, 0) if light else (255,) * 3
        )
        box = draw.textbbox((x, ty), text, font=font, stroke_width=stroke)
        boxes.append(box)
        gap = 0.4 * (box[3] - box[1])
        y = box[3] + gap if band == "top" else box[1] - gap
    return img, np.asarray(boxes, dtype=float)


def main() -> None:
    from vision.text import TextDetector, match, text_features

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=2, help="renderings per background image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-dir", type=Path, default=None, help="write the rendered samples here")
    args = parser.parse_args()
    detector = TextDetector()
    images = sorted((REPO / "assets_sample" / "images" / "keyart").glob("*")) + sorted(
        (REPO / "assets_sample" / "images" / "photos").glob("*")
    )
    rng = np.random.default_rng(args.seed)
    tp = n_det = n_true = 0
    area_err, height_err, position_ok, seconds = [], [], [], []
    background_false = 0
    for path in images:
        base = Image.open(path).convert("RGB")
        base.thumbnail((1280, 1280))
        if path.parent.name == "keyart":
            base = base.filter(ImageFilter.GaussianBlur(0.04 * base.width))
        background_false += len(detector.detect(np.asarray(base)).boxes)  # no text: every box is false
        for v in range(args.variants):
            img, truth = render(base, rng)
            pixels = np.asarray(img)
            start = time.perf_counter()
            found = detector.detect(pixels)
            seconds.append(time.perf_counter() - start)
            tp += match(found.boxes, truth)
            n_det += len(found.boxes)
            n_true += len(truth)
            got = text_features(found.boxes, img.width, img.height)
            want = text_features(truth, img.width, img.height)
            area_err.append(abs(got["text_area_fraction"] - want["text_area_fraction"]))
            height_err.append(abs(got["text_height"] - want["text_height"]))
            position_ok.append(got["text_position"] == want["text_position"])
            if args.save_dir:
                args.save_dir.mkdir(parents=True, exist_ok=True)
                img.save(args.save_dir / f"{path.stem}_{v}.jpg", quality=92)
    n = len(area_err)
    print(f"{n} rendered samples on {len(images)} backgrounds, {n_true} text lines, {n_det} boxes detected")
    print(f"precision {tp / max(n_det, 1):.3f}, recall {tp / max(n_true, 1):.3f} (IoU >= 0.5, one to one)")
    print(f"boxes on the {len(images)} backgrounds alone: {background_false}")
    print(
        f"text_area_fraction abs error: mean {np.mean(area_err):.4f}; text_height abs error: mean "
        f"{np.mean(height_err):.4f}; largest block's position band right: {np.mean(position_ok):.3f}"
    )
    print(f"seconds per image (CPU, long side <= 1280 px): {np.mean(seconds):.2f}")


if __name__ == "__main__":
    main()
