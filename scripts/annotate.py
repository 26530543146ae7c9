"""Annotate a folder of artwork: faces and image features to Parquet.

    python scripts/annotate.py input=assets_sample/images output=out/annotations
    python scripts/annotate.py input=posters output=out/ann vision.device=cuda vision.batch_size=64
    python scripts/annotate.py runner=ray ray.address=auto runner.actors=8 input=/shared/posters output=/shared/ann

Re-running with the same output resumes: unchanged images already written are skipped, changed ones are annotated
again, rows of deleted files are removed. Exit codes: 0 done (files that cannot be decoded are error rows, not
failures), 2 a problem with the input, output or config (before any work), 130/143 interrupted (Ctrl-C / SIGTERM).
The same as ``creative-insights annotate`` (vision/cli.py), with the repository's conf/.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vision.cli import annotate_command


@hydra.main(version_base="1.3", config_path="../conf", config_name="annotate")
def main(cfg: DictConfig) -> None:
    annotate_command(cfg)


if __name__ == "__main__":
    main()
