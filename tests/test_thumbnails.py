"""Thumbnail correctness: orientation, colour, depth, alpha, frames, quality; generated images and the corpus."""

from __future__ import annotations

import io
import math
from pathlib import Path

import images
import pytest
from conftest import require_corpus
from PIL import Image, ImageChops, ImageCms, ImageFilter, ImageStat

from apercu.imaging import engines, thumbnail
from apercu.imaging.analyse import Options, analyse, render_variant

POSES = [None, *Image.Transpose][:8]


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def psnr(a: Image.Image, b: Image.Image) -> float:
    a, b = a.convert("RGB"), b.convert("RGB")
    if a.size != b.size:
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    rms = ImageStat.Stat(ImageChops.difference(a, b)).rms
    mse = sum(r * r for r in rms) / 3
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def best_pose(thumb: Image.Image, reference: Image.Image) -> object:
    """Which of the 8 flips/rotations of `thumb` looks most like `reference` (None: as it is)."""
    scores = {pose: psnr(reference, thumb if pose is None else thumb.transpose(pose)) for pose in POSES}
    return max(scores, key=scores.__getitem__)


def float_lanczos(img: Image.Image, size: int) -> Image.Image:
    """The quality reference: full-resolution RGB resized per channel in floating point."""
    img = img.convert("RGB")
    scale = size / max(img.size)
    target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return Image.merge("RGB", [b.convert("F").resize(target, Image.Resampling.LANCZOS).convert("L") for b in img.split()])


def sharpness(img: Image.Image) -> float:
    return ImageStat.Stat(img.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0]


# --- generated images: what a fresh clone checks ---------------------------------------------------------


def test_wide_gamut_profile_is_converted_to_srgb() -> None:
    profile = images.adobe_rgb_profile()
    data = images.encode(Image.new("RGB", (400, 300), (60, 160, 40)), "JPEG", quality=95, icc_profile=profile)
    thumb = decode(analyse(data).thumbnail.data)
    expected = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), (60, 160, 40)), ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"), outputMode="RGB",
    ).getpixel((0, 0))
    actual = thumb.getpixel((thumb.width // 2, thumb.height // 2))
    assert all(abs(a - e) <= 6 for a, e in zip(actual, expected, strict=True)), (actual, expected)
    assert abs(actual[0] - 60) > 30  # a naive copy would have kept the untransformed values


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_wide_gamut_profile_through_libvips_too(fmt: str) -> None:
    profile = images.adobe_rgb_profile()
    data = images.encode(Image.new("RGB", (400, 300), (60, 160, 40)), fmt, icc_profile=profile, **({"lossless": True} if fmt == "WEBP" else {}))
    result = analyse(data)
    thumb = decode(result.thumbnail.data)
    red, green, _ = thumb.getpixel((thumb.width // 2, thumb.height // 2))
    assert red < 20 and 150 <= green <= 170, (result.thumbnail.engine, thumb.getpixel((10, 10)))


def test_cmyk_goes_through_a_profile_not_a_formula() -> None:
    cmyk = Image.new("CMYK", (300, 200), (0, 255, 255, 0))  # pure magenta + yellow ink: a printed red
    thumb = decode(analyse(images.encode(cmyk, "JPEG", quality=95)).thumbnail.data)
    red, green, blue = thumb.getpixel((150, 100)) if thumb.width > 150 else thumb.getpixel((thumb.width // 2, thumb.height // 2))
    assert thumb.mode == "RGB" and red > 180 and green < 90 and blue < 90
    assert (red, green, blue) != (255, 0, 0) and red < 250  # the naive formula gives pure (255, 0, 0)


def test_custom_background_colour() -> None:
    transparent = images.encode(Image.new("RGBA", (300, 300), (0, 0, 0, 0)), "PNG")
    thumb = decode(analyse(transparent, Options(background=(0, 0, 255))).thumbnail.data)
    r, g, b = thumb.getpixel((150 * thumb.width // 300, 10))
    assert b > 230 and r < 30 and g < 30


def test_float_tiff_is_scaled_to_its_range() -> None:
    data = images.encode(Image.linear_gradient("L").convert("F").point(lambda v: v * 1000.0), "TIFF")
    thumb = decode(analyse(data).thumbnail.data)
    low, high = thumb.getextrema()
    assert thumb.mode == "L" and low < 15 and high > 240


@pytest.mark.parametrize("orientation", [0, 9, 255])
def test_out_of_range_orientation_means_as_stored(orientation: int) -> None:
    stored = images.gradient((320, 200))
    data = images.encode(stored, "JPEG", quality=95, exif=images.exif_block(orientation=orientation))
    result = analyse(data)
    assert "orientation" not in result.metadata
    assert (result.thumbnail.width, result.thumbnail.height) == (256, 160)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_quality_against_a_float_lanczos_reference(fmt: str) -> None:
    """Before JPEG encoding, the engine's reduction must be within 45 dB of a full float resize, and as sharp."""
    source = decode(images.encode(_photo((2400, 1800)), "JPEG", quality=92))
    data = images.encode(source, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    with Image.open(io.BytesIO(data)) as img:
        reduced, _ = engines.engines_for(img)[0].reduce(img, data, 256)
    reference = float_lanczos(decode(data), 256)
    assert reduced.size == reference.size
    assert psnr(reference, reduced) >= 45
    assert 0.85 <= sharpness(reduced) / sharpness(reference) <= 1.15


def _photo(size: tuple[int, int]) -> Image.Image:
    """Smooth shapes plus fine texture: what a photograph has and what resampling can get wrong."""
    base = Image.merge("RGB", [Image.linear_gradient("L").resize(size), Image.radial_gradient("L").resize(size),
                              Image.linear_gradient("L").rotate(90).resize(size)])
    texture = Image.effect_noise(size, 40).convert("RGB").filter(ImageFilter.GaussianBlur(1.5))
    return Image.blend(base, texture, 0.3)


@pytest.mark.parametrize(("size", "fmt"), [(128, "JPEG"), (512, "JPEG"), (256, "WEBP")])
def test_variants(size: int, fmt: str) -> None:
    thumb = render_variant(images.jpeg((1600, 1000), orientation=6), Options(), size, fmt)
    picture = decode(thumb.data)
    assert picture.format == fmt and max(picture.size) == size and picture.height > picture.width


def test_progressive_and_subsampled_jpeg() -> None:
    big = decode(render_variant(images.jpeg((1600, 1000)), Options(), 512, "JPEG").data)
    small = decode(render_variant(images.jpeg((1600, 1000)), Options(), 128, "JPEG").data)
    assert big.info.get("progressive") and not small.info.get("progressive")
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(big) == 2  # 4:2:0


# --- the real corpus ---------------------------------------------------------------------------------------


def corpus_thumb(corpus: Path, name: str) -> Image.Image:
    return decode(analyse((corpus / name).read_bytes()).thumbnail.data)


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("name", "upright"),
    [(f"orientation/Landscape_{n}.jpg", "orientation/Landscape_1.jpg") for n in (0, *range(2, 9))]
    + [(f"exif/jpg_orientation_landscape_{n}.jpg", "exif/jpg_orientation_landscape_1.jpg") for n in range(2, 9)],
)
def test_corpus_orientation_is_upright(name: str, upright: str) -> None:
    corpus = require_corpus()
    thumb, reference = corpus_thumb(corpus, name), corpus_thumb(corpus, upright)
    assert thumb.size == reference.size
    assert best_pose(thumb, reference) is None


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name", ["color/icc_profile_big.jpg", "exif/tiff_BSG1.tiff", "exif/jpg_orientation_landscape_3.jpg"]
)
def test_corpus_embedded_profiles_are_honoured(name: str) -> None:
    corpus = require_corpus()
    source = decode((corpus / name).read_bytes())
    profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    rgb = source.convert("RGB")
    if name.endswith("landscape_3.jpg"):
        rgb = rgb.transpose(Image.Transpose.ROTATE_180)
    converted = ImageCms.profileToProfile(rgb, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    thumb = corpus_thumb(corpus, name)
    assert psnr(converted.resize(thumb.size, Image.Resampling.LANCZOS), thumb) >= 30


@pytest.mark.corpus
def test_corpus_cmyk_jpeg() -> None:
    """Black ink on this sample prints as a rich dark grey and its red as a printed red, as a CMYK profile
    renders them; Pillow's formula would give pure black and pure red."""
    corpus = require_corpus()
    thumb = corpus_thumb(corpus, "color/pil_sample_cmyk.jpg")
    assert thumb.mode == "RGB"
    background = thumb.getpixel((thumb.width - 3, thumb.height - 3))
    assert all(20 <= v <= 70 for v in background), background
    source = decode((corpus / "color" / "pil_sample_cmyk.jpg").read_bytes()).convert("RGB").resize(thumb.size)
    reddest = max(((x, y) for x in range(thumb.width) for y in range(thumb.height)), key=lambda p: source.getpixel(p)[0] - source.getpixel(p)[1])
    red, green, blue = thumb.getpixel(reddest)
    assert red > 150 and green < 90 and blue < 90 and red < 250, (red, green, blue)


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["tiff/16bit.MM.deflate.tif", "tiff/12in16bit.tif", "tiff/16bit.cropped.tif", "png/basn0g16.png", "png/basn2c16.png"])
def test_corpus_sixteen_bit_is_scaled(name: str) -> None:
    corpus = require_corpus()
    thumb = corpus_thumb(corpus, name)
    source = decode((corpus / name).read_bytes())
    if source.mode.startswith("I"):
        expected = source.convert("F").point(lambda v: v * 255 / 65535).convert("L")
    else:
        expected = source.convert("RGB")  # Pillow already brought 16-bit RGB to 8 bits per channel
    assert psnr(expected.resize(thumb.size, Image.Resampling.LANCZOS), thumb) >= 30
    assert thumb.mode == ("L" if expected.mode == "L" else "RGB")


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["png/tbbn3p08.png", "png/tp1n3p08.png", "png/basn6a08.png", "png/basn4a16.png", "tga/200x32_rgba_tl_rle.tga"])
def test_corpus_transparency_is_flattened_on_white(name: str) -> None:
    """Checked before JPEG encoding, which on these tiny test patterns costs more than any flattening error."""
    corpus = require_corpus()
    data = (corpus / name).read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        reduced, _ = engines.engines_for(img)[0].reduce(img, data, 256)
    flat = thumbnail.flatten(reduced, thumbnail.WHITE)
    source = decode(data).convert("RGBA")
    expected = Image.new("RGBA", source.size, (255, 255, 255, 255))
    expected.alpha_composite(source)
    assert flat.mode in ("RGB", "L")
    assert psnr(expected.convert("RGB").resize(flat.size, Image.Resampling.LANCZOS), flat) >= 40


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["color/iss634.gif", "color/hopper.gif", "color/hopper.webp", "color/hopper_orientation_6.webp", "heif/exif.avif", "heif/icc_profile.avif", "exif/heic_mobile_iphone_13_pro_max.HEIC"])
def test_corpus_other_formats_match_a_plain_decode(name: str) -> None:
    corpus = require_corpus()
    data = (corpus / name).read_bytes()
    result = analyse(data)
    thumb = decode(result.thumbnail.data)
    assert (thumb.width, thumb.height) == (result.metadata["width"], result.metadata["height"]) or max(thumb.size) == 256
    source = decode(data)
    if getattr(source, "n_frames", 1) > 1:
        source.seek(0)
    from PIL import ImageOps

    expected = ImageOps.exif_transpose(source.convert("RGB")) if "heic" not in name.lower() else source.convert("RGB")
    assert psnr(expected.resize(thumb.size, Image.Resampling.LANCZOS), thumb) >= 25


@pytest.mark.corpus
def test_corpus_thumbnails_carry_no_metadata() -> None:
    corpus = require_corpus()
    for name in ("exif/jpg_gps_DSCN0010.jpg", "exif/jpg_xmp_BlueSquare.jpg", "exif/heic_mobile_iphone_13_pro_max.HEIC"):
        data = analyse((corpus / name).read_bytes()).thumbnail.data
        assert b"Exif\x00" not in data and b"http://ns.adobe.com/xap" not in data and b"ICC_PROFILE" not in data
        assert len(decode(data).getexif()) == 0


@pytest.mark.parametrize("size", [(100, 80), (1600, 1200)])  # small (no reduction) and large (shrink-on-load)
def test_a_jpeg_comment_does_not_reach_the_thumbnail(size: tuple[int, int]) -> None:
    """Comments are metadata too (a camera app may write where a picture was taken): thumbnails carry none."""
    data = images.encode(images.gradient(size), "JPEG", quality=90, comment=b"taken at 43.4674N 11.8851E")
    assert b"43.4674N" not in analyse(data).thumbnail.data
    assert b"43.4674N" not in render_variant(data, Options(), 128, "JPEG").data
