"""Real `python -m bot worker` (and `web`) processes for the reliability tests, pointed at
the test's PostgreSQL, Redis and fake APIs through their environment, as on Heroku."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from tests.fakes.github import FakeGitHub
from tests.fakes.jira import API_TOKEN, EMAIL, FakeJira
from tests.fakes.trello import FakeTrello
from tests.support import ROOT, clean_environ

START_TIMEOUT = 60.0


def worker_env(
    service_urls: tuple[str, str],
    data_dir: Path,
    *,
    trello: FakeTrello,
    github: FakeGitHub,
    jira: tuple[FakeJira, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a worker using the fakes (GitHub in token mode)."""
    env = {
        **clean_environ(),
        "DATABASE_URL": service_urls[0],
        "REDIS_URL": service_urls[1],
        "PUPPET_WEBHOOKS_DATA_DIR": str(data_dir),
        "GITHUB_API_URL": github.base_url,
        "GITHUB_TOKEN": github.personal_token,
        "TRELLO_API_URL": trello.url,
        "TRELLO_APP_KEY": trello.key,
        "TRELLO_USER_TOKEN": trello.token,
        "TRELLO_TARGET_LIST_ID": trello.target_list,
        "TRELLO_BOARDS": trello.old_board,
        "GITHUB_EVENT_OUTPUTS": "trello",
    }
    if jira is not None:
        fake, site = jira
        assert fake.mode == "cloud"
        env.update(
            GITHUB_EVENT_OUTPUTS="trello,jira",
            JIRA_SITE=site,
            JIRA_USERNAME=EMAIL,
            JIRA_PASSWORD=API_TOKEN,
        )
    return {**env, **extra}


@dataclass
class ServiceProcess:
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self, says: str = "worker ready") -> None:
        """Wait until the process logs ``says`` (a worker: its outputs are made and it is
        about to poll for jobs)."""
        deadline = time.monotonic() + START_TIMEOUT
        while says not in self.output():
            if self.process.returncode is not None:
                raise AssertionError(f"process exited early:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"process never said {says!r}:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.05)

    async def healthy(self, base_url: str) -> None:
        """Wait until the web process answers 200 on /healthz."""
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while True:
                assert self.process.returncode is None, self.output()[-3000:]
                assert time.monotonic() < deadline, f"no /healthz\n{self.output()[-3000:]}"
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{base_url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def stop(self, sig: signal.Signals = signal.SIGTERM, within: float = 30) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout=within)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"still running {within} s after {sig.name}") from None

    def jobs_done(self) -> int:
        """How many jobs this worker finished (its "job done" log lines)."""
        return self.output().count('event="job done"')


async def start_worker(env: dict[str, str], log: Path) -> ServiceProcess:
    return await start_process("worker", env, log)


async def start_process(command: str, env: dict[str, str], log: Path) -> ServiceProcess:
    """`python -m bot COMMAND`, its output going to ``log``."""
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            command,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    return ServiceProcess(process, log)


async def wait_for_jobs(
    pool: asyncpg.Pool, total: int, workers: list[ServiceProcess], within: float = 90
) -> None:
    """Until ``total`` jobs are finished (done or failed), while the workers run."""
    deadline = time.monotonic() + within
    while True:
        finished = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE status IN ('done', 'failed')"
        )
        if finished >= total:
            return
        for worker in workers:
            if worker.process.returncode is not None:
                raise AssertionError(f"a worker exited:\n{worker.output()[-3000:]}")
        if time.monotonic() > deadline:
            logs = "\n".join(w.output()[-2000:] for w in workers)
            raise AssertionError(f"{finished} of {total} jobs finished in {within} s\n{logs}")
        await asyncio.sleep(0.1)
