"""Errors as RFC 9457 problem details (`application/problem+json`) for a client whose Accept prefers them, and the
JSON error as before for every other: through the app (Flask's test client), through the HTTP server's own
answers (a real `apercu web`, raw sockets), and in the OpenAPI document."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live import Service, read_response
from test_openapi import Contract

from apercu.api.errors import JSON, PROBLEM, ApiError, Asked
from apercu.config import Settings

ID_LIKE = "0123456789abcdef0123456789abcdef"
KEY = "problem-test-key"
LIMIT = 1024 * 1024


@pytest.mark.parametrize(
    "accept, problem",
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("text/html,application/xhtml+xml", False),  # a browser: neither offered, so the JSON error as ever
        ("application/json, application/problem+json", False),  # a tie keeps what clients had
        ("application/problem+json", True),
        ("application/problem+json, application/json;q=0.9", True),
        ("application/json;q=0.5, application/problem+json", True),
        ("application/problem+json;q=0.1, application/json", False),
        ("application/problem+json;q=0.5, */*;q=0.1", True),
        ("application/*, application/problem+json", True),  # as good, and more specific
        ("application/problem+json;q=0", False),  # refused outright
    ],
)
def test_problem_details_when_the_accept_header_prefers_them(accept: str | None, problem: bool) -> None:
    assert Asked(accept, "/x").problem is problem


def test_both_answers_of_a_refusal_follow_what_was_asked() -> None:
    refusal = ApiError(503, "full", "busy", [("Retry-After", "5")])
    asked = Asked("application/problem+json", "/images/caf\u00e9 x")
    assert json.loads(refusal.body(asked)) == {
        "type": "/docs/errors#busy", "title": "Service Unavailable", "status": 503, "detail": "full",
        "instance": "/images/caf%C3%A9%20x", "code": "busy"}
    head, _, body = refusal.http_message(asked).partition(b"\r\n\r\n")
    assert body == refusal.body(asked)
    assert f"Content-Type: {PROBLEM}" in head.decode().split("\r\n") and b"Retry-After: 5" in head
    assert json.loads(refusal.http_message().partition(b"\r\n\r\n")[2]) == {"error": {"code": "busy",
                                                                                      "message": "full"}}
    assert refusal.response().mimetype == JSON  # no request in context: nothing was asked


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", api_keys=(KEY,))


def problem_of(response: Any, status: int, code: str, path: str) -> dict[str, Any]:
    """The problem document of `response`, asserting its media type, members, and that it is never cached."""
    assert (response.status_code, response.mimetype) == (status, PROBLEM), response.data
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = json.loads(response.data)
    assert body == {"type": f"/docs/errors#{code}", "title": body["title"], "status": status,
                    "detail": body["detail"], "instance": path, "code": code}
    assert body["title"] and body["detail"]
    return body


def test_the_app_answers_problem_details_to_a_client_that_asks(client: Any) -> None:
    asks = {"Accept": "application/problem+json", "X-API-Key": KEY}
    problem_of(client.get(f"/images/{ID_LIKE}", headers=asks), 404, "not_found", f"/images/{ID_LIKE}")
    assert problem_of(client.get("/images?limit=0", headers=asks), 400, "invalid_limit", "/images")["detail"]
    refused = client.delete("/", headers=asks)  # werkzeug's own 405 keeps its Allow header
    problem_of(refused, 405, "method_not_allowed", "/")
    assert "GET" in refused.headers["Allow"]
    anonymous = client.get("/images", headers={"Accept": "application/problem+json"})  # the access gate's refusal
    problem_of(anonymous, 401, "unauthorized", "/images")
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, application/problem+json"])
def test_every_other_client_gets_the_json_error_as_before(client: Any, accept: str | None) -> None:
    headers = {"X-API-Key": KEY} | ({"Accept": accept} if accept else {})
    response = client.get(f"/images/{ID_LIKE}", headers=headers)
    assert (response.status_code, response.mimetype) == (404, JSON)
    assert response.get_json() == {"error": {"code": "not_found", "message": "no image with this id"}}


def test_the_document_lists_both_error_media_types_and_problems_conform(app: Any) -> None:
    client = app.test_client()
    contract = Contract(client.get("/openapi.json").get_json())
    answers = [(f"{method} {path} {status}", contract.resolve(answer))
               for path, operations in contract.doc["paths"].items() for method, operation in operations.items()
               for status, answer in operation["responses"].items()]
    errors = [(where, answer) for where, answer in answers
              if answer.get("content", {}).get(JSON, {}).get("schema") == {"$ref": "#/components/schemas/Error"}]
    assert len(errors) > 40  # every operation's errors were seen
    for where, answer in errors:
        assert set(answer["content"]) == {JSON, PROBLEM}, where
        assert answer["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, where
    assert "application/problem+json" in contract.doc["info"]["description"]
    response = client.get(f"/images/{ID_LIKE}", headers={"Accept": PROBLEM, "X-API-Key": KEY})
    schema = contract.resolve(contract.doc["paths"]["/images/{id}"]["get"]["responses"]["404"])["content"][PROBLEM]
    contract.validate(json.loads(response.data), schema["schema"])  # closed: no member the document lacks
    with pytest.raises(AssertionError):
        contract.validate({"error": {"code": "x", "message": "y"}}, schema["schema"])


# -- The HTTP server's own answers, before the app: a real `apercu web` --------------------------------------------


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {"APERCU_MAX_UPLOAD_BYTES": str(LIMIT), "APERCU_API_KEYS": KEY}
    service = Service(tmp_path_factory.mktemp("problems") / "data", env).start("web")
    yield service
    assert service.stop() == [0], service.log.read_text()[-3000:]


def exchange(service: Service, request: bytes) -> tuple[int, dict[str, str], Any]:
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(request)
        status, headers, body = read_response(sock)
    return status, headers, json.loads(body)


def upload_head(framing: str, *extra: str) -> bytes:
    lines = ["POST /images HTTP/1.1", "Host: t", "Content-Type: multipart/form-data; boundary=x", framing, *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


ASKS = "Accept: application/problem+json"


@pytest.mark.integration
@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (upload_head(f"Content-Length: {10 * LIMIT}", f"X-API-Key: {KEY}", ASKS), 413, "too_large"),
        (upload_head("Transfer-Encoding: chunked", f"X-API-Key: {KEY}", ASKS) + b"zz\r\n", 400, "bad_request"),
        (upload_head("Content-Length: 10", ASKS), 401, "unauthorized"),  # the gate, on the head alone
    ],
    ids=["too-large", "chunk-size", "no-key"],
)
def test_the_server_answers_problem_details_to_a_client_that_asks(
    web: Service, request_bytes: bytes, status: int, code: str
) -> None:
    answered, headers, body = exchange(web, request_bytes)
    assert (answered, headers["content-type"], headers["cache-control"]) == (status, PROBLEM, "no-store")
    assert body == {"type": f"/docs/errors#{code}", "title": body["title"], "status": status,
                    "detail": body["detail"], "instance": "/images", "code": code}
    assert headers["x-request-id"]  # what every answer carries, the server's too
    if status == 401:
        assert headers["www-authenticate"] == "Bearer"


@pytest.mark.integration
def test_the_server_answers_the_json_error_otherwise(web: Service) -> None:
    status, headers, body = exchange(web, upload_head(f"Content-Length: {10 * LIMIT}", f"X-API-Key: {KEY}"))
    assert (status, headers["content-type"]) == (413, JSON) and body["error"]["code"] == "too_large"
    # a head the server cannot parse asks nothing it could read: the JSON error
    status, headers, body = exchange(web, b"NOT A REQUEST LINE\r\nAccept: application/problem+json\r\n\r\n")
    assert (status, headers["content-type"], body["error"]["code"]) == (400, JSON, "bad_request")
