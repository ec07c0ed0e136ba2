"""Typed settings built from the environment, validated once at start-up."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Each default once: Settings' fields and from_env both use these.
DEFAULT_DATA_DIR = Path(".data")
DEFAULT_PORT = 8080
DEFAULT_STORED_EVENT_LIMIT = 100  # as the old service
DEFAULT_JOB_HISTORY_DAYS = 30
DEFAULT_WORKER_MAX_JOBS = 50
DEFAULT_WORKER_JOB_TIMEOUT = 600  # seconds, as the old service
# How long a delivery's jobs wait once stored before they may run, so that an earlier
# event about the same item, stored at the same moment by another web process, goes first.
DEFAULT_ORDER_SETTLE_MS = 500
# Import jobs queued in Redis or running at once, across every worker: enough to keep the
# outside APIs' limits busy, few enough that a live event never waits behind many.
DEFAULT_IMPORT_JOBS_AT_ONCE = 10
# The share of an installation's hourly GitHub budget that imports leave to live events.
GITHUB_BUDGET_KEPT_FOR_LIVE = 0.2
DEFAULT_OUTPUTS = ("trello",)
DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_TRELLO_API_URL = "https://api.trello.com"
DEFAULT_TZ = "UTC"
# GitHub keeps an App's webhook delivery log this long: missed deliveries can be asked
# for again within it.
GITHUB_DELIVERY_LOG_DAYS = 3
# When the worker publishes the finished-card summary each day.
SUMMARY_HOUR_UTC = 6
DEFAULT_LOG_LEVEL = "INFO"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Whether new items look for the old service's cards and issues (docs/migrating.md):
# "auto" until `links adopt` has recorded them all, "on" or "off" to force it.
LEGACY_LOOKUP_CHOICES = ("auto", "on", "off")
DEFAULT_LEGACY_LOOKUP = "auto"


@dataclass(frozen=True)
class PoolSizes:
    """Most PostgreSQL connections each kind of process opens."""

    web: int
    worker: int
    cli: int
    migrate: int = 1  # the release phase; web and worker also migrate on one as they start


# The defaults fit Heroku Postgres' smallest plan (20 connections): one web (5), two
# workers (5 each), the release phase (1) and one CLI command (2) open at most 18, which
# leaves 2 for `heroku pg:psql`. DATABASE_POOL_SIZE_WEB / _WORKER change the first two.
POOL_SIZES = PoolSizes(web=5, worker=5, cli=2)
JIRA_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PRIVATE_KEY|API_KEY|_KEY)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """One or more environment variables are missing or malformed."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _secret() -> Any:
    # Secrets never appear in repr(); Settings.__repr__ says only whether they are set.
    return field(default="", repr=False, metadata={"secret": True})


@dataclass(frozen=True)
class Settings:
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False, metadata={"secret": True})
    database_url: str | None = field(default=None, repr=False, metadata={"secret": True})
    redis_url: str | None = field(default=None, repr=False, metadata={"secret": True})
    data_dir: Path = DEFAULT_DATA_DIR
    port: int = DEFAULT_PORT
    admin_token: str = _secret()
    stored_event_limit: int = DEFAULT_STORED_EVENT_LIMIT
    log_level: str = DEFAULT_LOG_LEVEL
    pool_sizes: PoolSizes = POOL_SIZES
    metrics_public: bool = False  # /metrics without the admin token
    dyno: str = ""  # Heroku's name for this process (web.1, worker.2): its metrics' label
    sentry_dsn: str = _secret()
    # Days a delivery's row and its finished jobs are kept after its body is pruned.
    job_history_days: int = DEFAULT_JOB_HISTORY_DAYS
    # Worker: jobs run at once per worker process, and arq's job timeout.
    worker_max_jobs: int = DEFAULT_WORKER_MAX_JOBS
    worker_job_timeout: int = DEFAULT_WORKER_JOB_TIMEOUT
    order_settle_ms: int = DEFAULT_ORDER_SETTLE_MS
    import_jobs_at_once: int = DEFAULT_IMPORT_JOBS_AT_ONCE
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    outputs_explicit: bool = False  # GITHUB_EVENT_OUTPUTS was set (not the default)
    # GitHub (docs/github.md)
    github_api_url: str = DEFAULT_GITHUB_API_URL
    github_app_id: str = ""
    github_private_key: str = _secret()
    github_token: str = _secret()
    # Trello (docs/trello.md)
    trello_api_url: str = DEFAULT_TRELLO_API_URL
    trello_app_key: str = _secret()
    trello_user_token: str = _secret()
    trello_target_list_id: str = ""
    trello_boards: tuple[str, ...] = ()
    trello_set_target_response_time: bool = False
    trello_finished_list_id: str = ""
    archive_card: bool = False
    tz: str = DEFAULT_TZ
    # Jira (docs/jira.md)
    jira_site: str = ""
    jira_context_path: str = ""
    jira_username: str = ""
    jira_password: str = _secret()
    jira_token: str = _secret()
    # Migrating from the old service (docs/migrating.md)
    legacy_lookup: str = DEFAULT_LEGACY_LOOKUP
    # Summary (docs/summary.md)
    github_summary_gist_id: str = ""
    summary_template: str = ""
    # The whole environment, for outputs added as extensions: they read their own
    # variables from it in their constructor (never at import).
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every variable, collect every problem, and raise them all at once."""
        env = os.environ if env is None else env
        problems: list[str] = []
        reader = _Reader(env, problems)
        settings = cls(
            webhook_secrets=reader.csv("GITHUB_WEBHOOK_SECRET")
            + reader.csv("GITHUB_X_HUB_SIGNATURE_SECRET"),
            database_url=reader.text("DATABASE_URL") or None,
            redis_url=reader.text("REDIS_URL") or reader.text("REDIS_TLS_URL") or None,
            data_dir=Path(reader.text("PUPPET_WEBHOOKS_DATA_DIR") or DEFAULT_DATA_DIR),
            port=reader.integer("PORT", DEFAULT_PORT, minimum=1),
            admin_token=reader.text("ADMIN_TOKEN"),
            stored_event_limit=reader.integer(
                "STORED_EVENT_LIMIT", DEFAULT_STORED_EVENT_LIMIT, minimum=1
            ),
            log_level=reader.choice("LOG_LEVEL", LOG_LEVELS, DEFAULT_LOG_LEVEL),
            pool_sizes=PoolSizes(
                web=reader.integer("DATABASE_POOL_SIZE_WEB", POOL_SIZES.web, minimum=2),
                worker=reader.integer("DATABASE_POOL_SIZE_WORKER", POOL_SIZES.worker, minimum=1),
                cli=POOL_SIZES.cli,
            ),
            metrics_public=reader.flag("METRICS_PUBLIC"),
            dyno=reader.text("DYNO"),
            sentry_dsn=reader.dsn("SENTRY_DSN"),
            job_history_days=reader.integer(
                "JOB_HISTORY_DAYS", DEFAULT_JOB_HISTORY_DAYS, minimum=1
            ),
            worker_max_jobs=reader.integer("WORKER_MAX_JOBS", DEFAULT_WORKER_MAX_JOBS, minimum=1),
            worker_job_timeout=reader.integer(
                "WORKER_JOB_TIMEOUT", DEFAULT_WORKER_JOB_TIMEOUT, minimum=1
            ),
            order_settle_ms=reader.integer("ORDER_SETTLE_MS", DEFAULT_ORDER_SETTLE_MS, minimum=0),
            import_jobs_at_once=reader.integer(
                "IMPORT_JOBS_AT_ONCE", DEFAULT_IMPORT_JOBS_AT_ONCE, minimum=1
            ),
            outputs=reader.names("GITHUB_EVENT_OUTPUTS", DEFAULT_OUTPUTS),
            outputs_explicit="GITHUB_EVENT_OUTPUTS" in env,
            github_api_url=reader.url("GITHUB_API_URL", DEFAULT_GITHUB_API_URL),
            github_app_id=reader.text("GITHUB_APP_ID"),
            github_private_key=reader.private_key(),
            github_token=reader.text("GITHUB_TOKEN"),
            trello_api_url=reader.url("TRELLO_API_URL", DEFAULT_TRELLO_API_URL),
            trello_app_key=reader.text("TRELLO_APP_KEY"),
            trello_user_token=reader.text("TRELLO_USER_TOKEN"),
            trello_target_list_id=reader.text("TRELLO_TARGET_LIST_ID"),
            trello_boards=reader.csv("TRELLO_BOARDS"),
            trello_set_target_response_time=reader.flag("TRELLO_SET_TARGET_RESPONSE_TIME"),
            trello_finished_list_id=reader.text("TRELLO_FINISHED_LIST_ID"),
            archive_card=reader.flag("ARCHIVE_CARD"),
            tz=reader.timezone("TZ"),
            jira_site=reader.url("JIRA_SITE", ""),
            jira_context_path=reader.text("JIRA_CONTEXT_PATH").strip("/"),
            jira_username=reader.text("JIRA_USERNAME"),
            jira_password=reader.text("JIRA_PASSWORD"),
            jira_token=reader.text("JIRA_TOKEN"),
            legacy_lookup=reader.choice(
                "LEGACY_LOOKUP", LEGACY_LOOKUP_CHOICES, DEFAULT_LEGACY_LOOKUP
            ),
            github_summary_gist_id=reader.text("GITHUB_SUMMARY_GIST_ID"),
            summary_template=reader.text("SUMMARY_TEMPLATE_URL") or reader.text("SUMMARY_TEMPLATE"),
            environ=dict(env),
        )
        if problems:
            raise ConfigError(problems)
        return settings

    def require(self, *what: str) -> None:
        """Fail with one message naming every variable a process needs but lacks."""
        problems = [REQUIREMENTS[w] for w in what if not _REQUIREMENT_CHECKS[w](self)]
        if problems:
            raise ConfigError(problems)

    def secrets(self) -> list[str]:
        """Every configured secret value, for log redaction."""
        values: list[str] = []
        for f in dataclasses.fields(self):
            if not f.metadata.get("secret"):
                continue
            value = getattr(self, f.name)
            values.extend(value if isinstance(value, tuple) else [value])
        values.extend(_url_password(v) for v in (self.database_url, self.redis_url) if v)
        # An extension's credentials are secret too, by their names.
        values.extend(v for k, v in self.environ.items() if _SECRET_NAME.search(k))
        return [v for v in values if v and len(v) >= 4]

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "environ":
                continue
            if f.metadata.get("secret"):
                shown.append(f"{f.name}={'<set>' if value else '<unset>'}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"


REQUIREMENTS = {
    "webhook_secret": "GITHUB_WEBHOOK_SECRET is not set: the web process verifies every "
    "delivery's X-Hub-Signature-256 with it (generate one with `python -m bot secret`)",
    "database_url": "DATABASE_URL is not set (`arq worker.WorkerSettings` needs it; "
    "`python -m bot worker` starts a local server instead)",
    "redis_url": "REDIS_URL is not set (`arq worker.WorkerSettings` needs it; "
    "`python -m bot worker` starts a local server instead)",
}
_REQUIREMENT_CHECKS = {
    "webhook_secret": lambda s: bool(s.webhook_secrets),
    "database_url": lambda s: bool(s.database_url),
    "redis_url": lambda s: bool(s.redis_url),
}


def _url_password(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


class _Reader:
    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self.env = env
        self.problems = problems

    def text(self, name: str) -> str:
        return self.env.get(name, "").strip()

    def csv(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.text(name).split(",") if part.strip())

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            self.problems.append(f"{name} must be a whole number ≥ {minimum} (got {raw!r})")
            return default
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """One of ``choices``, in any case (given as the choices spell it)."""
        raw = self.text(name)
        for choice in choices:
            if raw.casefold() == choice.casefold():
                return choice
        if raw:
            self.problems.append(f"{name} must be one of {', '.join(choices)} (got {raw!r})")
        return default

    def flag(self, name: str) -> bool:
        raw = self.text(name).lower()
        if raw in _TRUE:
            return True
        if raw not in _FALSE:
            self.problems.append(f"{name} must be true/yes or false/no (got {raw!r})")
        return False

    def url(self, name: str, default: str) -> str:
        raw = self.text(name) or default
        if raw and not re.match(r"^https?://[^/\s]+", raw):
            self.problems.append(f"{name} must be an http(s) URL (got {raw!r})")
        return raw.rstrip("/")

    def dsn(self, name: str) -> str:
        """A Sentry DSN; it is a credential, so a bad one is not echoed."""
        raw = self.text(name)
        if raw and not re.match(r"^https?://[^@/\s]+@[^/\s]+/\S+$", raw):
            self.problems.append(f"{name} must be a Sentry DSN: https://KEY@HOST/PROJECT")
            return ""
        return raw

    def names(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A comma list of output names (which exist is checked when outputs are built)."""
        if name not in self.env:
            return default
        values = tuple(v.lower() for v in self.csv(name))
        bad = [v for v in values if not re.match(r"^[a-z][a-z0-9_]*$", v)]
        if bad:
            self.problems.append(f"{name} has malformed output name(s): {', '.join(bad)}")
        return tuple(dict.fromkeys(v for v in values if v not in bad))

    def timezone(self, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        raw = self.text(name) or DEFAULT_TZ
        try:
            ZoneInfo(raw.lstrip(":"))
        except (ZoneInfoNotFoundError, ValueError):
            self.problems.append(f"{name} is not a known time zone (got {raw!r})")
            return DEFAULT_TZ
        return raw.lstrip(":")

    def private_key(self) -> str:
        """GITHUB_PRIVATE_KEY as PEM or base64 of it, or a file at GITHUB_PRIVATE_KEY_PATH."""
        raw = self.env.get("GITHUB_PRIVATE_KEY", "").strip()
        path = self.text("GITHUB_PRIVATE_KEY_PATH")
        if not raw and path:
            try:
                raw = Path(path).read_text().strip()
            except OSError as exc:
                self.problems.append(
                    f"GITHUB_PRIVATE_KEY_PATH cannot be read ({exc.strerror or exc})"
                )
                return ""
        if not raw or raw.startswith("-----BEGIN"):
            return raw.replace("\\n", "\n")
        try:
            decoded = base64.b64decode(raw, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if not decoded.startswith("-----BEGIN"):
            self.problems.append("GITHUB_PRIVATE_KEY is neither a PEM key nor base64 of one")
            return ""
        return decoded.strip()
