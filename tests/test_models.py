"""Judge models through the real litellm + instructor HTTP path, against the fake provider."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import pytest
from pydantic import ValidationError

from judge.datasets import Item
from judge.errors import ConfigError
from judge.judgments import Status
from judge.models import JudgeModel, LocalRateLimiter, RateLimiter, judge_once, verdict_model
from judge.rubrics import Rubric
from judge.testing import (
    FakeProvider,
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


def _rubric(scale: dict[str, Any], **extra: Any) -> Rubric:
    inputs = ["input", "output", "output_b"] if scale["type"] == "pairwise" else ["input", "output"]
    data: dict[str, Any] = {
        "id": f"test/{scale['type']}{'-abstain' if extra.get('allow_abstain') else ''}",
        "version": "1.0.0",
        "dimension": "quality",
        "title": f"A {scale['type']} rubric",
        "description": "Whether the answer is good.",
        "inputs": inputs,
        "scale": scale,
        "instructions": "Grade the answer.",
        **extra,
    }
    return Rubric.model_validate(data)


LIKERT = {"type": "likert", "min": 1, "max": 5,
          "anchors": {1: "awful", 2: "poor", 3: "fair", 4: "good", 5: "excellent"}}
BINARY = {"type": "binary", "pass_description": "correct", "fail_description": "wrong"}
CATEGORICAL = {"type": "categorical", "labels": [
    {"label": "Entailment", "score": 1, "description": "implies it"},
    {"label": "Neutral", "score": 0.5, "description": "neither"},
    {"label": "Contradiction", "score": 0, "description": "contradicts it"},
]}


@pytest.fixture
def likert() -> Rubric:
    return _rubric(LIKERT, pass_threshold=4)


@pytest.fixture
def item() -> Item:
    return Item(id="i1", input="What is 2+2?", output="It is 4.")


def _judge(fake: FakeProvider, model: str = "openai/test-judge", **settings: Any) -> JudgeModel:
    defaults: dict[str, Any] = {"timeout": 5, "max_attempts": 3, "max_reasks": 1,
                                "backoff_base": 0.05}
    return JudgeModel.parse(model, api_base=fake.url, **{**defaults, **settings})


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- JudgeModel ------------------------------------------------------------------------


def test_judge_model_parses_a_model_string_with_defaults() -> None:
    judge = JudgeModel.parse("openai/gpt-4.1-mini")
    assert (judge.model, judge.temperature, judge.max_tokens) == ("openai/gpt-4.1-mini", 0.0, 1024)
    assert (judge.max_attempts, judge.max_reasks, judge.api_base) == (4, 2, None)
    assert JudgeModel.model_validate("ollama/llama3").model == "ollama/llama3"


def test_judge_model_rejects_bad_settings_naming_them() -> None:
    with pytest.raises(ConfigError, match="not a litellm model string"):
        JudgeModel.parse("open ai/x")
    with pytest.raises(ConfigError, match="temperature"):
        JudgeModel.parse("openai/x", temperature=5)
    with pytest.raises(ConfigError, match="extra may not set"):
        JudgeModel.parse("openai/x", extra={"num_retries": 3})


def test_completion_kwargs_turn_off_litellm_retries() -> None:
    kwargs = JudgeModel.parse("openai/x", api_base="http://h/v1", extra={"top_p": 0.5}) \
        .completion_kwargs()
    assert kwargs["num_retries"] == 0
    assert kwargs["api_base"] == "http://h/v1" and kwargs["top_p"] == 0.5


# --- verdict models --------------------------------------------------------------------


def test_verdict_model_likert_is_bounded_with_rationale_first(likert: Rubric) -> None:
    model = verdict_model(likert)
    assert list(model.model_fields) == ["rationale", "score", "evidence"]
    schema = model.model_json_schema()
    assert schema["properties"]["score"]["minimum"] == 1
    assert schema["properties"]["score"]["maximum"] == 5
    assert all(f.description for f in model.model_fields.values())
    with pytest.raises(ValidationError):
        model.model_validate({"rationale": "r", "score": 6})
    assert verdict_model(likert) is model  # cached per rubric hash


def test_verdict_model_per_scale_fields() -> None:
    binary = verdict_model(_rubric(BINARY))
    assert list(binary.model_fields) == ["rationale", "passed", "evidence"]
    cat = verdict_model(_rubric(CATEGORICAL, pass_threshold=1))
    assert cat.model_json_schema()["properties"]["label"]["enum"] == \
        ["Entailment", "Neutral", "Contradiction"]
    with pytest.raises(ValidationError):
        cat.model_validate({"rationale": "r", "label": "Maybe"})
    pair = verdict_model(_rubric({"type": "pairwise"}))
    assert pair.model_json_schema()["properties"]["winner"]["enum"] == ["a", "b", "tie"]
    no_tie = verdict_model(_rubric({"type": "pairwise", "allow_tie": False}))
    assert no_tie.model_json_schema()["properties"]["winner"]["enum"] == ["a", "b"]


def test_verdict_model_with_abstention_requires_verdict_unless_abstaining() -> None:
    model = verdict_model(_rubric(LIKERT, pass_threshold=4, allow_abstain=True))
    assert list(model.model_fields) == ["rationale", "score", "evidence", "abstain",
                                        "abstain_reason"]
    assert model.model_validate({"rationale": "r", "abstain": True,
                                 "abstain_reason": "no data"}).score is None
    with pytest.raises(ValidationError, match="abstain"):
        model.model_validate({"rationale": "r"})
    with pytest.raises(ValidationError):
        model.model_validate({"rationale": "r", "score": 9})
    cat = verdict_model(_rubric(CATEGORICAL, pass_threshold=1, allow_abstain=True))
    assert cat.model_validate({"rationale": "r", "abstain": True}).label is None
    with pytest.raises(ValidationError, match="give `label`"):
        cat.model_validate({"rationale": "r"})


# --- verdicts through litellm ----------------------------------------------------------


def test_scripted_likert_verdict(fake_provider: FakeProvider, likert: Rubric, item: Item) -> None:
    fake_provider.script(verdict(rationale="Correct and clear.", score=4, evidence=["It is 4."]))
    j = _run(judge_once(_judge(fake_provider), likert, item, job_id="job1", sample_index=2))
    assert j.status == Status.OK
    assert (j.score, j.passed, j.rationale, j.evidence) == (4.0, True, "Correct and clear.",
                                                            ["It is 4."])
    assert (j.job_id, j.item_id, j.sample_index, j.rubric_hash) == \
        ("job1", "i1", 2, likert.content_hash)
    assert j.attempts == 1 and fake_provider.count == 1
    assert j.prompt_hash and len(j.prompt_hash) == 64
    body = fake_provider.requests[0]
    assert body["temperature"] == 0.0 and body["tools"][0]["function"]["name"] == "Verdict"
    assert j.tokens_in > 0 and j.tokens_out > 0 and j.latency_ms > 0


def test_scripted_binary_categorical_and_pairwise(fake_provider: FakeProvider, item: Item) -> None:
    judge = _judge(fake_provider)
    fake_provider.script(verdict(rationale="wrong", passed=False))
    j = _run(judge_once(judge, _rubric(BINARY), item))
    assert (j.status, j.passed, j.score) == (Status.OK, False, 0.0)

    fake_provider.script(verdict(rationale="implied", label="Neutral"))
    j = _run(judge_once(judge, _rubric(CATEGORICAL, pass_threshold=1), item))
    assert (j.status, j.label, j.score, j.passed) == (Status.OK, "Neutral", 0.5, False)

    pair_item = Item(id="p1", input="q", output="first answer", output_b="second answer")
    fake_provider.script(verdict(rationale="A is better", winner="a"), forever=True)
    ab = _run(judge_once(judge, _rubric({"type": "pairwise"}), pair_item, order="ab"))
    ba = _run(judge_once(judge, _rubric({"type": "pairwise"}), pair_item, order="ba"))
    assert (ab.label, ab.order, ba.label, ba.order) == ("a", "ab", "a", "ba")
    assert ab.score is None and ab.status == Status.OK
    # 'ba' shows output_b first, as response A
    shown_a = [r["messages"][1]["content"] for r in fake_provider.requests[-2:]]
    assert shown_a[0].index("first answer") < shown_a[0].index("second answer")
    assert shown_a[1].index("second answer") < shown_a[1].index("first answer")


def test_default_policy_gives_a_valid_deterministic_verdict(
    fake_provider: FakeProvider, likert: Rubric
) -> None:
    judge = _judge(fake_provider)
    items = [Item(id=str(i), input="q", output=f"answer {i}") for i in range(6)]
    first = [_run(judge_once(judge, likert, it)) for it in items]
    again = [_run(judge_once(judge, likert, it)) for it in items]
    assert all(j.status == Status.OK and 1 <= (j.score or 0) <= 5 for j in first)
    assert [j.score for j in first] == [j.score for j in again]
    assert default_verdict(fake_provider.requests[0]) == default_verdict(fake_provider.requests[6])


def test_rules_match_on_item_text(fake_provider: FakeProvider, likert: Rubric) -> None:
    fake_provider.script(verdict(rationale="bad", score=1), match="ITEM-B", forever=True)
    judge = _judge(fake_provider)
    a = _run(judge_once(judge, likert, Item(id="a", output="ITEM-A text")))
    b = _run(judge_once(judge, likert, Item(id="b", output="ITEM-B text")))
    assert b.score == 1.0
    assert len(fake_provider.requests_matching("ITEM-B")) == 1 and a.status == Status.OK


# --- provider failures -----------------------------------------------------------------


def test_429_honours_retry_after(fake_provider: FakeProvider, likert: Rubric, item: Item) -> None:
    fake_provider.script(rate_limit(retry_after=1), verdict(rationale="ok", score=5))
    start = time.monotonic()
    j = _run(judge_once(_judge(fake_provider, backoff_base=0.0), likert, item))
    elapsed = time.monotonic() - start
    assert j.status == Status.OK and j.score == 5.0
    assert elapsed >= 1.0, "Retry-After: 1 was not honoured"
    assert j.attempts == 2 and fake_provider.count == 2


def test_429_retry_after_as_http_date(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    fake_provider.script(rate_limit(retry_after=when), verdict(rationale="ok", score=3))
    start = time.monotonic()
    j = _run(judge_once(_judge(fake_provider, backoff_base=0.0), likert, item))
    assert j.status == Status.OK
    assert time.monotonic() - start >= 0.9  # the date has one-second resolution


def test_retry_after_is_capped(fake_provider: FakeProvider, likert: Rubric, item: Item) -> None:
    fake_provider.script(rate_limit(retry_after=3600), verdict(rationale="ok", score=3))
    start = time.monotonic()
    j = _run(judge_once(_judge(fake_provider, retry_after_max=0.2), likert, item))
    assert j.status == Status.OK and time.monotonic() - start < 5


def test_500s_then_success(fake_provider: FakeProvider, likert: Rubric, item: Item) -> None:
    fake_provider.script(server_error(500), server_error(503), verdict(rationale="ok", score=2))
    j = _run(judge_once(_judge(fake_provider), likert, item))
    assert (j.status, j.score, j.attempts, fake_provider.count) == (Status.OK, 2.0, 3, 3)


def test_500s_past_max_attempts_are_a_provider_error(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(server_error(500), forever=True)
    j = _run(judge_once(_judge(fake_provider, max_attempts=3), likert, item))
    assert j.status == Status.PROVIDER_ERROR and j.score is None
    assert j.attempts == 3 and fake_provider.count == 3
    assert "server had an error" in (j.error or "")


def test_hang_past_timeout_is_a_provider_error(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(hang(10), forever=True)
    start = time.monotonic()
    j = _run(judge_once(_judge(fake_provider, timeout=0.5, max_attempts=2), likert, item))
    assert j.status == Status.PROVIDER_ERROR and j.score is None
    assert j.attempts == 2 and fake_provider.count == 2
    assert "timeout" in (j.error or "").lower()
    assert time.monotonic() - start < 5


def test_dropped_connection_is_retried(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(drop(), verdict(rationale="ok", score=4))
    j = _run(judge_once(_judge(fake_provider), likert, item))
    assert (j.status, j.score, j.attempts) == (Status.OK, 4.0, 2)


def test_client_errors_are_not_retried(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(server_error(401, "bad key"), forever=True)
    j = _run(judge_once(_judge(fake_provider), likert, item))
    assert j.status == Status.PROVIDER_ERROR and j.attempts == 1


# --- invalid output --------------------------------------------------------------------


def test_invalid_json_is_reasked_then_invalid_output(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(invalid_json(), forever=True)
    j = _run(judge_once(_judge(fake_provider, max_reasks=2), likert, item))
    assert j.status == Status.INVALID_OUTPUT and j.score is None
    assert j.attempts == 3 and fake_provider.count == 3
    assert "json" in (j.error or "").lower()
    # the re-ask carries the bad answer back to the judge
    assert len(fake_provider.requests[1]["messages"]) > len(fake_provider.requests[0]["messages"])
    assert j.tokens_in > 0 and j.tokens_out > 0


def test_invalid_json_then_valid_counts_every_request(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(invalid_json(), verdict(rationale="ok", score=3))
    j = _run(judge_once(_judge(fake_provider, max_reasks=2), likert, item))
    assert (j.status, j.score, j.attempts) == (Status.OK, 3.0, 2)
    one_call_in = j.tokens_in
    fake_provider.reset()
    single = _run(judge_once(_judge(fake_provider), likert, Item(id="x", output="It is 4.",
                                                                  input="What is 2+2?")))
    assert one_call_in > single.tokens_in  # the re-ask's tokens were added


def test_out_of_range_score_is_reasked(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(verdict(rationale="great", score=9), verdict(rationale="great", score=5))
    j = _run(judge_once(_judge(fake_provider), likert, item))
    assert (j.status, j.score, j.attempts) == (Status.OK, 5.0, 2)

    fake_provider.reset()
    fake_provider.script(verdict(rationale="great", score=9), forever=True)
    j = _run(judge_once(_judge(fake_provider, max_reasks=1), likert, item))
    assert j.status == Status.INVALID_OUTPUT and j.score is None
    assert "less than or equal to 5" in (j.error or "")


def test_plain_text_answer_is_invalid_output(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    fake_provider.script(content("I think it deserves a 5."), forever=True)
    j = _run(judge_once(_judge(fake_provider, max_reasks=1), likert, item))
    assert j.status == Status.INVALID_OUTPUT and j.score is None and j.attempts == 2


def test_refusal_is_invalid_output_or_abstention(fake_provider: FakeProvider, item: Item) -> None:
    fake_provider.script(refusal("I can't assess this."), forever=True)
    j = _run(judge_once(_judge(fake_provider), _rubric(LIKERT, pass_threshold=4), item))
    assert j.status == Status.INVALID_OUTPUT and j.score is None
    assert "can't assess" in (j.error or "")
    allowed = _rubric(LIKERT, pass_threshold=4, allow_abstain=True)
    j = _run(judge_once(_judge(fake_provider), allowed, item))
    assert j.status == Status.ABSTAINED and j.abstained and j.score is None


def test_abstention_verdict(fake_provider: FakeProvider, item: Item) -> None:
    rubric = _rubric(LIKERT, pass_threshold=4, allow_abstain=True)
    fake_provider.script(verdict(rationale="no reference", abstain=True, abstain_reason="missing"))
    j = _run(judge_once(_judge(fake_provider), rubric, item))
    assert (j.status, j.abstained, j.score, j.passed) == (Status.ABSTAINED, True, None, None)
    assert "missing" in (j.error or "")
    # Not abstaining and no score: re-asked, then invalid
    fake_provider.script(verdict(rationale="hmm"), forever=True)
    j = _run(judge_once(_judge(fake_provider, max_reasks=1), rubric, item))
    assert j.status == Status.INVALID_OUTPUT


# --- cost ------------------------------------------------------------------------------


def test_cost_is_none_for_an_unpriced_model(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    j = _run(judge_once(_judge(fake_provider, "openai/no-such-priced-judge"), likert, item))
    assert j.status == Status.OK and j.cost_usd is None and j.tokens_in > 0


def test_cost_is_a_number_for_a_priced_model(
    fake_provider: FakeProvider, likert: Rubric, item: Item
) -> None:
    j = _run(judge_once(_judge(fake_provider, "openai/gpt-4o-mini"), likert, item))
    assert j.status == Status.OK and j.cost_usd is not None and j.cost_usd > 0
    # gpt-4o-mini's bundled price: $0.15 / 1M input tokens, $0.60 / 1M output tokens
    assert j.cost_usd == pytest.approx(j.tokens_in * 0.15e-6 + j.tokens_out * 0.6e-6)


# --- rate limiting ---------------------------------------------------------------------


def test_local_rate_limiter_spaces_requests() -> None:
    limiter = LocalRateLimiter(rpm=600, burst=1)  # one every 0.1 s
    assert isinstance(limiter, RateLimiter)

    async def go() -> float:
        start = time.monotonic()
        await asyncio.gather(*(limiter.acquire("m") for _ in range(6)))
        return time.monotonic() - start

    assert _run(go()) >= 0.45
    with pytest.raises(ConfigError):
        LocalRateLimiter(rpm=0)


def test_judge_once_waits_on_the_limiter(fake_provider: FakeProvider, likert: Rubric) -> None:
    limiter = LocalRateLimiter(rpm=300, burst=1)  # one every 0.2 s
    judge = _judge(fake_provider)

    async def go() -> list[Any]:
        items = [Item(id=str(i), output=f"o{i}") for i in range(4)]
        return await asyncio.gather(*(judge_once(judge, likert, it, limiter=limiter)
                                      for it in items))

    start = time.monotonic()
    out = _run(go())
    assert all(j.status == Status.OK for j in out)
    assert time.monotonic() - start >= 0.55


@pytest.mark.parametrize("rubric", [
    _rubric(LIKERT, pass_threshold=4, allow_abstain=True),
    _rubric(BINARY),
    _rubric(CATEGORICAL, pass_threshold=1, allow_abstain=True),
    _rubric({"type": "pairwise", "allow_tie": False}),
], ids=["likert-abstain", "binary", "categorical-abstain", "pairwise"])
def test_default_policy_fits_every_scale(fake_provider: FakeProvider, rubric: Rubric) -> None:
    item = Item(id="d", input="q", output="an answer", output_b="another answer")
    j = _run(judge_once(_judge(fake_provider), rubric, item))
    assert j.status == Status.OK and j.attempts == 1, j.error
    assert j.score is not None or j.label in ("a", "b") or j.passed is not None


def test_fake_serves_its_request_count_for_other_processes(
    fake_provider: FakeProvider, likert: Rubric
) -> None:
    import httpx

    judge = JudgeModel(model="openai/some-model", api_base=fake_provider.url)
    asyncio.run(judge_once(judge, likert, Item(id="s", input="q", output="a")))
    stats = httpx.get(fake_provider.url.removesuffix("/v1") + "/stats").json()
    assert stats["requests"] == fake_provider.count == 1
