"""Small summaries of an image's look, computed from the thumbnail's pixels (the original is decoded once):

- `phash`: a 64-bit perceptual hash (the classic DCT pHash, as the `imagehash` package computes it) as 16 hex
  digits. Resized, recompressed, lightly cropped or colour-shifted copies of an image land within a few bits
  of it; unrelated images differ in about half of them. `distance` counts the differing bits.
- `blurhash`: a BlurHash (https://blurha.sh) of 4x3 components, ~28 characters, that a client paints as a
  blurred placeholder while the thumbnail loads.

Both are numpy over at most 32x32 pixels, with no second decode, and give the same hashes as the pure-Python
loops they replaced did, bit for bit (tests/test_own_fingerprints.py keeps the loops as the reference), so stored
hashes stay comparable. pHash's input is Pillow's LANCZOS resize of the thumbnail to 32x32, which Pillow's scalar
loop made most of its cost (~0.2 ms from 256 px); it is computed here as banded matrix products with Pillow's own
fixed-point coefficients and rounding (`_lanczos_to_hash_side`), to the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image

HASH_SIDE = 32  # pHash: the DCT runs on a 32x32 greyscale image...
HASH_LOW = 8  # ...and keeps its 8x8 lowest frequencies: 64 bits
PHASH_BITS = HASH_LOW * HASH_LOW
ROUNDING = 1e-6
BLUR_SIDE = 32  # BlurHash: the longest side of the image its components are fitted to
BLUR_COMPONENTS = (4, 3)  # horizontal, vertical (for a portrait image: 3, 4)
# Pillow's resampling of 8-bit images (libImaging/Resample.c), which pHash's input is made with: LANCZOS reaches 3
# input pixels (times the reduction) either side; coefficients and sums are fixed point with 22 fractional bits.
LANCZOS_SUPPORT = 3.0
FIXED_POINT = float(1 << 22)
# The LANCZOS products run in bands of this many output pixels, each no larger than OpenBLAS computes on the calling
# thread (m * n * k up to 4 x 65536): its threads, woken for anything larger, cost more CPU than the product itself.
BAND = 8
SINGLE_THREADED = 4 * 65536
BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
Floats = npt.NDArray[np.float64]


def phash(img: Image.Image) -> str:
    pixels = _lanczos_to_hash_side(np.asarray(img.convert("L"), dtype=np.float64))  # rows of the 32x32 image
    basis = _dct_basis()
    # Separable DCT-II, only the low frequencies: along each row, then down each column; row v of `low` is the
    # vertical frequency v, as the hash's bits are ordered.
    low = (basis @ (pixels @ basis.T)).ravel()
    # The median of the 64 (what np.median computes, without its generality: a fifth of pHash's time)
    middle = np.partition(low, (PHASH_BITS // 2 - 1, PHASH_BITS // 2))
    median = float((middle[PHASH_BITS // 2 - 1] + middle[PHASH_BITS // 2]) / 2)
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


def _lanczos_to_hash_side(pixels: Floats) -> Floats:
    """Pillow's `resize((32, 32), LANCZOS)` of a greyscale image given as rows of 0..255, to the same pixels.

    Each pass is Pillow's: its fixed-point coefficients, each output a sum started at half a unit, floored and
    clipped to 0..255. The sums are integers under 2**40, exact in float64 in whatever order BLAS adds them. The
    passes' order matters (the result of the first is rounded): Pillow runs the vertical one first when the height
    shrinks and the width is under the mean of the height and 32, the horizontal one first otherwise."""
    height, width = pixels.shape
    vertical_first = height > HASH_SIDE and 2 * width < height + HASH_SIDE
    if vertical_first:
        pixels = _lanczos_pass(height, pixels)
    if width != HASH_SIDE:
        pixels = _lanczos_pass(width, pixels.T).T
    if height != HASH_SIDE and not vertical_first:
        pixels = _lanczos_pass(height, pixels)
    return pixels


def _lanczos_pass(size: int, lines: Floats) -> Floats:
    """One pass along the first axis of `lines` (size x n): 32 x n, rounded as Pillow rounds. Each band of BAND
    outputs multiplies only the input lines its coefficients reach, in as few products as stay single-threaded."""
    bands = _bands(size)
    count = lines.shape[1]
    step = max(1, SINGLE_THREADED // (BAND * bands.widest))
    sums = np.empty((HASH_SIDE, count))
    for first, start, stop, weights in bands.bands:
        for column in range(0, count, step):
            sums[first : first + BAND, column : column + step] = weights @ lines[start:stop, column : column + step]
    return np.clip(np.floor((sums + FIXED_POINT / 2) / FIXED_POINT), 0, 255)


@dataclass(frozen=True)
class _Bands:
    bands: tuple[tuple[int, int, int, Floats], ...]  # (first output, first input, end of the inputs, weights)
    widest: int  # inputs of the widest band


@lru_cache(maxsize=16)  # thumbnails come in a few sizes: 256 one way, the other side by aspect ratio
def _bands(size: int) -> _Bands:
    coefficients = np.zeros((HASH_SIDE, size))
    reach = []
    for output in range(HASH_SIDE):
        first, weights = _lanczos_weights(size, output)
        coefficients[output, first : first + len(weights)] = weights
        reach.append((first, first + len(weights)))
    bands = []
    for first in range(0, HASH_SIDE, BAND):
        start = min(start for start, _ in reach[first : first + BAND])
        stop = max(stop for _, stop in reach[first : first + BAND])
        bands.append((first, start, stop, np.ascontiguousarray(coefficients[first : first + BAND, start:stop])))
    return _Bands(tuple(bands), max(stop - start for _, start, stop, _ in bands))


def _lanczos_weights(size: int, output: int) -> tuple[int, list[int]]:
    """Pillow's fixed-point LANCZOS coefficients of one output pixel when `size` pixels become 32: the first
    input pixel and the weights, computed in the order and rounding of its precompute_coeffs and
    normalize_coeffs_8bpc (summed one by one, not with sum(), which compensates)."""
    scale = size / HASH_SIDE
    filterscale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filterscale
    center = (output + 0.5) * scale
    first = max(int(center - support + 0.5), 0)
    count = min(int(center + support + 0.5), size) - first
    weights = [_lanczos((x + first - center + 0.5) * (1.0 / filterscale)) for x in range(count)]
    total = 0.0
    for weight in weights:
        total += weight
    if total != 0.0:
        weights = [weight / total for weight in weights]
    return first, [int(-0.5 + w * FIXED_POINT) if w < 0 else int(0.5 + w * FIXED_POINT) for w in weights]


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -LANCZOS_SUPPORT <= x < LANCZOS_SUPPORT else 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


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
