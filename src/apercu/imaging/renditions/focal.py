"""The focal point of an image: where its interest lies, computed once at ingest so that `g:focal` costs
nothing at render time.

libvips' attention strategy (the one `g:smart` uses: skin tones, saturated colour and edges) on the reduced
image the thumbnail is made from; `analyse` records it as `metadata.focal_point`. Measured on three photos of
the corpus (2-12 MP), on a 2-core machine under a load of 2: 6-13 ms (6 ms at best) on the 256-pixel frame,
against 15-87 ms on the whole image, for the same point to within 0.03 of the width. That cost is libvips'
fixed cost of building the operations (a 64-pixel frame takes as long), not the pixels' count: smartcrop
alone, the frame already in libvips' memory, takes 5.6-6 ms whatever libvips' thread count. Per processed
image (five 2-4 MP corpus JPEGs, load 2.4 on 2 cores): a median of 11.7 ms (6-32 ms) added to a median
`analyse` of 75 ms.
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
