"""`arq worker.WorkerSettings` reads the environment as `python -m bot worker` does:
REDIS_URL, WORKER_MAX_JOBS and WORKER_JOB_TIMEOUT, checked when arq starts."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from arq.connections import ArqRedis

from bot.config import Settings
from tests.service_processes import ServiceProcess
from tests.support import ROOT, clean_environ
from worker import FixedSettings, worker_settings

# What arq's command line does with its argument: look the settings up, make a Worker.
AS_ARQ_DOES = """
import json
from arq.utils import import_string
from arq.worker import create_worker
worker = create_worker(import_string("worker.WorkerSettings"))
r = worker.redis_settings
print(json.dumps({"host": r.host, "port": r.port, "database": r.database,
                  "max_jobs": worker.max_jobs, "job_timeout": worker.job_timeout_s,
                  "functions": sorted(worker.functions),
                  "settings": type(worker.ctx["settings"]).__name__}))
"""


async def python(code: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def base_env(**extra: str) -> dict[str, str]:
    """This machine's environment without the service's variables, plus ``extra``."""
    return {
        **clean_environ(),
        "DATABASE_URL": "postgresql://localhost/unused",
        "REDIS_URL": "redis://127.0.0.1:6399/3",
        "GITHUB_EVENT_OUTPUTS": "",
        **extra,
    }


async def test_arq_reads_redis_url_and_the_worker_variables(tmp_path: Path) -> None:
    env = base_env(WORKER_MAX_JOBS="7", WORKER_JOB_TIMEOUT="120")
    code, out, err = await python(AS_ARQ_DOES, env)
    assert code == 0, err
    seen = json.loads(out)
    assert (seen["host"], seen["port"], seen["database"]) == ("127.0.0.1", 6399, 3)
    assert (seen["max_jobs"], seen["job_timeout"]) == (7, 120)
    cron = ["cron:publish_summary", "cron:recover_missed_deliveries", "cron:sweep"]
    assert seen["functions"] == sorted([f.__name__ for f in FixedSettings.functions] + cron)
    assert seen["settings"] == "Settings"
    # `python -m bot worker` hands arq the same arguments, from the same function.
    same = worker_settings(Settings.from_env(env))
    assert (same["max_jobs"], same["job_timeout"], same["redis_settings"].port) == (7, 120, 6399)


async def test_arq_without_the_services_says_which_variables_are_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in base_env().items() if k not in ("DATABASE_URL", "REDIS_URL")}
    code, _, err = await python(AS_ARQ_DOES, env)
    assert code == 2 and "Traceback" not in err
    assert "DATABASE_URL is not set" in err and "REDIS_URL is not set" in err


async def test_the_arq_command_runs_a_worker_on_redis_url(
    service_urls: tuple[str, str], redis: ArqRedis, tmp_path: Path
) -> None:
    env = base_env(PUPPET_WEBHOOKS_DATA_DIR=str(tmp_path / "data"))
    env.update(DATABASE_URL=service_urls[0], REDIS_URL=service_urls[1], WORKER_MAX_JOBS="3")
    worker = await start_arq(env, tmp_path / "arq.log")
    try:
        await worker.ready()
        deadline = time.monotonic() + 30
        while not await redis.exists("arq:queue:health-check"):
            assert time.monotonic() < deadline, worker.output()
            await asyncio.sleep(0.1)
    finally:
        assert await worker.stop() == 0
    lines = worker.output().splitlines()
    # Once started, arq's own lines come through ours: one format, secrets masked.
    after = lines[next(n for n, line in enumerate(lines) if "worker ready" in line) :]
    assert after and all(line.startswith("ts=") for line in after), after


async def start_arq(env: dict[str, str], log: Path) -> ServiceProcess:
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "arq",
            "worker.WorkerSettings",
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    return ServiceProcess(process, log)
