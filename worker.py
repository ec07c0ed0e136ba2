"""arq worker settings: `python -m bot worker`, or `arq worker.WorkerSettings`.

Both read the same environment the same way (``worker_settings``). ``WorkerSettings`` is
made when arq looks it up, not when this module is imported: importing reads nothing.
"""

import logging
from datetime import UTC
from typing import Any, ClassVar

from arq import cron

from bot.config import SUMMARY_HOUR_UTC, Settings
from bot.worker.context import ArqContext, shutdown, startup
from bot.worker.jobs import FUNCTIONS
from bot.worker.recovery import RECOVERY_MINUTES, recover_missed_deliveries
from bot.worker.retry import ARQ_MAX_TRIES
from bot.worker.runner import after_job_end
from bot.worker.summary import publish_summary
from bot.worker.sweep import sweep


async def on_startup(ctx: ArqContext) -> None:
    # `arq worker.WorkerSettings` gives arq's logger a handler of its own once it has
    # looked WorkerSettings up: from here on its lines go through ours (one line per
    # event, secrets masked), as under `python -m bot worker`.
    logging.getLogger("arq").handlers.clear()
    await startup(ctx)


class FixedSettings:
    """The worker settings that no environment variable changes."""

    functions: ClassVar[list[Any]] = FUNCTIONS
    cron_jobs: ClassVar[list[Any]] = [
        cron(sweep, second={0}, run_at_startup=True),
        # Always registered: it checks its settings when it runs (they are not read here).
        cron(publish_summary, hour={SUMMARY_HOUR_UTC}, minute={0}, second={0}),
        cron(recover_missed_deliveries, minute=RECOVERY_MINUTES, second={30}),
    ]
    timezone = UTC  # cron hours are UTC, whatever TZ (business hours) says
    on_startup = on_startup
    on_shutdown = shutdown
    after_job_end = after_job_end
    max_tries = ARQ_MAX_TRIES
    keep_result = 3600
    # How often an idle worker looks for jobs that are due (arq's default is 0.5 s).
    poll_delay = 0.05


def worker_settings(settings: Settings) -> dict[str, Any]:
    """arq's Worker arguments for ``settings`` (REDIS_URL, WORKER_MAX_JOBS,
    WORKER_JOB_TIMEOUT); the jobs get ``settings`` through arq's ctx."""
    from bot.queue.redis_client import redis_settings

    assert settings.redis_url
    fixed = {k: v for k, v in vars(FixedSettings).items() if not k.startswith("_")}
    return {
        **fixed,
        "redis_settings": redis_settings(settings.redis_url),
        "max_jobs": settings.worker_max_jobs,
        "job_timeout": settings.worker_job_timeout,
        "ctx": {"settings": settings},
    }


def __getattr__(name: str) -> Any:
    """``worker.WorkerSettings``, as `arq worker.WorkerSettings` looks it up when it starts:
    the settings from the environment, checked, with logging and error tracking set up
    as `python -m bot worker` sets them up. A configuration problem ends the command
    with its message (exit 2), not a traceback."""
    if name != "WorkerSettings":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import sys

    from bot.cli.common import load_settings
    from bot.config import ConfigError
    from bot.outputs import check_names

    try:
        settings = load_settings()
        settings.require("database_url", "redis_url")
        check_names(settings.outputs)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return worker_settings(settings)
