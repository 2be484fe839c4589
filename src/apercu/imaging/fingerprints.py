"""Small summaries of an image's look, computed from the thumbnail's pixels (the original is decoded once):

- `phash`: a 64-bit perceptual hash (the classic DCT pHash, as the `imagehash` package computes it) as 16 hex
  digits. Resized, recompressed, lightly cropped or colour-shifted copies of an image land within a few bits
  of it; unrelated images differ in about half of them. `distance` counts the differing bits.
- `blurhash`: a BlurHash (https://blurha.sh) of 4x3 components, ~28 characters, that a client paints as a
  blurred placeholder while the thumbnail loads.

Both are numpy over at most 32x32 pixels, with no second decode: the arithmetic takes ~25 us (pHash) and ~65 us
(BlurHash) where the pure-Python loops it replaced took ~1 ms each; what remains is Pillow's resize to 32 px
(~0.2 ms for pHash's LANCZOS from 256 px), which defines the hashes' input. They give the same hashes as those
loops did, bit for bit (tests/test_own_fingerprints.py keeps the loops as the reference), so stored hashes stay
comparable.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import numpy.typing as npt
from PIL import Image

HASH_SIDE = 32  # pHash: the DCT runs on a 32x32 greyscale image...
HASH_LOW = 8  # ...and keeps its 8x8 lowest frequencies: 64 bits
PHASH_BITS = HASH_LOW * HASH_LOW
ROUNDING = 1e-6
BLUR_SIDE = 32  # BlurHash: the longest side of the image its components are fitted to
BLUR_COMPONENTS = (4, 3)  # horizontal, vertical (for a portrait image: 3, 4)
BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
Floats = npt.NDArray[np.float64]


def phash(img: Image.Image) -> str:
    grey = img.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)  # rows of the 32x32 image
    basis = _dct_basis()
    # Separable DCT-II, only the low frequencies: along each row, then down each column; row v of `low` is the
    # vertical frequency v, as the hash's bits are ordered.
    low = (basis @ (pixels @ basis.T)).ravel()
    median = float(np.median(low))
    # Rounding noise must not decide a bit: a flat image has 63 coefficients equal to the median, give or take.
    bits = np.packbits(low - median > ROUNDING)
    return bits.tobytes().hex()


def distance(a: str, b: str) -> int:
    """How many of the 64 bits differ between two perceptual hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


@cache
def _dct_basis() -> Floats:
    """cos(pi * (2x + 1) * u / 2N): scipy's unnormalised DCT-II up to a factor of 2, which no comparison sees."""
    n = HASH_SIDE
    return np.array([[math.cos(math.pi * (2 * x + 1) * u / (2 * n)) for x in range(n)] for u in range(HASH_LOW)])


def blurhash(img: Image.Image) -> str:
    small = img.convert("RGB")
    small.thumbnail((BLUR_SIDE, BLUR_SIDE), Image.Resampling.BILINEAR)
    width, height = small.size
    cx, cy = BLUR_COMPONENTS if width >= height else BLUR_COMPONENTS[::-1]
    return encode_blurhash(_factors(small, cx, cy), cx, cy)


def encode_blurhash(factors: list[tuple[float, float, float]], cx: int, cy: int) -> str:
    """BlurHash's text for the components (vertical frequency outer, each (r, g, b) in linear light)."""
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
    """The cosine components of the image in linear light, fitted along the rows, then down the columns; in
    BlurHash's order (vertical frequency outer), each as (r, g, b)."""
    width, height = img.size
    linear = _srgb_to_linear()[np.asarray(img)]  # height x width x 3
    cos_x = np.cos(np.pi * np.arange(cx)[:, None] * np.arange(width)[None, :] / width)
    cos_y = np.cos(np.pi * np.arange(cy)[:, None] * np.arange(height)[None, :] / height)
    along = np.einsum("ix,yxc->yic", cos_x, linear)  # per row: each horizontal component
    sums = np.einsum("jy,yic->jic", cos_y, along)
    scale = np.full((cy, cx, 1), 2 / (width * height))
    scale[0, 0, 0] = 1 / (width * height)
    components = (sums * scale).reshape(cy * cx, 3)
    return [(float(r), float(g), float(b)) for r, g, b in components]


@cache
def _srgb_to_linear() -> Floats:
    """Each 8-bit sRGB value in linear light (the same Python floats the reference loops looked up)."""
    values = (i / 255 for i in range(256))
    return np.array([v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in values])


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
