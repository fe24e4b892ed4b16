"""The judge benchmark suite: ratios measured side by side in one run, never a gate.

    python bench/run.py --quick          # a short version, under 3 minutes on 2 cores
    python bench/run.py                  # the full suite (100k-item scale run included)
    python bench/run.py --only inprocess,cache --markdown results.md
    python bench/run.py --profile /tmp/judge-c64   # pyinstrument one judge run at C=64

The fake provider (``bench/fake_server.py``, the tests' fake plus a request counter)
runs in its own process, and every measured client runs in its own subprocess
(``bench/_client.py``), so the CPU time and peak RSS reported are the client's alone.
Every figure that judges judge is a ratio to a baseline measured in this same run: the
bare ``litellm.acompletion`` and instructor-over-litellm loops on the same endpoint with
the same concurrency, the first run for the cache, the smallest size for scale, the
in-process engine for the sinks and the service. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import service as service_bench  # noqa: E402
from bench.table import Row, render  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = sys.executable
RUBRICS = ["tone", "relevance"]  # two likert rubrics, no deterministic checks
SECTIONS = ("inprocess", "cache", "scale", "sinks", "service")
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Plan:
    """Sizes for one run of the suite."""

    quick: bool
    items: int  # per in-process run (× len(RUBRICS) judgments)
    concurrencies: tuple[int, ...] = (16, 64, 256)
    latency_ms: float = 200.0
    fast_latency_ms: float = 5.0
    scale_sizes: tuple[int, ...] = (1000, 10_000, 100_000)
    scale_concurrency: int = 64
    sink_rows: int = 10_000
    mlflow_rows: int = 10_000
    service_items: int = 300
    repeats: int = 2  # in-process rounds; the best is kept
    sections: tuple[str, ...] = SECTIONS
    modes: tuple[str, ...] = ("aiohttp", "litellm", "instructor", "judge", "judge+sqlite")
    results: dict[str, Any] = field(default_factory=dict)


def make_plan(quick: bool, only: str | None) -> Plan:
    sections = tuple(s.strip() for s in only.split(",")) if only else SECTIONS
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise SystemExit(f"Unknown section(s) {bad}. Options: {', '.join(SECTIONS)}.")
    if quick:
        # Sizes chosen so the whole quick run stays under 3 minutes on 2 shared cores;
        # the scale sizes keep a ×10 spread so linear growth is still visible.
        return Plan(quick=True, items=100, repeats=1, scale_sizes=(200, 1000),
                    sink_rows=5000, mlflow_rows=10_000, service_items=100, sections=sections)
    return Plan(quick=False, items=400, service_items=1000, sections=sections)


# --- processes ---------------------------------------------------------------------------


class FakeServer:
    """``bench/fake_server.py`` in its own process."""

    def __init__(self, latency_ms: float):
        self.latency_ms = latency_ms
        self.proc = subprocess.Popen(
            [PY, str(HERE / "fake_server.py"), "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http"):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise SystemExit(f"fake provider did not start: {line} {err}")
        self.url = line
        self.root = line.rsplit("/v1", 1)[0]

    def requests(self) -> int:
        with urllib.request.urlopen(self.root + "/stats", timeout=10) as resp:
            return int(json.load(resp)["requests"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def client(spec: dict[str, Any], timeout: float = 3600) -> list[dict[str, Any]]:
    """Run one measured client in a fresh interpreter; its result list."""
    proc = subprocess.run([PY, str(HERE / "_client.py"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"client {spec.get('mode')} failed (exit {proc.returncode}):\n"
                       f"{proc.stderr[-3000:]}")


class Served:
    """A measured client kept alive across runs (``_client.py --serve``): imports are
    paid once, and the orchestrator can interleave clients run by run."""

    def __init__(self, spec: dict[str, Any]):
        self.mode = spec["mode"]
        # stderr to a file: an unread pipe would block a chatty client once it fills.
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([PY, str(HERE / "_client.py"), "--serve", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)
        self.ready = False

    def wait_ready(self) -> Served:
        """Block until the client has imported, connected and warmed up."""
        if not self.ready:
            self._expect("BENCH_READY")
            self.ready = True
        return self

    def _expect(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        self.err.seek(0)
        err = self.err.read()
        raise RuntimeError(f"client {self.mode} died (exit {self.proc.wait()}):\n{err[-3000:]}")

    def run(self, concurrency: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.wait_ready()
        self.proc.stdin.write(json.dumps({"concurrency": concurrency}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._expect("BENCH_RESULT"))[0]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.err.close()


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of repeated runs, with the least CPU of them (noise only adds)."""
    best = dict(min(runs, key=lambda r: r["elapsed"]))
    best["cpu"] = min(r["cpu"] for r in runs)
    best["rss_mb"] = max(r["rss_mb"] for r in runs)
    best["repeats"] = len(runs)
    return best


def _rate(r: dict[str, Any]) -> float:
    return r["n"] / r["elapsed"] if r["elapsed"] else 0.0


def _cpu_ms(r: dict[str, Any]) -> float:
    return 1000 * r["cpu"] / r["n"] if r["n"] else 0.0


# --- sections ----------------------------------------------------------------------------


def bench_inprocess(plan: Plan, fake: FakeServer, tmp: Path) -> list[Row]:
    """Baselines and judge.evaluate at each concurrency, L = 200 ms."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in plan.modes}
    clients: dict[str, Served] = {}
    try:
        for mode in plan.modes:
            spec: dict[str, Any] = {"mode": mode.split("+")[0], "url": fake.url,
                                    "items": plan.items, "rubrics": RUBRICS}
            if mode == "judge+sqlite":
                spec["db"] = f"sqlite:///{tmp}/inprocess-{{run}}.db"
            clients[mode] = Served(spec)  # all start at once: imports use both cores
        for cl in clients.values():
            cl.wait_ready()
        # Level by level, every client in turn, `repeats` rounds: load from elsewhere on
        # the machine then hits every client alike, and the best of the rounds is kept.
        for c in plan.concurrencies:
            t0 = time.perf_counter()
            samples: dict[str, list[dict[str, Any]]] = {m: [] for m in plan.modes}
            for _round in range(plan.repeats):
                for mode in plan.modes:
                    samples[mode].append(clients[mode].run(c))
            for mode in plan.modes:
                runs[mode].append(_best(samples[mode]))
            print(f"  C={c:<4} done in {time.perf_counter() - t0:5.1f} s", file=sys.stderr)
    finally:
        for cl in clients.values():
            cl.close()
    plan.results["inprocess"] = runs
    rows = []
    for i, c in enumerate(plan.concurrencies):
        ideal = c / (plan.latency_ms / 1000)
        base = runs["instructor"][i]
        for mode in plan.modes:
            r = runs[mode][i]
            target = ""
            if mode.startswith("judge"):
                target = "target ≥0.95× rate, ≤1.1× CPU"
            rows.append(Row(
                "in-process", f"{mode} C={c}", r["n"], _rate(r),
                _rate(r) / _rate(base), "× instructor rate", _cpu_ms(r),
                _cpu_ms(r) / _cpu_ms(base), r["rss_mb"],
                f"ideal {ideal:.0f}/s: ×{_rate(r) / ideal:.2f}"
                + (f"; {r['errors']} errors" if r["errors"] else "") + (f"; {target}" if target else ""),
            ))
    return rows


def bench_cache(plan: Plan, fake: FakeServer, tmp: Path) -> list[Row]:
    """First run into a fresh SQLite store, then the identical job again; the provider's
    own request counter says how many calls each made."""
    c = 64
    db = f"sqlite:///{tmp}/cache.db"
    spec = {"mode": "judge", "url": fake.url, "items": plan.items, "rubrics": RUBRICS,
            "concurrency": c, "db": db}
    # One process, two runs: the cache lives in the store, not in the process, and the
    # second run is the identical job (same items, rubrics, judge, settings).
    served = Served(spec).wait_ready()
    try:
        before = fake.requests()
        first = served.run(c)
        middle = fake.requests()
        rerun = served.run(c)
        after = fake.requests()
    finally:
        served.close()
    first_calls = middle - before
    rerun_calls = after - middle
    plan.results["cache"] = {"first": first, "rerun": rerun, "first_provider_calls": first_calls,
                             "rerun_provider_calls": rerun_calls}
    speedup = first["elapsed"] / rerun["elapsed"] if rerun["elapsed"] else float("inf")
    return [
        Row("cache", f"first run C={c}", first["n"], _rate(first), 1.0, "× first run",
            _cpu_ms(first), None, first["rss_mb"], f"provider calls {first_calls}"),
        Row("cache", f"identical rerun C={c}", rerun["n"], _rate(rerun), speedup,
            "× first run (speed-up)", _cpu_ms(rerun), _cpu_ms(rerun) / _cpu_ms(first),
            rerun["rss_mb"],
            f"provider calls {rerun_calls} (target 0), {rerun['cached']} cached; target ≥20×"),
    ]


def bench_scale(plan: Plan, fast: FakeServer, tmp: Path) -> list[Row]:
    """Growing item counts on a fast endpoint (L = 5 ms), one rubric, fresh SQLite store."""
    rows, runs = [], []
    for n in plan.scale_sizes:
        spec = {"mode": "judge", "url": fast.url, "items": n, "rubrics": RUBRICS[:1],
                "concurrency": plan.scale_concurrency, "db": f"sqlite:///{tmp}/scale-{n}.db"}
        t0 = time.perf_counter()
        runs.append(client(spec)[0])
        print(f"  scale {n:<8} done in {time.perf_counter() - t0:5.1f} s", file=sys.stderr)
    plan.results["scale"] = dict(zip(plan.scale_sizes, runs, strict=True))
    base = runs[0]
    per0 = base["elapsed"] / base["n"]
    for n, r in zip(plan.scale_sizes, runs, strict=True):
        per = r["elapsed"] / r["n"]
        rows.append(Row("scale", f"{n} items L=5ms C={plan.scale_concurrency}", r["n"],
                        _rate(r), per / per0, f"× time/judgment at {plan.scale_sizes[0]}",
                        _cpu_ms(r), _cpu_ms(r) / _cpu_ms(base), r["rss_mb"],
                        f"GC {1000 * r.get('gc_s', 0) / r['n']:.2f} ms/j "
                        f"({r.get('gc_full', 0)} full); target ≤1.10× time/j, RSS < 1024 MB"))
    return rows


def _pg_database() -> tuple[str | None, str]:
    """A throwaway PostgreSQL database; (URL, or None and why not)."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg not installed"
    name = f"judge_bench_{os.getpid()}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # reported as a row, the rest of the suite goes on
        return None, f"PostgreSQL unavailable: {exc}"[:120]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", ""


def _drop_pg(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _job_rate(plan: Plan) -> tuple[float, str]:
    """The in-process engine's judgments/s to compare sinks against."""
    runs = plan.results.get("inprocess", {}).get("judge+sqlite")
    if runs:
        i = plan.concurrencies.index(64) if 64 in plan.concurrencies else 0
        return _rate(runs[i]), f"judge+sqlite C={plan.concurrencies[i]}"
    return 0.0, ""


def bench_sinks(plan: Plan, tmp: Path) -> list[Row]:
    """Store writes/s (SQLite, PostgreSQL), and MLflow's share of a 10k-judgment job."""
    rows = []
    rate, against = _job_rate(plan)
    targets = [("sqlite", f"sqlite:///{tmp}/sinks.db", "")]
    pg_url, why = _pg_database()
    targets.append(("postgresql", pg_url, why))
    for name, url, why in targets:
        if url is None:
            rows.append(Row("sinks", f"store writes {name}", 0, None, None, "", None, None,
                            None, f"not available: {why}"))
            continue
        try:
            r = client({"mode": "sinks", "db": url, "items": plan.sink_rows, "batch": 256})[0]
        finally:
            if name == "postgresql":
                _drop_pg(url)
        rows.append(Row("sinks", f"store writes {name} (batches of 256)", r["n"], _rate(r),
                        _rate(r) / rate if rate else None,
                        f"× {against} rate (headroom)" if rate else "", _cpu_ms(r), None,
                        r["rss_mb"], f"{r['errors']} not stored" if r["errors"] else ""))
    # MLflow: log_job of N judgments, against the time a job of N judgments takes.
    m = client({"mode": "mlflow", "items": plan.mlflow_rows,
                "tracking_uri": f"sqlite:///{tmp}/mlflow.db"})[0]
    job_s, how = _job_seconds(plan, plan.mlflow_rows)
    share = m["elapsed"] / job_s if job_s else None
    cold_share = (m["elapsed"] + m["cold"]) / job_s if job_s else None
    rows.append(Row(
        "sinks", f"MLflow log_job {plan.mlflow_rows} judgments", m["n"], None,
        share, f"of a {plan.mlflow_rows}-judgment job ({how})", None, None, m["rss_mb"],
        f"log {m['elapsed']:.2f} s warm, +{m['cold']:.2f} s first import/open "
        + (f"(×{cold_share:.3f} cold); " if cold_share else "") + "target ≤0.05",
    ))
    plan.results["sinks"] = {"mlflow": m, "job_seconds": job_s}
    return rows


def _job_seconds(plan: Plan, n: int) -> tuple[float | None, str]:
    scale = plan.results.get("scale") or {}
    if n in scale:
        return scale[n]["elapsed"], "measured, L=5ms"
    if scale:  # extrapolated from the largest scale run (time per judgment is flat)
        size = max(scale)
        return scale[size]["elapsed"] / scale[size]["n"] * n, f"extrapolated from {size}, L=5ms"
    runs = plan.results.get("inprocess", {}).get("judge+sqlite")
    if runs:
        return runs[0]["elapsed"] / runs[0]["n"] * n, "extrapolated from in-process"
    return None, "no job measured"


# --- main --------------------------------------------------------------------------------


def profile(path: str, items: int) -> None:
    """pyinstrument one judge run (store None) at C=64, L=200 ms; print the summary."""
    from bench.profile_report import summarise

    fake = FakeServer(200.0)
    try:
        for mode in ("instructor", "judge"):
            out = f"{path}-{mode}"
            r = client({"mode": mode, "url": fake.url, "items": items, "rubrics": RUBRICS,
                        "concurrency": 64, "profile": out})[0]
            print(f"== {mode}: {_rate(r):.1f} judgments/s under the profiler, "
                  f"{_cpu_ms(r):.2f} ms CPU/judgment; tree in {out}.txt")
            print(summarise(out + ".pyisession", top=20))
    finally:
        fake.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short version (< 3 min)")
    parser.add_argument("--only", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    parser.add_argument("--json", help="also write the raw measurements to this file")
    parser.add_argument("--scale-sizes", help="override the scale section's item counts, "
                        "e.g. 1000,10000")
    parser.add_argument("--profile", metavar="PATH",
                        help="profile instructor and judge at C=64 instead of the suite")
    args = parser.parse_args(argv)
    if args.profile:
        profile(args.profile, items=300)
        return 0
    plan = make_plan(args.quick, args.only)
    if args.scale_sizes:
        plan.scale_sizes = tuple(int(x) for x in args.scale_sizes.split(","))
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="judge-bench-") as tmpdir:
        tmp = Path(tmpdir)
        fake = FakeServer(plan.latency_ms)
        fast = FakeServer(plan.fast_latency_ms)
        try:
            steps = {
                "inprocess": lambda: bench_inprocess(plan, fake, tmp),
                "cache": lambda: bench_cache(plan, fake, tmp),
                "scale": lambda: bench_scale(plan, fast, tmp),
                "sinks": lambda: bench_sinks(plan, tmp),
                "service": lambda: service_bench.bench_service(plan, fake, tmp, client),
            }
            for name in SECTIONS:  # always in this order: later sections use earlier results
                if name in plan.sections:
                    t0 = time.perf_counter()
                    print(f"{name}…", file=sys.stderr)
                    rows += steps[name]()
                    print(f"{name} took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        finally:
            fake.stop()
            fast.stop()
    took = time.perf_counter() - started
    title = (f"judge bench ({'quick' if plan.quick else 'full'}), L={plan.latency_ms:g} ms "
             f"unless noted, {len(RUBRICS)} likert rubrics, {os.cpu_count()} CPUs, "
             f"took {took:.0f} s")
    print(render(rows, title))
    if args.markdown:
        Path(args.markdown).write_text(render(rows, title, markdown=True) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(plan.results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
