"""Where a rendition's pixels come from and what size they end up: pure arithmetic on the upright image's size.

One rule for both sides: the web calls `plan` with the image's size from the catalog to refuse an output over
`APERCU_MAX_RENDITION_PIXELS` before anything is rendered, and the renderer follows the same plan.

The order is the URL grammar's: `crop` (pixels of the upright original) first, then `rot`, then the fit.
Nothing is enlarged but by `stretch`, which asks for exactly the box: `inside` and `pad` keep a small image at
its size (`pad` centres it on the box), and `cover` of a box larger than the image keeps the box's proportions
at the image's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from apercu.imaging.renditions.options import ANCHORS, BadOption, Rendition, check_pixels

Size = tuple[int, int]


@dataclass(frozen=True)
class Plan:
    crop: tuple[int, int, int, int]  # the region of the upright original used: x, y, w, h
    rot: int  # clockwise, after the crop
    resized: Size  # the region, rotated, is resized to this
    output: Size  # the canvas: `resized` cut to it by gravity (cover) or centred on it (pad)

    @property
    def decode_scale(self) -> float:
        """How much of the original's resolution is needed: the larger of the two axes' scales, from the
        upright original to `resized` (at most 1; a decoder's shrink-on-load may go down to it)."""
        across, down = self.crop[2], self.crop[3]
        if self.rot in (90, 270):
            across, down = down, across
        return min(1.0, max(self.resized[0] / across, self.resized[1] / down))


def plan(r: Rendition, width: int, height: int, max_pixels: int | None = None) -> Plan:
    """The plan for an upright image of width x height; BadOption for a crop outside it or an output (or
    intermediate) of more than max_pixels."""
    crop = _crop(r, width, height)
    across, down = (crop[3], crop[2]) if r.rot in (90, 270) else (crop[2], crop[3])
    resized, output = _fit(r, across, down)
    if max_pixels is not None:
        biggest = max(resized, output, key=lambda s: s[0] * s[1])
        check_pixels(*biggest, max_pixels, "h" if r.w is None else "w")
    return Plan(crop, r.rot, resized, output)


def _crop(r: Rendition, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop clamped to the image (a crop reaching past an edge stops at it); the whole image by default."""
    if r.crop is None:
        return 0, 0, width, height
    x, y, w, h = r.crop
    if x >= width or y >= height:
        raise BadOption("crop", f"{x}:{y} is outside the image, which is {width}x{height}")
    return x, y, min(w, width - x), min(h, height - y)


def _fit(r: Rendition, across: int, down: int) -> tuple[Size, Size]:
    if not r.fills_box or r.w is None or r.h is None:
        scale = min([1.0] + [side / length for side, length in ((r.w, across), (r.h, down)) if side])
        resized = _scaled(across, down, scale)
        return resized, resized
    box = (r.w, r.h)
    if r.fit == "stretch":
        return box, box
    if r.fit == "pad":
        return _scaled(across, down, min(1.0, r.w / across, r.h / down)), box
    scale = max(r.w / across, r.h / down)  # cover
    if scale >= 1:  # the box, shrunk to the image's scale
        return (across, down), (min(across, max(1, round(r.w / scale))), min(down, max(1, round(r.h / scale))))
    return (max(r.w, round(across * scale)), max(r.h, round(down * scale))), box


def _scaled(across: int, down: int, scale: float) -> Size:
    return max(1, round(across * scale)), max(1, round(down * scale))


def cover_offset(r: Rendition, resized: Size, output: Size, focus: tuple[float, float] | None) -> tuple[int, int]:
    """The top-left corner, in the resized image, of the output that `cover` keeps: at the gravity's edge, or
    centred on the focus (fractions of the resized image, see `focus_after`) as far as the edges allow."""
    spare_x, spare_y = resized[0] - output[0], resized[1] - output[1]
    if focus is None:
        anchor_x, anchor_y = ANCHORS.get(r.gravity, ANCHORS["centre"])
        return round(spare_x * anchor_x), round(spare_y * anchor_y)
    left = round(focus[0] * resized[0] - output[0] / 2)
    top = round(focus[1] * resized[1] - output[1] / 2)
    return min(max(0, left), spare_x), min(max(0, top), spare_y)


def focus_after(p: Plan, width: int, height: int, focus: tuple[float, float]) -> tuple[float, float]:
    """A point given as fractions of the upright original (width x height), as fractions of the plan's
    cropped and rotated region (a point outside the crop moves to its nearest edge)."""
    x, y, w, h = p.crop
    u = min(1.0, max(0.0, (focus[0] * width - x) / w))
    v = min(1.0, max(0.0, (focus[1] * height - y) / h))
    turned = {0: (u, v), 90: (1 - v, u), 180: (1 - u, 1 - v), 270: (v, 1 - u)}
    return turned[p.rot]
