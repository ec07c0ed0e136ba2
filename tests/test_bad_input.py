"""Random and malformed deliveries: never a 5xx, never a traceback, never a secret in logs."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.logs import KeyValueFormatter
from bot.web.ingest import signature_for
from tests.support import ADMIN_TOKEN, OLD_SECRET, SECRET

HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
PAYLOADS = st.one_of(
    st.binary(max_size=512),
    JSON_VALUES.map(lambda v: __import__("json").dumps(v).encode()),
    st.fixed_dictionaries(
        {"action": st.sampled_from(["opened", "closed", "reopened", "created", "x"])},
        optional={
            "pull_request": JSON_VALUES,
            "issue": JSON_VALUES,
            "comment": JSON_VALUES,
            "repository": JSON_VALUES,
            "installation": JSON_VALUES,
            "sender": JSON_VALUES,
        },
    ).map(lambda v: __import__("json").dumps(v).encode()),
)


@pytest.fixture
def captured_logs() -> Any:
    """Capture log lines exactly as production formats and redacts them."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(KeyValueFormatter([SECRET, OLD_SECRET, ADMIN_TOKEN]))
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(previous)


@settings(
    max_examples=int(os.environ.get("BAD_INPUT_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=PAYLOADS,
    event=st.one_of(
        st.sampled_from(
            [
                "pull_request",
                "issues",
                "issue_comment",
                "ping",
                "installation",
                "installation_repositories",
            ]
        ),
        HEADER_TEXT,
    ),
    delivery_id=HEADER_TEXT,
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
            "application/json; charset=utf-8",
        ]
    ),
    signature=st.sampled_from(["valid", "old-secret", "missing", "garbage"]),
)
async def test_random_deliveries_never_yield_5xx_or_leak_secrets(
    client: Any,
    captured_logs: list[str],
    body: bytes,
    event: str,
    delivery_id: str,
    content_type: str,
    signature: str,
) -> None:
    headers = {
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
    }
    if signature == "valid":
        headers["X-Hub-Signature-256"] = signature_for(body, SECRET)
    elif signature == "old-secret":
        headers["X-Hub-Signature-256"] = signature_for(body, OLD_SECRET)
    elif signature == "garbage":
        headers["X-Hub-Signature-256"] = "sha256=" + SECRET  # a secret in a header, even
    response = await client.post("/webhooks", data=body, headers=headers)
    text = await response.text()
    assert response.status < 500, text
    assert "Traceback" not in text
    for secret in (SECRET, OLD_SECRET, ADMIN_TOKEN):
        assert secret not in text
        assert not any(secret in line for line in captured_logs), secret
    if response.status >= 400:
        assert response.content_type == "application/json"
        assert (await response.json())["error"]


def test_the_formatter_masks_secrets_everywhere() -> None:
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "token %s", (SECRET,), None)
    record.kv = {"header": f"Bearer {ADMIN_TOKEN}"}
    try:
        raise ValueError(f"bad {OLD_SECRET}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = KeyValueFormatter([SECRET, OLD_SECRET, ADMIN_TOKEN]).format(record)
    assert SECRET not in line and OLD_SECRET not in line and ADMIN_TOKEN not in line
    # The message, the field, the error and the traceback's last line.
    assert line.count("***") == 4


def test_a_secret_is_masked_as_quoting_writes_it_too() -> None:
    secret = 'se"cr\\et'
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "said %s", (secret,), None)
    record.kv = {"value": f"x {secret} y"}
    line = KeyValueFormatter([secret]).format(record)
    assert 'se\\"cr' not in line and "cr\\\\et" not in line
    assert line == "ts=" + line[3:22] + ' level=info logger=t event="said ***" value="x *** y"'
