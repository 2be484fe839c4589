"""The quality floor of shrink-on-load, measured rather than assumed (issue 22, item 1).

Each engine reduces an original to the thumbnail's size by the cheapest route it has (JPEG DCT scaling, libvips'
shrink-on-load and box reduction); the reference is the same engine's decode at full scale (so depth and alpha
take the same path) resized in floating point with LANCZOS to the same size. Both are flattened on white and
compared as 8-bit RGB, in the file's own colours (see `_in_its_own_colours`). `tests/test_own_decode.py` holds the floor on the inputs below, `bench/decode.py`
prints the table.

Inputs: photograph-like images made with Pillow at sizes that land on every JPEG scale and between them, in
every format an engine reduces, and the corpus' originals larger than the thumbnail.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter, ImageStat

from apercu.imaging import engines, limits, thumbnail

SIZE = 256
FLOOR_DB = 45.0
SHARPNESS = (0.85, 1.15)  # the reduction's edges against the reference's, as tests/test_thumbnails.py checks
# Longest sides of the generated photographs: 2 MP and 12 MP as the bench's inputs, and sides where the
# smallest JPEG scale covering 256 px leaves the least for the final resample (512 -> 1/2 = 256, 2100 -> 1/8
# = 262) or the most (2047 -> 1/4 = 511).
GENERATED_SIDES = (300, 512, 700, 1024, 1633, 2047, 2100, 3000, 4000)
GENERATED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF")
CORPUS_FOLDERS = ("exif", "orientation", "color", "heif", "tiff", "png")


@dataclass(frozen=True)
class Quality:
    psnr: float  # dB, reduction against reference
    sharpness: float  # the reduction's edge strength over the reference's
    engine: str
    source: tuple[int, int]
    output: tuple[int, int]


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB over R, G and B (99 when identical)."""
    rms = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).rms
    mse = sum(r * r for r in rms) / 3
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def sharpness(img: Image.Image) -> float:
    return float(ImageStat.Stat(img.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0])


def float_resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Each band resized as 32-bit floats with LANCZOS, rounded to 8 bits once at the end."""
    bands = [band.convert("F").resize(size, Image.Resampling.LANCZOS).convert("L") for band in img.split()]
    return bands[0] if len(bands) == 1 else Image.merge(img.mode, bands)


def measure(data: bytes, size: int = SIZE) -> Quality:
    """The first engine's reduction of `data` to `size` against the float-precision reference."""
    limits.configure_pillow()
    with Image.open(io.BytesIO(data)) as img:
        source = img.size
        engine = engines.engines_for(img)[0]
        reduced, _ = engine.reduce(_in_its_own_colours(img), data, size)
    with Image.open(io.BytesIO(data)) as img:  # scale 1: no shrink-on-load, no resample
        full, _ = engine.reduce(_in_its_own_colours(img), data, max(img.size))
    reduced = thumbnail.flatten(reduced, thumbnail.WHITE)
    reference = float_resize(thumbnail.flatten(full, thumbnail.WHITE), reduced.size)
    ratio = sharpness(reduced) / max(sharpness(reference), 1e-9)
    return Quality(psnr(reference, reduced), ratio, engine.name, source, reduced.size)


def _in_its_own_colours(img: Image.Image) -> Image.Image:
    """The image with its ICC profile forgotten, so that both sides stay in the file's colours: the engines
    convert to sRGB after reducing, and a profile's curve (Generic RGB's gamma 1.8) makes "resize, then convert"
    differ from "convert, then resize" by itself (43 dB on the corpus' 600x450 landscapes, which are not scaled
    on load at all). That order is not what shrink-on-load changes; tests/test_thumbnails.py checks colours."""
    img.info.pop("icc_profile", None)
    return img


def photo(size: tuple[int, int], seed: int = 7) -> Image.Image:
    """Gradients, blotches and fine grain at every scale: the spectrum of a photograph, deterministic."""
    rng = random.Random(seed)
    blotches = Image.frombytes("RGB", (96, 72), rng.randbytes(96 * 72 * 3)).filter(ImageFilter.GaussianBlur(3))
    base = Image.merge("RGB", [Image.linear_gradient("L").resize(size), Image.radial_gradient("L").resize(size),
                              Image.linear_gradient("L").rotate(90).resize(size)])
    picture = Image.blend(base, blotches.resize(size, Image.Resampling.BICUBIC), 0.5)
    grain = Image.effect_noise(size, 48).filter(ImageFilter.GaussianBlur(0.8))
    return Image.blend(picture, Image.merge("RGB", [grain] * 3), 0.2)


def generated() -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(name, maker of the encoded bytes) for each generated input; portrait and landscape alternate."""
    for index, side in enumerate(GENERATED_SIDES):
        other = side * 3 // 4
        size = (side, other) if index % 2 == 0 else (other, side)
        for fmt in GENERATED_FORMATS:
            yield f"{fmt.lower()} {size[0]}x{size[1]}", _maker(size, fmt)


def _maker(size: tuple[int, int], fmt: str) -> Callable[[], bytes]:
    def make() -> bytes:
        out = io.BytesIO()
        params: dict[str, object] = {"quality": 92} if fmt in ("JPEG", "WEBP") else {}
        photo(size).save(out, fmt, **params)
        return out.getvalue()

    return make


IPHONE = "exif/heic_mobile_iphone_13_pro_max.HEIC"


def iphone_jpegs(corpus: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """The corpus' iPhone photograph as the JPEGs most uploads are: whole (12 MP, 3024x4032) and a 2 MP crop
    (1633x1225, the bench's size: a side that no DCT scale divides). Real detail, unlike `photo`'s."""

    def make(crop: tuple[int, int, int, int] | None) -> Callable[[], bytes]:
        def encoded() -> bytes:
            limits.enable_heif()
            with Image.open(corpus / IPHONE) as img:
                picture = img.convert("RGB")
            out = io.BytesIO()
            (picture.crop(crop) if crop else picture).save(out, "JPEG", quality=90)
            return out.getvalue()

        return encoded

    yield "iphone jpeg 3024x4032", make(None)
    yield "iphone jpeg 1633x1225", make((500, 1000, 2133, 2225))


def corpus_inputs(corpus: Path) -> list[Path]:
    """The corpus' well-formed originals larger than the thumbnail (smaller ones are never reduced)."""
    limits.enable_heif()
    found = []
    for folder in CORPUS_FOLDERS:
        for path in sorted((corpus / folder).iterdir()):
            try:
                with Image.open(path) as img:
                    img.load()
                    if max(img.size) > SIZE:
                        found.append(path)
            except Exception:  # noqa: BLE001 - a broken file is not an input of this measurement
                continue
    return found
