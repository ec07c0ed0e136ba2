"""The production log handler: lines as formatted, batched per event-loop iteration."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from bot.logs import KeyValueFormatter, LineHandler, kv


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def handler_and_logger(stream: CountingStream) -> logging.Logger:
    handler = LineHandler(stream)
    handler.setFormatter(KeyValueFormatter(["s3cret"]))
    logger = logging.getLogger(f"test.lines.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_outside_an_event_loop_each_line_is_written_at_once() -> None:
    stream = CountingStream()
    log = handler_and_logger(stream)
    log.info("one", extra=kv(token="s3cret"))
    assert stream.getvalue().endswith("event=one token=***\n")
    log.info("two")
    assert stream.writes == 2 and stream.getvalue().count("\n") == 2


async def test_lines_of_one_loop_iteration_leave_in_one_write() -> None:
    stream = CountingStream()
    log = handler_and_logger(stream)

    async def request(n: int) -> None:
        log.info("delivery accepted", extra=kv(n=n))
        await asyncio.sleep(0)
        log.info("done", extra=kv(n=n))

    await asyncio.gather(*(request(n) for n in range(5)))
    await asyncio.sleep(0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    # Arrival order is kept, and ten lines took far fewer than ten writes.
    assert [line.split("n=")[1] for line in lines[:5]] == ["0", "1", "2", "3", "4"]
    assert stream.writes <= 3


async def test_pending_lines_are_written_by_flush_at_shutdown() -> None:
    stream = CountingStream()
    log = handler_and_logger(stream)
    log.info("last words")
    assert stream.getvalue() == ""  # waiting for the end of this iteration
    for handler in log.handlers:
        handler.flush()  # what logging.shutdown does at exit
    assert 'event="last words"' in stream.getvalue()


def test_an_exception_keeps_its_traceback_in_the_same_line_with_secrets_masked() -> None:
    stream = CountingStream()
    log = handler_and_logger(stream)

    def connect() -> None:
        raise ConnectionError('could not log in with "s3cret"\nsecond line')

    try:
        connect()
    except ConnectionError:
        log.exception("request failed", extra=kv(path="/events"))
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("ts=") and 'event="request failed" path=/events' in line
    assert 'traceback="Traceback (most recent call last):\\n  File ' in line
    assert "in connect\\n" in line and line.endswith('second line"')
    assert "s3cret" not in line and "***" in line


def test_a_very_long_traceback_keeps_its_start_and_its_end() -> None:
    stream = CountingStream()
    log = handler_and_logger(stream)

    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("many words " * 2000 + "the bottom")
        deep(n - 1)

    try:
        deep(20)
    except ValueError:
        log.exception("job failed")
    (line,) = stream.getvalue().splitlines()
    assert len(line.encode()) < 10_000  # Heroku splits longer lines
    assert "Traceback (most recent call last)" in line and "characters left out" in line
    assert line.endswith('many words the bottom"') and "in deep" in line


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("line\nbreak", '"line\\nbreak"'),
        ("carriage\rreturn", '"carriage\\rreturn"'),
        ("\x1b[31mred", '"\\x1b[31mred"'),
        ("nul\x00", '"nul\\x00"'),
        ("del\x7f and \x85", '"del\\x7f and \\x85"'),
        ("line\u2028separator", '"line\\u2028separator"'),
        ("bidi\u202ereversed", '"bidi\\u202ereversed"'),
        ("lone\ud800surrogate", '"lone\\ud800surrogate"'),
        ("bare\n", '"bare\\n"'),  # not mistaken for a bare value by its final newline
        ('quote " and \\', '"quote \\" and \\\\"'),
        ("plain-value", "plain-value"),
        ("déjà vu", '"déjà vu"'),
    ],
)
def test_every_control_character_in_a_value_is_escaped(value: str, written: str) -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "seen", (), None)
    record.kv = {"repo": value}
    line = KeyValueFormatter([]).format(record)
    assert line.endswith(f" repo={written}")
    assert line.isprintable() and line.encode("utf-8")  # one line that any stream can write


def test_an_escaped_secret_is_still_masked() -> None:
    secret = "se\ncr\x1bet"
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "got %s", (secret,), None)
    line = KeyValueFormatter([secret]).format(record)
    assert "se" + "\\n" not in line and line.endswith('event="got ***"')
