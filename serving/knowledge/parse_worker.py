"""Untrusted files are parsed in a child process with a time and a memory budget: a file that
would take minutes or gigabytes (a decompression bomb past the size checks, a pathological PDF)
fails alone with `parse_timeout` / `parse_memory`, and the server and its other requests never
notice. The child is started once (spawned: no copy of the server's threads or models) and reused;
one that is killed is started again on the next file."""

from __future__ import annotations

import logging
import multiprocessing
import resource
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from serving.knowledge.parsers import DocumentError, ParsedDocument, ParseLimits

log = logging.getLogger(__name__)


def _serve(conn: Connection, memory_bytes: int) -> None:  # pragma: no cover - runs in the child
    from serving.knowledge.parsers import parse_document

    if memory_bytes > 0:  # the budget is on top of what the parsers' code itself takes
        limit = _address_space() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    conn.send(("ready",))
    while True:
        try:
            source, filename, limits = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[object, ...] = ("ok", parse_document(source, filename, limits=limits))
        except DocumentError as exc:
            reply = ("error", exc.reason, exc.message)
        except MemoryError:
            reply = ("error", "parse_memory", f"{filename}: needs more memory than parsing may use")
        except RecursionError:
            reply = ("error", "corrupt", f"{filename}: nested too deeply to parse")
        except Exception as exc:  # noqa: BLE001 - any parser bug is this file's failure alone
            reply = ("error", "corrupt", f"{filename}: could not be parsed ({type(exc).__name__})")
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("error", "parse_memory", f"{filename}: the result is too large"))


def _address_space() -> int:  # pragma: no cover - runs in the child
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


class IsolatedParser:
    """`parse(source, filename, limits)` like `parse_document`, in a budgeted child process."""

    _shared: dict[tuple[float, int], IsolatedParser] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, *, timeout_s: float, memory_mb: int) -> IsolatedParser:
        """One parser (one child process) per budget in this process, however many knowledge
        registries use it: the child starts once."""
        with cls._shared_lock:
            key = (timeout_s, memory_mb)
            if key not in cls._shared:
                cls._shared[key] = cls(timeout_s=timeout_s, memory_mb=memory_mb)
            return cls._shared[key]

    def __init__(self, *, timeout_s: float = 60.0, memory_mb: int = 1024) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_mb * 1024 * 1024
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    def parse(self, source: Path | bytes, filename: str, limits: ParseLimits) -> ParsedDocument:
        payload = source if isinstance(source, bytes) else str(source)
        with self._lock:
            conn = self._ensure()
            try:
                conn.send((payload, filename, limits))
                ready = conn.poll(self.timeout_s)
                reply = conn.recv() if ready else None
            except (EOFError, OSError, BrokenPipeError):
                self._stop()  # the child died mid-parse: the memory limit or a crash
                raise DocumentError(
                    "parse_memory", f"{filename}: parsing needed more memory than it may use"
                ) from None
            if reply is None:
                self._stop()
                raise DocumentError(
                    "parse_timeout", f"{filename}: parsing took longer than {self.timeout_s:g} s"
                )
        if reply[0] == "ok":
            document = reply[1]
            assert isinstance(document, ParsedDocument)
            return document
        raise DocumentError(reply[1], str(reply[2]))

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ensure(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._stop()
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, self.memory_bytes), name="document-parser", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        # Ready once its imports are done: the time budget is for parsing, not for starting.
        try:
            ready = parent.poll(120) and parent.recv() == ("ready",)
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._stop()
            raise DocumentError("parse_timeout", "the document parser did not start")
        return parent

    def _stop(self) -> None:
        process, self._process = self._process, None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)
