"""arq worker settings: `python -m bot worker` (or `arq worker.WorkerSettings`)."""

from typing import Any, ClassVar

from arq import cron

from bot.jobs import FUNCTIONS
from bot.runner import ARQ_MAX_TRIES, JOB_TIMEOUT, shutdown, startup, sweep


class WorkerSettings:
    functions: ClassVar[list[Any]] = FUNCTIONS
    cron_jobs: ClassVar[list[Any]] = [cron(sweep, second={0}, run_at_startup=True)]
    on_startup = startup
    on_shutdown = shutdown
    max_tries = ARQ_MAX_TRIES
    job_timeout = JOB_TIMEOUT
    max_jobs = 50
    keep_result = 3600
