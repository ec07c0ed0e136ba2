"""The timing rules behind the reliability guarantees: pure functions, plain data."""

from __future__ import annotations

import pytest

from bot import runner
from bot.config import ConfigError, Settings


def test_a_try_ends_inside_arqs_job_timeout() -> None:
    assert runner.TRY_TIMEOUT == runner.JOB_TIMEOUT - 30
    for job_timeout in (1, 2, 5, 60, 600, 3600):
        assert 0 < runner.try_timeout(job_timeout) < job_timeout


def test_worker_concurrency_and_job_timeout_come_from_the_environment() -> None:
    default = Settings.from_env({})
    assert (default.worker_max_jobs, default.worker_job_timeout) == (50, runner.JOB_TIMEOUT)
    chosen = Settings.from_env({"WORKER_MAX_JOBS": "4", "WORKER_JOB_TIMEOUT": "3"})
    assert (chosen.worker_max_jobs, chosen.worker_job_timeout) == (4, 3)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"WORKER_MAX_JOBS": "0", "WORKER_JOB_TIMEOUT": "soon"})
    assert len(caught.value.problems) == 2
