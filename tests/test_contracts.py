"""The data contracts of docs/ARCHITECTURE.md against what the code really writes.

The document's tables are parsed (column, Arrow type and nullability of the annotation tables; top-level and
nested keys of results.json; keys of metrics.json) and compared with real outputs: the schemas of a
``BatchAnnotator`` with colour features on, the Parquet parts of the default annotator on two sample images, a
detector evaluation of those, and a small simulator run of ``causal.pipeline.run`` with every step. A column or key
added, removed, renamed or retyped without updating the document fails here.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ARCHITECTURE.md"
SAMPLE = REPO / "assets_sample"

IMAGES_HEADING = "### Images table (`images/part-*.parquet`)"
FACES_HEADING = "### Faces table (`faces/part-*.parquet`)"
METRICS_HEADING = "### Detector metrics (`metrics.json`)"
RESULTS_HEADING = "### results.json: top-level keys"
BLOCKS_HEADING = "### results.json: keys inside the contract blocks"

_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "float32": pa.float32(),
    "float64": pa.float64(),
}


# ---------------------------------------------------------------------------------------------- reading the document
def doc_table(heading: str) -> list[dict[str, str]]:
    """The first Markdown table under ``heading``: one dict per row, header cells as keys, backticks stripped."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"{DOC.name} has no heading {heading!r}"
    rows: list[list[str]] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip().replace("`", "") for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"{DOC.name}: no table under {heading!r}"
    header, body = rows[0], rows[2:]  # rows[1] is the | --- | separator
    return [dict(zip(header, row, strict=True)) for row in body]


def arrow_type(text: str) -> pa.DataType:
    """``"float64"`` -> ``pa.float64()``, ``"list<float32>"`` -> ``pa.list_(pa.float32())``."""
    match = re.fullmatch(r"list<(\w+)>", text)
    name = match.group(1) if match else text
    assert name in _TYPES, f"{DOC.name}: unknown Arrow type {text!r} (known: {sorted(_TYPES)}, list<...>)"
    return pa.list_(_TYPES[name]) if match else _TYPES[name]


def doc_schema(heading: str) -> list[tuple[str, pa.DataType, bool]]:
    out = []
    for row in doc_table(heading):
        assert row["nullable"] in ("yes", "no"), row
        out.append((row["column"], arrow_type(row["Arrow type"]), row["nullable"] == "yes"))
    return out


def check_schema(schema: pa.Schema, heading: str) -> None:
    """Same columns in the same order, each with the documented Arrow type and nullability."""
    documented = doc_schema(heading)
    names = [name for name, _, _ in documented]
    undocumented = [n for n in schema.names if n not in names]
    not_written = [n for n in names if n not in schema.names]
    assert schema.names == names, f"{heading}: undocumented {undocumented}, not written {not_written} (or order)"
    for field, (name, dtype, nullable) in zip(schema, documented, strict=True):
        assert field.type.equals(dtype), f"{name}: written as {field.type}, documented as {dtype}"
        assert field.nullable == nullable, f"{name}: nullable={field.nullable}, documented {nullable}"


def listed_keys(text: str) -> list[str]:
    """``"intro: a, b, c {x, y}"`` -> ``["a", "b", "c"]``: a documented key list, nested braces left out."""
    text = re.sub(r"\{[^}]*\}", "", text).split(":", 1)[-1]
    return [key.strip() for key in text.split(",")]


def doc_keys(heading: str, column: str = "key") -> list[str]:
    return [row[column] for row in doc_table(heading)]


# ------------------------------------------------------------------------------- the annotation tables, no models
@dataclass
class _Faces:
    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


class _OneFaceDetector:
    """A stand-in with the detector interface: one face in the middle of every image (no torch, no weights)."""

    def detect(self, images):
        out = []
        for image in images:
            h, w = image.shape[:2]
            box = np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], dtype=np.float32)
            marks = np.tile(np.array([w / 2, h / 2], dtype=np.float32), (1, 5, 1))
            out.append(_Faces(box, np.array([0.99], dtype=np.float32), marks))
        return out


class _Embedder:
    dim = 4

    def embed(self, image, detections):
        vectors = np.ones((len(detections), self.dim), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _fake_annotator():
    from vision.annotate import BatchAnnotator
    from vision.image_features import color_features

    return BatchAnnotator(detector=_OneFaceDetector(), embedder=_Embedder(), color_features=color_features)


def test_annotator_schemas_match_the_document():
    annotator = _fake_annotator()
    check_schema(annotator.images_schema_, IMAGES_HEADING)
    check_schema(annotator.faces_schema_, FACES_HEADING)


def test_documented_colour_columns_are_color_features():
    from vision.image_features import COLOR_FEATURES, color_features

    documented = [name for name, _, _ in doc_schema(IMAGES_HEADING) if name.startswith("img_")]
    assert documented == list(COLOR_FEATURES) == list(color_features(np.zeros((8, 8, 3), dtype=np.uint8)))


def _check_folder(out: Path, *, complete_marker: bool) -> None:
    """Layout, schemas and key-value metadata of an annotation output folder."""
    from vision.store import FILES_KEY, SPEC_KEY

    names = {p.name for p in out.iterdir()}
    expected = {"images", "faces", "annotation_spec.json", ".annotate.lock"}
    assert expected <= names, names
    assert ("annotate_complete.json" in names) == complete_marker
    spec = json.loads((out / "annotation_spec.json").read_text())
    assert set(spec) == {"hash", "spec"}
    assert {"detector", "embedder", "max_pixels", "max_long_side"} <= set(spec["spec"])
    if complete_marker:  # made from a config node (a BatchAnnotator built in code records its model classes)
        assert "image_features" in spec["spec"]
    image_parts = sorted((out / "images").glob("part-*.parquet"))
    face_parts = sorted((out / "faces").glob("part-*.parquet"))
    assert image_parts and [p.name for p in face_parts] == [p.name for p in image_parts]
    for part in image_parts:
        assert re.fullmatch(r"part-\d{6}\.parquet", part.name)
        schema = pq.read_schema(part)
        check_schema(schema, IMAGES_HEADING)
        meta = schema.metadata or {}
        assert meta[SPEC_KEY].decode() == spec["hash"]
        files = json.loads(meta[FILES_KEY])
        ids = pq.read_table(part, columns=["image_id"]).column("image_id").to_pylist()
        assert sorted(files) == sorted(ids)
        assert all(isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v) for v in files.values())
    for part in face_parts:
        schema = pq.read_schema(part)
        check_schema(schema, FACES_HEADING)
        assert not {FILES_KEY, SPEC_KEY} & set(schema.metadata or {})


def _check_rows(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The documented meanings that hold on every folder: error rows, nulls, ranges."""
    from vision.store import read_annotations

    images, faces = read_annotations(out)
    assert set(images["status"]) <= {"ok", "error"}
    errors = images[images["status"] == "error"]
    ok = images[images["status"] == "ok"]
    feature_columns = [c for c in images.columns if c not in ("image_id", "status", "error")]
    assert errors["error"].notna().all() and errors[feature_columns].isna().all().all()
    assert ok["error"].isna().all() and ok["face_present"].notna().all()
    assert (ok["face_count"] == faces.groupby("image_id").size().reindex(ok["image_id"], fill_value=0).values).all()
    no_face = ok[ok["face_count"] == 0]
    assert (no_face[["face_area_mean", "face_area_max", "face_area_total"]] == 0).all().all()
    assert no_face[["face_prob_max", "largest_face_cx", "largest_face_cy"]].isna().all().all()
    assert set(faces["image_id"]) <= set(ok["image_id"])
    assert faces["landmarks"].map(len).eq(10).all()
    return images, faces


def test_folder_written_with_a_stand_in_detector_matches_the_document(tmp_path):
    from vision.annotate import annotate_folder

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(src / "sub" / "b.jpg")
    (src / "broken.png").write_bytes(b"<html>404</html>")
    out = tmp_path / "out"
    summary = annotate_folder(src, out, _fake_annotator(), batch_size=2, part_size=2, num_workers=0)
    assert (summary.ok, summary.errors) == (2, 1)
    _check_folder(out, complete_marker=False)
    images, faces = _check_rows(out)
    assert sorted(images["image_id"]) == ["a.png", "broken.png", "sub/b.jpg"]
    assert len(faces) == 2


# ------------------------------------------------------------------------- the real default annotator and metrics
REAL_IDS = ("photos/skimage_astronaut.png", "keyart/keyart_00_portrait_noface.jpg")


@pytest.fixture(scope="module")
def real_annotations(tmp_path_factory):
    """The default vision config (YuNet, SFace, colour features, EfficientNet-Lite0) on two sample images and a
    broken file, through run_experiment's annotate step (which also writes annotate_complete.json)."""
    from hydra import compose, initialize_config_dir

    from vision.stages import annotate_stage

    missing = [i for i in REAL_IDS if not (SAMPLE / "images" / i).is_file()]
    assert not missing, f"assets_sample lost {missing} (shipped test images)"
    root = tmp_path_factory.mktemp("contracts")
    src = root / "images"
    for image_id in REAL_IDS:
        (src / image_id).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / "images" / image_id, src / image_id)
    (src / "broken.jpg").write_bytes(b"not an image")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="annotate", overrides=[f"input={src}", f"output={root / 'ann'}"])
    summary = annotate_stage(cfg.vision, src, root / "ann")
    assert (summary["ok"], summary["errors"]) == (2, 1) and summary["faces"] >= 1
    return root


@pytest.mark.slow
def test_default_annotator_output_matches_the_document(real_annotations):
    out = real_annotations / "ann"
    _check_folder(out, complete_marker=True)
    marker = json.loads((out / "annotate_complete.json").read_text())
    assert set(marker) == {"input", "listing", "spec", "summary"}
    images, faces = _check_rows(out)
    ok = images[images["status"] == "ok"]
    assert ok["image_embedding"].map(len).eq(1280).all()
    with_face = ok[ok["face_count"] > 0]
    assert len(with_face) and with_face["face_embedding_mean"].map(len).eq(128).all()
    assert faces["embedding"].map(len).eq(128).all()
    assert ((faces["prob"] >= 0) & (faces["prob"] <= 1)).all()


@pytest.mark.slow
def test_evaluation_metrics_keys_match_the_document(real_annotations):
    from vision.stages import evaluate_stage

    labels = pd.read_csv(SAMPLE / "labels.csv")
    labels = labels[labels["image_id"].isin(REAL_IDS)]
    labels_path = real_annotations / "labels.csv"
    labels.to_csv(labels_path, index=False)
    out = real_annotations / "evaluation"
    evaluate_stage(labels_path, real_annotations / "ann", out, group_by=("style", "domain"))
    metrics = json.loads((out / "metrics.json").read_text())
    rows = doc_table(METRICS_HEADING)
    script_only = {r["key"] for r in rows if "evaluate command only" in r["contents"]}
    documented = [r["key"] for r in rows if r["key"] not in script_only]
    expected = [k for k in documented if k != "by_<column>"] + ["by_style", "by_domain"]
    assert sorted(metrics) == sorted(expected)
    contents = {r["key"]: r["contents"] for r in rows}
    for block in ("face_level", "image_level"):
        assert set(listed_keys(contents[block])) == set(metrics[block]), block
        for group in metrics["by_style"].values():
            assert set(group[block]) == set(metrics[block])


# --------------------------------------------------------------------------------------------------- results.json
# Every step, every analysis, a compared estimator: each documented key but `errors` appears (see the run below).
_RUN = [
    "data.n_titles=100",
    "nuisance=xgboost",
    "nuisance.folds=3",
    "nuisance.classifier.n_estimators=60",
    "nuisance.regressor.n_estimators=60",
    "estimator=linear_dml",
    "dml.compare=[{name: causal_forest, n_estimators: 40}]",
    "steps=[screening,overlap,dml,mediation,sensitivity,methods,calibration,discover]",
    "data.explore_share=0.1",
    "data.randomised_column=explore",
    "+discover.features=[face_present,img_brightness]",  # the funnel's keys, on two columns
    "mediation.n_boot=50",
    "sensitivity.analyses=[e_value,ovb,dml,refutations,misclassification,rosenbaum]",
    "sensitivity.refutations.n_sims=2",
    "sensitivity.misclassification.sensitivity=0.95",
    "sensitivity.misclassification.specificity=0.97",
    "sensitivity.misclassification.n_draws=200",
]


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    from causal.pipeline import run

    out = tmp_path_factory.mktemp("results")
    results = run(_compose(_RUN), out)
    written = json.loads((out / "results.json").read_text())
    assert list(written) == list(results)
    return written


def test_contract_order_is_the_documented_order():
    from causal.report import CONTRACT_ORDER

    assert doc_keys(RESULTS_HEADING)[: len(CONTRACT_ORDER)] == list(CONTRACT_ORDER)


@pytest.mark.slow
def test_results_keys_match_the_document(full_run):
    rows = doc_table(RESULTS_HEADING)
    documented = [r["key"] for r in rows]
    assert not set(full_run) - set(documented), "undocumented top-level key(s) in results.json"
    # errors: only a failed step; naive_trimmed: only when trimming applies (estimand=ate_overlap; checked by
    # tests/test_report_answers.py::test_pipeline_naive_uses_all_units_when_trimming_applies).
    conditional = {"errors", "naive_trimmed"}
    assert set(documented) - set(full_run) == conditional, "documented key(s) this full run no longer writes"
    always = {r["key"] for r in rows if r["present when"] == "always"}
    assert always <= set(full_run)
    kinds = {"number": (int, float), "string": str, "object": dict, "array": list}
    for row in rows:
        if row["key"] in full_run:
            assert isinstance(full_run[row["key"]], kinds[row["JSON type"]]), row["key"]


def _block(results: dict, path: str):
    """``cate_by_group[column][i]`` -> the first row of the first column, ``sensitivity.linear`` -> nested, ..."""
    node = results
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        if part.startswith("["):
            node = node[0] if isinstance(node, list) else next(iter(node.values()))
        else:
            node = node[part]
    return node


@pytest.mark.slow
def test_contract_blocks_hold_the_documented_keys(full_run):
    for row in doc_table(BLOCKS_HEADING):
        if row["block"].startswith("errors"):
            continue  # checked on a failing run below
        keys = listed_keys(row["keys"])
        block = _block(full_run, row["block"])
        assert isinstance(block, dict), row["block"]
        missing = [k for k in keys if k not in block]
        assert not missing, f"{row['block']}: documented key(s) {missing} not written"
    assert full_run["mediation"]["verdict"] in ("full", "partial", "none")


def test_errors_entry_matches_the_document(tmp_path, monkeypatch):
    from causal import pipeline

    def failing(ctx):
        raise RuntimeError("boom")

    monkeypatch.setitem(pipeline.STEPS, "screening", failing)
    results = pipeline.run(_compose(["data.n_titles=20", "steps=[screening]"]), tmp_path)
    documented = {r["block"]: r["keys"] for r in doc_table(BLOCKS_HEADING)}
    keys = listed_keys(documented["errors[i]"])
    assert [list(e) for e in results["errors"]] == [keys]
    assert results["errors"][0]["step"] == "screening" and results["errors"][0]["type"] == "RuntimeError"
    assert "errors" in doc_keys(RESULTS_HEADING)


# ------------------------------------------------------------------------------------------------ dependency rule
def _imports(package: str) -> dict[str, set[str]]:
    """Top-level module names each file of ``package`` imports, at any depth of the file (lazy imports too)."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[path.relative_to(REPO).as_posix()] = names
    return found


def test_dependency_rule():
    assert "## Dependency rule" in DOC.read_text(encoding="utf-8")
    for path, names in _imports("vision").items():
        assert not names & {"causal", "scripts"}, f"{path} imports {names & {'causal', 'scripts'}}"
    for path, names in _imports("causal").items():
        assert not names & {"vision", "torch", "scripts"}, f"{path} imports {names & {'vision', 'torch', 'scripts'}}"


def _module_level_imports() -> dict[str, set[str]]:
    """First-party modules each module of vision/ and causal/ imports at import time (module level, not in
    functions: a lazy import inside a function cannot make an import circle)."""
    graph: dict[str, set[str]] = {}
    for package in ("vision", "causal"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            deps = set()
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Import):
                    deps |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    deps.add(node.module)
            graph[name] = {d for d in deps if d.split(".")[0] in ("vision", "causal")}
    return graph


def test_no_import_circles():
    graph = _module_level_imports()
    assert len(graph) > 40  # the walk found the packages
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                raise AssertionError(f"import circle: {' -> '.join([*path, name, dep])}")
            if dep in graph and dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
