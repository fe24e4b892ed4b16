"""MLflow tracking: one run per judge job, and one per calibration.

Every function here talks to MLflow through an explicit
:class:`mlflow.tracking.MlflowClient` built for the configured tracking URI, never
through MLflow's fluent, process-global "active run": several jobs may log at once in
one process (threads, asyncio) or in workers, and must not write into each other's runs.

Where runs go:

- ``MLFLOW_TRACKING_URI`` is honoured (``judge.config.get_settings()``); the embedded
  default is the SQLite store ``sqlite:///$JUDGE_HOME/mlflow.db``.
- For a SQLite store, an experiment created here gets its artifacts beside the
  database, in ``<database dir>/mlartifacts/<experiment>`` (so
  ``$JUDGE_HOME/mlartifacts/judge`` for the embedded default) rather than MLflow's
  ``./mlruns`` relative to whatever directory the process happens to run in. An
  experiment that already exists keeps its own artifact location; a tracking server
  decides its own.

Idempotence: a job's run carries the tag ``judge.job_id``. Logging the same job again
(``judge jobs log-mlflow JOB`` after a failure, a task that ran twice) finds that run
and updates it instead of creating a second one: new params are added, metrics get a
newer value (the old one stays in the metric's history), tags are overwritten, and the
judgments table and artifacts are replaced. MLflow never lets a param change value, so
a param whose value differs from the one already logged is a :class:`TrackingError`,
raised before anything is written. Two processes logging the *same* job at the *same*
moment may still create two runs (MLflow has no unique constraint on tags).

Failure: every failure is a :class:`TrackingError`, which callers turn into a warning
(the judgments are in the store and can be logged later). It is meant to be fast: the
host of a remote tracking URI (http, https, or a database server) is probed with a
TCP connection first (``CONNECT_TIMEOUT_S``), and while a call runs MLflow's HTTP
client is limited to ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=1``,
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT=10`` (MLflow's
own defaults retry for about four minutes). A value the user has set in the
environment wins over these.

Cost: a job is logged in a handful of calls, whatever its size: params, tags and
metrics go in ``log_batch`` calls of at most MLflow's limits (100 params/tags and 1000
entities per call) and the judgments table is written once, as ``judgments.json`` in
MLflow's table format (pandas ``orient="split"``), readable back with
:func:`read_judgments`, ``MlflowClient().load_table(experiment_id, "judgments.json",
run_ids=[run_id])``, or ``mlflow.load_table`` after ``mlflow.set_experiment("judge")``
(the fluent one searches the current experiment only). Measured on the 2-core dev
machine with the SQLite store: about 0.25 s for 10k judgments of 25 fields once MLflow
is loaded; see :func:`warm_up` for the one-off import and store-opening cost.

``mlflow`` is imported inside the functions: importing it takes over a second, and
``import judge`` must stay cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from judge.errors import JudgeError

if TYPE_CHECKING:
    import pandas
    from mlflow.tracking import MlflowClient

__all__ = [
    "CONNECT_TIMEOUT_S",
    "TABLE_ARTIFACT",
    "TrackingError",
    "find_run",
    "log_calibration",
    "log_job",
    "metric_key",
    "read_judgments",
    "read_run_metrics",
    "warm_up",
]

_log = logging.getLogger(__name__)

TABLE_ARTIFACT = "judgments.json"
"""Run-relative path of the per-item judgments table."""

JOB_TAG = "judge.job_id"
CALIBRATION_TAG = "judge.calibration_id"
TRUNCATED_TAG = "judge.truncated_params"
DEFAULT_EXPERIMENT = "judge"
DEFAULT_CALIBRATION_EXPERIMENT = "judge-calibration"

CONNECT_TIMEOUT_S = 3.0
"""How long the pre-flight TCP probe of a remote tracking host may take."""

# MLflow's HTTP client defaults (7 retries, backoff factor 2, 120 s timeout) make an
# unreachable server hang a job for minutes; these apply only while a call runs, and
# only where the user has not set the variable.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}

# MLflow's limits (mlflow.utils.validation); read from MLflow when it is importable.
_MAX_PARAMS_PER_BATCH = 100
_MAX_ENTITIES_PER_BATCH = 1000
_MAX_METRICS_PER_BATCH = 1000
_TRUNCATION_MARK = "…[truncated]"

_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
_METRIC_BAD_CHARS = re.compile(r"[^/\w.\- :]")


class TrackingError(JudgeError):
    """MLflow could not be reached or refused what was logged.

    Callers that log as a side effect of a job catch it and warn: the judgments are in
    the store, and ``judge jobs log-mlflow JOB`` logs them later.
    """

    exit_code = 1

    def __init__(self, message: str, *, tracking_uri: str | None = None,
                 operation: str | None = None, cause: BaseException | None = None):
        self.tracking_uri = tracking_uri
        self.operation = operation
        self.cause = cause
        super().__init__(message)


# --------------------------------------------------------------------------- public API


def metric_key(rubric_id: str, stat: str, judge_model: str | None = None) -> str:
    """The metric name for a rubric statistic: ``<rubric>/<stat>``.

    Rubric ids contain ``/`` (``healthcare/triage``), which MLflow allows in metric
    keys: ``healthcare/triage/mean``. For one judge of a jury the judge model goes in
    between (``healthcare/triage/openai/gpt-4.1-mini/mean``); characters MLflow refuses
    in a key become ``_``.
    """
    parts = [rubric_id] + ([judge_model] if judge_model else []) + [stat]
    return _METRIC_BAD_CHARS.sub("_", "/".join(parts))


def log_job(
    job_id: str,
    *,
    experiment: str = DEFAULT_EXPERIMENT,
    params: Mapping[str, Any],
    metrics: Mapping[str, float | None],
    judgments: Sequence[Mapping[str, Any] | Any] | pandas.DataFrame,
    tags: Mapping[str, str] | None = None,
    artifacts: Mapping[str, Path] | None = None,
) -> str:
    """Log one job as one MLflow run (created, or found by its job id and updated).

    Args:
        job_id: The job's id; also the run name and the ``judge.job_id`` tag.
        experiment: MLflow experiment name, created if missing.
        params: Pack, rubric versions and hashes, judge models, sampling params…
            Values are stringified; one longer than MLflow's limit is truncated, marked
            with ``…[truncated]``, listed in the tag ``judge.truncated_params``, and a
            warning is logged.
        metrics: ``<rubric>/<stat>`` and ``judge/...`` figures (see :func:`metric_key`).
            A ``None`` value (a cost with no known price) is skipped, not logged as 0.
        judgments: The per-item judgments (dicts, pydantic models or a DataFrame),
            written once as the table artifact ``judgments.json``.
        tags: Extra run tags.
        artifacts: Extra files or directories, keyed by the run-relative directory they
            go into (``""`` for the run's root): a file keeps its name, a directory's
            contents are copied.

    Returns:
        The MLflow run id.

    Raises:
        TrackingError: MLflow unreachable, a param changed value on re-logging, or a
            missing artifact path. Nothing the job needs depends on this succeeding.
    """
    run_tags = {JOB_TAG: job_id, **(tags or {})}
    return _log_run(
        key_tag=JOB_TAG, key=job_id, run_name=job_id, experiment=experiment,
        params=params, metrics=metrics, tags=run_tags, table=judgments,
        artifacts=artifacts or {}, what=f"job '{job_id}'",
        hint=f"The judgments are in the store: log them later with "
             f"`judge jobs log-mlflow {job_id}`.",
    )


def log_calibration(
    *,
    rubric_id: str,
    judge_model: str,
    rubric_hash: str,
    prompt_hash: str | None,
    split: str,
    stats: Mapping[str, Any],
    rubric_version: str | None = None,
    calibration_id: str | None = None,
    report_dir: Path | None = None,
    experiment: str = DEFAULT_CALIBRATION_EXPERIMENT,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log a calibration report as an MLflow run.

    Metrics are ``calibration/<rubric>/<stat>``; a statistic with a confidence interval
    also gets ``calibration/<rubric>/<stat>_low`` and ``..._high``.

    Args:
        rubric_id: The rubric calibrated.
        judge_model: The judge model calibrated.
        rubric_hash: The rubric's content hash.
        prompt_hash: The judge prompt's hash.
        split: The data split the figures come from (``test``, ``cv5``, ``all``…).
        stats: Statistic name to value: a number, a ``(value, low, high)`` tuple, a
            mapping with ``value``/``low``/``high`` keys, or an object with those
            attributes. ``None`` values and ``None`` bounds are skipped.
        rubric_version: The rubric's version, logged as a param when given.
        calibration_id: When given, the run is found by the tag
            ``judge.calibration_id`` and updated (like :func:`log_job`); otherwise every
            call creates a new run.
        report_dir: A directory (Markdown, HTML, PNG plots, JSON) logged under
            ``report/``.
        experiment: MLflow experiment name, created if missing.
        params: Extra params (seed, bootstrap size, thresholds…).
        tags: Extra run tags.

    Returns:
        The MLflow run id.

    Raises:
        TrackingError: as :func:`log_job`.
    """
    run_params: dict[str, Any] = {
        "judge_model": judge_model,
        "rubric_id": rubric_id,
        "rubric_hash": rubric_hash,
        "prompt_hash": prompt_hash if prompt_hash is not None else "none",
        "split": split,
    }
    if rubric_version is not None:
        run_params["rubric_version"] = rubric_version
    run_params.update(params or {})
    metrics: dict[str, float | None] = {}
    for stat, value in stats.items():
        point, low, high = _estimate(value)
        base = metric_key(f"calibration/{rubric_id}", stat)
        metrics[base] = point
        if low is not None:
            metrics[f"{base}_low"] = low
        if high is not None:
            metrics[f"{base}_high"] = high
    run_tags = {"judge.kind": "calibration", "judge.rubric_id": rubric_id,
                "judge.judge_model": judge_model, **(tags or {})}
    if calibration_id is not None:
        run_tags[CALIBRATION_TAG] = calibration_id
    return _log_run(
        key_tag=CALIBRATION_TAG if calibration_id is not None else None, key=calibration_id,
        run_name=f"calibrate {rubric_id} {judge_model}", experiment=experiment,
        params=run_params, metrics=metrics, tags=run_tags, table=None,
        artifacts={"report": report_dir} if report_dir is not None else {},
        what=f"calibration of '{judge_model}' on '{rubric_id}'",
        hint="The calibration is in the store; its report files are unaffected.",
    )


def warm_up(experiment: str = DEFAULT_EXPERIMENT) -> threading.Thread:
    """Import MLflow and open (or create and migrate) the store in a background thread.

    A job calls this when it starts so that MLflow's import (over a second), opening the
    store and the one-off migration of a new SQLite store (several seconds) overlap with
    judging instead of adding to the job's time. Failures are left for :func:`log_job`
    to report.

    Returns:
        The started daemon thread (join it to wait).
    """

    def run() -> None:
        with contextlib.suppress(Exception):
            with _session("warm up", f"experiment '{experiment}'") as (client, _uri):
                client.get_experiment_by_name(experiment)

    thread = threading.Thread(target=run, name="judge-mlflow-warm-up", daemon=True)
    thread.start()
    return thread


def find_run(job_id: str, experiment: str | None = None) -> str | None:
    """The id of the run logged for ``job_id``, or ``None``.

    Args:
        job_id: The job id (the ``judge.job_id`` tag).
        experiment: Limit the search to this experiment; ``None`` searches them all.

    Raises:
        TrackingError: MLflow unreachable.
    """
    with _session("find the run of", f"job '{job_id}'") as (client, _uri):
        if experiment is None:
            ids = [e.experiment_id for e in client.search_experiments()]
        else:
            exp = client.get_experiment_by_name(experiment)
            ids = [exp.experiment_id] if exp is not None else []
        return _find_by_tag(client, ids, JOB_TAG, job_id)


def read_run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric of a run.

    Raises:
        TrackingError: MLflow unreachable or no such run.
    """
    with _session("read the metrics of", f"run '{run_id}'") as (client, _uri):
        return dict(client.get_run(run_id).data.metrics)


def read_judgments(run_id: str) -> pandas.DataFrame:
    """The judgments table of a run, as logged by :func:`log_job`.

    Raises:
        TrackingError: MLflow unreachable, no such run, or no table in it.
    """
    import pandas as pd

    with _session("read the judgments of", f"run '{run_id}'") as (client, _uri):
        with tempfile.TemporaryDirectory(prefix="judge-mlflow-") as tmp:
            path = client.download_artifacts(run_id, TABLE_ARTIFACT, tmp)
            return pd.read_json(path, orient="split")


# --------------------------------------------------------------------------- internals


def _log_run(
    *,
    key_tag: str | None,
    key: str | None,
    run_name: str,
    experiment: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float | None],
    tags: Mapping[str, str],
    table: Sequence[Any] | pandas.DataFrame | None,
    artifacts: Mapping[str, Path | None],
    what: str,
    hint: str,
) -> str:
    # Checked before MLflow is touched: a bad path must not leave a half-logged run.
    for dest, path in artifacts.items():
        if path is None or not Path(path).exists():
            raise TrackingError(
                f"Cannot log {what} to MLflow: artifact '{dest}' points to {str(path)!r}, "
                "which does not exist. Artifacts must be existing files or directories."
            )
    with _session("log", what, hint) as (client, uri):
        from mlflow.entities import Metric, Param, RunTag

        limit = _param_value_limit()
        str_params, truncated = _clean_params(params, limit)
        str_tags = {k: _truncate(str(v), _tag_value_limit()) for k, v in tags.items()}
        if truncated:
            _log.warning("MLflow params longer than %d characters were truncated for %s: %s",
                         limit, what, ", ".join(truncated))
            str_tags[TRUNCATED_TAG] = _truncate(",".join(truncated), _tag_value_limit())

        exp_id = _experiment_id(client, experiment, uri)
        run_id = _find_by_tag(client, [exp_id], key_tag, key) if key_tag and key else None
        if run_id is None:
            run = client.create_run(exp_id, run_name=run_name)
            run_id = run.info.run_id
            existing_params: dict[str, str] = {}
            existing_tags: dict[str, str] = {}
        else:
            run = client.get_run(run_id)
            existing_params = dict(run.data.params)
            existing_tags = dict(run.data.tags)
            changed = {k: (existing_params[k], v) for k, v in str_params.items()
                       if k in existing_params and existing_params[k] != v}
            if changed:
                shown = "; ".join(f"{k}: {old!r} -> {new!r}"
                                  for k, (old, new) in sorted(changed.items())[:5])
                raise TrackingError(
                    f"Cannot update MLflow run {run_id} of {what}: MLflow params cannot "
                    f"change value, and {len(changed)} would ({shown}). Log it under a "
                    "new id, or delete the run first.",
                    tracking_uri=uri, operation="log",
                )
        try:
            if table is not None:
                _write_table(client, run_id, table)
                logged = json.loads(existing_tags.get("mlflow.loggedArtifacts", "[]"))
                entry = {"path": TABLE_ARTIFACT, "type": "table"}
                if entry not in logged:
                    # What mlflow.load_table() searches for.
                    str_tags["mlflow.loggedArtifacts"] = json.dumps([*logged, entry])
            now = int(time.time() * 1000)
            _log_batches(
                client, run_id,
                params=[Param(k, v) for k, v in str_params.items() if k not in existing_params],
                tags=[RunTag(k, v) for k, v in str_tags.items()],
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()
                         if v is not None],
            )
            for dest, path in artifacts.items():
                assert path is not None
                path = Path(path)
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), dest or None)
                else:
                    client.log_artifact(run_id, str(path), dest or None)
            client.set_terminated(run_id, "FINISHED")
        except Exception:
            # Leave an honest status behind; the run is found and finished next time.
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
            raise
        return run_id


def _clean_params(params: Mapping[str, Any], limit: int) -> tuple[dict[str, str], list[str]]:
    out: dict[str, str] = {}
    truncated: list[str] = []
    for k, v in params.items():
        if isinstance(v, str):
            text = v
        elif isinstance(v, list | dict):
            text = json.dumps(v, sort_keys=True)
        else:
            text = str(v)
        if len(text) > limit:
            truncated.append(k)
            text = _truncate(text, limit)
        out[k] = text
    return out, truncated


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


def _param_value_limit() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:  # older MLflow
        return 500
    return int(MAX_PARAM_VAL_LENGTH)


def _tag_value_limit() -> int:
    try:
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
    except ImportError:
        return 5000
    return int(MAX_TAG_VAL_LENGTH)


def _log_batches(client: MlflowClient, run_id: str, *, params: list[Any], tags: list[Any],
                 metrics: list[Any]) -> None:
    """As few ``log_batch`` calls as MLflow's per-call limits allow."""
    while params or tags or metrics:
        p, params = params[:_MAX_PARAMS_PER_BATCH], params[_MAX_PARAMS_PER_BATCH:]
        t, tags = tags[:_MAX_PARAMS_PER_BATCH], tags[_MAX_PARAMS_PER_BATCH:]
        room = min(_MAX_METRICS_PER_BATCH, _MAX_ENTITIES_PER_BATCH - len(p) - len(t))
        m, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=m, params=p, tags=t)


def _write_table(client: MlflowClient, run_id: str,
                 table: Sequence[Any] | pandas.DataFrame) -> None:
    """Write the judgments once, replacing any earlier table (``log_table`` appends)."""
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        frame = table
    else:
        rows = [r.model_dump(mode="json") if hasattr(r, "model_dump") else dict(r)
                for r in table]
        frame = pd.DataFrame.from_records(rows)
    with tempfile.TemporaryDirectory(prefix="judge-mlflow-") as tmp:
        path = Path(tmp) / TABLE_ARTIFACT
        frame.to_json(path, orient="split", index=False, date_format="iso")
        client.log_artifact(run_id, str(path))


def _find_by_tag(client: MlflowClient, experiment_ids: list[str], tag: str | None,
                 value: str | None) -> str | None:
    if not experiment_ids or tag is None or value is None:
        return None
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    runs = client.search_runs(
        experiment_ids, filter_string=f"tags.`{tag}` = '{escaped}'",
        order_by=["attributes.start_time ASC"], max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
    except MlflowException as exc:
        # Another worker created it between our lookup and our create.
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise exc from None
        return exp.experiment_id


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Beside the SQLite database for a SQLite store; MLflow's choice otherwise."""
    if not uri.startswith("sqlite:"):
        return None
    db = uri.split("sqlite:///", 1)[1] if uri.startswith("sqlite:///") else ""
    if db and db != ":memory:":
        root = Path(db.split("?", 1)[0]).expanduser().resolve().parent / "mlartifacts"
    else:
        from judge.config import get_settings

        root = get_settings().home / "mlartifacts"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return (root / slug).as_uri()


def _estimate(value: Any) -> tuple[float | None, float | None, float | None]:
    """(value, low, high) from a number, a tuple, a mapping or an estimate object."""
    if value is None or isinstance(value, int | float):
        return _num(value), None, None
    if isinstance(value, Mapping):
        return _num(value.get("value")), _num(value.get("low")), _num(value.get("high"))
    if isinstance(value, tuple | list) and len(value) == 3:
        return _num(value[0]), _num(value[1]), _num(value[2])
    if hasattr(value, "value"):
        return (_num(value.value), _num(getattr(value, "low", None)),
                _num(getattr(value, "high", None)))
    raise TrackingError(
        f"Cannot log calibration statistic {value!r}: expected a number, a (value, low, "
        "high) tuple, a mapping with value/low/high, or an object with those attributes."
    )


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _redact(uri: str) -> str:
    """The URI without a password, for messages."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def _probe(uri: str) -> None:
    """Fail in seconds, not minutes, when a remote tracking host does not answer."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return
    port = parts.port or _DEFAULT_PORTS[scheme]
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"cannot connect to {parts.hostname}:{port} within {CONNECT_TIMEOUT_S:g} s: {exc}"
        ) from exc


_env_lock = threading.Lock()
_env_users = 0
_env_added: list[str] = []


@contextlib.contextmanager
def _fast_http() -> Iterator[None]:
    """Apply ``_HTTP_DEFAULTS`` while any call runs (reference-counted across threads)."""
    global _env_users
    with _env_lock:
        if _env_users == 0:
            for name, value in _HTTP_DEFAULTS.items():
                if name not in os.environ:
                    os.environ[name] = value
                    _env_added.append(name)
        _env_users += 1
    try:
        yield
    finally:
        with _env_lock:
            _env_users -= 1
            if _env_users == 0:
                for name in _env_added:
                    os.environ.pop(name, None)
                _env_added.clear()


@contextlib.contextmanager
def _session(operation: str, what: str, hint: str = "") -> Iterator[tuple[MlflowClient, str]]:
    """A client for the configured URI; every failure inside becomes a TrackingError."""
    from judge.config import get_settings

    uri = get_settings().mlflow_tracking_uri
    try:
        with _fast_http():
            _probe(uri)
            try:
                from mlflow.tracking import MlflowClient
            except ImportError as exc:
                raise TrackingError(
                    "MLflow is not installed, so nothing can be tracked: "
                    "pip install 'mlflow>=2.16'", tracking_uri=uri, operation=operation,
                    cause=exc,
                ) from exc
            yield MlflowClient(tracking_uri=uri), uri
    except TrackingError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        msg = (f"Could not {operation} {what} in MLflow at '{_redact(uri)}': "
               f"{type(exc).__name__}: {detail[:500]}.")
        if hint:
            msg += f" {hint}"
        msg += (" Check MLFLOW_TRACKING_URI (unset, judge uses the SQLite store "
                "$JUDGE_HOME/mlflow.db).")
        raise TrackingError(msg, tracking_uri=uri, operation=operation, cause=exc) from exc
