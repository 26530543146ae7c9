"""Evaluate the face detector on labelled samples: AP, image-level presence errors, PR curve, error list.

    python scripts/evaluate_detector.py labels=assets_sample/labels.csv images=assets_sample/images
    python scripts/evaluate_detector.py labels=assets_sample/labels.csv images=assets_sample/images \
        vision/detector=yunet score_threshold=0.7
    python scripts/evaluate_detector.py labels=assets_sample/labels.csv annotations=out/annotations \
        images=assets_sample/images

The same as ``creative-insights evaluate`` (vision/evaluate_cli.py) with the configs of this checkout's ``conf/``.
"""

import hydra
from omegaconf import DictConfig

from vision.evaluate_cli import evaluate_command


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate_command(cfg)


if __name__ == "__main__":
    main()
