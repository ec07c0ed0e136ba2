"""Pure checks of an incoming delivery: no server, no network."""

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.jsonvalues import JSONObject, json_text
from bot.web.ingest import (
    MAX_BODY_BYTES,
    MAX_STRUCTURE,
    DeliveryError,
    SignedBody,
    check_headers,
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


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP ", "identity, gzip"])
def test_a_compressed_body_is_refused_from_its_headers(encoding: str) -> None:
    headers = headers_for(b"{}", **{"Content-Encoding": encoding})
    with pytest.raises(DeliveryError) as caught:
        check_headers(headers, 2)
    assert caught.value.status == 415 and "Content-Encoding" in caught.value.message
    assert check_headers(headers_for(b"{}", **{"Content-Encoding": "identity"}), 2)


def test_a_body_declared_too_large_is_refused_from_its_headers() -> None:
    with pytest.raises(DeliveryError) as caught:
        check_headers(headers_for(b"{}"), MAX_BODY_BYTES + 1)
    assert caught.value.status == 413


def test_the_signature_is_computed_as_the_pieces_arrive() -> None:
    body = json.dumps({"action": "opened", "x": "y" * 100_000}).encode()
    signed = SignedBody(["old", "s3cret"])
    for start in range(0, len(body), 7_000):
        signed.feed(body[start : start + 7_000])
    assert signed.verified(signature_for(body, "s3cret")) == body
    with pytest.raises(DeliveryError) as caught:
        SignedBody(["s3cret"]).verified(signature_for(body, "s3cret"))  # nothing fed
    assert caught.value.status == 401


def test_pieces_beyond_25_mib_are_refused_as_they_arrive() -> None:
    signed = SignedBody(["s3cret"])
    signed.feed(b" " * MAX_BODY_BYTES)
    with pytest.raises(DeliveryError) as caught:
        signed.feed(b" ")
    assert caught.value.status == 413


def test_a_document_with_too_many_values_is_refused_before_it_is_parsed() -> None:
    dense = b'{"installation": [' + b"1," * MAX_STRUCTURE + b"1]}"
    with pytest.raises(DeliveryError) as caught:
        parse_delivery(headers_for(dense), dense, ["s3cret"])
    assert caught.value.status == 413 and "too many JSON values" in caught.value.message
    # As many values in fewer characters than the limit are never counted; long strings
    # make a large document with few values.
    sparse = json.dumps({"list": ["x" * 100] * 20_000}).encode()
    assert len(sparse) > MAX_STRUCTURE
    assert len(parse_delivery(headers_for(sparse), sparse, ["s3cret"]).data["list"]) == 20_000


def test_the_first_of_a_repeated_key_is_read_wherever_it_is() -> None:
    body = (
        b'{"action": "opened", "action": "closed", "o": {"k": 1, "k": 2}, "a": [{"k": 1, "k": 2}]}'
    )
    data = parse_delivery(headers_for(body), body, ["s3cret"]).data
    assert (data["action"], data["o"]["k"], data["a"][0]["k"]) == ("opened", 1, 1)
    assert dict(data) == {"action": "opened", "o": {"k": 1}, "a": [{"k": 1}]}
    assert list(data) == ["action", "o", "a"] and len(data) == 3
    # A document simdjson refuses is read by the json module: by the same rule.
    fallback = body.replace(b'"o"', b'"n": NaN, "o"')
    data = parse_delivery(headers_for(fallback), fallback, ["s3cret"]).data
    assert (data["action"], data["o"]["k"], data["a"][0]["k"]) == ("opened", 1, 1)


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "opened", "text": 'x"ü+ %&=\\n' * 50},
        {"action": "opened", "text": "%41 +" * 300_000},  # decoded a megabyte at a time
    ],
    ids=["small", "large"],
)
def test_a_form_encoded_payload_is_decoded_as_the_json_it_holds(payload: dict[str, Any]) -> None:
    document = json.dumps(payload).encode()
    body = urlencode({"payload": document.decode()}).encode()
    headers = headers_for(body, **{"Content-Type": "application/x-www-form-urlencoded"})
    delivery = parse_delivery(headers, body, ["s3cret"])
    assert delivery.body == document and dict(delivery.data) == payload


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("lone \ud800 surrogate", '"lone \ufffd surrogate"'),
        ("nul \x00", '"nul \ufffd"'),
        (2**70, "1180591620717411303424"),
        (-(2**70), "-1180591620717411303424"),
        ([1, {"k": "\ud800"}], '[1,{"k":"\ufffd"}]'),
    ],
)
def test_json_text_stores_what_a_payload_can_hold(value: Any, stored: str) -> None:
    assert json_text({"v": value}) == '{"v":' + stored + "}"


def test_json_text_writes_an_object_read_lazily_whole() -> None:
    data = JSONObject.parse(b'{"id": {"k": 1, "k": 2, "n": [1, {"x": null}]}}')
    assert json_text({"comment_id": data["id"]}) == '{"comment_id":{"k":1,"n":[1,{"x":null}]}}'
