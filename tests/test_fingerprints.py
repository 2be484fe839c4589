"""Perceptual hash and BlurHash: equal to the reference implementations, and robust to what copies go through.

The reference values below were computed with the reference implementations themselves (imagehash 4.3.2's
`phash` and the `blurhash` 1.1.5 package's `encode`, on the same pixels), which the project does not depend on.
"""

from __future__ import annotations

import io
import random

import images
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from apercu.imaging import fingerprints
from apercu.imaging.analyse import analyse

REFERENCE = {  # size of images.gradient: (imagehash.phash, blurhash.encode of its 32 px thumbnail)
    (300, 200): ("b878f8f8f8070707", "LhI##$3p=|tk.%%M%Lxa%y%Lxut7"),
    (200, 300): ("b878f8f8f007070f", "ThI=JM3:=|*Z%M%L%y%Lxu$+tQt7"),
}


@pytest.mark.parametrize("size", sorted(REFERENCE))
def test_equal_to_the_reference_implementations(size: tuple[int, int]) -> None:
    img = images.gradient(size)
    small = img.copy()
    small.thumbnail((32, 32), Image.Resampling.BILINEAR)
    assert fingerprints.phash(img) == REFERENCE[size][0]
    assert fingerprints.blurhash(small) == REFERENCE[size][1]


def test_a_flat_image_hashes_to_its_dc_bit_alone() -> None:
    """Rounding noise among 63 equal coefficients must not make up bits (imagehash gives 8000000000000000)."""
    assert fingerprints.phash(Image.new("RGB", (64, 64), (90, 120, 30))) == "8000000000000000"


def scene(seed: int) -> Image.Image:
    """A picture of random shapes: unrelated pictures for unrelated seeds."""
    rng = random.Random(seed)
    img = Image.new("RGB", (640, 480), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.randrange(640), rng.randrange(480)
        box = (x, y, x + rng.randrange(60, 300), y + rng.randrange(60, 240))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return img


def copies(img: Image.Image) -> dict[str, Image.Image]:
    width, height = img.size
    recompressed = io.BytesIO()
    img.save(recompressed, "JPEG", quality=40)
    return {
        "resized": img.resize((width // 3, height // 3), Image.Resampling.BILINEAR),
        "recompressed": Image.open(io.BytesIO(recompressed.getvalue())).convert("RGB"),
        "cropped": img.crop((width // 25, height // 25, width - width // 25, height - height // 25)),
        "brighter": ImageEnhance.Brightness(img).enhance(1.15),
        "warmer": Image.merge("RGB", [band.point(lambda v, k=k: min(255, v + k)) for band, k in
                                      zip(img.split(), (12, 0, -12), strict=True)]),
    }


@pytest.mark.parametrize("seed", range(6))
def test_copies_stay_near_and_unrelated_pictures_far(seed: int) -> None:
    original = scene(seed)
    reference = fingerprints.phash(original)
    for name, copy in copies(original).items():
        assert fingerprints.distance(reference, fingerprints.phash(copy)) <= 10, name
    for other in range(6, 12):
        assert fingerprints.distance(reference, fingerprints.phash(scene(other))) > 10, other


def test_analysis_reports_both_from_the_thumbnail() -> None:
    meta = analyse(images.jpeg((1600, 1200), orientation=6)).metadata
    assert len(meta["phash"]) == 16 and int(meta["phash"], 16) >= 0
    assert meta["blurhash"].startswith("T")  # 3x4 components: the upright picture is a portrait
    assert 20 <= len(meta["blurhash"]) <= 30
