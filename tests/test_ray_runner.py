"""runner=ray annotation (vision.ray_runner) against the local runner on the bundled sample, on a local 2-CPU Ray."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vision.ray_runner import plan_part

try:
    import ray
    import ray.data  # noqa: F401
except ImportError:
    ray = None

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets_sample" / "images"

requires_ray = pytest.mark.skipif(ray is None, reason='ray is not installed: pip install -e ".[ray]"')

# The default vision stage (MTCNN, SFace embeddings, colour features, EfficientNet-Lite0 latent vector) at a smaller
# detection size, with batches and parts small enough that the 47 files make several parts, batches cut by parts,
# and error rows in the middle of a batch.
VISION = {
    "device": "cpu",
    "num_threads": 1,
    "batch_size": 4,
    "part_size": 12,
    "num_workers": 0,
    "max_pixels": 64_000_000,
    "max_long_side": 512,
    "extensions": [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"],
    "detector": {"_target_": "vision.detect.MTCNNDetector", "detection_size": 512, "batch_size": 8},
    "embedder": {"_target_": "vision.embed.SFaceEmbedder"},
    "image_features": {"color": True, "latent": True},
}
RUNNER = {"actors": 2, "num_gpus_per_actor": "auto", "num_cpus_per_actor": 0.5, "decode_num_cpus": 0.5}


# --------------------------------------------------------------------------------------------------------------------
# Without a cluster
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decodable", "batch_size", "expected"),
    [
        ([True, True, True], 2, [([], [0, 1]), ([], [2])]),
        ([True, True], 2, [([], [0, 1])]),  # no empty trailing event
        ([True, False, True], 2, [([1], [0, 2])]),  # the error row is appended before the batch it interrupts
        ([True, True, False, True], 2, [([], [0, 1]), ([2], [3])]),
        ([True, True, False], 2, [([], [0, 1]), ([2], [])]),  # trailing error: an event without a batch
        ([False, False], 3, [([0, 1], [])]),
        ([], 4, []),
    ],
)
def test_plan_part_reproduces_the_local_row_order(decodable, batch_size, expected):
    assert plan_part(decodable, batch_size) == expected


def test_plan_part_rejects_a_zero_batch():
    with pytest.raises(ValueError, match="batch_size"):
        plan_part([True], 0)


def test_core_imports_and_explains_without_ray(tmp_path):
    """With `ray` unimportable, the pipeline modules import and the Ray runner says which extra to install."""
    code = f"""
import sys
sys.modules["ray"] = None  # what `import ray` sees when the package is not installed
import vision.annotate, vision.ray_runner, causal.nuisance, causal.dml, causal.pipeline
try:
    vision.ray_runner.annotate_folder_ray({str(SAMPLE)!r}, {str(tmp_path)!r}, {{}}, None)
except ImportError as err:
    print("IMPORT-ERROR:", err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'IMPORT-ERROR: Ray is not installed; install the optional extra: pip install "creative-insights[ray]"' in (
        out.stdout
    )


@requires_ray
@pytest.mark.ray
@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        ("127.0.0.1:1", ConnectionError, "cannot reach the Ray cluster at ray.address='127.0.0.1:1'"),
        ("ray://127.0.0.1:1", ConnectionError, "cannot reach the Ray cluster at ray.address='ray://127.0.0.1:1'"),
        ("my-cluster", ValueError, "ray.address: expected null, 'auto', 'HOST:PORT'"),
    ],
)
def test_unreachable_ray_address_fails_fast_naming_the_key(address, error, message):
    from vision.ray_runner import init_ray

    if ray.is_initialized():
        pytest.skip("a Ray instance is already connected in this process")
    with pytest.raises(error, match=re.escape(message)):
        init_ray({"address": address})
    assert not ray.is_initialized()


# --------------------------------------------------------------------------------------------------------------------
# On a local Ray instance
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    if ray is None:
        pytest.skip('ray is not installed: pip install -e ".[ray]"')
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory) -> Path:
    """The sample plus two undecodable files whose names sort among the key art (errors inside batches)."""
    assert any(SAMPLE.rglob("*.jpg")), "assets_sample/images is missing (shipped with the repository)"
    root = tmp_path_factory.mktemp("sample") / "images"
    shutil.copytree(SAMPLE, root)
    (root / "keyart" / "keyart_05_zero_bytes.jpg").write_bytes(b"")
    (root / "keyart" / "keyart_13_not_an_image.png").write_text("<html>404</html>")
    return root


@pytest.fixture(scope="module")
def local_run(sample_folder, tmp_path_factory):
    from omegaconf import OmegaConf

    from vision.annotate import annotate_folder, annotator_from_config

    out = tmp_path_factory.mktemp("local")
    annotator = annotator_from_config(OmegaConf.create(VISION))
    summary = annotate_folder(
        sample_folder,
        out,
        annotator,
        batch_size=VISION["batch_size"],
        part_size=VISION["part_size"],
        num_workers=0,
        max_pixels=VISION["max_pixels"],
        max_long_side=VISION["max_long_side"],
        extensions=VISION["extensions"],
    )
    return out, summary


@pytest.fixture(scope="module")
def ray_run(ray_local, sample_folder, tmp_path_factory):
    from vision.ray_runner import annotate_folder_ray

    out = tmp_path_factory.mktemp("ray")
    seen = []
    summary = annotate_folder_ray(sample_folder, out, VISION, None, RUNNER, progress=lambda n, f: seen.append((n, f)))
    return out, summary, seen


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(out / "images"), pd.read_parquet(out / "faces")


def _parts(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "images").iterdir())


@requires_ray
@pytest.mark.ray
@pytest.mark.slow
def test_ray_runner_rows_equal_the_local_runner_on_the_sample(local_run, ray_run):
    local_out, local_summary = local_run
    ray_out, ray_summary, seen = ray_run
    local_images, local_faces = _tables(local_out)
    ray_images, ray_faces = _tables(ray_out)
    assert len(local_images) == 47 and (local_images["status"] == "error").sum() == 2
    assert local_faces["embedding"].notna().all() and local_images["image_embedding"].notna().sum() == 45
    # Same rows in the same order, bit for bit (embeddings and latent vectors included), in the same part files.
    pd.testing.assert_frame_equal(ray_images, local_images, check_exact=True)
    pd.testing.assert_frame_equal(ray_faces, local_faces, check_exact=True)
    assert _parts(ray_out) == _parts(local_out) == [f"part-{k:06d}.parquet" for k in range(4)]
    assert (ray_summary.found, ray_summary.ok, ray_summary.errors, ray_summary.faces) == (
        local_summary.found,
        local_summary.ok,
        local_summary.errors,
        local_summary.faces,
    )
    assert ray_summary.error_causes == local_summary.error_causes == {"empty file": 1, "not a decodable image": 1}
    assert sum(n for n, _ in seen) == 47 and sum(f for _, f in seen) == len(local_faces)


@requires_ray
@pytest.mark.ray
@pytest.mark.slow
def test_ray_runner_resumes_a_killed_run(ray_run, local_run, sample_folder, tmp_path):
    """A run that lost its last part (killed before the rename) redoes only that part, on either runner."""
    from vision.ray_runner import annotate_folder_ray

    out = tmp_path / "resumed"
    shutil.copytree(ray_run[0], out)
    last = _parts(out)[-1]
    (out / "images" / last).unlink()  # faces part without its images twin: what a kill between renames leaves
    n_last = len(pd.read_parquet(ray_run[0] / "images" / last))
    summary = annotate_folder_ray(sample_folder, out, VISION, None, {**RUNNER, "actors": 1})
    assert (summary.skipped, summary.processed) == (47 - n_last, n_last)
    local_images, local_faces = _tables(local_run[0])
    images, faces = _tables(out)
    pd.testing.assert_frame_equal(images, local_images, check_exact=True)
    pd.testing.assert_frame_equal(faces, local_faces, check_exact=True)
    again = annotate_folder_ray(sample_folder, out, VISION, None, RUNNER)
    assert (again.skipped, again.processed) == (47, 0)


@requires_ray
@pytest.mark.ray
@pytest.mark.parametrize(
    ("runner", "key"),
    [
        ({"actors": 0}, "runner.actors"),
        ({"actors": [3, 1]}, "runner.actors"),
        ({"num_gpus_per_actor": "some"}, "runner.num_gpus_per_actor"),
        ({"decode_num_cpus": 0}, "runner.decode_num_cpus"),
    ],
)
def test_bad_runner_config_names_the_key_before_starting(runner, key, tmp_path):
    from vision.ray_runner import annotate_folder_ray

    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        annotate_folder_ray(SAMPLE, tmp_path / "out", VISION, None, runner)
    assert not (tmp_path / "out").exists()


@requires_ray
@pytest.mark.ray
@pytest.mark.slow
def test_bad_input_folder_on_ray_with_the_shipped_defaults(ray_local, tmp_path, astronaut, default_annotate_config):
    """runner=ray as shipped (conf/runner/ray.yaml, default vision models): one row per awkward file, no crash."""
    from conftest import check_bad_input_rows, make_bad_input_folder

    from vision.annotate import annotate_from_config

    expected = make_bad_input_folder(tmp_path / "in", astronaut)
    cfg = default_annotate_config("input=x", "output=y", "runner=ray")
    out = tmp_path / "out"
    summary = annotate_from_config(cfg.vision, tmp_path / "in", out, runner_cfg=cfg.runner, ray_cfg=cfg.ray)
    assert summary.errors == sum(c is not None for c in expected.values())
    check_bad_input_rows(tmp_path / "out", expected, astronaut)


@requires_ray
@pytest.mark.ray
@pytest.mark.slow
def test_actors_write_the_parts_and_the_driver_writes_none(ray_local, tmp_path, astronaut, monkeypatch):
    """The driver process may not write a part (actors do, in their own processes); the tables still equal the
    local runner's, under the same part names."""
    from omegaconf import OmegaConf
    from PIL import Image

    import vision.ray_runner
    import vision.store
    from vision.annotate import annotate_folder, annotator_from_config
    from vision.ray_runner import annotate_folder_ray

    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(7):
        Image.fromarray(astronaut).resize((200 + 40 * k, 200 + 40 * k)).save(folder / f"a{k}.png")
    local_out = tmp_path / "local"
    annotate_folder(
        folder,
        local_out,
        annotator_from_config(OmegaConf.create(VISION)),
        batch_size=VISION["batch_size"],
        part_size=3,
        num_workers=0,
        max_pixels=VISION["max_pixels"],
        max_long_side=VISION["max_long_side"],
    )

    def no_driver_writes(*args, **kwargs):
        raise AssertionError("the driver wrote a part")

    monkeypatch.setattr(vision.store.PartWriter, "write", no_driver_writes)
    monkeypatch.setattr(vision.ray_runner, "write_part", no_driver_writes)  # the name the actors' module uses
    ray_out = tmp_path / "ray"
    summary = annotate_folder_ray(folder, ray_out, {**VISION, "part_size": 3}, None, RUNNER)
    assert (summary.ok, summary.errors) == (7, 0) and summary.stage_seconds["write"] > 0
    assert _parts(ray_out) == _parts(local_out) == [f"part-{k:06d}.parquet" for k in range(3)]
    for table in ("images", "faces"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(ray_out / table), pd.read_parquet(local_out / table), check_exact=True
        )
