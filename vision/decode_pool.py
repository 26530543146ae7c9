"""Decoding image files in worker processes with a bounded window, so memory stays flat whatever the folder size.

:class:`DecodeStream` starts its worker processes and queues the first files the moment it is made, so the workers
start (spawn, imports) and decode while the caller is still loading its models; iterating it yields the results
in file order.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from vision.io import DecodedImage, ImageDecodeError, decode_or_error

__all__ = ["DecodeStream", "decode_stream"]


def _init_decoder_worker(parent_pid: int) -> None:
    import signal
    import threading

    import cv2

    cv2.setNumThreads(1)
    # Ctrl-C reaches the whole process group: the parent decides how to stop, the worker must not print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A parent killed with SIGKILL cannot shut the pool down; without this the worker (and multiprocessing's
    # resource tracker, which waits for it) lingers for minutes.
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent_pid: int, interval: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


class DecodeStream:
    """Decode ``paths`` in order, in ``num_workers`` processes (0: in this process, lazily), at most ``prefetch``
    files ahead of the consumer.

    The pool is started and the first ``prefetch`` files are queued in the constructor, without waiting for any
    of them. Every failure comes back as an :class:`~vision.io.ImageDecodeError` in the file's place. When the
    consumer stops early (an exception, Ctrl-C, :meth:`close`), queued work is cancelled and the workers are
    stopped at once.

    Attributes
    ----------
    wait_seconds : float
        Time the consumer spent blocked on a result (decoding that the workers did not hide).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        num_workers: int,
        max_pixels: int,
        max_long_side: int | None,
        prefetch: int = 8,
    ):
        self.paths = [str(p) for p in paths]
        self.num_workers = int(num_workers)
        self.max_pixels = max_pixels
        self.max_long_side = max_long_side
        self.window_size = max(int(prefetch), self.num_workers, 1)
        self.wait_seconds = 0.0
        self._next = 0
        self._window: deque[Future] = deque()
        self._pool: ProcessPoolExecutor | None = None
        if self.num_workers > 0 and self.paths:
            # spawn, not fork: the parent holds torch's thread pools, which do not survive fork.
            self._pool = ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=get_context("spawn"),
                initializer=_init_decoder_worker,
                initargs=(os.getpid(),),
            )
            self._fill()

    def _fill(self) -> None:
        while self._next < len(self.paths) and len(self._window) < self.window_size:
            path = self.paths[self._next]
            self._window.append(self._pool.submit(decode_or_error, path, self.max_pixels, self.max_long_side))
            self._next += 1

    def __iter__(self) -> Iterator[DecodedImage | ImageDecodeError]:
        if self._pool is None:
            for path in self.paths:
                started = time.perf_counter()
                result = decode_or_error(path, self.max_pixels, self.max_long_side)
                self.wait_seconds += time.perf_counter() - started
                yield result
            return
        finished = False
        try:
            while self._window:
                started = time.perf_counter()
                result = self._window.popleft().result()
                self.wait_seconds += time.perf_counter() - started
                self._fill()
                yield result
            finished = True
        finally:
            self._stop(graceful=finished)

    def close(self) -> None:
        """Stop the workers now, cancelling queued files (a no-op once the stream was read to its end)."""
        self._stop(graceful=False)

    def _stop(self, *, graceful: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            _stop_pool(pool, graceful=graceful)

    def __del__(self) -> None:  # a stream dropped unread must not leave processes behind
        self._stop(graceful=False)


def decode_stream(
    paths: Sequence[Path], *, num_workers: int, max_pixels: int, max_long_side: int | None, prefetch: int = 8
) -> Iterator[DecodedImage | ImageDecodeError]:
    """Generator form of :class:`DecodeStream` (the pool starts on the first ``next``)."""
    stream = DecodeStream(
        paths, num_workers=num_workers, max_pixels=max_pixels, max_long_side=max_long_side, prefetch=prefetch
    )
    try:
        yield from stream
    finally:
        stream.close()


def _stop_pool(pool: ProcessPoolExecutor, *, graceful: bool) -> None:
    if graceful:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:  # a worker mid-decode of a huge file would otherwise finish it first
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
