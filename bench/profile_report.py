"""Summarise a pyinstrument session: where the CPU of one judgment goes.

``python bench/profile_report.py SESSION.pyisession [--top 25]`` prints
    1. inclusive time of the judge-side frames that matter (``judge_once``,
       ``build_messages``, instructor's ``create_with_completion``, litellm's
       ``acompletion``, the store flush…) as % of the profiled time;
    2. the library and judge functions with the most inclusive time;
    3. self time by package (judge, instructor, litellm, pydantic, jinja2, httpx…);
    4. the top functions by self time.
Idle time (the event loop waiting in ``epoll``) is reported apart: it is not CPU.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

# (label, function name, path fragment): inclusive time of each, outermost call counted once.
WATCH = [
    ("judge_once (all of one judgment's call path)", "judge_once", "judge/models.py"),
    ("  build_messages (prompt rendering)", "build_messages", "judge/prompts.py"),
    ("    jinja2 from_string (template compile)", "from_string", "jinja2/environment.py"),
    ("  instructor create_with_completion", "create_with_completion", "instructor/"),
    ("instructor create (baseline client)", "create", "instructor/v2/core/client.py"),
    ("    litellm acompletion (inside instructor)", "acompletion", "litellm/"),
    ("  _cost (litellm cost_per_token)", "_cost", "judge/models.py"),
    ("  Judgment(...) construction (finish)", "finish", "judge/models.py"),
    ("engine finish / sink (results, cache payloads)", "finish", "judge/engine.py"),
    ("store write_judgments", "write_judgments", "judge/store/"),
    ("store cache_put_many", "cache_put_many", "judge/store/"),
    ("store cache_get_many", "cache_get_many", "judge/store/"),
    ("cache_key", "cache_key", "judge/engine.py"),
    ("litellm logging / callbacks (Logging.*)", "success_handler", "litellm/"),
    ("litellm async_success_handler", "async_success_handler", "litellm/"),
]

PACKAGES = ["judge/", "instructor/", "litellm/", "openai/", "pydantic", "jinja2/", "httpx/",
            "httpcore/", "aiohttp/", "sqlalchemy/", "json/", "asyncio/", "tiktoken", "ssl"]


def _package(path: str) -> str:
    for p in PACKAGES:
        if p in path:
            return p.rstrip("/")
    return "other"


def _is_idle(function: str, path: str) -> bool:
    # The loop blocked in epoll/select is waiting on the network, not computing.
    return "poll" in function or (function == "select" and "selectors" in path)


def _walk(frame: Any, stack: tuple[tuple[str, str], ...], out: dict[str, Any]) -> None:
    key = (frame.function or "", frame.file_path or "")
    # pyinstrument puts a frame's own time in a synthetic "[self]" child.
    own = sum(c.time for c in frame.children if c.is_synthetic_leaf)
    if own:
        if _is_idle(*key):
            out["idle"] += own
        else:
            where = f"{key[0]}  {key[1].split('site-packages/')[-1]}:{frame.line_no}"
            out["self_fn"][where] += own
            out["self_pkg"][_package(key[1])] += own
            out["cpu"] += own
    for label, fn, frag in WATCH:
        if key[0] == fn and frag in key[1] and not any(
            s[0] == fn and frag in s[1] for s in stack
        ):
            out["watch"][label] += frame.time
    if key not in stack:  # inclusive time, each function counted at its outermost call
        where = f"{key[0]}  {key[1].split('site-packages/')[-1]}:{frame.line_no}"
        out["incl_fn"][where] += frame.time
    for child in frame.children:
        if not child.is_synthetic:
            _walk(child, (*stack, key), out)


def summarise(path: str, top: int = 25) -> str:
    """The report for one saved session, as text."""
    from pyinstrument.session import Session

    session = Session.load(path)
    root = session.root_frame()
    out: dict[str, Any] = {"idle": 0.0, "cpu": 0.0, "self_fn": defaultdict(float),
                           "self_pkg": defaultdict(float), "watch": defaultdict(float),
                           "incl_fn": defaultdict(float)}
    if root is not None:
        _walk(root, (), out)
    total = out["cpu"] or 1.0
    lines = [f"profiled: {session.duration:.2f} s wall, {out['cpu']:.2f} s sampled busy, "
             f"{out['idle']:.2f} s idle in the event loop",
             "", "inclusive time of key frames (% of busy time):"]
    for label, _fn, _frag in WATCH:
        t = out["watch"].get(label, 0.0)
        if t:
            lines.append(f"  {100 * t / total:5.1f}%  {t:7.2f} s  {label}")
    lines += ["", "self time by package:"]
    for pkg, t in sorted(out["self_pkg"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * t / total:5.1f}%  {pkg}")
    lines += ["", f"top {top} library/judge functions by inclusive time (below the engine):"]
    skip = ("asyncio/", "_client.py", "bench/", "<built-in>", "selectors", "engine.py",
            "judge_once", "retry_async_v2", "new_create_async", "create_with_completion",
            "acompletion  /work", "contextvars")
    shown = 0
    for fn, t in sorted(out["incl_fn"].items(), key=lambda kv: -kv[1]):
        if any(k in fn for k in skip) or t / total < 0.01:
            continue
        lines.append(f"  {100 * t / total:5.1f}%  {fn}")
        shown += 1
        if shown >= top:
            break
    lines += ["", f"top {top} functions by self time:"]
    for fn, t in sorted(out["self_fn"].items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * t / total:5.1f}%  {fn}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.session, args.top))


if __name__ == "__main__":
    main()
