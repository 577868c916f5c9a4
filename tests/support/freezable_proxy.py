"""A TCP forwarder in front of a real server that can *freeze*: what a stopped (SIGSTOP) or cut-off
server looks like from the network. While frozen, connections stay open and the kernel keeps
accepting and acknowledging bytes, but nothing is answered and new connections complete their TCP
handshake without ever being served. Thawing resumes every connection where it was."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FreezableProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = int(self._listener.getsockname()[1])
        self._running = threading.Event()  # set: forwarding; clear: frozen
        self._running.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def freeze(self) -> None:
        self._running.clear()

    def thaw(self) -> None:
        self._running.set()

    def close(self) -> None:
        self._closed.set()
        self._running.set()
        for sock in [self._listener, *self._sockets]:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            self._running.wait()
            ready, _, _ = select.select([self._listener], [], [], 0.05)
            if not ready or not self._running.is_set() or self._closed.is_set():
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._closed.is_set():
            self._running.wait()
            try:
                ready, _, _ = select.select([source], [], [], 0.05)
                if not ready or not self._running.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
            except (OSError, ValueError):  # closed under us (ValueError: select on fd -1)
                break
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def freezable_proxy(target: tuple[str, int]) -> Iterator[FreezableProxy]:
    proxy = FreezableProxy(target)
    try:
        yield proxy
    finally:
        proxy.close()
