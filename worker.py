"""arq worker settings: `python -m bot worker` (or `arq worker.WorkerSettings`)."""

from datetime import UTC
from typing import Any, ClassVar

from arq import cron

from bot.jobs import FUNCTIONS
from bot.runner import ARQ_MAX_TRIES, JOB_TIMEOUT, shutdown, startup, sweep
from bot.summary import CRON_HOUR_UTC, publish_summary


class WorkerSettings:
    functions: ClassVar[list[Any]] = FUNCTIONS
    cron_jobs: ClassVar[list[Any]] = [
        cron(sweep, second={0}, run_at_startup=True),
        # Always registered: it checks its settings when it runs (they are not read here).
        cron(publish_summary, hour={CRON_HOUR_UTC}, minute={0}, second={0}),
    ]
    timezone = UTC  # cron hours are UTC, whatever TZ (business hours) says
    on_startup = startup
    on_shutdown = shutdown
    max_tries = ARQ_MAX_TRIES
    job_timeout = JOB_TIMEOUT
    max_jobs = 50
    keep_result = 3600
