"""Sans-I/O checks for an incoming delivery: headers before the body is read, the signature
while it is read, then the body itself."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from bot.jsonvalues import JSON_OBJECTS, parse_document
from bot.model import DELIVERY_HEADERS_KEPT, Delivery

MAX_BODY_BYTES = 25 * 1024 * 1024
# At most this many of the characters [ { , : in one document, so reading it takes
# bounded memory and time: a parser's work grows with the values in a document, and a
# 25 MiB array of small numbers holds millions. A document no longer than this cannot
# have more, so it is not counted. GitHub's deliveries have a few thousand.
MAX_STRUCTURE = 1 << 20
SIGNATURE_HEADER = "X-Hub-Signature-256"
_DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,99}")
EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[{,:")
TOO_LARGE = f"body is larger than {MAX_BODY_BYTES} bytes"


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
    signed = SignedBody(secrets)
    signed.feed(body)
    return signed.matches(header)


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


def check_headers(headers: Mapping[str, str], content_length: int | None) -> str:
    """What can be refused before the body is read; returns the media type.

    A compressed body is refused unread: GitHub never compresses deliveries, and one
    megabyte of gzip can unpack to a gigabyte.
    """
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):
        raise DeliveryError(
            415, f"Content-Encoding {encoding[:40]!r} is not accepted: send the body as is"
        )
    if content_length is not None and content_length > MAX_BODY_BYTES:
        raise DeliveryError(413, TOO_LARGE)
    return check_content_type(headers)


class SignedBody:
    """A body received piece by piece, its signature computed as the pieces arrive (so
    checking it is no extra pass over the whole body once the last piece is in)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._macs = [hmac.new(s.encode(), digestmod=hashlib.sha256) for s in secrets]
        self._pieces: list[bytes] = []
        self.size = 0

    def feed(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > MAX_BODY_BYTES:
            raise DeliveryError(413, TOO_LARGE)
        for mac in self._macs:
            mac.update(piece)
        self._pieces.append(piece)

    def matches(self, header: str | None) -> bool:
        """Constant time: every secret is tried, so the time taken does not say which
        one (if any) matched."""
        if not header or not header.startswith("sha256="):
            return False
        given = header.strip().encode("ascii", "replace")
        expected = [b"sha256=" + mac.hexdigest().encode() for mac in self._macs]
        return any([hmac.compare_digest(given, e) for e in expected])

    def verified(self, header: str | None) -> bytes:
        """The whole body once its signature matches; else DeliveryError (401)."""
        if not self.matches(header):
            raise DeliveryError(401, f"missing or invalid {SIGNATURE_HEADER} signature")
        pieces, self._pieces = self._pieces, []
        return b"".join(pieces)


def parse_delivery(headers: Mapping[str, str], body: bytes, secrets: Iterable[str]) -> Delivery:
    """Turn a request into a Delivery, or raise DeliveryError with the answer to give."""
    if len(body) > MAX_BODY_BYTES:
        raise DeliveryError(413, TOO_LARGE)
    media_type = check_headers(headers, len(body))
    signed = SignedBody(secrets)
    signed.feed(body)
    return parse_signed(headers, signed.verified(headers.get(SIGNATURE_HEADER)), media_type)


def parse_signed(headers: Mapping[str, str], body: bytes, media_type: str) -> Delivery:
    """The Delivery in a body whose signature was checked."""
    event = headers.get("X-GitHub-Event", "").strip()
    delivery_id = headers.get("X-GitHub-Delivery", "").strip()
    if not event or not delivery_id:
        missing = [
            h for h, v in (("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery_id)) if not v
        ]
        raise DeliveryError(400, f"missing header {' and '.join(missing)}")
    if not EVENT_NAME.fullmatch(event):
        raise DeliveryError(400, "X-GitHub-Event is not an event name")
    if not _DELIVERY_ID.fullmatch(delivery_id):
        raise DeliveryError(400, "X-GitHub-Delivery is not a delivery id")
    document = _form_payload(body) if media_type.endswith("urlencoded") else body
    data = _json_object(document)
    safe = {h: headers[h] for h in DELIVERY_HEADERS_KEPT if h in headers}
    return Delivery(delivery_id=delivery_id, event=event, data=data, body=document, headers=safe)


def _form_payload(body: bytes) -> bytes:
    """The ``payload`` field of a form-encoded body."""
    if not body.isascii():  # anything else is percent-encoded
        raise DeliveryError(400, "body is not form-encoded")
    fields = body.split(b"&", 100)
    if len(fields) > 100:
        raise DeliveryError(400, "body is not form-encoded (over 100 fields)")
    for field in fields:
        name, equals, value = field.partition(b"=")
        if not equals:
            raise DeliveryError(400, "body is not form-encoded")
        if _form_decoded(name) == b"payload":
            return _form_decoded(value)
    raise DeliveryError(400, "form-encoded body has no payload field")


_FORM_PIECE = 1 << 20


def _form_decoded(encoded: bytes) -> bytes:
    """``unquote_to_bytes(encoded.replace(b"+", b" "))``, a piece at a time, in C.

    unquote_to_bytes loops in Python over every %, and a JSON payload of 25 MiB has
    millions: seconds of a blocked event loop, and a bytes object for each at once.
    """
    decoded = bytearray()
    start = 0
    while start < len(encoded):
        end = start + _FORM_PIECE
        if encoded[end - 1 : end] == b"%":  # never inside an escape (three bytes)
            end -= 1
        elif encoded[end - 2 : end - 1] == b"%":
            end -= 2
        piece = encoded[start:end].replace(b"+", b" ")
        try:
            escaped = piece.replace(b"\\", b"%5C").replace(b"%", b"\\x")
            decoded += escaped.decode("unicode_escape").encode("latin-1")
        except UnicodeDecodeError:  # a % that is not an escape: kept as it is
            decoded += unquote_to_bytes(piece)
        start = end
    return bytes(decoded)


def _json_object(document: bytes) -> Any:
    if len(document) > MAX_STRUCTURE:
        structure = len(document.translate(None, _NOT_STRUCTURE))
        if structure > MAX_STRUCTURE:
            raise DeliveryError(
                413, f"body has too many JSON values (over {MAX_STRUCTURE} of [ {{ , :)"
            )
    try:
        data: Any = parse_document(document)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DeliveryError(400, "body is not valid JSON") from None
    if not isinstance(data, JSON_OBJECTS):
        raise DeliveryError(400, "body is not a JSON object")
    return data
