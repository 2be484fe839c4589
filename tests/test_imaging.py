"""Unit tests of the imaging package: bytes in, results out, no storage, broker or server."""

from __future__ import annotations

import io
import json

import images
import pytest
from PIL import Image, ImageChops, ImageStat

from apercu.imaging import exif as exif_json
from apercu.imaging.analyse import Options, ProcessingFailed, analyse, render_variant
from apercu.imaging.formats import sniff


@pytest.mark.parametrize("name", sorted(images.FACTORIES))
def test_every_generated_format_is_recognised_and_processed(name: str) -> None:
    data = images.FACTORIES[name]()
    fmt = sniff(io.BytesIO(data))
    assert fmt is not None and fmt.name == images.EXPECTED_FORMAT[name]
    result = analyse(data)
    meta = result.metadata
    assert meta["format"] == images.EXPECTED_FORMAT[name]
    assert meta["mime_type"] == fmt.mime_type
    assert meta["bytes"] == len(data)
    assert max(result.thumbnail.width, result.thumbnail.height) == 256
    thumb = Image.open(io.BytesIO(result.thumbnail.data))
    assert thumb.format == "JPEG" and thumb.size == (result.thumbnail.width, result.thumbnail.height)
    json.dumps(meta, allow_nan=False)


@pytest.mark.parametrize(
    "data",
    [b"hello world, not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, b"GIF89a", b"%PDF-1.4\n", b"\x00" * 100],
    ids=["text", "png-magic-only", "gif-magic-only", "pdf", "zeros"],
)
def test_non_images_are_refused(data: bytes) -> None:
    assert sniff(io.BytesIO(data)) is None


def test_extension_and_name_are_not_consulted() -> None:
    """A PNG is a PNG whatever it is called; sniff only sees bytes."""
    assert sniff(io.BytesIO(images.png_rgba())).name == "PNG"


def test_jpeg_exif_is_clean_json() -> None:
    meta = analyse(images.jpeg(orientation=1, gps=True)).metadata
    exif = meta["exif"]
    assert exif["Make"] == "Apercu Test Camera"
    assert exif["Model"] == "Model 1"  # trailing NULs stripped
    assert exif["ModifyDate"] == "2024-05-17T10:11:12"  # ExifTool's names, ISO 8601 dates
    assert exif["DateTimeOriginal"] == "2024-05-17T09:08:07"
    assert exif["ISO"] == 200
    assert exif["ExposureTime"] == pytest.approx(0.004)
    assert exif["FNumber"] == pytest.approx(2.8)
    assert exif["MakerNote"] == {"bytes": 20}
    assert exif["GPSLatitudeRef"] == "N"
    assert exif["GPSLatitude"] == pytest.approx(48 + 51 / 60 + 24.12 / 3600)
    assert meta["gps"] == {"latitude": pytest.approx(48.856700), "longitude": pytest.approx(2.352083, abs=1e-6)}
    assert "exif" not in analyse(images.encode(images.gradient(), "JPEG")).metadata


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_gives_displayed_size_and_upright_thumbnail(orientation: int) -> None:
    upright = images.gradient((320, 200))
    stored = upright.transpose(INVERSE[orientation]) if orientation in INVERSE else upright
    exif = images.exif_block(orientation=orientation)
    result = analyse(images.encode(stored, "JPEG", quality=95, exif=exif))
    meta = result.metadata
    assert (meta["width"], meta["height"]) == (320, 200)
    assert (meta["raw_width"], meta["raw_height"]) == stored.size
    assert meta["orientation"] == orientation
    thumb = Image.open(io.BytesIO(result.thumbnail.data)).convert("RGB")
    reference = upright.resize(thumb.size, Image.Resampling.LANCZOS)
    assert _mean_difference(thumb, reference) < 8


# The transposition that, applied to the upright picture, gives what a camera stores for each orientation.
INVERSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_small_images_are_never_upscaled() -> None:
    result = analyse(images.encode(images.gradient((40, 30)), "PNG"))
    assert (result.thumbnail.width, result.thumbnail.height) == (40, 30)


def test_thumbnail_has_no_metadata() -> None:
    jpeg = analyse(images.jpeg(orientation=6, gps=True)).thumbnail.data
    thumb = Image.open(io.BytesIO(jpeg))
    assert len(thumb.getexif()) == 0
    assert b"Exif" not in jpeg and b"Apercu Test Camera" not in jpeg


def test_alpha_is_flattened_on_white() -> None:
    transparent = Image.new("RGBA", (300, 300), (255, 0, 0, 0))
    thumb = Image.open(io.BytesIO(analyse(images.encode(transparent, "PNG")).thumbnail.data))
    assert thumb.mode == "RGB"
    r, g, b = (round(v) for v in ImageStat.Stat(thumb).mean)
    assert min(r, g, b) >= 250


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    result = analyse(images.png_16bit_grey())
    assert result.metadata["bit_depth"] == 16
    thumb = Image.open(io.BytesIO(result.thumbnail.data))
    assert thumb.mode == "L"  # greyscale stays greyscale
    low, high = thumb.getextrema()
    assert low < 20 and high > 235  # the full range survives; clipping would leave all pixels at 255


def test_greyscale_stays_greyscale() -> None:
    thumb = Image.open(io.BytesIO(analyse(images.encode(images.gradient(mode="L"), "JPEG")).thumbnail.data))
    assert thumb.mode == "L"


def test_animated_gif_reports_frames_and_uses_the_first() -> None:
    result = analyse(images.gif_animated())
    assert result.metadata["frames"] == 2
    thumb = Image.open(io.BytesIO(result.thumbnail.data)).convert("RGB")
    corner = thumb.crop((0, 0, 20, 20))
    assert min(ImageStat.Stat(corner).mean) > 200  # the first frame's white marker is top-left


def test_truncated_file_fails_with_a_message() -> None:
    data = images.jpeg((1200, 900))
    with pytest.raises(ProcessingFailed, match="cannot decode image"):
        analyse(data[: len(data) // 2])


def test_pixel_limit_refuses_bombs_before_decoding() -> None:
    data = images.encode(Image.new("L", (5000, 5000)), "PNG")
    with pytest.raises(ProcessingFailed, match="more than the limit"):
        analyse(data, Options(max_pixels=10_000_000))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (exif_json.TiffImagePlugin.IFDRational(1, 0), None),
        (float("nan"), None),
        (b"\x00\xff\x10\x20\x30", {"bytes": 5}),
        (b"\x00\xff", [0, 255]),
        (b"ASCII\x00\x00\x00hello\x00", "hello"),
        ("text\x00\x00", "text"),
        ((1, 2, 3), [1, 2, 3]),
    ],
)
def test_exif_values_become_strict_json(value: object, expected: object) -> None:
    name = "UserComment" if isinstance(value, bytes) and value.startswith(b"ASCII") else "X"
    assert exif_json.to_json(value, name) == expected


def _late_exif_png(orientation: int) -> bytes:
    """A PNG whose eXIf chunk follows the pixel data, where the PNG specification allows it."""
    import struct
    import zlib

    data = images.encode(images.gradient((320, 200)), "PNG")
    exif = images.exif_block(orientation=orientation, camera=False).tobytes()
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def test_png_exif_after_the_pixels_is_found_without_decoding() -> None:
    from apercu.imaging.png_chunks import read_chunks

    data = _late_exif_png(6)
    assert data.index(b"eXIf") > data.index(b"IDAT")
    assert read_chunks(data).exif is not None
    result = analyse(data)
    assert result.metadata["orientation"] == 6 and result.metadata["exif"]["Orientation"] == 6
    assert (result.thumbnail.width, result.thumbnail.height) == (160, 256)


def test_png_text_chunks_and_zlib_bombs() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Sunset")
    info.add_text("Comment", "é" * 10, zip=True)
    info.add_itxt("Author", "Zoë", lang="en")
    result = analyse(images.encode(images.gradient(), "PNG", pnginfo=info))
    assert result.metadata["text"] == {"Title": "Sunset", "Comment": "é" * 10, "Author": "Zoë"}
    bomb = PngImagePlugin.PngInfo()
    bomb.add_text("Huge", "x" * (4 * 1024 * 1024), zip=True)  # 4 MiB of text in a few KiB
    data = images.encode(images.gradient(), "PNG", pnginfo=bomb)
    from apercu.imaging.png_chunks import read_chunks

    walked = read_chunks(data)
    assert "Huge" not in walked.text and any("larger than" in p for p in walked.problems)
    with pytest.raises(ProcessingFailed, match="too large"):  # Pillow refuses such a file outright
        analyse(data)


def test_a_fresh_worker_reads_tga_before_it_has_seen_any_heif(tmp_path: object) -> None:
    """HEIF support loads on the first HEIF file; until then the other formats must not trip over its name."""
    import subprocess
    import sys

    script = (
        "import sys; from apercu.imaging.analyse import analyse; "
        "print(analyse(sys.stdin.buffer.read()).metadata['format'])"
    )
    tga = images.encode(images.gradient(), "TGA")
    result = subprocess.run([sys.executable, "-c", script], input=tga, capture_output=True, timeout=60)
    assert result.stdout.decode().strip() == "TGA", result.stderr.decode()[-500:]


# Limits before work: every canvas is checked from the header before any pixel is decoded, and every block that
# inflates (PNG text and ICC chunks, XMP) is bounded. The bombs are built in tests/fuzzing.py.

BOMB_SECONDS = 1.0  # each takes milliseconds; the margin is for a busy machine
BOMB_MEMORY = 64 * 1024 * 1024  # bytes above the process's size before the call


def _reported(name: str) -> tuple[str, list[str]]:
    """(failure message or "", warnings) of analysing one bomb, which must take less than BOMB_SECONDS."""
    import time

    import fuzzing

    data = fuzzing.BOMBS[name].build()
    started = time.perf_counter()
    try:
        message, warnings = "", analyse(data).metadata.get("warnings", [])
    except ProcessingFailed as exc:
        message, warnings = str(exc), exc.metadata.get("warnings", [])
    assert time.perf_counter() - started < BOMB_SECONDS, name
    return message, warnings


def _bomb_names() -> list[str]:
    import fuzzing

    return sorted(fuzzing.BOMBS)


@pytest.mark.parametrize("name", _bomb_names())
def test_bombs_fail_in_milliseconds_or_lose_only_their_block(name: str) -> None:
    import re

    import fuzzing

    message, warnings = _reported(name)
    expected = re.compile(fuzzing.BOMBS[name].expect)
    assert expected.search(message) or any(expected.search(w) for w in warnings), (message, warnings)


def test_bombs_need_little_memory() -> None:
    """Peak RSS of analyse on each bomb, each in a fresh process (getrusage)."""
    import fuzzing

    for name, bomb in fuzzing.BOMBS.items():
        measured = fuzzing.measure(bomb.build())
        print(f"{name}: {measured.seconds * 1000:.0f} ms, peak RSS {measured.peak_rss >> 20} MiB "
              f"(+{measured.growth >> 20} MiB): {measured.outcome}")
        assert measured.growth < BOMB_MEMORY, (name, measured)


def _seed_names() -> list[str]:
    return sorted(images.FUZZ_SEEDS)


@pytest.mark.parametrize("name", _seed_names())
def test_nothing_is_decoded_before_the_pixel_limit(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a limit of one pixel, every format is refused with the limit's message: had anything before the
    check (metadata, frame counting, animation timing) decoded pixels, the patched loaders would have said so."""
    from PIL import ImageFile

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError(f"{type(self).__name__}.load() called before the pixel limit")

    for cls in _subclasses(ImageFile.ImageFile):
        if "load" in vars(cls):
            monkeypatch.setattr(cls, "load", no_decoding)
    data = images.FUZZ_SEEDS[name]()
    with pytest.raises(ProcessingFailed, match=r"^image is \d+x\d+ = \d+ pixels, more than the limit of 1$"):
        analyse(data, Options(max_pixels=1))
    with pytest.raises(ProcessingFailed, match=r"more than the limit of 1$"):
        render_variant(data, Options(max_pixels=1), 64, "JPEG")


def _subclasses(cls: type) -> list[type]:
    return [cls] + [sub for child in cls.__subclasses__() for sub in _subclasses(child)]


@pytest.mark.parametrize("name", _seed_names())
def test_counting_frames_leaves_the_image_where_it_is(name: str) -> None:
    """A format not marked `frames_walked` has its frames counted on the very image that is then decoded (no
    throwaway opening): the count must come with the header, without seeking, and be the one a walk finds.
    A walked format is counted on a throwaway opening: the image itself stays on its first frame."""
    from PIL import ImageSequence

    from apercu.imaging.analyse import _frame_count, _frames, _open
    from apercu.imaging.formats import format_of

    data = images.FUZZ_SEEDS[name]()
    with _open(data) as walked:
        expected = sum(1 for _ in ImageSequence.Iterator(walked))
    with _open(data) as img:
        fmt = format_of(img.format)
        assert fmt is not None
        if fmt.frames_walked:
            assert _frame_count(img, data, []) == expected and img.tell() == 0
            return

        def no_seeking(*args: object) -> None:
            raise AssertionError(f"counting the frames of {img.format} moved the image")

        img.seek = img._seek = no_seeking  # type: ignore[method-assign]
        assert _frames(img) == expected and img.tell() == 0


def test_animation_timing_is_read_from_the_bytes() -> None:
    for data, frames, duration in ((images.gif_rich(), 3, 180), (images.apng(), 2, 120),
                                   (images.webp_animated(), 2, 80)):
        meta = analyse(data).metadata
        assert (meta["frames"], meta["animated"], meta["duration_ms"]) == (frames, True, duration)


def test_libvips_never_decodes_more_than_pillow_checked() -> None:
    from types import SimpleNamespace

    from apercu.imaging import engines

    img = Image.new("RGB", (100, 100))
    engines._same_canvas(SimpleNamespace(width=100, height=100), img)
    with pytest.raises(engines.CanvasMismatch):
        engines._same_canvas(SimpleNamespace(width=100, height=101), img)


def test_a_colour_transform_is_built_once_per_profile() -> None:
    """Building the transform to sRGB is the expensive part: it is kept per profile, and converts exactly as a
    fresh profileToProfile does."""
    from PIL import ImageCms

    from apercu.imaging import engines

    profile, frame = images.adobe_rgb_profile(), images.gradient((64, 48))
    expected = ImageCms.profileToProfile(
        frame, ImageCms.ImageCmsProfile(io.BytesIO(profile)), ImageCms.createProfile("sRGB"), outputMode="RGB"
    )
    engines._kept_transform.cache_clear()
    assert all(engines.to_srgb(frame, profile).tobytes() == expected.tobytes() for _ in range(3))
    assert (engines._kept_transform.cache_info().misses, engines._kept_transform.cache_info().hits) == (1, 2)


def test_sniff_answers_any_stream() -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("the disk went away")

    assert sniff(Broken(images.png_rgba())) is None
