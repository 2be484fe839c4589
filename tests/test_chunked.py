"""The chunked-body decoder (`api.server.chunked`), a pure function of the bytes fed to it: every framing case,
and every way the bytes can be split between reads."""

from __future__ import annotations

import random

import pytest

from apercu.api.errors import ApiError
from apercu.api.server.chunked import LINE_LIMIT, TRAILER_LIMIT, Dechunker, chunk_size


def decode(wire: bytes, step: int | None = None) -> tuple[bytes, bytes | None]:
    """Feed `wire` whole, or `step` bytes at a time: the data decoded and the bytes after the body (None if it
    has not ended)."""
    decoder, data = Dechunker(), bytearray()
    steps = [wire] if step is None else [wire[i : i + step] for i in range(0, len(wire), step)] or [b""]
    for index, piece in enumerate(steps):
        decoded = decoder.feed(piece)
        data.extend(b"".join(decoded.pieces))
        if decoded.rest is not None:
            return bytes(data), decoded.rest + b"".join(steps[index + 1 :])
    return bytes(data), None


def refusal(wire: bytes) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        decode(wire)
    return caught.value.status, caught.value.code


def test_sizes_are_hexadecimal_in_either_case() -> None:
    assert decode(b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n") == (b"0123456789" * 2, b"")
    assert decode(b"000010\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n") == (b"x" * 16, b"")
    assert chunk_size(b"fFfF") == 0xFFFF


def test_an_empty_body_is_the_last_chunk_alone() -> None:
    assert decode(b"0\r\n\r\nGET / HTTP/1.1\r\n") == (b"", b"GET / HTTP/1.1\r\n")


def test_extensions_are_checked_and_ignored() -> None:
    wire = b'3;name=value\r\nabc\r\n2 ; flag ; q="a \\"b\\""\r\nde\r\n0;last\r\n\r\n'
    assert decode(wire) == (b"abcde", b"")
    assert refusal(b"3;=bad\r\nabc\r\n0\r\n\r\n") == (400, "bad_request")
    assert refusal(b"3;a=\x01\r\nabc\r\n0\r\n\r\n") == (400, "bad_request")


def test_trailers_are_read_and_dropped() -> None:
    assert decode(b"1\r\nx\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\nNEXT") == (b"x", b"NEXT")
    many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(TRAILER_LIMIT // 1000 + 1))
    assert refusal(b"0\r\n" + many + b"\r\n") == (431, "headers_too_large")


def test_lines_longer_than_the_limit_are_refused_without_an_end_in_sight() -> None:
    assert refusal(b"0" * (LINE_LIMIT + 1)) == (400, "bad_request")  # a size line that never ends
    assert refusal(b"1;" + b"a" * LINE_LIMIT + b"\r\nx\r\n0\r\n\r\n") == (400, "bad_request")
    assert refusal(b"0\r\nX: " + b"t" * LINE_LIMIT) == (431, "headers_too_large")  # a trailer line


@pytest.mark.parametrize(
    "wire",
    [b"zz\r\n", b"\r\n", b"-1\r\n", b"0x10\r\n", b" 1\r\n", b"1 x\r\n"],
    ids=["not-hex", "empty", "negative", "prefixed", "leading-space", "junk"],
)
def test_bad_sizes_are_refused(wire: bytes) -> None:
    assert refusal(wire + b"x\r\n0\r\n\r\n") == (400, "bad_request")


def test_framing_errors_are_refused() -> None:
    assert refusal(b"1\nx\r\n0\r\n\r\n") == (400, "bad_request")  # a bare LF
    assert refusal(b"1\r\nxy\r\n0\r\n\r\n") == (400, "bad_request")  # data longer than its size
    assert refusal(b"1\r\nx\r\n0\r\n\n") == (400, "bad_request")  # a bare LF ending the trailer


def test_an_early_end_leaves_the_body_unfinished() -> None:
    """The decoder cannot know the client is gone: it says the body has not ended, and the server answers 400
    on the connection's end."""
    for wire in (b"", b"5\r\nab", b"5\r\nabcde", b"5\r\nabcde\r", b"5\r\nabcde\r\n0\r\n", b"5\r\nabcde\r\n0\r\nT: 1\r\n"):
        assert decode(wire)[1] is None, wire


def test_pieces_are_views_of_what_was_fed() -> None:
    wire = b"3\r\nabc\r\n0\r\n\r\n"
    decoded = Dechunker().feed(wire)
    assert [piece.obj for piece in decoded.pieces] == [wire] and decoded.rest == b""


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 64])
def test_every_split_decodes_the_same(step: int) -> None:
    wire = b'4;a="b"\r\nWiki\r\n7\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\nT: v\r\n\r\nNEXT'
    assert decode(wire, step) == (b"Wikipedia in \r\nchunks.", b"NEXT")


def test_random_bodies_split_anywhere() -> None:
    """The event loop gets a chunked body in arbitrary pieces: every split must decode the same."""
    rng = random.Random(7)
    for _ in range(200):
        parts = [rng.randbytes(rng.randrange(1, 300)) for _ in range(rng.randrange(0, 6))]
        extension = rng.choice([b"", b";a=b", b' ; x="q"'])
        wire = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in parts) + b"0\r\nT: x\r\n\r\nNEXT"
        decoder, decoded, rest, pos = Dechunker(), bytearray(), None, 0
        while rest is None:
            step = rng.randrange(1, 40)
            result = decoder.feed(wire[pos : pos + step])
            decoded.extend(b"".join(result.pieces))
            rest = result.rest
            pos += step
        assert bytes(decoded) == b"".join(parts)
        assert rest + wire[pos:] == b"NEXT"
