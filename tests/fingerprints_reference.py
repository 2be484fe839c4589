"""The pure-Python pHash and BlurHash that apercu shipped before issue 22 vectorised them, kept only as the reference
the vectorised ones must equal bit for bit (stored hashes stay comparable). Copied unchanged from
src/apercu/imaging/fingerprints.py at 6077d75; not used by the service."""
from __future__ import annotations

import math
from functools import cache
from typing import cast

from PIL import Image

HASH_SIDE = 32  # pHash: the DCT runs on a 32x32 greyscale image...
HASH_LOW = 8  # ...and keeps its 8x8 lowest frequencies: 64 bits
PHASH_BITS = HASH_LOW * HASH_LOW
ROUNDING = 1e-6
BLUR_SIDE = 32  # BlurHash: the longest side of the image its components are fitted to
BLUR_COMPONENTS = (4, 3)  # horizontal, vertical (for a portrait image: 3, 4)
BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


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
    small = img.convert("RGB")
    small.thumbnail((BLUR_SIDE, BLUR_SIDE), Image.Resampling.BILINEAR)
    width, height = small.size
    cx, cy = BLUR_COMPONENTS if width >= height else BLUR_COMPONENTS[::-1]
    factors = _factors(small, cx, cy)
    dc, ac = factors[0], factors[1:]
    size_flag = (cx - 1) + (cy - 1) * 9
    if ac:
        largest = max(abs(channel) for factor in ac for channel in factor)
        quantised = max(0, min(82, math.floor(largest * 166 - 0.5)))
        maximum = (quantised + 1) / 166
    else:
        quantised, maximum = 0, 1.0
    text = _base83(size_flag, 1) + _base83(quantised, 1) + _base83(_encode_dc(dc), 4)
    return text + "".join(_base83(_encode_ac(factor, maximum), 2) for factor in ac)


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


def _linear_to_srgb(value: float) -> int:
    v = min(1.0, max(0.0, value))
    if v <= 0.0031308:
        return int(v * 12.92 * 255 + 0.5)
    return int((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _encode_dc(colour: tuple[float, float, float]) -> int:
    r, g, b = (_linear_to_srgb(c) for c in colour)
    return (r << 16) + (g << 8) + b


def _encode_ac(colour: tuple[float, float, float], maximum: float) -> int:
    r, g, b = (max(0, min(18, math.floor(_sign_pow(c / maximum, 0.5) * 9 + 9.5))) for c in colour)
    return r * 19 * 19 + g * 19 + b


def _sign_pow(value: float, exponent: float) -> float:
    return math.copysign(abs(value) ** exponent, value)


def _base83(value: int, length: int) -> str:
    return "".join(BASE83[(value // 83 ** (length - 1 - i)) % 83] for i in range(length))
