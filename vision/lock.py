"""One writer per annotation output folder.

Two runs writing one folder (a retry started while the first still runs, two sweep jobs with the same output)
would number their parts from the same index, delete each other's unfinished parts on start-up and duplicate rows.
:class:`OutputLock` is an exclusive OS-level lock (``filelock``: ``flock`` on POSIX) on ``OUTPUT/.annotate.lock``,
held for the whole run. The OS drops it when the holder exits, however it exits (kill -9 included), so a lock is
never stale. Who holds it is written beside it (``.annotate.lock.holder``), for the message the second run shows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

LOCK_NAME = ".annotate.lock"
HOLDER_NAME = ".annotate.lock.holder"


class OutputLockedError(RuntimeError):
    """Another run holds the output folder's lock; the message names it."""


class OutputLock:
    """Exclusive lock on an output folder, as a context manager.

    Parameters
    ----------
    folder : path-like
        The output folder (created if missing).
    timeout : float
        Seconds to wait for another run to finish: 0 fails at once (the default a user gets: two writers are almost
        always a mistake), a negative value waits for as long as it takes.
    """

    def __init__(self, folder: str | os.PathLike, timeout: float = 0.0):
        self.folder = Path(folder)
        self.timeout = float(timeout)
        self._lock: FileLock | None = None

    def acquire(self) -> OutputLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.folder / LOCK_NAME, timeout=self.timeout if self.timeout >= 0 else -1)
        if self.timeout != 0:
            log.info("waiting for the lock on %s (timeout %s s)", self.folder, self.timeout)
        try:
            lock.acquire()
        except Timeout:
            raise OutputLockedError(self._locked_message()) from None
        self._lock = lock
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        holder["command"] = " ".join(sys.argv[:1] + [a for a in sys.argv[1:] if len(a) < 200])[:500]
        (self.folder / HOLDER_NAME).write_text(json.dumps(holder))
        return self

    def release(self) -> None:
        if self._lock is not None:
            (self.folder / HOLDER_NAME).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def _locked_message(self) -> str:
        try:
            holder = json.loads((self.folder / HOLDER_NAME).read_text())
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
        except (OSError, ValueError, KeyError):
            who = "a process that has not recorded itself yet"
        return (
            f"output folder {self.folder} is being written by another run ({who}). Wait for it to finish, choose "
            "another output folder, or set vision.lock_timeout=SECONDS (-1: no limit) to wait for it"
        )

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
