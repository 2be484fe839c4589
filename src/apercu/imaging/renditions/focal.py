"""The focal point of an image: where its interest lies, computed once at ingest so that `g:focal` costs
nothing at render time.

libvips' attention strategy (`vips_smartcrop_attention`, libvips/conversion/smartcrop.c, 8.18: the one
`g:smart` uses), redone step for step in numpy on the reduced upright frame the thumbnail is made from;
`analyse` records it as `metadata.focal_point`. libvips premultiplies any alpha, shrinks the image to 32 x 32
(lanczos3), and scores each cell as the sum of: edges (5 x |Laplacian| of XYZ's Y), skin (100 - 100 x the
distance of the normalised XYZ colour from smartcrop.js' skin vector) and Lab's a (red over green), the last
two only where Y > 5; it blurs the score with a gaussian a tenth of the crop window's diagonal wide (a window of
half the frame here) and takes the first maximum. The point is that cell's corner, so its precision is a 32nd.

Why not libvips itself: it cost 7.5-9 ms of CPU per call (50 calls, 256-pixel corpus frames, 2 cores under a
load of 3) whatever the frame's size, a 39-pixel frame too: its fixed cost of starting a dozen pipelines. This
costs 0.5-0.8 ms (the resize to 32 x 32 is about 40 % of it). On the 246 decodable frames of the corpus
(256 pixels), it finds libvips' very point for 92 % of them and one within a 32nd for 97.6 %; the few others
are near-ties between two places (flat test patterns), where float rounding picks the other one.
tests/test_renditions.py compares both.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

DECIMALS = 3  # a thousandth of the image: finer than any crop can use
GRID = 32  # libvips scores a 32 x 32 copy of the image: the precision of the point
SKIN = np.array([0.78, 0.57, 0.44], dtype=np.float32)  # smartcrop.js' skin colour, as a normalised XYZ vector
RGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
                      dtype=np.float32).T * 100.0  # libvips' scRGB2XYZ, Y in 0-100
SKIN_SQUARED = float(SKIN @ SKIN)
WHITE_XY = np.array([95.047, 100.0], dtype=np.float32)  # D65's X and Y, libvips' Lab reference
_SRGB = np.arange(256, dtype=np.float64) / 255.0  # libvips linearises 8-bit sRGB through a table too
LINEAR = np.where(_SRGB <= 0.04045, _SRGB / 12.92, ((_SRGB + 0.055) / 1.055) ** 2.4).astype(np.float32)

Grid = npt.NDArray[np.float32]


def focal_point(frame: Image.Image) -> dict[str, float]:
    """{"x", "y"}: the centre of attention of the (reduced, upright) frame, as fractions of its width and height."""
    width, height = frame.size
    score = _blurred(_attention(_linear_rgb(frame)), _sigma(width, height))
    y_pos, x_pos = divmod(int(np.argmax(score)), GRID)  # the first maximum in raster order, as libvips' max
    x = (int(x_pos / (GRID / width)) + 0.5) / width  # libvips' attention_x: the grid cell's left edge, in pixels
    y = (int(y_pos / (GRID / height)) + 0.5) / height
    return {"x": round(min(1.0, x), DECIMALS), "y": round(min(1.0, y), DECIMALS)}


def _linear_rgb(frame: Image.Image) -> Grid:
    """The frame at 32 x 32 in linear light (0-1): libvips premultiplies an alpha first, so that what hides in
    transparent areas does not count, then resizes with lanczos3 in sRGB; Pillow's "RGBa" is premultiplied."""
    has_alpha = frame.mode in ("LA", "RGBA")  # the decoded frame's alpha, as libvips is given it
    small = frame.convert("RGBA").convert("RGBa") if has_alpha else frame.convert("RGB")
    small = small.resize((GRID, GRID), Image.Resampling.LANCZOS, reducing_gap=2.0)
    linear: Grid = LINEAR[np.asarray(small)[:, :, :3]]
    return linear


def _attention(rgb: Grid) -> Grid:
    """libvips' score per pixel: edges + skin + saturation (the two last only out of the dark)."""
    xyz = rgb @ RGB_TO_XYZ
    luminance = xyz[:, :, 1]
    padded = np.pad(luminance, 1, mode="edge")  # libvips' convolutions extend the edges by copying them
    laplacian = 4 * luminance - padded[:-2, 1:-1] - padded[2:, 1:-1] - padded[1:-1, :-2] - padded[1:-1, 2:]
    lit = luminance > 5.0  # so the colour's magnitude below is never 0
    # |xyz / |xyz| - SKIN|, expanded: the direction is a unit vector
    magnitude = np.maximum(np.sqrt(np.einsum("ijk,ijk->ij", xyz, xyz)), 1e-6)
    distance = np.sqrt(np.maximum(1.0 + SKIN_SQUARED - 2.0 * (xyz @ SKIN) / magnitude, 0.0))
    companded = _lab_f(xyz[:, :, :2] / WHITE_XY)
    red_green = 500.0 * (companded[:, :, 0] - companded[:, :, 1])  # Lab's a
    colour = np.where(lit, 100.0 - 100.0 * distance + red_green, 0.0)
    score: Grid = (np.abs(5.0 * laplacian) + colour).astype(np.float32)
    return score


def _lab_f(t: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]:
    """CIE Lab's companding of normalised X, Y or Z, clipped to [0, 1] as libvips' lookup table is."""
    t = np.clip(t, 0.0, 1.0)
    companded: npt.NDArray[np.floating[Any]] = np.where(t < 0.008856, 7.787 * t + 16.0 / 116.0, np.cbrt(t))
    return companded


def _sigma(width: int, height: int) -> float:
    """libvips' blur for a crop window of half the frame: a tenth of the window's diagonal on the grid."""
    window_w, window_h = max(1, width // 2) * GRID / width, max(1, height // 2) * GRID / height
    return max(math.sqrt(window_w**2 + window_h**2) / 10, 1.0)


def _blurred(score: Grid, sigma: float) -> Grid:
    """libvips' gaussblur of the score: across, then down, each pass summed in double precision over the
    integer mask, divided by the mask's sum and stored as float, so that plateaus tie-break as in libvips."""
    mask, scale = _blur_matrix(sigma)
    across = ((score.astype(np.float64) @ mask.T) / scale).astype(np.float32)
    return ((mask @ across.astype(np.float64)) / scale).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _blur_matrix(sigma: float) -> tuple[npt.NDArray[np.float64], float]:
    """libvips' gaussblur mask along one axis of the grid, at its default integer precision, and its sum: a
    mask of rint(20 x gaussian) down to an amplitude of 0.2, the edges extended by copying them. Row i holds
    the weights output i takes from each input (few sigmas occur: the frames' shapes are few)."""
    reach = next((x for x in range(int(8 * sigma)) if math.exp(-x * x / (2 * sigma * sigma)) < 0.2), int(8 * sigma))
    offsets = np.arange(-max(reach - 1, 0), max(reach - 1, 0) + 1)
    mask = np.rint(20 * np.exp(-(offsets**2) / (2 * sigma * sigma)))
    matrix = np.zeros((GRID, GRID))
    for i in range(GRID):
        np.add.at(matrix[i], np.clip(i + offsets, 0, GRID - 1), mask)
    matrix.flags.writeable = False  # shared by the cache
    return matrix, float(mask.sum())
