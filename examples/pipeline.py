"""A pipeline queueing a judge job and gating on the result, through judge.client.

Run it offline against the bundled fake judge (in-process, embedded defaults)::

    python -m judge.testing.fake_provider -- python examples/pipeline.py

With a service (``judge serve`` or workers on ``JUDGE_BROKER_URL``) pass ``--url`` or set
``JUDGE_BROKER_URL``; with a real judge model, pass ``--judge-model``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from judge.client import Client

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="judge serve base URL (default: in-process or broker)")
    parser.add_argument("--token", default=os.environ.get("JUDGE_TOKEN"))
    parser.add_argument("--judge-model", default="openai/fake-judge")
    parser.add_argument("--api-base", default=os.environ.get("JUDGE_FAKE_API_BASE"))
    parser.add_argument("--min-pass-rate", type=float, default=0.2)
    args = parser.parse_args()

    judge_spec = {"model": args.judge_model}
    if args.api_base:
        judge_spec["api_base"] = args.api_base
    client = Client(url=args.url, token=args.token)
    job = client.submit(HERE / "finance_answers.jsonl", pack="finance",
                        rubrics=["finance/fair-balanced", "finance/risk-disclosure"],
                        judges=[judge_spec], idempotency_key=None)
    status = job.wait(timeout=600)
    print(f"job {job.id}: {status['status']}")
    failing = []
    for rubric, figures in status["summary"]["rubrics"].items():
        print(f"  {rubric}: pass rate {figures['pass_rate']}, n {figures['n']}, "
              f"errors {figures['errors']}")
        if figures["pass_rate"] is None or figures["pass_rate"] < args.min_pass_rate:
            failing.append(rubric)
    if failing:
        print(f"gate failed for {', '.join(failing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
