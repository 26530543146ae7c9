"""The output folder's resume bookkeeping (vision.store) without models: rows are plain dicts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vision.store import FILES_KEY, AnnotationError, PartWriter, read_annotations

IMAGES = pa.schema([pa.field("image_id", pa.string()), pa.field("status", pa.string()), pa.field("n", pa.int32())])
FACES = pa.schema([pa.field("image_id", pa.string()), pa.field("face_index", pa.int32())])
SPEC = {"detector": {"_target_": "d", "min_prob": 0.9}}


def _rows(ids: list[str]) -> tuple[list[dict], list[dict]]:
    return [{"image_id": i, "status": "ok", "n": 1} for i in ids], [{"image_id": i, "face_index": 0} for i in ids]


def _writer(tmp_path, fingerprints, spec=SPEC):
    writer = PartWriter(tmp_path, IMAGES, FACES)
    return writer, writer.prepare(fingerprints, spec)


def test_unchanged_rows_are_kept_and_fingerprints_recorded(tmp_path) -> None:
    files = {"a": (10, 1), "b": (20, 2)}
    writer, report = _writer(tmp_path, files)
    assert report.kept == set()
    writer.write(*_rows(["a", "b"]))
    meta = pq.read_schema(tmp_path / "images" / "part-000000.parquet").metadata
    assert FILES_KEY in meta and b'"a":[10,1]' in meta[FILES_KEY]
    _, again = _writer(tmp_path, files)
    assert again.kept == {"a", "b"} and not (again.changed or again.deleted)


def test_rows_repeated_by_concurrent_runs_of_an_older_version_are_removed(tmp_path) -> None:
    files = {"a": (10, 1), "b": (20, 2)}
    writer, _ = _writer(tmp_path, files)
    writer.write(*_rows(["a", "b"]))
    writer.write(*_rows(["b"]))  # what two unlocked runs left: b twice
    _, report = _writer(tmp_path, files)
    assert report.duplicates == 1 and report.kept == {"a", "b"}
    images, faces = read_annotations(tmp_path)
    assert sorted(images["image_id"]) == ["a", "b"] and sorted(faces["image_id"]) == ["a", "b"]
    assert not (tmp_path / "images" / "part-000001.parquet").exists()  # emptied part removed, with its faces twin
    assert not (tmp_path / "faces" / "part-000001.parquet").exists()


def test_parts_without_fingerprints_are_annotated_again(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "faces").mkdir()
    images, faces = _rows(["a"])
    pq.write_table(pa.Table.from_pylist(images, schema=IMAGES), tmp_path / "images" / "part-000000.parquet")
    pq.write_table(pa.Table.from_pylist(faces, schema=FACES), tmp_path / "faces" / "part-000000.parquet")
    _, report = _writer(tmp_path, {"a": (10, 1)})
    assert report.unfingerprinted == 1 and report.kept == set()
    assert not list((tmp_path / "images").glob("part-*"))


def test_a_crash_between_the_faces_and_images_rewrite_is_repaired_next_start(tmp_path, monkeypatch) -> None:
    writer, _ = _writer(tmp_path, {"a": (10, 1), "b": (20, 2)})
    writer.write(*_rows(["a", "b"]))
    real = PartWriter._write_atomic
    calls = []

    def die_on_images(table, final):
        calls.append(final.parent.name)
        if final.parent.name == "images":
            raise KeyboardInterrupt  # killed after the faces part was rewritten
        real(table, final)

    monkeypatch.setattr(PartWriter, "_write_atomic", staticmethod(die_on_images))
    with pytest.raises(KeyboardInterrupt):
        _writer(tmp_path, {"a": (10, 1), "b": (99, 3)})  # b changed
    monkeypatch.undo()
    assert calls == ["faces", "images"]
    _, report = _writer(tmp_path, {"a": (10, 1), "b": (99, 3)})
    assert report.changed == ["b"] and report.kept == {"a"}
    images, faces = read_annotations(tmp_path)
    assert images["image_id"].tolist() == ["a"] and faces["image_id"].tolist() == ["a"]


def test_other_settings_refuse_and_name_the_key(tmp_path) -> None:
    writer, _ = _writer(tmp_path, {"a": (10, 1)})
    writer.write(*_rows(["a"]))
    other = {"detector": {"_target_": "d", "min_prob": 0.5}}
    with pytest.raises(AnnotationError, match=r"vision\.detector\.min_prob: 0\.9 -> 0\.5"):
        _writer(tmp_path, {"a": (10, 1), "b": (1, 1)}, spec=other)


def test_read_annotations_gives_nullable_types(tmp_path) -> None:
    writer, _ = _writer(tmp_path, {"a": (10, 1), "bad": (0, 1)})
    writer.write([{"image_id": "a", "status": "ok", "n": 2}, {"image_id": "bad", "status": "error", "n": None}], [])
    images, faces = read_annotations(tmp_path)
    assert str(images["n"].dtype) == "Int32" and images["n"].isna().tolist() == [False, True]
    assert faces.empty
    with pytest.raises(FileNotFoundError, match="no images/ folder"):
        read_annotations(tmp_path / "nothing")
