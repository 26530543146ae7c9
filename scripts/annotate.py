"""Annotate a folder of artwork: faces and image features to Parquet.

    python scripts/annotate.py input=assets_sample/images output=out/annotations
    python scripts/annotate.py input=posters output=out/ann vision.device=cuda vision.batch_size=64
    python scripts/annotate.py runner=ray ray.address=auto runner.actors=8 input=/shared/posters output=/shared/ann

Re-running with the same output resumes: images already written are skipped.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from vision.annotate import AnnotationError, annotate_folder, annotator_from_config

log = logging.getLogger("annotate")


@hydra.main(version_base="1.3", config_path="../conf", config_name="annotate")
def main(cfg: DictConfig) -> None:
    vision = cfg.vision
    input_dir, output_dir = Path(cfg.input), Path(cfg.output)
    if not input_dir.is_dir():
        sys.exit(f"input folder does not exist or is not a folder: {input_dir} (config key: input)")
    use_ray = cfg.runner.name == "ray"
    if not use_ray:
        try:
            annotator = annotator_from_config(vision)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            sys.exit(f"cannot build the vision models: {err}")
    bar = tqdm(total=0, unit="img", disable=not cfg.progress, dynamic_ncols=True)
    faces_seen = 0

    def on_start(found: int, done: int) -> None:
        bar.total = found - done
        bar.refresh()
        if done:
            tqdm.write(f"resuming: {done} of {found} images already in {output_dir}")

    def on_progress(n_images: int, n_faces: int) -> None:
        nonlocal faces_seen
        faces_seen += n_faces
        bar.update(n_images)
        bar.set_postfix(faces=faces_seen, refresh=False)

    try:
        if use_ray:
            from vision.ray_runner import annotate_folder_ray

            # Models are built inside the Ray actors, never in this process.
            summary = annotate_folder_ray(
                input_dir, output_dir, vision, cfg.ray, cfg.runner, progress=on_progress, on_start=on_start
            )
        else:
            summary = annotate_folder(
                input_dir,
                output_dir,
                annotator,
                batch_size=vision.batch_size,
                part_size=vision.part_size,
                num_workers=vision.num_workers,
                max_pixels=vision.max_pixels,
                max_long_side=vision.max_long_side,
                extensions=list(vision.extensions),
                progress=on_progress,
                on_start=on_start,
            )
    except (AnnotationError, ImportError, ValueError, ConnectionError) as err:
        bar.close()
        sys.exit(str(err))
    bar.close()
    (output_dir / "annotate_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(
        f"ok {summary.ok}  errors {summary.errors}  faces {summary.faces}  skipped (already done) {summary.skipped}  "
        f"seconds {summary.seconds:.1f}  images/s {summary.images_per_second:.2f}"
    )
    if summary.error_causes:
        print("errors by cause: " + json.dumps(summary.error_causes))
    print(f"images table: {output_dir / 'images'}\nfaces table:  {output_dir / 'faces'}")


if __name__ == "__main__":
    main()
