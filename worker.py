"""arq worker settings: `python -m bot worker` (or `arq worker.WorkerSettings`)."""

from datetime import UTC
from typing import Any, ClassVar

from arq import cron

from bot.config import DEFAULT_WORKER_JOB_TIMEOUT, DEFAULT_WORKER_MAX_JOBS
from bot.worker.context import shutdown, startup
from bot.worker.jobs import FUNCTIONS
from bot.worker.recovery import RECOVERY_MINUTES, recover_missed_deliveries
from bot.worker.retry import ARQ_MAX_TRIES
from bot.worker.runner import after_job_end
from bot.worker.summary import CRON_HOUR_UTC, publish_summary
from bot.worker.sweep import sweep


class WorkerSettings:
    functions: ClassVar[list[Any]] = FUNCTIONS
    cron_jobs: ClassVar[list[Any]] = [
        cron(sweep, second={0}, run_at_startup=True),
        # Always registered: it checks its settings when it runs (they are not read here).
        cron(publish_summary, hour={CRON_HOUR_UTC}, minute={0}, second={0}),
        cron(recover_missed_deliveries, minute=RECOVERY_MINUTES, second={30}),
    ]
    timezone = UTC  # cron hours are UTC, whatever TZ (business hours) says
    on_startup = startup
    on_shutdown = shutdown
    after_job_end = after_job_end
    max_tries = ARQ_MAX_TRIES
    job_timeout = DEFAULT_WORKER_JOB_TIMEOUT
    max_jobs = DEFAULT_WORKER_MAX_JOBS
    keep_result = 3600
    # How often an idle worker looks for jobs that are due (arq's default is 0.5 s).
    poll_delay = 0.05
