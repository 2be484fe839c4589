"""The pure-Python pHash and BlurHash that apercu shipped before issue 22 vectorised them, kept only as the reference
the vectorised ones must equal bit for bit (stored hashes stay comparable). Their loops are copied unchanged from
src/apercu/imaging/fingerprints.py at 6077d75 (constants and BlurHash's text encoder, which did not change, come
from the module); not used by the service."""
from __future__ import annotations

import math
from functools import cache
from typing import cast

from PIL import Image

from apercu.imaging.fingerprints import (
    BLUR_COMPONENTS,
    BLUR_SIDE,
    HASH_LOW,
    HASH_SIDE,
    ROUNDING,
    encode_blurhash,
)


def phash(img: Image.Image) -> str:
    grey = img.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = cast(list[int], list(grey.get_flattened_data()))
    rows = [pixels[y * HASH_SIDE : (y + 1) * HASH_SIDE] for y in range(HASH_SIDE)]
    basis = _dct_basis()
    # Separable DCT-II, only the low frequencies: along each row first, then down each of the 8 columns.
    across = [[sum(b * p for b, p in zip(basis[u], row, strict=True)) for u in range(HASH_LOW)] for row in rows]
    low = [
        sum(basis[v][y] * across[y][u] for y in range(HASH_SIDE)) for v in range(HASH_LOW) for u in range(HASH_LOW)
    ]
    median = _median(low)
    # Rounding noise must not decide a bit: a flat image has 63 coefficients equal to the median, give or take.
    bits = "".join("1" if value - median > ROUNDING else "0" for value in low)
    return f"{int(bits, 2):016x}"


@cache
def _dct_basis() -> list[list[float]]:
    """cos(pi * (2x + 1) * u / 2N): scipy's unnormalised DCT-II up to a factor of 2, which no comparison sees."""
    n = HASH_SIDE
    return [[math.cos(math.pi * (2 * x + 1) * u / (2 * n)) for x in range(n)] for u in range(HASH_LOW)]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return (ordered[middle - 1] + ordered[middle]) / 2 if len(ordered) % 2 == 0 else ordered[middle]


def blurhash(img: Image.Image) -> str:
    """The text is encoded by the module's own encoder, which vectorising did not touch (tests/test_fingerprints.py
    holds it to the `blurhash` package's values): only the components were loops."""
    small = img.convert("RGB")
    small.thumbnail((BLUR_SIDE, BLUR_SIDE), Image.Resampling.BILINEAR)
    width, height = small.size
    cx, cy = BLUR_COMPONENTS if width >= height else BLUR_COMPONENTS[::-1]
    return encode_blurhash(_factors(small, cx, cy), cx, cy)


def _factors(img: Image.Image, cx: int, cy: int) -> list[tuple[float, float, float]]:
    """The cosine components of the image in linear light, fitted row by row (separably)."""
    width, height = img.size
    to_linear = _srgb_to_linear()
    data = cast(list[tuple[int, int, int]], list(img.get_flattened_data()))
    cos_x = [[math.cos(math.pi * i * x / width) for x in range(width)] for i in range(cx)]
    cos_y = [[math.cos(math.pi * j * y / height) for y in range(height)] for j in range(cy)]
    sums = [[[0.0, 0.0, 0.0] for _ in range(cx)] for _ in range(cy)]
    for y in range(height):
        row = [(to_linear[r], to_linear[g], to_linear[b]) for r, g, b in data[y * width : (y + 1) * width]]
        for i in range(cx):
            weights = cos_x[i]
            along = [sum(w * pixel[c] for w, pixel in zip(weights, row, strict=True)) for c in range(3)]
            for j in range(cy):
                for c in range(3):
                    sums[j][i][c] += cos_y[j][y] * along[c]
    result = []
    for j in range(cy):
        for i in range(cx):
            scale = (1 if i == j == 0 else 2) / (width * height)
            r, g, b = (value * scale for value in sums[j][i])
            result.append((r, g, b))
    return result


@cache
def _srgb_to_linear() -> list[float]:
    return [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in (i / 255 for i in range(256))]
