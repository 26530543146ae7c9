"""``engagement=your.csv``: your own engagement table joined on image_id to the run's annotations, in one override."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from causal.experiment import run_experiment
from causal.validate import ConfigError, validate_config

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def _cfg(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _annotations(root: Path, n: int = 120) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "ann"
    (folder / "images").mkdir(parents=True)
    images = pd.DataFrame(
        {
            "image_id": [f"img_{i:03d}.jpg" for i in range(n)],
            "status": "ok",
            "face_present": rng.random(n) < 0.5,
            "img_brightness": rng.random(n),
        }
    )
    images.to_parquet(folder / "images" / "part-000000.parquet")
    return folder


def test_engagement_joins_on_image_id_in_one_override(tmp_path):
    ann = _annotations(tmp_path)
    ids = pd.read_parquet(ann / "images")["image_id"]
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"image_id": ids[:100], "take_rate": rng.random(100) * 0.2})
    table.to_csv(tmp_path / "engagement.csv", index=False)
    cfg = _cfg(
        [
            f"engagement={tmp_path / 'engagement.csv'}",
            f"paths.annotations={ann}",
            "paths.cache=null",
            "steps=[screening]",
            "roles.confounders=[img_brightness]",
            "roles.groups=[]",
        ]
    )
    results, _ = run_experiment(cfg, tmp_path / "run")
    assert results["n_units"] == 100  # the 100 engagement rows that match an annotated image
    assert "engagement.csv" in results["source"]
    assert {r["feature"] for r in results["screening"]} >= {"face_present", "img_brightness"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.csv", "no such file"),
        (lambda d: _write(d / "e.csv", "id,take_rate\n1,0.1\n"), "no 'image_id' column"),
        (lambda d: _write(d / "e.json", "{}"), "expected a CSV, TSV or Parquet"),
    ],
)
def test_bad_engagement_is_refused_before_any_work(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=message) as err:
        validate_config(_cfg([f"engagement={path}", "input=some/folder"]))
    assert err.value.key == "engagement"


def test_engagement_needs_artwork_to_join_with(tmp_path):
    path = _write(tmp_path / "e.csv", "image_id,take_rate\na.jpg,0.1\n")
    with pytest.raises(ConfigError, match="input=<artwork folder>"):
        validate_config(_cfg([f"engagement={path}"]))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
