"""pHash's 32x32 input, computed as matrix products (issue 22: pHash at array speed), is exactly Pillow's LANCZOS
resize, pixel for pixel, on every shape a thumbnail takes and around the sizes where Pillow changes the order of
its passes; a Pillow whose resampling changes fails here first, before any stored hash is compared."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from apercu.imaging import fingerprints

SIDE = fingerprints.HASH_SIDE


def shapes() -> Iterator[tuple[int, int]]:
    for side in range(1, 257):  # every thumbnail fitted in 256 px: landscape, portrait
        yield 256, side
        yield side, 256
    for height in range(SIDE + 1, 700, 9):  # either side of the width where Pillow starts vertically
        boundary = (height + SIDE) // 2
        for width in range(max(1, boundary - 2), boundary + 3):
            yield width, height
    yield from ((1, 1), (1, 300), (300, 1), (32, 32), (32, 500), (500, 32), (31, 33), (1000, 700), (513, 1024))


def pictures(size: tuple[int, int], rng: random.Random) -> Iterator[Image.Image]:
    """Noise, and black and white stripes (LANCZOS' lobes overshoot there, so the clipping is exercised)."""
    width, height = size
    yield Image.frombytes("L", size, rng.randbytes(width * height))
    stripes = (np.add.outer(np.arange(height), np.arange(width)) // 3 % 2 * 255).astype(np.uint8)
    yield Image.fromarray(stripes, "L")


@pytest.mark.parametrize("chunk", range(4))
def test_same_pixels_as_pillow(chunk: int) -> None:
    rng = random.Random(chunk)
    compared = 0
    for index, size in enumerate(shapes()):
        if index % 4 != chunk:
            continue
        for img in pictures(size, rng):
            ours = fingerprints._lanczos_to_hash_side(np.asarray(img, dtype=np.float64))
            pillows = np.asarray(img.resize((SIDE, SIDE), Image.Resampling.LANCZOS), dtype=np.float64)
            assert np.array_equal(ours, pillows), size
            compared += 1
    assert compared > 400
