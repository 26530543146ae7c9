"""The annotation output folder: atomic Parquet parts, content-keyed resume, and reading the tables back.

Layout::

    OUTPUT/images/part-000000.parquet   one row per image file (the commit record of its part)
    OUTPUT/faces/part-000000.parquet    one row per detected face of the same images
    OUTPUT/annotation_spec.json         the vision settings that shaped the rows (for people; parts carry its hash)

A part is written under a hidden temporary name and renamed into place (atomic on POSIX), faces part first, images
part second. Each images part carries, in its Parquet key-value metadata, the fingerprint ``[size, mtime_ns]`` of
every file it has a row for and the hash of the vision settings it was made with. On start (under the folder's
lock, :mod:`vision.lock`), :meth:`PartWriter.prepare` compares them with the folder as it is now:

- a file whose size or mtime changed is re-annotated and its old rows (image and faces) are removed;
- a file that is no longer there has its rows removed (they describe artwork that is gone);
- a row repeated in a later part (folders written by two runs at once before the lock existed) is removed;
- parts written without fingerprints (an older version) are re-annotated;
- parts made with other vision settings stop the run before any work: rows from two configs never mix.

Parts holding such rows are rewritten without them, faces part first, so a crash at any point leaves rows that the
next start removes again; nothing is ever duplicated. Settings that do not change the rows (device, batch size,
part size, workers, threads) are not in the hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

IMAGES_DIR = "images"
FACES_DIR = "faces"
SPEC_FILE = "annotation_spec.json"
FILES_KEY = b"creative_insights.files"
SPEC_KEY = b"creative_insights.spec_hash"
_PART_RE = re.compile(r"^part-(\d{6})\.parquet$")


class AnnotationError(RuntimeError):
    """A problem with the run as a whole (input or output folder), raised before any image is processed."""


def spec_hash(spec: Mapping[str, Any]) -> str:
    """A short, stable hash of the row-shaping settings."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ResumeReport:
    """What :meth:`PartWriter.prepare` found in an existing output folder (image ids)."""

    kept: set[str] = field(default_factory=set)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    duplicates: int = 0
    unfingerprinted: int = 0


@dataclass
class _Part:
    name: str
    ids: list[str]
    files: dict[str, list[int]] | None  # None: written without fingerprints
    spec: str | None


class PartWriter:
    """Writes numbered Parquet parts under ``OUTPUT/images`` and ``OUTPUT/faces`` and knows what is already there.

    Parameters
    ----------
    output : path-like
        The output folder. The caller holds its lock (:class:`vision.lock.OutputLock`).
    images_schema, faces_schema : pa.Schema or None
        Table schemas; may be set later (the Ray runner learns them from its first actor), before :meth:`write`.
    """

    def __init__(self, output: str | os.PathLike, images_schema: pa.Schema | None, faces_schema: pa.Schema | None):
        self.output = Path(output)
        self.images_schema = images_schema
        self.faces_schema = faces_schema
        self.images_dir = self.output / IMAGES_DIR
        self.faces_dir = self.output / FACES_DIR
        self.fingerprints: dict[str, tuple[int, int]] = {}
        self.spec_hash: str | None = None
        self.write_seconds = 0.0
        self._next_index = 0

    def prepare(
        self, fingerprints: Mapping[str, tuple[int, int]] | None = None, spec: Mapping[str, Any] | None = None
    ) -> ResumeReport:
        """Create the folders, clean leftovers of killed runs, and reconcile the parts with the input folder.

        Parameters
        ----------
        fingerprints : mapping image_id -> (size, mtime_ns), optional
            Every file in the input folder now (:func:`vision.io.file_fingerprint`). None trusts names alone (no
            changed or deleted files are detected): only for callers that have no input folder.
        spec : mapping, optional
            The row-shaping settings (:func:`vision.annotate.annotation_spec`). Parts made under another spec stop
            the run with :class:`AnnotationError`.

        Returns
        -------
        ResumeReport
            ``kept`` are the ids whose rows stay and are not annotated again.
        """
        self._check_writable()
        self._clean_leftovers()
        self.fingerprints = dict(fingerprints) if fingerprints is not None else {}
        self.spec_hash = spec_hash(spec) if spec is not None else None
        parts = [self._read_part(p) for p in self._parts(self.images_dir)]
        if spec is not None:
            self._check_spec(parts, spec)
        report, stale = _reconcile(parts, fingerprints)
        for part in parts:
            if part.name in stale:
                self._drop_rows(part, stale[part.name])
        if spec is not None:
            (self.output / SPEC_FILE).write_text(json.dumps({"hash": self.spec_hash, "spec": spec}, indent=2))
        self._next_index = 1 + max((int(_PART_RE.match(p.name).group(1)) for p in parts), default=-1)
        return report

    def _check_writable(self) -> None:
        try:
            for folder in (self.images_dir, self.faces_dir):
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".write-probe-{os.getpid()}"
                probe.write_bytes(b"")
                probe.unlink()
        except OSError as err:
            raise AnnotationError(f"cannot write to output folder {self.output}: {err.strerror or err}") from err

    def _clean_leftovers(self) -> None:
        for folder in (self.images_dir, self.faces_dir):
            for leftover in folder.glob(".part-*.tmp"):
                log.info("removing unfinished part of an interrupted run: %s", leftover)
                leftover.unlink(missing_ok=True)
        committed = {p.name for p in self._parts(self.images_dir)}
        for faces_part in self._parts(self.faces_dir):
            if faces_part.name not in committed:
                log.info("removing faces part whose images part was never written: %s", faces_part)
                faces_part.unlink(missing_ok=True)

    def _read_part(self, path: Path) -> _Part:
        try:
            meta = pq.read_schema(path).metadata or {}
            ids = pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist()
        except (OSError, pa.ArrowException, KeyError) as err:
            raise AnnotationError(
                f"existing part {path} cannot be read ({err}); move it away or choose another output folder"
            ) from err
        files = json.loads(meta[FILES_KEY]) if FILES_KEY in meta else None
        spec = meta[SPEC_KEY].decode() if SPEC_KEY in meta else None
        return _Part(path.name, ids, files, spec)

    def _check_spec(self, parts: list[_Part], spec: Mapping[str, Any]) -> None:
        other = sorted({p.spec for p in parts if p.spec is not None and p.spec != self.spec_hash})
        if not other:
            return
        differences = "unknown (annotation_spec.json is missing)"
        try:
            before = json.loads((self.output / SPEC_FILE).read_text())["spec"]
            differences = "; ".join(_spec_differences(before, spec)) or differences
        except (OSError, ValueError, KeyError):
            pass
        raise AnnotationError(
            f"output folder {self.output} holds annotations made with other vision settings ({differences}). "
            "Rows from two configs must not mix: annotate into another output folder, or delete this one to redo it"
        )

    def _drop_rows(self, part: _Part, ids: set[str]) -> None:
        # Faces first: if we die between the two, the images part still lists the ids, and the next start drops
        # them again (they are still stale); the reverse order could leave orphan faces.
        emptied = all(i in ids for i in part.ids)
        for folder in (self.faces_dir, self.images_dir):
            path = folder / part.name
            if emptied:
                path.unlink(missing_ok=True)
                continue
            if not path.exists():
                continue
            table = pq.read_table(path)
            table = table.filter(pc.invert(pc.is_in(table.column("image_id"), value_set=pa.array(sorted(ids)))))
            if folder is self.images_dir and part.files is not None:
                metadata = {**(table.schema.metadata or {}), FILES_KEY: _files_json(part.files, exclude=ids)}
                table = table.replace_schema_metadata(metadata)
            self._write_atomic(table, path)
        log.info("%s: removed %d stale row(s)%s", part.name, len(ids), " (part deleted)" if emptied else "")

    @staticmethod
    def _parts(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if _PART_RE.match(p.name))

    def reserve(self, n: int) -> list[str]:
        """The names of the next ``n`` parts, for writers elsewhere (Ray actors) that call :func:`write_part`."""
        names = [f"part-{self._next_index + k:06d}.parquet" for k in range(n)]
        self._next_index += n
        return names

    def write(self, image_rows: list[dict[str, Any]], face_rows: list[dict[str, Any]]) -> Path:
        """Write one part pair atomically (faces first, images last: the images part commits the pair)."""
        started = time.perf_counter()
        (name,) = self.reserve(1)
        files = {r["image_id"]: list(self.fingerprints.get(r["image_id"], (-1, -1))) for r in image_rows}
        path = write_part(
            self.output, name, image_rows, face_rows, (self.images_schema, self.faces_schema), files, self.spec_hash
        )
        self.write_seconds += time.perf_counter() - started
        return path

    @staticmethod
    def _write_atomic(table: pa.Table, final: Path) -> None:
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)


def write_part(
    output: str | os.PathLike,
    name: str,
    image_rows: list[dict[str, Any]],
    face_rows: list[dict[str, Any]],
    schemas: tuple[pa.Schema, pa.Schema],
    files: Mapping[str, Any],
    spec_hash: str | None,
) -> Path:
    """Write the part pair ``name`` of an output folder atomically, faces first, images last (the commit record).

    Parameters
    ----------
    output : path-like
        The output folder (its ``images/`` and ``faces/`` exist: :meth:`PartWriter.prepare` made them).
    name : str
        ``part-NNNNNN.parquet``, reserved with :meth:`PartWriter.reserve` (or chosen by :meth:`PartWriter.write`).
    schemas : (images schema, faces schema)
    files : mapping image_id -> [size, mtime_ns]
        The fingerprint of every file with an images row here (``creative_insights.files``).
    spec_hash : str, optional
        The vision settings' hash (``creative_insights.spec_hash``).
    """
    if not _PART_RE.match(name):
        raise ValueError(f"part name {name!r} is not of the form part-NNNNNN.parquet")
    images_schema, faces_schema = schemas
    metadata = {FILES_KEY: _files_json(files)}
    if spec_hash is not None:
        metadata[SPEC_KEY] = spec_hash.encode()
    faces = pa.Table.from_pylist(face_rows, schema=faces_schema)
    images = pa.Table.from_pylist(image_rows, schema=images_schema.with_metadata(metadata))
    output = Path(output)
    PartWriter._write_atomic(faces, output / FACES_DIR / name)
    PartWriter._write_atomic(images, output / IMAGES_DIR / name)
    return output / IMAGES_DIR / name


def _files_json(files: Mapping[str, Any], exclude: set[str] = frozenset()) -> bytes:
    return json.dumps({k: v for k, v in files.items() if k not in exclude}, separators=(",", ":")).encode()


def _reconcile(
    parts: list[_Part], fingerprints: Mapping[str, tuple[int, int]] | None
) -> tuple[ResumeReport, dict[str, set[str]]]:
    """Which rows stay, and per part which ids to drop (changed, deleted, repeated, unfingerprinted)."""
    report = ResumeReport()
    stale: dict[str, set[str]] = {}
    for part in parts:
        for image_id in part.ids:
            why = _stale_reason(part, image_id, fingerprints, report.kept)
            if why is None:
                report.kept.add(image_id)
                continue
            stale.setdefault(part.name, set()).add(image_id)
            if why == "changed":
                report.changed.append(image_id)
            elif why == "deleted":
                report.deleted.append(image_id)
            elif why == "duplicate":
                report.duplicates += 1
            else:
                report.unfingerprinted += 1
    _log_report(report)
    return report, stale


def _stale_reason(
    part: _Part, image_id: str, fingerprints: Mapping[str, tuple[int, int]] | None, kept: set[str]
) -> str | None:
    if image_id in kept:
        return "duplicate"
    if fingerprints is None:
        return None
    if part.files is None:
        return "unfingerprinted"
    if image_id not in fingerprints:
        return "deleted"
    if tuple(part.files.get(image_id, (-1, -1))) != tuple(fingerprints[image_id]):
        return "changed"
    return None


def _log_report(report: ResumeReport) -> None:
    def some(ids: list[str]) -> str:
        return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")

    if report.changed:
        log.warning("%d file(s) changed since they were annotated, annotating again: %s", len(report.changed),
                    some(report.changed))  # fmt: skip
    if report.deleted:
        log.warning("%d file(s) no longer in the input folder, their rows removed: %s", len(report.deleted),
                    some(report.deleted))  # fmt: skip
    if report.duplicates:
        log.warning("%d repeated row(s) removed (written twice by concurrent runs)", report.duplicates)
    if report.unfingerprinted:
        log.warning("%d row(s) written by an older version without file fingerprints: annotating them again",
                    report.unfingerprinted)  # fmt: skip


def _spec_differences(before: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "vision.") -> list[str]:
    """``key: old -> new`` for every leaf that differs between two nested specs."""
    out = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _spec_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


_NULLABLE = {pa.bool_(): pd.BooleanDtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}


def read_annotations(output: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The images and faces tables of an annotation folder, with pandas types that keep their meaning.

    ``pandas.read_parquet`` turns a boolean or integer column with a null (an error row has no ``face_present``)
    into ``object`` or ``float64``, so ``images[images.face_present]`` raises. Here booleans become ``boolean`` and
    integers ``Int32``/``Int64`` (missing is ``pd.NA``; a mask treats it as False); everything else as pandas reads it.

    Returns
    -------
    images : DataFrame
        One row per file (``status`` ``ok`` or ``error``), ordered by ``image_id``.
    faces : DataFrame
        One row per detected face, ordered by ``image_id``, ``face_index``.
    """
    output = Path(output)
    for sub in (IMAGES_DIR, FACES_DIR):
        if not (output / sub).is_dir():
            raise FileNotFoundError(f"{output}: no {sub}/ folder; is this an annotation output folder?")
    images = pq.read_table(output / IMAGES_DIR).to_pandas(types_mapper=_NULLABLE.get)
    faces = pq.read_table(output / FACES_DIR).to_pandas(types_mapper=_NULLABLE.get)
    if "image_id" in images.columns:  # an output folder with no part yet reads as a table without columns
        images = images.sort_values("image_id", kind="stable").reset_index(drop=True)
    if "image_id" in faces.columns:
        faces = faces.sort_values(["image_id", "face_index"], kind="stable").reset_index(drop=True)
    return images, faces
