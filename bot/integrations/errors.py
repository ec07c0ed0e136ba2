"""What went wrong talking to an outside API, classified for the retry rules (docs/jobs.md)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

SECONDARY_RATE_LIMIT_WAIT = 60.0


class ServiceError(Exception):
    """An API call failed. Messages name the service, method, path and status only:
    never a URL with credentials in it, never a response body that could echo them."""

    def __init__(self, service: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status = status


class NotRetryable(ServiceError):
    """Trying again cannot help (bad request, no permission, gone): record and stop."""


class Transient(ServiceError):
    """5xx, timeout, connection reset: try again with exponential backoff and jitter."""


class RateLimited(ServiceError):
    """The API asked us to slow down: wait ``retry_after`` seconds, as it said."""

    def __init__(self, service: str, message: str, retry_after: float, status: int = 429) -> None:
        super().__init__(service, message, status)
        self.retry_after = max(0.0, retry_after)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date)."""
    raw = headers.get("Retry-After") or headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    if raw.replace(".", "", 1).isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def classify(
    service: str,
    method: str,
    path: str,
    status: int,
    headers: Mapping[str, str],
    reason: str = "",
    now: float | None = None,
) -> ServiceError | None:
    """Turn a response status into the error to raise, or None when it succeeded."""
    if status < 400:
        return None
    what = f"{method} {path} answered {status}" + (f" ({reason})" if reason else "")
    wait = retry_after_seconds(headers, now)
    if status == 429 or (status in (403, 503) and wait is not None):
        return RateLimited(service, what, wait if wait is not None else 60.0, status)
    if status == 403 and headers.get("x-ratelimit-remaining") == "0":
        reset = float(headers.get("x-ratelimit-reset") or 0)
        current = time.time() if now is None else now
        return RateLimited(service, what, max(1.0, reset - current), status)
    if status == 403 and "secondary rate limit" in reason.lower():
        return RateLimited(service, what, SECONDARY_RATE_LIMIT_WAIT, status)
    if status >= 500 or status in (408, 425):
        return Transient(service, what, status)
    return NotRetryable(service, what, status)
