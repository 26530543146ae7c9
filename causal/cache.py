"""A content-keyed cache of step outputs: reuse a step's files when its config and input files are unchanged.

A key is the SHA-256 of the step's name, its config (canonical JSON), a fingerprint of its input files (relative
path, size and modification time of every file under each input path) and a digest of the installed ``causal`` and
``vision`` sources (:func:`code_version`), so a result is reused only by the code that computed it: an upgrade or an
edit of the library recomputes instead of serving stale numbers. An entry is a folder
``<root>/<step>/<key>/`` holding copies of the files the step wrote; it is written to a temporary folder and renamed
into place, so a killed run never leaves a half entry that a later run would trust.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def fingerprint(paths: Iterable[str | os.PathLike | None]) -> list[list[Any]]:
    """``[path, relative file, size, mtime_ns]`` for every file under each path (a file or a folder); sorted.

    Missing paths appear as ``[path, None, -1, -1]`` so that creating them later changes the fingerprint.
    """
    rows: list[list[Any]] = []
    for raw in paths:
        if raw is None:
            continue
        root = Path(raw)
        if root.is_file():
            st = root.stat()
            rows.append([str(root), "", st.st_size, st.st_mtime_ns])
        elif root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
                st = path.stat()
                rows.append([str(root), path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns])
        else:
            rows.append([str(root), None, -1, -1])
    return rows


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of the ``causal`` and ``vision`` package sources as installed (their ``.py`` files, found without
    importing them)."""
    digest = hashlib.sha256()
    for name in ("causal", "vision"):
        spec = importlib.util.find_spec(name)
        for root in (spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(root).rglob("*.py")):
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(step: str, config: Any, inputs: Iterable[str | os.PathLike | None] = ()) -> str:
    """Hex SHA-256 of the step name, its config (JSON, sorted keys), the fingerprint of its input paths and the
    code's digest (:func:`code_version`)."""
    payload = {"step": step, "config": config, "inputs": fingerprint(inputs), "code": code_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class StepCache:
    """Step outputs kept under ``root`` by key.

    Parameters
    ----------
    root : path or None
        Cache folder; ``None`` disables caching (every lookup misses, nothing is stored).
    """

    def __init__(self, root: str | os.PathLike | None) -> None:
        self.root = root

    def entry(self, step: str, key: str) -> Path | None:
        """The entry folder of ``step`` / ``key`` (existing or not); None when caching is off."""
        return None if self.root is None else Path(self.root) / step / key

    def restore(self, step: str, key: str, out_dir: str | os.PathLike) -> bool:
        """Copy a stored entry's files into ``out_dir``; True on a hit."""
        entry = self.entry(step, key)
        if entry is None or not (entry / "_complete").is_file():
            return False
        out = Path(out_dir)
        for path in entry.rglob("*"):
            if path.is_file() and path.name != "_complete":
                target = out / path.relative_to(entry)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        log.info("step %s: reused cached output %s", step, entry)
        return True

    def store(
        self,
        step: str,
        key: str,
        out_dir: str | os.PathLike,
        files: Iterable[str],
        meta: Mapping[str, Any] | None = None,
    ) -> Path | None:
        """Copy ``files`` (relative to ``out_dir``; missing ones skipped) into the entry; return its folder."""
        entry = self.entry(step, key)
        if entry is None:
            return None
        tmp = entry.with_name(f".{key}.{uuid.uuid4().hex}.tmp")
        tmp.mkdir(parents=True)
        out = Path(out_dir)
        for name in files:
            source = out / name
            if source.is_file():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        (tmp / "_complete").write_text(json.dumps(dict(meta or {}), default=str))
        try:
            os.replace(tmp, entry)
        except OSError:  # a concurrent run stored the same key first: same inputs, same content
            shutil.rmtree(tmp, ignore_errors=True)
        return entry
