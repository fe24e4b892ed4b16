"""Judge models: one structured verdict per call, through instructor on litellm.

A :class:`JudgeModel` is a litellm model string plus call settings. :func:`verdict_model`
builds the pydantic response model from a rubric's scale; its field descriptions are the
contract with the judge. :func:`judge_once` asks for one verdict and always returns a
:class:`~judge.judgments.Judgment`: provider failures and invalid output become statuses,
never exceptions and never made-up numbers.

litellm is imported lazily through :func:`_litellm`, which first makes it offline and
quiet: the bundled price map instead of a download at import, no telemetry, no callbacks
the user did not configure, no debug banners.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import logging
import os
import random
import time
from typing import Any, ClassVar, Literal, Protocol, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from judge.datasets import Item
from judge.errors import ConfigError
from judge.judgments import Judgment, Status
from judge.prompts import build_messages
from judge.rubrics import BinaryScale, CategoricalScale, LikertScale, PairwiseScale, Rubric

__all__ = [
    "JudgeModel",
    "LocalRateLimiter",
    "RateLimiter",
    "judge_once",
    "verdict_model",
]

# Before litellm is ever imported (here or by anyone): use the bundled price map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_LITELLM: Any = None
_CLIENT: Any = None


class _Usage:
    """Requests and tokens of one judge_once call, over every attempt and re-ask."""

    def __init__(self) -> None:
        self.tokens_in = 0
        self.tokens_out = 0
        self.requests = 0
        self.responses = 0
        # litellm prices every response it returns; summing those prices avoids pricing
        # the tokens a second time. One unpriced response makes the whole cost unknown.
        self.cost: float | None = 0.0

    def add(self, response: Any) -> None:
        self.responses += 1
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
            self.tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
        hidden = getattr(response, "_hidden_params", None) or {}
        price = hidden.get("response_cost") if isinstance(hidden, dict) else None
        if price is None or self.cost is None:
            self.cost = None
        else:
            self.cost += float(price)


_CALL_LOG: contextvars.ContextVar[_Usage | None] = contextvars.ContextVar(
    "judge_call_log", default=None
)


def _litellm() -> Any:
    """litellm, imported once, offline and quiet."""
    global _LITELLM
    if _LITELLM is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_DISABLE_BUG_REPORT_LINK", "True")
        import litellm

        litellm.telemetry = False  # honoured by the versions that still phone home
        litellm.suppress_debug_info = True
        litellm.set_verbose = False
        litellm.disable_hf_tokenizer_download = True
        # instructor logs every failed attempt at ERROR; we report them in the judgment.
        logging.getLogger("instructor").addHandler(logging.NullHandler())
        # litellm logs every call at INFO; a Celery worker's root logger is at INFO, so
        # without this a worker spends a tenth of its CPU writing one line per judge call.
        # LITELLM_LOG (litellm's own switch) still turns its logging back on.
        if not os.environ.get("LITELLM_LOG"):
            for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
                logging.getLogger(name).setLevel(logging.WARNING)
        _LITELLM = litellm
    return _LITELLM


def _client() -> Any:
    """The instructor client on litellm's async completion (TOOLS mode)."""
    global _CLIENT
    if _CLIENT is None:
        litellm = _litellm()
        import instructor

        async def acompletion(**kwargs: Any) -> Any:
            # Every request instructor sends (first asks and re-asks) passes here, so the
            # calling judge_once can count it and its tokens, failed or not.
            log = _CALL_LOG.get()
            if log is not None:
                log.requests += 1
            response = await litellm.acompletion(**kwargs)
            if log is not None:
                log.add(response)
            return response

        _CLIENT = instructor.from_litellm(acompletion)
    return _CLIENT


# --- the judge model -------------------------------------------------------------------


class JudgeModel(BaseModel):
    """A judge: a litellm model string and how to call it.

    ``JudgeModel.parse("openai/gpt-4.1-mini", api_base=URL)``, or validate a bare string.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field(description="litellm model string, e.g. openai/gpt-4.1-mini.")
    api_base: str | None = Field(default=None, description="Base URL of the endpoint.")
    api_key: str | None = Field(default=None, repr=False, description="Else from env.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1)
    timeout: float = Field(default=60.0, gt=0, description="Seconds per request.")
    max_attempts: int = Field(default=4, ge=1, description="Provider attempts per verdict.")
    max_reasks: int = Field(default=2, ge=0, description="Re-asks after invalid output.")
    rpm: int | None = Field(default=None, ge=1, description="Requests-per-minute limit.")
    backoff_base: float = Field(default=0.5, ge=0, description="First backoff, seconds.")
    backoff_max: float = Field(default=30.0, ge=0, description="Longest backoff, seconds.")
    retry_after_max: float = Field(default=60.0, ge=0, description="Cap on Retry-After.")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Passed through to litellm.acompletion."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data

    @field_validator("model")
    @classmethod
    def _model_string(cls, v: str) -> str:
        v = v.strip()
        if not v or any(c.isspace() for c in v):
            raise ValueError(
                f"judge model {v!r} is not a litellm model string; expected e.g. "
                "openai/gpt-4.1-mini, anthropic/claude-sonnet-4-5 or ollama/llama3"
            )
        return v

    @field_validator("extra")
    @classmethod
    def _extra_not_reserved(cls, v: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(v) & _RESERVED)
        if reserved:
            raise ValueError(
                f"extra may not set {reserved}: they are JudgeModel fields or managed by judge "
                f"(reserved: {', '.join(sorted(_RESERVED))})"
            )
        return v

    @classmethod
    def parse(cls, spec: str | JudgeModel, **settings: Any) -> JudgeModel:
        """A judge from a model string (or a judge, copied with ``settings`` applied).

        Raises:
            ConfigError: a malformed model string or setting.
        """
        from pydantic import ValidationError

        if isinstance(spec, JudgeModel):
            return spec.model_copy(update=settings) if settings else spec
        try:
            return cls(model=spec, **settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"Invalid judge model {spec!r}: {problems}.") from exc

    def sampling_params(self) -> dict[str, Any]:
        """What changes a verdict besides the prompt: part of the cache key."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens,
                **{k: self.extra[k] for k in sorted(self.extra)}}

    def completion_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``litellm.acompletion`` (retries are ours: none there)."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.timeout,
            "num_retries": 0,
            **self.extra,
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        return kwargs


_RESERVED = frozenset({
    "model", "messages", "temperature", "max_tokens", "timeout", "num_retries", "max_retries",
    "api_base", "api_key", "response_model", "tools", "tool_choice", "stream",
})


# --- the verdict model -----------------------------------------------------------------

_RATIONALE = (
    "Your reasoning, written before the verdict: what in the item meets or misses the "
    "rubric, level by level."
)
_EVIDENCE = (
    "Short verbatim quotes from the item that decide the verdict (may be empty when the "
    "verdict rests on something missing)."
)


class _Verdict(BaseModel):
    """A judge's verdict on one item for one rubric."""


class _AbstainingVerdict(_Verdict):
    """A judge's verdict, or an abstention when the item cannot be assessed."""

    _verdict_field: ClassVar[str] = "score"  # set per built model

    @model_validator(mode="after")
    def _verdict_unless_abstaining(self) -> _AbstainingVerdict:
        name = self._verdict_field
        if not getattr(self, "abstain", False) and getattr(self, name) is None:
            raise ValueError(f"give `{name}`, or set `abstain` to true with an abstain_reason")
        return self


_VERDICT_MODELS: dict[str, type[BaseModel]] = {}


def verdict_model(rubric: Rubric) -> type[BaseModel]:
    """The pydantic response model for a rubric's scale (built once per rubric hash).

    Fields, in order: ``rationale``; then ``score`` (likert, bounded), ``passed``
    (binary), ``label`` (categorical, one of the labels) or ``winner`` (pairwise, 'a',
    'b' and, if allowed, 'tie'); ``evidence``; and ``abstain`` + ``abstain_reason`` only
    when the rubric allows abstaining (the verdict field is then optional, but required
    unless the judge abstains).
    """
    key = rubric.content_hash
    cached = _VERDICT_MODELS.get(key)
    if cached is not None:
        return cached
    name, annotation, field = _verdict_field(rubric)
    abstain = rubric.allow_abstain
    if abstain:
        annotation = annotation | None
        field = Field(default=None, description=field.description + " Null only when abstaining.",
                      **_bounds(rubric))
    fields: dict[str, Any] = {
        "rationale": (str, Field(description=_RATIONALE)),
        name: (annotation, field),
        "evidence": (list[str], Field(default_factory=list, description=_EVIDENCE)),
    }
    if abstain:
        fields["abstain"] = (bool, Field(
            default=False,
            description="True only if the item cannot be assessed against this rubric.",
        ))
        fields["abstain_reason"] = (str | None, Field(
            default=None, description="Why the item cannot be assessed (when abstaining).",
        ))
    model = create_model(  # type: ignore[call-overload]
        "Verdict",
        __base__=_AbstainingVerdict if abstain else _Verdict,
        __doc__=f"Verdict on one item for the rubric '{rubric.id}' ({rubric.title}).",
        **fields,
    )
    if abstain:
        cast(type[_AbstainingVerdict], model)._verdict_field = name
    _VERDICT_MODELS[key] = model
    return model


_WIRE_MODELS: dict[str, type[BaseModel]] = {}


def _wire_model(rubric: Rubric) -> type[BaseModel]:
    """The verdict model as instructor sends it, built once per rubric version.

    instructor wraps a plain model in a new ``ResponseSchema`` subclass on every call
    (``pydantic.create_model``: about a tenth of the CPU of a judge call); handing it one
    that already is a ``ResponseSchema`` skips that. Same fields, same JSON Schema.
    """
    key = rubric.content_hash
    cached = _WIRE_MODELS.get(key)
    if cached is None:
        _litellm()  # instructor is imported after litellm is configured
        try:
            from instructor.v2.core.function_calls import response_schema
        except ImportError:  # an instructor without it: it wraps the plain model per call
            cached = verdict_model(rubric)
        else:
            cached = response_schema(verdict_model(rubric))
        _WIRE_MODELS[key] = cached
    return cached


def _bounds(rubric: Rubric) -> dict[str, Any]:
    scale = rubric.scale
    return {"ge": scale.min, "le": scale.max} if isinstance(scale, LikertScale) else {}


def _verdict_field(rubric: Rubric) -> tuple[str, Any, Any]:
    scale = rubric.scale
    if isinstance(scale, LikertScale):
        return "score", int, Field(
            description=f"The score: an integer from {scale.min} to {scale.max}, chosen by "
            "the level descriptions of the rubric.",
            **_bounds(rubric),
        )
    if isinstance(scale, BinaryScale):
        return "passed", bool, Field(
            description="True if the output passes the rubric, false if it fails."
        )
    if isinstance(scale, CategoricalScale):
        labels = tuple(lab.label for lab in scale.labels)
        return "label", Literal[labels], Field(  # type: ignore[valid-type]
            description=f"Exactly one of the rubric's labels: {', '.join(labels)}."
        )
    assert isinstance(scale, PairwiseScale)
    options = ("a", "b", "tie") if scale.allow_tie else ("a", "b")
    return "winner", Literal[options], Field(  # type: ignore[valid-type]
        description="Which response is better: 'a' (RESPONSE A), 'b' (RESPONSE B)"
        + (" or 'tie'." if scale.allow_tie else ".")
    )


# --- rate limiting ---------------------------------------------------------------------


@runtime_checkable
class RateLimiter(Protocol):
    """Something that makes a caller wait for its turn to call a model."""

    async def acquire(self, model: str, tokens: int = 0) -> None:
        """Return when one request to ``model`` (of about ``tokens`` tokens) may go."""
        ...


class LocalRateLimiter:
    """An in-process token bucket per model: ``rpm`` requests a minute, bursts of
    ``burst`` (default: a second's worth, at least 1)."""

    def __init__(self, rpm: int, burst: int | None = None):
        if rpm < 1:
            raise ConfigError(f"Rate limit rpm must be at least 1, got {rpm}.")
        self.rpm = rpm
        self.rate = rpm / 60.0
        self.burst = float(burst if burst is not None else max(1, rpm // 60))
        self._buckets: dict[str, list[float]] = {}  # model -> [tokens, last refill]
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, model: str, tokens: int = 0) -> None:
        lock = self._locks.setdefault(model, asyncio.Lock())
        async with lock:  # first come, first served
            bucket = self._buckets.setdefault(model, [self.burst, time.monotonic()])
            while True:
                now = time.monotonic()
                bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
                bucket[1] = now
                if bucket[0] >= 1.0:
                    bucket[0] -= 1.0
                    return
                await asyncio.sleep((1.0 - bucket[0]) / self.rate)


# --- one verdict -----------------------------------------------------------------------


def _cost(judge: JudgeModel, usage: _Usage) -> float | None:
    """USD cost of the tokens by litellm's price map; None when the model has no price."""
    if usage.responses:
        return usage.cost  # priced by litellm as each response arrived
    litellm = _litellm()
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=judge.model, prompt_tokens=usage.tokens_in, completion_tokens=usage.tokens_out
        )
    except Exception:  # litellm raises for a model it has no price for
        return None
    return float(prompt_cost) + float(completion_cost)


def _retry_after(exc: BaseException, cap: float) -> float | None:
    """Seconds the provider asked us to wait (Retry-After seconds or HTTP date), capped."""
    headers: Any = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return min(cap, max(0.0, float(ms) / 1000))
        value = headers.get("retry-after")
    except (AttributeError, ValueError, TypeError):
        return None
    if value is None:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(cap, max(0.0, seconds))


_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def _provider_problem(exc: BaseException) -> bool | None:
    """Whether a provider error is worth retrying; None when ``exc`` is an output problem
    (invalid JSON, a schema violation, no tool call)."""
    import httpx

    ex = _litellm().exceptions
    if isinstance(exc, ex.ContextWindowExceededError | ex.ContentPolicyViolationError):
        return False
    if isinstance(exc, ex.Timeout | ex.APIConnectionError | ex.RateLimitError
                  | ex.InternalServerError | ex.ServiceUnavailableError | ex.BadGatewayError
                  | TimeoutError | httpx.TransportError | ConnectionError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return status in _RETRYABLE_STATUS
    if exc.__class__.__module__.split(".")[0] in ("litellm", "openai", "httpx", "aiohttp"):
        return False  # e.g. authentication, bad request: retrying would not help
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:2000]


def _refusal_text(exc: BaseException) -> str | None:
    # instructor asserts on a message's `refusal` field: that is a refusal, not garbage.
    prefix = "Unable to generate a response due to"
    if isinstance(exc, AssertionError) and str(exc).startswith(prefix):
        return str(exc)[len(prefix):].strip() or "refused"
    return None


async def judge_once(
    judge: JudgeModel,
    rubric: Rubric,
    item: Item,
    *,
    sample_index: int = 0,
    order: str | None = None,
    limiter: RateLimiter | None = None,
    job_id: str | None = None,
    template: str | None = None,
) -> Judgment:
    """Ask ``judge`` for one verdict on ``item`` by ``rubric``; never raises for provider
    or output problems.

    Invalid output is re-asked up to ``judge.max_reasks`` times, then the status is
    ``invalid_output`` with the last error. 429s wait for ``Retry-After`` (capped); 5xx,
    timeouts and dropped connections back off exponentially with jitter; after
    ``judge.max_attempts`` the status is ``provider_error``. A refusal is
    ``invalid_output`` (``abstained`` if the rubric allows abstaining). Tokens are summed
    over every request; cost is None for a model litellm has no price for. ``attempts``
    counts every request sent, re-asks included.

    Args:
        judge: the judge model and its call settings.
        rubric: what to grade by; its scale decides the verdict's shape.
        item: what to grade.
        sample_index: which sample this is (recorded; the engine varies it).
        order: pairwise only: ``'ab'`` (default) or ``'ba'``, which output is shown as A.
            The label stays the winner as shown; the engine reconciles the two orders.
        limiter: waited on before every request (e.g. ``LocalRateLimiter(judge.rpm)``).
        job_id: recorded on the judgment.
        template: a custom user-message template (see :func:`judge.prompts.build_messages`).

    Raises:
        judge.prompts.PromptTemplateError: a bad ``template`` or ``order`` (a user error).
    """
    prompt = build_messages(rubric, item, order=order, template=template)
    response_model = _wire_model(rubric)
    base: dict[str, Any] = {
        "job_id": job_id,
        "item_id": item.id,
        "rubric_id": rubric.id,
        "rubric_version": rubric.version,
        "rubric_hash": rubric.content_hash,
        "judge_model": judge.model,
        "prompt_hash": prompt.prompt_hash,
        "sample_index": sample_index,
        "order": prompt.order,
    }
    usage = _Usage()
    started = time.perf_counter()
    waited = 0.0  # time queued in the rate limiter is not the judge's latency

    def finish(status: Status, **fields: Any) -> Judgment:
        return Judgment(
            **base,
            status=status,
            tokens_in=usage.tokens_in,
            tokens_out=usage.tokens_out,
            cost_usd=_cost(judge, usage),
            latency_ms=round((time.perf_counter() - started - waited) * 1000, 3),
            attempts=usage.requests,
            **fields,
        )

    client = _client()
    kwargs = judge.completion_kwargs()
    # A guard above litellm's own timeout, in case a transport ignores it.
    guard = judge.timeout * (judge.max_reasks + 1) + 5.0
    token = _CALL_LOG.set(usage)
    try:
        for attempt in range(1, judge.max_attempts + 1):
            if limiter is not None:
                t0 = time.perf_counter()
                await limiter.acquire(judge.model, tokens=judge.max_tokens)
                waited += time.perf_counter() - t0
            try:
                async with asyncio.timeout(guard):
                    verdict, _completion = await client.create_with_completion(
                        messages=[dict(m) for m in prompt.messages],
                        response_model=response_model,
                        max_retries=judge.max_reasks,
                        **kwargs,
                    )
            except Exception as exc:  # classified below; nothing escapes
                cause = _unwrap(exc)
                refused = _refusal_text(cause)
                if refused is not None:
                    error = f"the judge refused: {refused}"
                    if rubric.allow_abstain:
                        return finish(Status.ABSTAINED, abstained=True, error=error)
                    return finish(Status.INVALID_OUTPUT, error=error)
                retryable = _provider_problem(cause)
                if retryable is None:
                    return finish(Status.INVALID_OUTPUT, error=_describe(cause))
                if not retryable or attempt == judge.max_attempts:
                    return finish(Status.PROVIDER_ERROR, error=_describe(cause))
                delay = _retry_after(cause, judge.retry_after_max) if _is_429(cause) else None
                await asyncio.sleep(_backoff(judge, attempt) if delay is None else delay)
                continue
            return finish(**_verdict_fields(rubric, verdict))
    finally:
        _CALL_LOG.reset(token)
    raise AssertionError("unreachable: max_attempts >= 1")


def _is_429(exc: BaseException) -> bool:
    return getattr(exc, "status_code", None) == 429 or \
        isinstance(exc, _litellm().exceptions.RateLimitError)


def _backoff(judge: JudgeModel, attempt: int) -> float:
    """Exponential backoff with equal jitter: half fixed, half random."""
    delay = min(judge.backoff_max, judge.backoff_base * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _unwrap(exc: BaseException) -> BaseException:
    """The underlying error of a failed instructor call (it wraps everything it retries)."""
    from instructor.core import InstructorRetryException

    if isinstance(exc, InstructorRetryException) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _verdict_fields(rubric: Rubric, verdict: Any) -> dict[str, Any]:
    rationale = verdict.rationale
    evidence = [str(q) for q in (verdict.evidence or [])]
    if getattr(verdict, "abstain", False):
        reason = getattr(verdict, "abstain_reason", None) or "no reason given"
        return {"status": Status.ABSTAINED, "abstained": True, "rationale": rationale,
                "evidence": evidence, "error": f"the judge abstained: {reason}"}
    scale = rubric.scale
    out: dict[str, Any] = {"status": Status.OK, "rationale": rationale, "evidence": evidence}
    if isinstance(scale, LikertScale):
        out["score"] = float(verdict.score)
        out["passed"] = rubric.passes(score=out["score"])
    elif isinstance(scale, BinaryScale):
        out["passed"] = rubric.passes(passed=bool(verdict.passed))
        out["score"] = 1.0 if verdict.passed else 0.0
    elif isinstance(scale, CategoricalScale):
        out["label"] = verdict.label
        out["score"] = float(scale.score_of(verdict.label))
        out["passed"] = rubric.passes(score=out["score"])
    else:
        out["label"] = verdict.winner
    return out

