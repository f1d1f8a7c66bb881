"""The lifecycle the threaded loopback fakes share: start on a free port, close cleanly.

A fake subclasses ``LoopbackFake``, passing its handler class (a ``LoopbackHandler``);
``close`` unblocks handlers parked on ``closing``, drops live keep-alive connections and
waits for the handler threads, so a test's server never outlives it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

_Fake = TypeVar("_Fake", bound="LoopbackFake")


class LoopbackFake:
    def __init__(self, handler: type[LoopbackHandler]) -> None:
        self.handler = handler
        self.lock = threading.RLock()
        self.url = ""
        self._closing = threading.Event()
        self._conns: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self: _Fake) -> _Fake:
        if self._httpd is not None:
            return self
        self._closing.clear()
        self._httpd = _Server(self)
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def wake_handlers(self) -> None:
        """Called on close, after ``_closing`` is set: wake handlers waiting on anything else."""

    def close(self) -> None:
        if self._httpd is None:
            return
        self._closing.set()
        self.wake_handlers()
        self._httpd.shutdown()
        with self.lock:
            conns = list(self._conns)
            threads = list(self._handler_threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self: _Fake) -> _Fake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: LoopbackFake) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), fake.handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet
        pass


class LoopbackHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, quiet, and known to its fake while it serves a connection."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        fake = self.server.fake
        with fake.lock:
            fake._conns.add(self.connection)
            fake._handler_threads.add(threading.current_thread())

    def finish(self) -> None:
        fake = self.server.fake
        with fake.lock:
            fake._conns.discard(self.connection)
            fake._handler_threads.discard(threading.current_thread())
        with contextlib.suppress(OSError):
            super().finish()
