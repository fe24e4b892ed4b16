"""The HTTP API (FastAPI): queue judge jobs and read them back.

Run it with ``judge serve``. Without ``JUDGE_BROKER_URL`` jobs run in the API process
(a background thread per job, on the embedded defaults); with it, on the Celery workers.

Routes (every one but ``/healthz`` needs ``Authorization: Bearer <token>``; tokens are
made by ``judge tokens create --role R``):

| route | roles |
| --- | --- |
| ``GET /healthz`` | none |
| ``POST /v1/jobs`` (JSON with inline ``items``, or multipart ``file`` + ``spec``) | admin, submitter |
| ``GET /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/judgments`` | any |
| ``POST /v1/jobs/{id}/cancel`` | admin, submitter |
| ``GET /v1/packs``, ``GET /v1/rubrics`` | any |

Every refusal is JSON: ``{"error": {"code": 401, "message": "..."}}`` (401 no or
unknown token, 403 role not allowed, 404 no such job, 413 body too large, 422 invalid
request with ``details``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from judge.datasets import Item
from judge.errors import JudgeError
from judge.service import Budget

READ_ROLES = frozenset({"admin", "submitter", "rater", "viewer"})
SUBMIT_ROLES = frozenset({"admin", "submitter"})
DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024


class JobOptions(BaseModel):
    """What to run: the same choices as ``judge submit``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(default="api", description="A name for the items.")
    pack: str | None = None
    rubrics: list[str] = Field(default_factory=list)
    judges: list[dict[str, Any]] = Field(
        min_length=1, description="judge.models.JudgeModel fields, e.g. {'model': 'openai/x'}.")
    samples: int = Field(default=1, ge=1)
    concurrency: int = Field(default=16, ge=1, le=512)
    jury: Literal["mean", "median", "majority"] = "mean"
    use_cache: bool = True
    experiment: str = "judge"
    budget: Budget = Field(default_factory=Budget)
    tpm: int | None = Field(default=None, ge=1)
    track: bool = True
    idempotency_key: str | None = Field(default=None, max_length=200)
    mapping: dict[str, str] | None = Field(
        default=None, description="Uploaded files only: item field -> column.")


class JobRequest(JobOptions):
    """A job with its items inline."""

    items: list[Item] = Field(min_length=1)


class ApiError(Exception):
    """A refusal with an HTTP status."""

    def __init__(self, status: int, message: str, details: Any = None):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def _error(status: int, message: str, details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": status, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def create_app(store: Any = None, *, max_upload_bytes: int | None = None) -> FastAPI:
    """The API app. ``store`` defaults to ``Store.open()`` at first use.

    ``max_upload_bytes`` (default ``JUDGE_API_MAX_UPLOAD_BYTES`` or 50 MB) caps request
    bodies: a bigger one is refused with 413 before it is read.
    """
    limit = max_upload_bytes or int(os.environ.get("JUDGE_API_MAX_UPLOAD_BYTES")
                                    or DEFAULT_MAX_UPLOAD)
    app = FastAPI(title="judge", version="1", docs_url="/docs")
    app.state.store = store

    def get_store() -> Any:
        if app.state.store is None:
            from judge.store import Store

            app.state.store = Store.open()
        return app.state.store

    def role(allowed: frozenset[str]) -> Callable[..., str]:
        def check(request: Request) -> str:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "Missing bearer token: send 'Authorization: Bearer "
                                    "<token>' (create one with `judge tokens create --role R`).")
            found = get_store().role_for_token(token.strip())
            if found is None:
                raise ApiError(401, "Unknown or revoked token.")
            if str(found) not in allowed:
                raise ApiError(403, f"Role '{found}' may not do this; allowed roles: "
                                    f"{', '.join(sorted(allowed))}.")
            return str(found)
        return check

    reader = Depends(role(READ_ROLES))
    submitter = Depends(role(SUBMIT_ROLES))

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return _error(413, f"Request body of {length} bytes is over the limit of {limit} "
                               "bytes (JUDGE_API_MAX_UPLOAD_BYTES).")
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details[:5])
        return _error(422, f"Invalid request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(JudgeError)
    async def _judge_error(_: Request, exc: JudgeError) -> JSONResponse:
        from judge.store import JobNotFoundError

        if isinstance(exc, JobNotFoundError):
            return _error(404, str(exc))
        return _error(422 if exc.exit_code == 2 else 500, str(exc))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        from judge.config import get_settings

        get_store().count_judgments("-")  # the store answers
        return {"status": "ok", "mode": "celery" if get_settings().broker_url else "in-process"}

    @app.post("/v1/jobs", status_code=202)
    async def create_job(request: Request, _role: str = submitter) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            options, items = await _from_upload(request, limit)
        else:
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(422, "Invalid request: the body is not JSON (send a JSON "
                                    "job with 'items', or multipart 'file' + 'spec').") from None
            try:
                req = JobRequest.model_validate(body)
            except ValidationError as exc:
                raise RequestValidationError(exc.errors()) from None
            options, items = req, req.items
        job, created = _submit(get_store(), options, items)
        from judge.client import job_view

        return JSONResponse({**job_view(job), "created": created},
                            status_code=202 if created else 200)

    @app.get("/v1/jobs")
    def list_jobs(status: str | None = None, limit: int = Query(50, ge=1, le=500),
                  offset: int = Query(0, ge=0), _role: str = reader) -> dict[str, Any]:
        from judge.client import job_view

        return {"items": [job_view(j) for j in get_store().list_jobs(limit, status, offset)]}

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str, _role: str = reader) -> dict[str, Any]:
        from judge.client import job_view

        return job_view(get_store().get_job(job_id))

    @app.get("/v1/jobs/{job_id}/judgments")
    def judgments(job_id: str, offset: int = Query(0, ge=0),
                  limit: int = Query(100, ge=1, le=1000), _role: str = reader
                  ) -> dict[str, Any]:
        store = get_store()
        store.get_job(job_id)  # 404 for an unknown job
        rows = store.judgments(job_id, offset=offset, limit=limit)
        total = store.count_judgments(job_id)
        nxt = offset + len(rows) if offset + len(rows) < total else None
        return {"items": [j.model_dump(mode="json") for j in rows], "offset": offset,
                "limit": limit, "total": total, "next_offset": nxt}

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str, _role: str = submitter) -> dict[str, Any]:
        from judge.client import job_view
        from judge.service import cancel_job

        return job_view(cancel_job(get_store(), job_id))

    @app.get("/v1/packs")
    def packs(_role: str = reader) -> dict[str, Any]:
        from judge.packs import list_packs

        return {"items": [{"name": p.name, "version": p.version, "title": p.manifest.title,
                           "domain": p.manifest.domain, "source": p.kind,
                           "rubrics": [r.id for r in p.rubrics]} for p in list_packs()]}

    @app.get("/v1/rubrics")
    def rubrics(pack: str | None = None, _role: str = reader) -> dict[str, Any]:
        from judge.packs import all_rubrics, get_pack

        found = list(get_pack(pack).rubrics) if pack else list(all_rubrics().values())
        return {"items": [{"id": r.id, "version": r.version, "dimension": r.dimension,
                           "title": r.title, "hash": r.content_hash} for r in found]}

    return app


async def _from_upload(request: Request, limit: int) -> tuple[JobOptions, list[Item]]:
    from judge.datasets import read_items

    form = await request.form(max_part_size=limit)
    upload, raw_spec = form.get("file"), form.get("spec")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "Invalid request: multipart jobs need a 'file' part (JSONL or CSV).")
    try:
        options = JobOptions.model_validate(json.loads(str(raw_spec or "{}")))
    except ValueError as exc:  # JSONDecodeError and ValidationError
        errors = exc.errors() if isinstance(exc, ValidationError) else [
            {"loc": ["spec"], "msg": str(exc)}]
        raise RequestValidationError(errors) from None
    suffix = Path(upload.filename or "items.jsonl").suffix.lower()
    if suffix not in (".jsonl", ".csv", ".json"):
        raise ApiError(422, f"Invalid request: file '{upload.filename}' must be .jsonl or .csv.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"items{'.jsonl' if suffix == '.json' else suffix}"
        size = 0
        with path.open("wb") as fh:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"Upload over the limit of {limit} bytes.")
                fh.write(chunk)
        items = read_items(path, options.mapping)
    if not items:
        raise ApiError(422, "Invalid request: the uploaded file has no items.")
    return options, items


def _submit(store: Any, options: JobOptions, items: list[Item]) -> tuple[Any, bool]:
    from judge import service
    from judge.client import items_hash
    from judge.models import JudgeModel

    try:
        judges = [JudgeModel.model_validate(j) for j in options.judges]
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("judges", *e["loc"])} for e in exc.errors()]) from None
    spec = service.make_spec(
        dataset=options.dataset, dataset_hash=items_hash(items), pack=options.pack,
        rubrics=service.resolve_rubrics(options.pack, options.rubrics), judges=judges,
        samples=options.samples, concurrency=options.concurrency, jury=options.jury,
        use_cache=options.use_cache, experiment=options.experiment, budget=options.budget,
        tpm=options.tpm, track=options.track)
    return service.submit(store, spec, items, idempotency_key=options.idempotency_key)
