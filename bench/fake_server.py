"""The benchmark's provider: the tests' fake, plus a request counter and no body log.

``judge.testing.FakeProvider`` keeps every request body (tests inspect them); at 100k
requests that is a memory leak in the fake, not in the client. This subclass counts
requests instead; the fake's ``GET /stats`` (``{"requests": n}``) serves that count, so
the cache benchmark can prove a rerun makes no call. Replies (default verdicts, latency) are
the fake's own.

Run it in its own process so its CPU is not charged to the client being measured::

    python bench/fake_server.py --port 8901 --latency-ms 200
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

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
