"""Test doubles at the boundary: a fake OpenAI-compatible provider.

``FakeProvider`` serves scripted or default verdicts on 127.0.0.1; the reply helpers
(``verdict``, ``rate_limit``, ``server_error``, ``hang``, ``drop``, ``invalid_json``,
``refusal``, ``content``) build its script. Run it standalone with
``python -m judge.testing.fake_provider --port P --latency-ms L``.
"""

from judge.testing.fake_provider import (
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
