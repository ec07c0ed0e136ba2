"""Prometheus metrics (docs/observability.md): what each process counts, and how the
figures of several processes become one scrape.

Everyone may import this module (web, worker, the HTTP seam of the integrations): it
holds only the metric objects and the text format, no I/O. Label values are bounded:
GitHub's event names (anything else is "other"), answers, job function names, service
names, outcomes; never a delivery id, a repository or a secret.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

PREFIX = "puppet_webhooks_"
# Every process's own figures; merged with the others' by ``merge``.
REGISTRY = CollectorRegistry(auto_describe=True)

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_EFFECT = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)

DELIVERIES = Counter(
    PREFIX + "deliveries",
    "Deliveries received, by GitHub event and by the answer given.",
    ["event", "answer"],
    registry=REGISTRY,
)
INGEST_SECONDS = Histogram(
    PREFIX + "ingest_seconds",
    "From a delivery's request to its answer (checked, stored), in the web process.",
    buckets=_FAST,
    registry=REGISTRY,
)
JOBS = Counter(
    PREFIX + "jobs",
    "Job tries by function and outcome (done, failed, retry, waiting for an earlier job "
    "on the item, skipped).",
    ["function", "outcome"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    PREFIX + "job_seconds",
    "How long a job try ran, by function.",
    ["function"],
    buckets=_SLOW,
    registry=REGISTRY,
)
EFFECT_SECONDS = Histogram(
    PREFIX + "delivery_to_effect_seconds",
    "From a delivery being received to its job's last step done, by function "
    "(replayed deliveries are left out).",
    ["function"],
    buckets=_EFFECT,
    registry=REGISTRY,
)
API_CALLS = Counter(
    PREFIX + "api_calls",
    "Requests to outside APIs, by service and result (ok, rate_limited, client_error, "
    "server_error, connection_error).",
    ["service", "result"],
    registry=REGISTRY,
)
API_SECONDS = Histogram(
    PREFIX + "api_call_seconds",
    "How long outside APIs took to answer, by service.",
    ["service"],
    buckets=_SLOW,
    registry=REGISTRY,
)

# GitHub's webhook event names: a header naming anything else is counted as "other", so
# nobody can add label values by sending made-up events.
GITHUB_EVENTS = frozenset(
    """
    branch_protection_configuration branch_protection_rule check_run check_suite
    code_scanning_alert commit_comment create custom_property custom_property_values
    delete dependabot_alert deploy_key deployment deployment_protection_rule
    deployment_review deployment_status discussion discussion_comment fork
    github_app_authorization gollum installation installation_repositories
    installation_target issue_comment issues label marketplace_purchase member membership
    merge_group meta milestone org_block organization package page_build
    personal_access_token_request ping project project_card project_column projects_v2
    projects_v2_item projects_v2_status_update public pull_request pull_request_review
    pull_request_review_comment pull_request_review_thread push registry_package release
    repository repository_advisory repository_dispatch repository_import repository_ruleset
    repository_vulnerability_alert secret_scanning_alert secret_scanning_alert_location
    secret_scanning_scan security_advisory security_and_analysis sponsorship star status
    sub_issues team team_add watch workflow_dispatch workflow_job workflow_run
    """.split()
)

_delivery_counts: dict[tuple[str, str], Counter] = {}


def count_delivery(event: str, answer: str, seconds: float) -> None:
    """One delivery answered: on the web's hot path, so the labelled counter is looked up
    once per (event, answer) rather than on every delivery."""
    key = (event if event in GITHUB_EVENTS else "other", answer)
    counter = _delivery_counts.get(key)
    if counter is None:
        counter = _delivery_counts[key] = DELIVERIES.labels(*key)
    counter.inc()
    INGEST_SECONDS.observe(seconds)


def count_job(function: str, outcome: str, seconds: float | None = None) -> None:
    JOBS.labels(function, outcome).inc()
    if seconds is not None:
        JOB_SECONDS.labels(function).observe(seconds)


def count_effect(function: str, seconds: float) -> None:
    EFFECT_SECONDS.labels(function).observe(seconds)


def count_api_call(service: str, result: str, started: float) -> None:
    """``started`` is the ``time.perf_counter()`` the request began at."""
    API_CALLS.labels(service, result).inc()
    API_SECONDS.labels(service).observe(time.perf_counter() - started)


def process_label(dyno: str, kind: str) -> str:
    """Heroku's dyno name (``web.1``, ``worker.2``), or elsewhere the kind, host and pid."""
    return dyno or f"{kind}@{socket.gethostname()}:{os.getpid()}"


def snapshot() -> str:
    """This process's figures in Prometheus' text format (what it publishes)."""
    return generate_latest(REGISTRY).decode()


class _Merged(Collector):
    def __init__(self, snapshots: Mapping[str, str], extra: Iterable[Metric]) -> None:
        self.snapshots = snapshots
        self.extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for process, text in sorted(self.snapshots.items()):
            for family in text_string_to_metric_families(text):
                if family.name.endswith("_created"):
                    continue  # when each series began: noise once processes are merged
                merged = families.get(family.name)
                if merged is None:
                    merged = Metric(family.name, family.documentation, family.type)
                    families[family.name] = merged
                for sample in family.samples:
                    if not sample.name.endswith("_created"):
                        labels = {**sample.labels, "process": process}
                        merged.add_sample(sample.name, labels, sample.value)
        yield from families.values()
        yield from self.extra


def merge(snapshots: Mapping[str, str], extra: Iterable[Metric] = ()) -> bytes:
    """One exposition of several processes' snapshots, every sample labelled with the
    ``process`` it came from, plus ``extra`` families measured at scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(snapshots, extra))
    return generate_latest(registry)


def scrape_time(queue_depth: int | None, unfinished: Mapping[str, int] | None) -> list[Metric]:
    """What /metrics measures when it is asked (None: that store could not be read)."""
    up = GaugeMetricFamily(
        PREFIX + "store_up", "Whether /metrics could read the store just now.", labels=["store"]
    )
    up.add_metric(["redis"], float(queue_depth is not None))
    up.add_metric(["postgres"], float(unfinished is not None))
    families: list[Metric] = [up]
    if queue_depth is not None:
        families.append(
            GaugeMetricFamily(
                PREFIX + "queue_depth",
                "Jobs in arq's queue in Redis: ready, or deferred (a retry, a wait).",
                value=queue_depth,
            )
        )
    if unfinished is not None:
        jobs = GaugeMetricFamily(
            PREFIX + "unfinished_jobs",
            "Jobs PostgreSQL says must still run, by status.",
            labels=["status"],
        )
        for status, count in unfinished.items():
            jobs.add_metric([status], count)
        families.append(jobs)
    return families
