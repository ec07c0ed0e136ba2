"""One log line per event in key=value form, with every configured secret masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_.:/@#\-+\[\]]+$")


def _quote(value: Any) -> str:
    text = str(value)
    if text and _BARE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class KeyValueFormatter(logging.Formatter):
    """`ts=… level=… logger=… event=… key=value …`, fields from ``extra={"kv": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_quote(record.getMessage())}",
        ]
        fields = getattr(record, "kv", None) or {}
        parts.extend(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)
        if record.exc_info:
            # Keep it one line: exception type and message, not the traceback.
            exc = record.exc_info[1]
            parts.append(f"error={_quote(f'{type(exc).__name__}: {exc}')}")
        return " ".join(parts)


class RedactingFilter(logging.Filter):
    """Last line of defence: no configured secret value ever reaches a log line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        fields = getattr(record, "kv", None)
        exc = record.exc_info[1] if record.exc_info else None
        record.msg, record.args = self.redact(message), None
        if fields:
            record.kv = {k: self.redact(str(v)) if v is not None else v for k, v in fields.items()}
        if exc is not None:
            record.exc_info = None
            error = self.redact(f"{type(exc).__name__}: {exc}")
            record.kv = {**(getattr(record, "kv", None) or {}), "error": error}
        return True

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def setup_logging(secrets: Iterable[str] = (), level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what our own lines say.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # pgserver narrates every pg_ctl call over many lines; its warnings still show.
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def kv(**fields: Any) -> dict[str, Any]:
    """``logger.info("delivery accepted", extra=kv(delivery=…))``."""
    return {"kv": fields}
