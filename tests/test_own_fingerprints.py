"""The vectorised pHash and BlurHash give exactly the hashes of the pure-Python loops they replaced (issue 22,
item 2), so that hashes stored before and after stay comparable: on every thumbnail the corpus and the test
images make, and on images made to sit on the edges (flat, one pixel, one row, noise, every mode)."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

import fingerprints_reference as reference
import images
import pytest
from conftest import corpus_files, require_corpus
from PIL import Image, ImageDraw

from apercu.imaging import fingerprints, limits, thumbnail
from apercu.imaging.analyse import ProcessingFailed, analyse


def assert_same(img: Image.Image, name: str) -> None:
    assert fingerprints.phash(img) == reference.phash(img), name
    assert fingerprints.blurhash(img) == reference.blurhash(img), name


def frame_of(data: bytes) -> Image.Image | None:
    """The pixels analyse() hashes (the thumbnail before encoding), or None for a file it cannot decode."""
    limits.configure_pillow()
    try:
        analyse(data)
    except ProcessingFailed:
        return None
    with Image.open(io.BytesIO(data)) as img:
        frame, _ = thumbnail.reduce(img, data, size=256, orientation=None)
    return frame


@pytest.mark.parametrize("name", sorted(images.FACTORIES))
def test_test_images(name: str) -> None:
    frame = frame_of(images.FACTORIES[name]())
    assert frame is not None
    assert_same(frame, name)


@pytest.mark.corpus
def test_corpus() -> None:
    require_corpus()
    compared = 0
    for path in corpus_files():
        frame = frame_of(path.read_bytes())
        if frame is not None:
            assert_same(frame, path.name)
            compared += 1
    assert compared > 250  # every file the corpus has that decodes


def edge_cases() -> Iterator[tuple[str, Image.Image]]:
    rng = random.Random(22)
    for mode in ("RGB", "L", "RGBA", "LA", "P", "1", "CMYK"):
        yield f"flat {mode}", Image.new("RGB", (64, 48), (90, 120, 30)).convert(mode)
    for size in ((1, 1), (1, 300), (300, 1), (2, 2), (33, 7), (256, 256), (256, 171), (171, 256)):
        yield f"noise {size}", Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    yield "black", Image.new("RGB", (256, 192))
    yield "white", Image.new("L", (192, 256), 255)
    yield "gradient", images.gradient((256, 160))
    for seed in range(40):
        img = Image.new("RGB", (256, 192), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = rng.randrange(256), rng.randrange(192)
            box = (x, y, x + rng.randrange(10, 120), y + rng.randrange(10, 120))
            draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in range(3)))
        yield f"shapes {seed}", img
    # symmetric pictures put many coefficients exactly on the median: rounding must not decide them
    half = Image.linear_gradient("L").resize((128, 192))
    yield "mirror", Image.merge("RGB", [_mirrored(half)] * 3)
    yield "stripes", Image.linear_gradient("L").resize((256, 192)).point(lambda v: 255 * (v // 16 % 2))


def _mirrored(half: Image.Image) -> Image.Image:
    whole = Image.new("L", (half.width * 2, half.height))
    whole.paste(half, (0, 0))
    whole.paste(half.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (half.width, 0))
    return whole


def test_edge_cases() -> None:
    for name, img in edge_cases():
        assert_same(img, name)


def test_known_values_are_unchanged() -> None:
    """Two values the old code gave (tests/test_fingerprints.py checks them against imagehash and blurhash)."""
    assert fingerprints.phash(Image.new("RGB", (64, 64), (90, 120, 30))) == "8000000000000000"
    assert fingerprints.phash(images.gradient((300, 200))) == "b878f8f8f8070707"
