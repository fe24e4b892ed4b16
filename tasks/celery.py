"""The Celery app of the judge workers: ``celery -A tasks.celery worker`` (or
``judge worker``, which starts it with the right queue and pool).

Configuration comes from :func:`judge.service.celery_config` (broker and result backend
``JUDGE_BROKER_URL``, ``acks_late``, prefetch 1, ``visibility_timeout`` from
``JUDGE_VISIBILITY_TIMEOUT``, the ``judge`` queue, soft and hard time limits), so the
workers and the code that sends tasks by name agree.

Each worker also runs a sweeper thread: every ``JUDGE_SWEEP_INTERVAL`` seconds, one
worker at a time (a Redis lock) re-dispatches chunks whose lease expired and pending
chunks of stalled jobs (see :func:`judge.service.sweep`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutting_down

from judge.config import DEFAULT_BROKER_URL, get_settings
from judge.service import ServiceSettings, celery_config

log = logging.getLogger(__name__)

SWEEP_LOCK = "judge:sweep-lock"


def _broker_url() -> str:
    return get_settings().broker_url or DEFAULT_BROKER_URL


app = Celery("judge", include=["tasks.jobs"])
app.conf.update(celery_config(_broker_url()))

_stop = threading.Event()


def _sweeper() -> None:
    import redis

    from tasks.jobs import worker_store

    settings = ServiceSettings.from_env()
    me = uuid.uuid4().hex
    client = redis.Redis.from_url(_broker_url(), socket_timeout=5, socket_connect_timeout=2)
    while not _stop.wait(settings.sweep_interval):
        try:
            # One sweeper per interval across all workers; the lock expires by itself.
            if client.set(SWEEP_LOCK, me, nx=True, px=int(settings.sweep_interval * 900)):
                from judge.service import sweep

                sent = sweep(worker_store(), broker_url=_broker_url(), settings=settings)
                if sent:
                    log.warning("sweeper re-dispatched %d chunk task(s)", sent)
        except Exception as exc:  # Redis or the database away for a moment: try next time
            log.warning("sweeper: %s: %s", type(exc).__name__, exc)


def _warm_up() -> None:
    try:
        from judge.service import warm_up

        warm_up()
    except Exception as exc:  # the first chunk will report it properly
        log.warning("warm-up failed: %s", exc)


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    threading.Thread(target=_sweeper, name="judge-sweeper", daemon=True).start()
    threading.Thread(target=_warm_up, name="judge-warm-up", daemon=True).start()


@worker_shutting_down.connect
def _stop_sweeper(**_: Any) -> None:
    _stop.set()
