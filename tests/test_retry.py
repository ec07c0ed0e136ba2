"""Error classification and retry decisions (docs/jobs.md): pure functions, plain data."""

from __future__ import annotations

import random

import pytest

from bot.integrations.errors import NotRetryable, RateLimited, Transient, classify
from bot.worker.retry import MAX_TRIES, backoff, decide

NOW = 1_800_000_000.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retryable(status: int) -> None:
    error = classify("jira", "POST", "/rest/api/2/issue", status, {}, "", NOW)
    assert isinstance(error, NotRetryable) and error.status == status


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    assert isinstance(classify("trello", "GET", "/1/cards/x", status, {}, "", NOW), Transient)


def test_success_is_not_an_error() -> None:
    assert classify("github", "GET", "/users/x", 200, {}, "", NOW) is None


def test_429_waits_as_told_or_a_minute() -> None:
    told = classify("trello", "GET", "/1/boards/b", 429, {"Retry-After": "7"}, "", NOW)
    assert isinstance(told, RateLimited) and told.retry_after == 7
    untold = classify("trello", "GET", "/1/boards/b", 429, {}, "", NOW)
    assert isinstance(untold, RateLimited) and untold.retry_after == 60


def test_retry_after_as_an_http_date() -> None:
    headers = {"Retry-After": "Fri, 15 Jan 2027 08:00:30 GMT"}
    error = classify("jira", "GET", "/x", 503, headers, "", 1_799_999_990.0 + 0)
    assert isinstance(error, RateLimited)


def test_github_primary_rate_limit_waits_until_reset() -> None:
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 90))}
    error = classify("github", "POST", "/repos/o/r/issues/1/comments", 403, headers, "", NOW)
    assert isinstance(error, RateLimited) and error.retry_after == 90


def test_github_secondary_rate_limit_waits_at_least_a_minute() -> None:
    reason = "You have exceeded a secondary rate limit. Please wait a few minutes."
    error = classify("github", "POST", "/x", 403, {}, reason, NOW)
    assert isinstance(error, RateLimited) and error.retry_after >= 60
    told = classify("github", "POST", "/x", 403, {"retry-after": "30"}, reason, NOW)
    assert isinstance(told, RateLimited) and told.retry_after == 30


def test_a_plain_403_is_permission_denied() -> None:
    headers = {"x-ratelimit-remaining": "4000"}
    error = classify("github", "POST", "/x", 403, headers, "Resource not accessible", NOW)
    assert isinstance(error, NotRetryable)


def test_backoff_grows_exponentially_with_jitter() -> None:
    rng = random.Random(7)
    delays = [backoff(n, rng) for n in range(1, 6)]
    for n, delay in enumerate(delays, start=1):
        middle = 5.0 * 3 ** (n - 1)
        assert 0.5 * middle <= delay <= 1.5 * middle
    assert len({round(backoff(2, random.Random(s)), 3) for s in range(20)}) > 10


def test_decisions() -> None:
    transient = Transient("trello", "GET /1/cards answered 502", 502)
    assert decide(transient, 1).retry and decide(transient, 1).counts
    final = decide(transient, MAX_TRIES)
    assert not final.retry and f"gave up after {MAX_TRIES} tries" in final.reason
    limited = decide(RateLimited("jira", "429", 12.0), 4)
    assert limited.retry and not limited.counts and 12 <= limited.delay <= 13
    assert not decide(NotRetryable("jira", "400", 400), 1).retry
    assert decide(TimeoutError(), 1).retry and decide(ConnectionResetError(), 2).retry
    assert not decide(KeyError("title"), 1).retry  # our bug: record it, retry from the CLI
