"""The timing rules behind the reliability guarantees: pure functions, plain data."""

from __future__ import annotations

import pytest

from bot.config import DEFAULT_WORKER_JOB_TIMEOUT, ConfigError, Settings
from bot.worker import retry


def test_ordering_waits_grow_so_arqs_tries_outlast_a_long_wait() -> None:
    waits = [retry.order_wait(tries) for tries in range(1, retry.ARQ_MAX_TRIES + 1)]
    assert waits[0] == retry.ORDER_WAIT  # short while the earlier job is quick
    assert waits == sorted(waits) and max(waits) == retry.ORDER_WAIT_MAX
    # An earlier job held for an hour (a rate limit, or a crashed worker's job until arq
    # lets it run again) must not use up the waiting job's tries.
    assert sum(waits) > 2 * 3600


def test_a_try_ends_inside_arqs_job_timeout() -> None:
    assert retry.try_timeout(DEFAULT_WORKER_JOB_TIMEOUT) == DEFAULT_WORKER_JOB_TIMEOUT - 30
    for job_timeout in (1, 2, 5, 60, 600, 3600):
        assert 0 < retry.try_timeout(job_timeout) < job_timeout


def test_worker_concurrency_and_job_timeout_come_from_the_environment() -> None:
    default = Settings.from_env({})
    assert (default.worker_max_jobs, default.worker_job_timeout) == (50, 600)
    chosen = Settings.from_env({"WORKER_MAX_JOBS": "4", "WORKER_JOB_TIMEOUT": "3"})
    assert (chosen.worker_max_jobs, chosen.worker_job_timeout) == (4, 3)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"WORKER_MAX_JOBS": "0", "WORKER_JOB_TIMEOUT": "soon"})
    assert len(caught.value.problems) == 2
