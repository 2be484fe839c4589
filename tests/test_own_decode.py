"""Shrink-on-load keeps the thumbnail's quality floor (issue 22, item 1): at least 45 dB against a full-resolution
float LANCZOS, and as sharp (0.85-1.15 of its edges), on every generated input and every corpus original that
is reduced. How the floor is measured: tests/decode_quality.py; the table: bench/decode.py."""

from __future__ import annotations

import io

import decode_quality as dq
import images
import pytest
from conftest import require_corpus
from PIL import Image

from apercu.imaging import engines, limits
from apercu.imaging.analyse import Options, analyse


def assert_floor(name: str, quality: dq.Quality) -> None:
    assert quality.psnr >= dq.FLOOR_DB, f"{name}: {quality}"
    assert dq.SHARPNESS[0] <= quality.sharpness <= dq.SHARPNESS[1], f"{name}: {quality}"


@pytest.mark.parametrize(("name", "make"), list(dq.generated()), ids=[name for name, _ in dq.generated()])
def test_generated_inputs_keep_the_floor(name: str, make: object) -> None:
    assert callable(make)
    assert_floor(name, dq.measure(make()))


@pytest.mark.corpus
def test_corpus_originals_keep_the_floor() -> None:
    corpus = require_corpus()
    inputs = dq.corpus_inputs(corpus)
    assert len(inputs) >= 30
    for path in inputs:
        assert_floor(path.name, dq.measure(path.read_bytes()))


@pytest.mark.corpus
@pytest.mark.parametrize("index", [0, 1])
def test_real_photographs_as_jpeg_keep_the_floor(index: int) -> None:
    """The corpus' iPhone photo as a 12 MP and a 2 MP JPEG: real detail, where a DCT scale that leaves 2x or less
    for the final resample falls to 43 dB (12 MP at 1/8), and a 1633 px side that no scale divides must not shift
    the picture (it cost 14 dB before the decoded box was kept)."""
    name, make = list(dq.iphone_jpegs(require_corpus()))[index]
    assert_floor(name, dq.measure(make()))


@pytest.mark.parametrize(("side", "scale"), [(4000, 4), (1633, 2), (6000, 8), (640, 1)])
def test_jpeg_is_decoded_at_the_smallest_scale_that_keeps_the_margin(side: int, scale: int) -> None:
    data = images.encode(dq.photo((side, side * 3 // 4)), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as img:
        target = engines.fitted(img.size, 256)
        engines._draft(img, target)
        decoded = img.size
    assert decoded == (-(-side // scale), -(-(side * 3 // 4) // scale))
    assert decoded[0] >= target[0] * engines.DRAFT_MARGIN


@pytest.mark.parametrize("size", [(320, 200), (257, 3000), (3000, 257), (1633, 1225), (4000, 3000)])
def test_output_size_is_pillows_thumbnail_size(size: tuple[int, int]) -> None:
    """Both engines produce the size `Image.thumbnail` would, for a JPEG (Pillow) and a PNG (libvips)."""
    picture = dq.photo(size)
    expected = picture.copy()
    expected.thumbnail((256, 256))
    for fmt in ("JPEG", "PNG"):
        result = analyse(images.encode(picture, fmt), Options())
        assert (result.thumbnail.width, result.thumbnail.height) == expected.size, fmt


def heif_with_thumbnail(side: int) -> bytes:
    limits.enable_heif()
    return images.encode(dq.photo((2000, 1500)), "HEIF", quality=80, thumbnails=[side])


@pytest.mark.parametrize(("side", "used"), [(700, True), (400, False)])
def test_a_heif_thumbnail_item_is_decoded_when_it_keeps_the_margin(side: int, used: bool) -> None:
    """700 px leaves 2.7x for a 256 px thumbnail: decoded instead of the 3 MP image; 400 px would leave 1.6x."""
    data = heif_with_thumbnail(side)
    with Image.open(io.BytesIO(data)) as img:
        frame, _ = engines.PILLOW.reduce(img, data, 256)
        decoded = img.size
    assert frame.size == (256, 192)
    assert (decoded[0] == side) is used  # the item's size (the encoder keeps its sides even)
    assert_floor(f"heif with a {side} px thumbnail", dq.measure(data))


def test_decode_threads_reach_libheif() -> None:
    import pillow_heif

    data = heif_with_thumbnail(400)
    for threads in (2, 1):
        analyse(data, Options(decode_threads=threads))
        assert pillow_heif.options.DECODE_THREADS == threads


def test_decode_threads_are_the_cores_the_worker_leaves_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    from apercu.config import Settings

    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    assert Settings.from_env({}, worker_concurrency=0).imaging_options().decode_threads == 1
    assert Settings.from_env({}, worker_concurrency=1).imaging_options().decode_threads == 4
    assert Settings.from_env({}, worker_concurrency=2).imaging_options().decode_threads == 2
