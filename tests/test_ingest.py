"""Pure checks of an incoming delivery: no server, no network."""

import json
from urllib.parse import urlencode

import pytest

from bot.web.ingest import (
    MAX_BODY_BYTES,
    DeliveryError,
    parse_delivery,
    signature_for,
    signature_is_valid,
)

GITHUB_VECTOR = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def headers_for(body: bytes, secret: str = "s3cret", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": signature_for(body, secret),
        **extra,
    }


def test_githubs_published_signature_vector() -> None:
    body = b"Hello, World!"
    assert signature_for(body, "It's a Secret to Everybody") == GITHUB_VECTOR
    assert signature_is_valid(body, GITHUB_VECTOR, ["It's a Secret to Everybody"])
    assert not signature_is_valid(body, GITHUB_VECTOR, ["It's a secret to everybody"])


def test_any_configured_secret_verifies_during_rotation() -> None:
    body = b"{}"
    assert signature_is_valid(body, signature_for(body, "new"), ["old", "new"])
    assert signature_is_valid(body, signature_for(body, "old"), ["old", "new"])
    assert not signature_is_valid(body, signature_for(body, "other"), ["old", "new"])


@pytest.mark.parametrize(
    "header", [None, "", "sha256=", "sha1=abc", "sha256=zz", "sha256=" + "0" * 64, "∂"]
)
def test_missing_or_malformed_signatures_fail(header: str | None) -> None:
    assert not signature_is_valid(b"{}", header, ["s3cret"])


def test_no_secret_configured_verifies_nothing() -> None:
    assert not signature_is_valid(b"{}", signature_for(b"{}", ""), [])


def test_json_delivery_is_parsed() -> None:
    body = json.dumps(
        {
            "action": "opened",
            "repository": {"full_name": "o/r"},
            "installation": {"id": 7},
            "sender": {"login": "u"},
        }
    ).encode()
    delivery = parse_delivery(headers_for(body, **{"X-GitHub-Event": "issues"}), body, ["s3cret"])
    assert (delivery.event, delivery.action, delivery.repository) == ("issues", "opened", "o/r")
    assert (delivery.installation_id, delivery.sender) == (7, "u")
    assert "X-Hub-Signature-256" not in delivery.headers


def test_form_encoded_payload_is_unwrapped() -> None:
    document = json.dumps({"zen": "Design for failure."})
    body = urlencode({"payload": document}).encode()
    headers = headers_for(body, **{"Content-Type": "application/x-www-form-urlencoded"})
    delivery = parse_delivery(headers, body, ["s3cret"])
    assert delivery.data == {"zen": "Design for failure."}
    assert delivery.body == document.encode()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "not a JSON object"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        (b"[" * 100_000, "application/json", 400, "not valid JSON"),
        (b"zen=1", "application/x-www-form-urlencoded", 400, "no payload"),
        (b"payload=%7B", "application/x-www-form-urlencoded", 400, "not valid JSON"),
        (b"\xff=\xff", "application/x-www-form-urlencoded", 400, "not form-encoded"),
        (b"{}", "text/plain", 415, "unsupported content type"),
        (b"{}", "", 415, "unsupported content type"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(
    body: bytes, content_type: str, status: int, fragment: str
) -> None:
    with pytest.raises(DeliveryError) as caught:
        parse_delivery(headers_for(body, **{"Content-Type": content_type}), body, ["s3cret"])
    assert caught.value.status == status
    assert fragment in caught.value.message


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_github_headers_are_400(missing: str) -> None:
    headers = headers_for(b"{}")
    del headers[missing]
    with pytest.raises(DeliveryError) as caught:
        parse_delivery(headers, b"{}", ["s3cret"])
    assert (caught.value.status, missing in caught.value.message) == (400, True)


def test_oversized_body_is_413_before_anything_else() -> None:
    with pytest.raises(DeliveryError) as caught:
        parse_delivery({}, b" " * (MAX_BODY_BYTES + 1), ["s3cret"])
    assert caught.value.status == 413


@pytest.mark.parametrize("installation", [True, "7", 2**70, -1, [], {"id": None}])
def test_odd_installation_values_are_ignored(installation: object) -> None:
    body = json.dumps({"installation": installation}).encode()
    assert parse_delivery(headers_for(body), body, ["s3cret"]).installation_id is None


@pytest.mark.parametrize(
    "body",
    [b'{"n": NaN}', b'{"n": 1e400}', '{"a": 1}'.encode("utf-16"), b'\xef\xbb\xbf{"a": 1}'],
    ids=["nan", "infinity", "utf-16", "bom"],
)
def test_json_the_fast_parser_refuses_is_still_read(body: bytes) -> None:
    delivery = parse_delivery(headers_for(body), body, ["s3cret"])
    assert list(delivery.data) == list(json.loads(body))


def test_a_parsed_body_reads_like_the_json_module_reads_it() -> None:
    body = json.dumps(
        {"action": "opened", "n": 3, "pr": {"labels": [{"name": "bug"}], "draft": False}, "z": None}
    ).encode()
    data = parse_delivery(headers_for(body), body, ["s3cret"]).data
    assert data == json.loads(body) and dict(data) == json.loads(body)
    assert data["pr"]["labels"] == [{"name": "bug"}]  # arrays are plain lists
    assert data.get("missing") is None and "pr" in data and 3 not in data
    assert data.get(3) is None  # a key that is not a string is simply absent
    assert data.get("missing", 5) == 5 and data.get("z", 5) is None  # like dict.get
    assert data.get("pr", {}).get("draft") is False
    with pytest.raises(KeyError):
        data["missing"]


@pytest.mark.parametrize(
    "document",
    [
        b'{"big": 123456789012345678901234567890}',  # beyond 64 bits
        b'{"x": NaN, "y": Infinity}',  # the json module reads these
    ],
)
def test_documents_simdjson_refuses_are_read_by_the_json_module(document: bytes) -> None:
    data = parse_delivery(headers_for(document), document, ["s3cret"]).data
    assert dict(data).keys() == json.loads(document).keys()
