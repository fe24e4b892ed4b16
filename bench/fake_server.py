"""The benchmark's provider: the tests' fake, plus a request counter and no body log.

``judge.testing.FakeProvider`` keeps every request body (tests inspect them); at 100k
requests that is a memory leak in the fake, not in the client. This subclass counts
requests instead and serves the counter at ``GET /stats`` (``{"requests": n}``), so the
cache benchmark can prove a rerun makes no call. Replies (default verdicts, latency) are
the fake's own.

Run it in its own process so its CPU is not charged to the client being measured::

    python bench/fake_server.py --port 8901 --latency-ms 200
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any

from aiohttp import web

from judge.testing.fake_provider import FakeProvider, Reply


class CountingProvider(FakeProvider):
    """A :class:`FakeProvider` that counts requests rather than recording them."""

    def __init__(self, port: int = 0, latency_ms: float = 0.0):
        super().__init__(port=port, latency_ms=latency_ms)
        self.served = 0
        self._count_lock = threading.Lock()

    @property
    def count(self) -> int:
        return self.served

    def _next_reply(self, body: dict[str, Any]) -> Reply | None:
        # No script in benchmarks: every request gets the default verdict.
        with self._count_lock:
            self.served += 1
        return None

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.served, "latency_ms": self.latency_ms})

    async def _serve(self) -> None:
        # FakeProvider._serve plus the /stats route (routes are frozen once set up).
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for path in ("/v1/chat/completions", "/chat/completions"):
            app.router.add_post(path, self._handle)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, backlog=4096).start()


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; print the URL on the first line of stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = CountingProvider(port=args.port, latency_ms=args.latency_ms).start()
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
