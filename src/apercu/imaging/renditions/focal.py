"""The focal point of an image: where its interest lies, computed once at ingest so that `g:focal` costs
nothing at render time.

libvips' attention strategy (the one `g:smart` uses: skin tones, saturated colour and edges, weighted towards
the centre) on the reduced image the thumbnail is made from; it finds the same point on 256 pixels as on the
original, at a fraction of the cost (see tests/test_renditions.py for the measurement).
"""

from __future__ import annotations

from PIL import Image

from apercu.imaging.renditions.render import to_vips

DECIMALS = 3  # a thousandth of the image: finer than any crop can use


def focal_point(frame: Image.Image) -> dict[str, float]:
    """{"x", "y"}: the centre of attention of the (reduced, upright) frame, as fractions of its width and height."""
    image = to_vips(frame.convert("RGB") if frame.mode not in ("L", "LA", "RGB", "RGBA") else frame)
    window_w, window_h = max(1, image.width // 2), max(1, image.height // 2)
    _, found = image.smartcrop(window_w, window_h, interesting="attention", attention_x=True, attention_y=True)
    x = (found["attention_x"] + 0.5) / image.width
    y = (found["attention_y"] + 0.5) / image.height
    return {"x": round(min(1.0, x), DECIMALS), "y": round(min(1.0, y), DECIMALS)}
