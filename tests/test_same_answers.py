"""Same answers: fixed runs through the command line give the numbers recorded in tests/data/golden/.

The runs cover the product's main paths (the simulator's default chain, the demo on the bundled sample with the
annotation and detector evaluation, face-count mediation, a planted generic table). A refactor must leave every
number of results.json equal to 1e-6 (relative) and the annotation rows equal; a change that is meant to move them
re-records them on purpose and says why in its commit:

    RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/test_same_answers.py

Only numbers (and booleans) are compared, by their path in results.json: wording may change. A number the golden
file has must still be there; new numbers may be added.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"
RECORD = os.environ.get("RECORD_GOLDEN") == "1"
# Relative. Not tighter: the same code and packages on another machine moved numbers by up to 1e-9 (BLAS and CPU
# summation order; seen 2026-12-02 against goldens recorded on an earlier machine), while a real change of a model,
# a fold or a formula moves them by far more than 1e-6.
TOLERANCE = 1e-6

RUNS = {
    "simulator": [],
    "face_count_mediation": ["experiment=face_count_mediation"],
    "generic_table": ["experiment=generic_table", "data.path={table}"],
    "demo": [
        "experiment=face_presence",
        "data=sample",
        "input=assets_sample/images",
        "labels=assets_sample/labels.csv",
        "paths.outputs={tmp}/outputs",
    ],
}


def planted_table(path: Path, n: int = 1500, seed: int = 7) -> Path:
    """A generic table with a known effect (+0.8) and confounding through x1 and segment."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    segment = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "NA"], size=n)
    logit = 0.8 * x1 + np.where(segment == "b", 0.5, 0.0)
    treated = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    outcome = 0.8 * treated + 1.2 * x1 + 0.5 * x2 + np.where(segment == "c", 1.0, 0.0) + rng.normal(size=n)
    table = pd.DataFrame(
        {"unit_id": np.arange(n), "treated": treated, "outcome": outcome, "x1": x1, "x2": x2}
        | {"segment": segment, "region": region}
    )
    table.to_csv(path, index=False)
    return path


def numbers(obj: object, path: str = "") -> dict[str, float]:
    """Every number and boolean of a JSON document by its path (``a.b[3].c``)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(numbers(value, f"{path}.{key}"))
    elif isinstance(obj, list):
        for k, value in enumerate(obj):
            out.update(numbers(value, f"{path}[{k}]"))
    elif isinstance(obj, bool | int | float) and obj is not None:
        out[path] = float(obj)
    return out


def _run(name: str, out: Path, tmp: Path) -> dict:
    overrides = [o.format(table=tmp / "planted.csv", tmp=tmp) for o in RUNS[name]]
    if name == "generic_table":
        planted_table(tmp / "planted.csv")
    cmd = [sys.executable, str(REPO / "scripts" / "run_experiment.py"), *overrides, "paths.cache=null"]
    proc = subprocess.run(
        [*cmd, f"hydra.run.dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=1200, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def _compare(got: dict[str, float], want: dict[str, float], what: str) -> None:
    missing = sorted(set(want) - set(got))
    assert not missing, f"{what}: numbers gone from results.json: {missing[:10]}"
    differ = [
        f"{key}: {want[key]!r} -> {got[key]!r}"
        for key in sorted(want)
        if not (
            (math.isnan(want[key]) and math.isnan(got[key]))
            or abs(got[key] - want[key]) <= TOLERANCE * max(1.0, abs(want[key]))
        )
    ]
    assert not differ, f"{what}: {len(differ)} number(s) changed: {differ[:10]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_results_equal_the_recorded_ones(name: str, tmp_path: Path) -> None:
    results = _run(name, tmp_path / "run", tmp_path)
    golden = GOLDEN / f"{name}.json"
    if RECORD:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(numbers(results), indent=0, sort_keys=True))
        if name == "demo":
            _record_annotations(tmp_path)
    if not golden.is_file():
        pytest.fail(f"{golden} is missing: record it with RECORD_GOLDEN=1")
    _compare(numbers(results), json.loads(golden.read_text()), name)
    if name == "demo":
        _compare_annotations(tmp_path)


def _annotation_folder(tmp: Path) -> Path:
    (folder,) = (tmp / "outputs" / "annotations").iterdir()
    return folder


def _record_annotations(tmp: Path) -> None:
    from vision.store import read_annotations

    images, faces = read_annotations(_annotation_folder(tmp))
    images.to_parquet(GOLDEN / "annotations_images.parquet")
    faces.to_parquet(GOLDEN / "annotations_faces.parquet")


def _compare_annotations(tmp: Path) -> None:
    from vision.store import read_annotations

    images, faces = read_annotations(_annotation_folder(tmp))
    _equal_tables(images, pd.read_parquet(GOLDEN / "annotations_images.parquet"), "images")
    _equal_tables(faces, pd.read_parquet(GOLDEN / "annotations_faces.parquet"), "faces")


def _equal_tables(got: pd.DataFrame, want: pd.DataFrame, what: str) -> None:
    """Same rows and columns; ids, statuses and counts exact, floats and vectors to 1e-5 (float32 arithmetic whose
    summation order may follow torch's thread count)."""
    assert list(got.columns) == list(want.columns) and len(got) == len(want), what
    for column in want.columns:
        a, b = got[column], want[column]
        if b.map(lambda v: isinstance(v, np.ndarray)).any():
            for x, y in zip(a, b, strict=True):
                assert (x is None) == (y is None), (what, column)
                assert x is None or np.allclose(x, y, rtol=1e-5, atol=1e-5), (what, column)
        elif pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-5, atol=1e-5, equal_nan=True)
        else:
            assert a.equals(b), (what, column)
