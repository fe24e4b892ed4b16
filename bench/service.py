"""The service section: the same job through ``judge submit --wait`` on 1 and 2
``judge worker`` processes (real Redis), against ``judge run`` in-process.

Both sides go through the CLI, so both pay the same start-up, store and MLflow
costs; the workers are started and warm before the clock starts. Total concurrency is
the same on every side: ``judge run -c 64``; one worker running 4 chunks at once of
``-c 16`` each; two workers running 2 chunks at once each. The workers' CPU and peak RSS
come from ``/proc`` (utime + stime, ``VmHWM``).

When ``judge submit`` or ``judge worker`` is not in this checkout, the section returns
one "not available" row instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.table import Row

TOTAL_CONCURRENCY = 64
SHARED_REDIS_URL = "redis://127.0.0.1:6379/13"
_TICK = os.sysconf("SC_CLK_TCK")


class PrivateRedis:
    """A throwaway ``redis-server`` on a free port when the binary is installed, else the
    shared one on 6379 (``BENCH_REDIS_URL`` overrides). Private because other sessions'
    tests flush the shared server, and a flushed queue loses the chunks in it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = os.environ.get("BENCH_REDIS_URL", "")
        if self.url:
            return
        exe = shutil.which("redis-server")
        if exe is None:
            self.url = SHARED_REDIS_URL
            return
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def available(redis_url: str) -> str:
    """Empty when the service CLI is here; else why not."""
    for module, what in (("judge.cli.jobs_cmd", "judge submit"),
                         ("judge.cli.service_cmd", "judge worker"), ("tasks.celery", "tasks/")):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{what} not landed ({module} missing)"
        except ModuleNotFoundError:
            return f"{what} not landed ({module} missing)"
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
        for _ in range(50):  # a fresh private server takes a moment to listen
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        client.ping()
    except Exception as exc:  # reported as the row's note
        return f"Redis unavailable at {redis_url}: {exc}"[:120]
    return ""


def _judge_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("judge")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "judge.cli"]


def _cpu_s(pid: int) -> float:
    """utime + stime of a process and its waited-for children, seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _dataset(path: Path, n: int) -> None:
    from bench._client import make_items

    with path.open("w") as fh:
        for item in make_items(n):
            fh.write(json.dumps({"id": item.id, "input": item.input, "output": item.output}) + "\n")


def _env(home: Path, queue: str, broker: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "JUDGE_HOME": str(home),
        "JUDGE_DATABASE_URL": f"sqlite:///{home}/judge.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
        "OPENAI_API_KEY": "sk-bench-fake",
        "JUDGE_QUEUE": queue,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    })
    env.pop("JUDGE_BROKER_URL", None)
    if broker:
        env["JUDGE_BROKER_URL"] = broker
    return env


def _job_args(dataset: Path, url: str, concurrency: int, rubrics: list[str]) -> list[str]:
    args = [str(dataset), "-m", "openai/fake-judge", "--api-base", url,
            "--concurrency", str(concurrency)]
    for r in rubrics:
        args += ["-r", r]
    return args


def _timed(cmd: list[str], env: dict[str, str], timeout: float) -> float:
    """Wall seconds of a command that must succeed."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}… exit {proc.returncode}: "
                           f"{(proc.stderr or proc.stdout)[-1500:]}")
    return wall


def _start_workers(count: int, per_worker: int, env: dict[str, str], log_dir: Path
                   ) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        log = (log_dir / f"worker-{i}.log").open("wb")
        procs.append(subprocess.Popen(
            [*_judge_cmd(), "worker", "-c", str(per_worker), "--loglevel", "WARNING"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _wait_ready(env: dict[str, str], count: int, timeout: float = 60) -> None:
    """Until ``count`` workers answer a Celery ping (or the time is up)."""
    code = ("import sys; from tasks.celery import app; "
            "r = app.control.ping(timeout=1.0) or []; print(len(r))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=30)
        try:
            if int(out.stdout.strip() or 0) >= count:
                return
        except ValueError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{count} judge worker(s) not ready after {timeout:g} s")


def bench_service(plan: Any, fake: Any, tmp: Path, client: Any) -> list[Row]:
    """Rows for in-process ``judge run`` and ``judge submit --wait`` on 1 and 2 workers."""
    redis = PrivateRedis()
    try:
        why = available(redis.url)
        if why:
            return [Row("service", "judge submit --wait, 1 and 2 workers", 0, None, None, "",
                        None, None, None, f"not available: {why}")]
        return _bench_service(plan, fake, tmp, redis.url)
    finally:
        redis.stop()


def _children_cpu() -> tuple[float, float]:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def _bench_service(plan: Any, fake: Any, tmp: Path, broker: str) -> list[Row]:
    from bench.run import RUBRICS

    n_items = plan.service_items
    root = tmp / "service"
    root.mkdir(exist_ok=True)
    dataset = root / "items.jsonl"
    _dataset(dataset, n_items)
    n = n_items * len(RUBRICS)
    rows: list[Row] = []
    cmd = _judge_cmd()

    # In-process: judge run, fresh home.
    home = root / "inprocess"
    home.mkdir()
    env = _env(home, f"bench-{os.getpid()}-none", broker=None)
    cpu0, _ = _children_cpu()
    wall = _timed([*cmd, "run", *_job_args(dataset, fake.url, TOTAL_CONCURRENCY, RUBRICS)],
                  env, timeout=1800)
    cpu1, rss = _children_cpu()
    base_rate, base_cpu_ms = n / wall, 1000 * (cpu1 - cpu0) / n
    rows.append(Row("service", f"judge run in-process c={TOTAL_CONCURRENCY}", n, base_rate, 1.0,
                    "× judge run", base_cpu_ms, 1.0, rss,
                    "wall incl. CLI start-up and MLflow logging"))
    # A lost message would leave --wait waiting for the sweeper; bound the wait.
    limit = 10 * wall + 120

    for workers in (1, 2):
        per_worker = 4 // workers  # chunks at once per worker; ×16 per chunk = 64 in total
        home = root / f"workers-{workers}"
        home.mkdir()
        env = _env(home, f"bench-{os.getpid()}-{workers}", broker=broker)
        procs = _start_workers(workers, per_worker, env, home)
        case = f"judge submit --wait, {workers} worker(s) ×{per_worker} chunks ×c16"
        try:
            _wait_ready(env, workers)
            wcpu0 = sum(_cpu_s(p.pid) for p in procs)
            cpu0, _ = _children_cpu()
            wall = _timed([*cmd, "submit", *_job_args(dataset, fake.url, TOTAL_CONCURRENCY // 4,
                                                      RUBRICS), "--wait"], env, timeout=limit)
            cpu1, _ = _children_cpu()
            worker_cpu = sum(_cpu_s(p.pid) for p in procs) - wcpu0
            rss = max(_hwm_mb(p.pid) for p in procs)
        except Exception as exc:  # the row says what broke; the suite goes on
            rows.append(Row("service", case, 0, None, None, "", None, None, None,
                            f"failed: {exc}"[:300]))
            continue
        finally:
            _stop_workers(procs)
        rate = n / wall
        cpu_ms = 1000 * (worker_cpu + cpu1 - cpu0) / n
        rows.append(Row("service", case, n, rate, rate / base_rate, "× judge run in-process",
                        cpu_ms, cpu_ms / base_cpu_ms, rss,
                        "target ≥1.7× with 2 workers" if workers == 2
                        else "private Redis broker, SQLite store; CPU = workers + submit"))
    shutil.rmtree(root, ignore_errors=True)
    return rows
