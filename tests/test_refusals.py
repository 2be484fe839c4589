"""The one refusal type and its one serializer (`api.errors.ApiError`), and the server's head framing
(`api.server.head`): units, without a server."""

from __future__ import annotations

import json

import pytest

from apercu.api.errors import ApiError
from apercu.api.server.head import HEAD_LIMIT, head_end


def test_a_refusal_has_its_status_usual_code_unless_told() -> None:
    assert ApiError(404, "gone").code == "not_found"
    assert ApiError(400, "bad", "invalid_size").code == "invalid_size"
    assert ApiError(422, "odd").code == "error"  # no usual code: the client still gets one


def test_the_app_and_the_server_answer_with_the_same_body() -> None:
    refusal = ApiError(503, "full", "busy", [("Retry-After", "5")]).with_headers(("X-Request-ID", "r1"))
    body = refusal.body()
    assert json.loads(body) == {"error": {"code": "busy", "message": "full"}}

    response = refusal.response()
    assert (response.status_code, response.mimetype, response.get_data()) == (503, "application/json", body)
    assert response.headers["Retry-After"] == "5" and response.headers["X-Request-ID"] == "r1"
    assert response.headers["Cache-Control"] == "no-store"  # no cache may replay a refusal

    head, _, sent = refusal.http_message().partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable" and sent == body
    assert set(lines[1:]) == {"Content-Type: application/json", "Retry-After: 5", "X-Request-ID: r1",
                              f"Content-Length: {len(body)}", "Connection: close", "Cache-Control: no-store"}


def test_the_end_of_a_head_is_found_however_it_arrives() -> None:
    head = bytearray(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nNEXT")
    assert head_end(head, 0) == len(head) - 4
    for cut in range(1, len(head) - 4):  # the head so far, searched before up to `cut`, then the rest arrives
        assert head_end(head[:cut], 0) == 0
        assert head_end(head, cut) == len(head) - 4
    assert head_end(bytearray(b"GET / HTTP/1.1\n\n"), 0) == 16  # a bare-LF end, for the parser to refuse


@pytest.mark.parametrize(
    "received, expected",
    [
        (b"GET /" + b"a" * HEAD_LIMIT, (414, "uri_too_long")),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 6000, (431, "headers_too_large")),
    ],
    ids=["endless-line", "endless-head"],
)
def test_a_head_that_grows_past_the_limit_is_refused(received: bytes, expected: tuple[int, str]) -> None:
    with pytest.raises(ApiError) as caught:
        head_end(bytearray(received), 0)
    assert (caught.value.status, caught.value.code) == expected
