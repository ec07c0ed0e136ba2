"""Sans-I/O checks for an incoming delivery: size, content type, signature, headers, body."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from bot.jsonvalues import JSON_OBJECTS, parse_document
from bot.model import Delivery

MAX_BODY_BYTES = 25 * 1024 * 1024
SIGNATURE_HEADER = "X-Hub-Signature-256"
# Headers kept with a stored delivery: enough to replay it, nothing that could be a secret.
SAFE_HEADERS = (
    "Content-Type",
    "User-Agent",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
)
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}$")
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DeliveryError(Exception):
    """The delivery is refused; ``status`` and ``message`` are what the sender is told."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def signature_for(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.digest(secret.encode(), body, hashlib.sha256).hex()


def signature_is_valid(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """Constant-time check of ``X-Hub-Signature-256`` against every configured secret."""
    if not header or not header.startswith("sha256="):
        return False
    given = header.strip().encode("ascii", "replace")
    # Every secret is tried so the time taken does not say which one (if any) matched.
    results = [hmac.compare_digest(given, signature_for(body, s).encode()) for s in secrets]
    return any(results)


def check_content_type(headers: Mapping[str, str]) -> str:
    media_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type not in ("application/json", "application/x-www-form-urlencoded"):
        shown = media_type or "none"
        raise DeliveryError(
            415,
            f"unsupported content type {shown!r}: "
            "send application/json or application/x-www-form-urlencoded",
        )
    return media_type


def parse_delivery(headers: Mapping[str, str], body: bytes, secrets: Iterable[str]) -> Delivery:
    """Turn a request into a Delivery, or raise DeliveryError with the answer to give."""
    if len(body) > MAX_BODY_BYTES:
        raise DeliveryError(413, f"body is larger than {MAX_BODY_BYTES} bytes")
    media_type = check_content_type(headers)
    if not signature_is_valid(body, headers.get(SIGNATURE_HEADER), secrets):
        raise DeliveryError(401, f"missing or invalid {SIGNATURE_HEADER} signature")
    event = headers.get("X-GitHub-Event", "").strip()
    delivery_id = headers.get("X-GitHub-Delivery", "").strip()
    if not event or not delivery_id:
        missing = [
            h for h, v in (("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery_id)) if not v
        ]
        raise DeliveryError(400, f"missing header {' and '.join(missing)}")
    if not EVENT_NAME.match(event):
        raise DeliveryError(400, "X-GitHub-Event is not an event name")
    if not _DELIVERY_ID.match(delivery_id):
        raise DeliveryError(400, "X-GitHub-Delivery is not a delivery id")
    document = _form_payload(body) if media_type.endswith("urlencoded") else body
    data = _json_object(document)
    safe = {h: headers[h] for h in SAFE_HEADERS if h in headers}
    return Delivery(delivery_id=delivery_id, event=event, data=data, body=document, headers=safe)


def _form_payload(body: bytes) -> bytes:
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise DeliveryError(400, "body is not form-encoded") from None
    payload = fields.get("payload")
    if not payload:
        raise DeliveryError(400, "form-encoded body has no payload field")
    return payload[0].encode("utf-8")


def _json_object(document: bytes) -> Mapping[str, Any]:
    try:
        data: Any = parse_document(document)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DeliveryError(400, "body is not valid JSON") from None
    if not isinstance(data, JSON_OBJECTS):
        raise DeliveryError(400, "body is not a JSON object")
    return data
