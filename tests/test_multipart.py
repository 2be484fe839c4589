"""The streaming multipart parser: whatever the pieces the body arrives in, the same parts, byte for byte."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from apercu.api.multipart import (
    MAX_FIELD_BYTES,
    MAX_PARTS,
    MalformedBody,
    MultipartParser,
    Part,
    Splitter,
    discard,
)

BOUNDARY = "b0undary"


def body(*parts: tuple[str, str | None, bytes], preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = preamble
    for name, filename, data in parts:
        file_attr = f'; filename="{filename}"' if filename is not None else ""
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{file_attr}\r\n'.encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" if filename is not None else b"\r\n"
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode() + epilogue


def parse(data: bytes, cuts: list[int], folder: Path) -> list[Part]:
    """Feed `data` cut at `cuts`; file parts go to files in `folder`."""
    counter = iter(range(1000))
    parser = MultipartParser(BOUNDARY, lambda: open(folder / f"part{next(counter)}", "w+b"))  # noqa: SIM115
    start = 0
    for cut in [*cuts, len(data)]:
        parser.feed(memoryview(data)[start:cut])
        start = cut
    return parser.finish()


def contents(part: Part) -> bytes:
    if part.path is None:
        return bytes(part.value)
    assert part.file is not None and part.file.closed  # closed when its part ended: one descriptor at a time
    return Path(part.path).read_bytes()


# Data that looks like the delimiter without being it: a CR, CRLF, CRLF-dash, the boundary without the CRLF.
TRICKY = b"\r" + b"\r\n" + b"\r\n-" + b"\r\n--b0und" + f"--{BOUNDARY}".encode() + b"\r\n--b0undarx" + b"\r"


@pytest.mark.parametrize("seed", range(30))
def test_any_cutting_gives_the_same_parts(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    payload = rng.randbytes(rng.randrange(0, 5000)) + TRICKY + rng.randbytes(rng.randrange(0, 50))
    data = body(("note", None, b"hello"), ("file", "a.jpg", payload), preamble=b"ignored\r\n", epilogue=b"junk")
    cuts = sorted(rng.sample(range(1, len(data)), rng.randrange(0, min(40, len(data) - 1))))
    parts = parse(data, cuts, tmp_path)
    assert [(p.name, p.filename) for p in parts] == [("note", None), ("file", "a.jpg")]
    assert contents(parts[0]) == b"hello" and contents(parts[1]) == payload
    assert parts[1].size == len(payload)


def test_byte_by_byte(tmp_path: Path) -> None:
    data = body(("file", "x", TRICKY), ("empty", "y", b""))
    parts = parse(data, list(range(1, len(data))), tmp_path)
    assert [contents(p) for p in parts] == [TRICKY, b""]


def test_an_empty_part_without_the_delimiters_crlf_as_werkzeug_writes_it(tmp_path: Path) -> None:
    data = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="e"\r\n\r\n--{BOUNDARY}--\r\n'
    ).encode()
    for cut in range(1, len(data)):
        assert [contents(p) for p in parse(data, [cut], tmp_path)] == [b""]


def test_quoted_and_utf8_filenames(tmp_path: Path) -> None:
    data = body(("file", 'we\\"ird; name=x.jpg', b"1")).replace(b"we", "é".encode() + b"we")
    (part,) = parse(data, [], tmp_path)
    assert part.name == "file" and part.filename == 'éwe"ird; name=x.jpg'


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (body(("file", "x", b"123"))[:-10], "ended before its closing boundary"),
        (b"no delimiter at all", "ended before its closing boundary"),
        (f"--{BOUNDARY}XX".encode(), "neither CRLF nor '--'"),
        (f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--".encode(), "malformed multipart header"),
        (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--".encode(), "Content-Disposition"),
        (f"--{BOUNDARY}\r\nX: {'y' * 9000}".encode(), "headers are larger"),
        (f"--{BOUNDARY}\r\nX: {'y' * 9000}\r\n\r\nx\r\n--{BOUNDARY}--".encode(), "headers are larger"),
        (body(*[("f", None, b"")] * (MAX_PARTS + 1)), "more than"),
        (body(("a", None, b"x" * MAX_FIELD_BYTES), ("b", None, b"x")), "form fields are larger"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(data: bytes, message: str, tmp_path: Path) -> None:
    with pytest.raises(MalformedBody, match=message):
        parse(data, [], tmp_path)


@pytest.mark.parametrize("boundary", ["", "x" * 201, "\u20ac"])
def test_the_boundary_must_be_sane(boundary: str) -> None:
    with pytest.raises(MalformedBody, match="boundary"):
        MultipartParser(boundary, io.BytesIO)


def test_a_splitter_records_the_first_fault_and_keeps_the_files_for_cleanup(tmp_path: Path) -> None:
    counter = iter(range(1000))
    splitter = Splitter(BOUNDARY, lambda: open(tmp_path / f"part{next(counter)}", "w+b"))  # noqa: SIM115
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    splitter.feed(head.encode() + b"data\r\n--" + BOUNDARY.encode() + b"XX")
    splitter.feed(b"whatever follows is ignored")
    split = splitter.finish()
    assert isinstance(split.error, MalformedBody) and "neither CRLF" in str(split.error)
    assert [p.filename for p in split.parts] == ["a"]
    discard(split.parts)
    assert list(tmp_path.iterdir()) == []
    assert Splitter("\u20ac", io.BytesIO).finish().error is not None


def test_discard_removes_the_files_nobody_committed(tmp_path: Path) -> None:
    parts = parse(body(("a", "1", b"x"), ("b", "2", b"y"), ("c", None, b"z")), [], tmp_path)
    kept = parts[0].path
    assert kept is not None
    Path(kept).rename(tmp_path / "committed")
    discard(parts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["committed"]
