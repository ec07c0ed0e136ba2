"""Optional error tracking with Sentry (``SENTRY_DSN``, docs/observability.md): the web's,
the worker's and the commands' unexpected exceptions and error log lines, with no
secret, request body or header, query string or local variable in them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bot.config import Settings
from bot.logs import secret_masker
from bot.model import DELIVERY_HEADERS_KEPT

# Request headers an event may keep: they say what GitHub sent, and carry no credential.
SAFE_HEADERS = frozenset(h.lower() for h in (*DELIVERY_HEADERS_KEPT, "Content-Length"))

Event = dict[str, Any]


def setup_error_tracking(settings: Settings, *, transport: Any = None) -> bool:
    """Start sending to Sentry when ``SENTRY_DSN`` is set; True when it was."""
    if not settings.sentry_dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.aiohttp import AioHttpIntegration
    from sentry_sdk.integrations.arq import ArqIntegration

    scrub = scrubber(settings.secrets())

    def before_sending(event: Any, hint: Any) -> Any:  # with the breadcrumbs it carries
        return scrub(event)

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        integrations=[AioHttpIntegration(), ArqIntegration()],
        # send_default_pii stays off (the default): no user, IP address or cookie.
        # A frame's local variables may hold a delivery body, a token or a private key.
        include_local_variables=False,
        max_request_body_size="never",
        # Breadcrumbs are scrubbed with the event that carries them out, not one by one
        # as every log line makes one.
        before_send=before_sending,
        transport=transport,
    )
    return True


def scrubber(secrets: Iterable[str]) -> Callable[[Event], Event]:
    """What every event (and the breadcrumbs in it) goes through before it leaves the
    process."""
    masked_text = secret_masker(secrets)

    def mask(value: Any) -> Any:
        if isinstance(value, str):
            return masked_text(value)
        if isinstance(value, dict):
            return {mask(k): mask(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [mask(v) for v in value]
        return value

    def scrub(event: Event) -> Event:
        request = event.get("request")
        if isinstance(request, dict):
            event["request"] = _bare_request(request)
        masked: Event = mask(event)
        return masked

    return scrub


def _bare_request(request: dict[str, Any]) -> dict[str, Any]:
    """Method, path and the safe headers: no body, cookie, query string or credential."""
    headers = request.get("headers") or {}
    url = str(request.get("url") or "")
    return {
        "method": request.get("method"),
        "url": url.split("?", 1)[0],
        "headers": {k: v for k, v in dict(headers).items() if k.lower() in SAFE_HEADERS},
    }
