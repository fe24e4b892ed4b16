"""Test doubles at the boundary: a fake OpenAI-compatible provider.

``FakeProvider`` serves scripted or default verdicts on 127.0.0.1; the reply helpers
(``verdict``, ``rate_limit``, ``server_error``, ``hang``, ``drop``, ``invalid_json``,
``refusal``, ``content``) build its script. Run it standalone with
``python -m judge.testing.fake_provider --port P --latency-ms L``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from judge.testing.fake_provider import (  # noqa: F401
        FakeProvider,
        Reply,
        content,
        default_verdict,
        drop,
        hang,
        invalid_json,
        rate_limit,
        refusal,
        server_error,
        verdict,
    )

__all__ = [
    "FakeProvider",
    "Reply",
    "content",
    "default_verdict",
    "drop",
    "hang",
    "invalid_json",
    "rate_limit",
    "refusal",
    "server_error",
    "verdict",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m judge.testing.fake_provider` does not import it twice.
    if name in __all__:
        from judge.testing import fake_provider

        return getattr(fake_provider, name)
    raise AttributeError(f"module 'judge.testing' has no attribute {name!r}")
