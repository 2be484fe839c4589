"""Test images made with Pillow, so a fresh clone tests every format without any file from outside."""

from __future__ import annotations

import io
from typing import Callable

from PIL import Image, ImageDraw, TiffImagePlugin

from apercu.imaging import limits

limits.enable_heif()  # HEIF encoder and decoder, for the images made here


def gradient(size: tuple[int, int] = (320, 200), mode: str = "RGB") -> Image.Image:
    """A picture with structure in both axes and a marker in the top-left corner, to tell poses apart."""
    width, height = size
    img = Image.new("RGB", size)
    pixels = img.load()
    for y in range(height):
        for x in range(width):
            pixels[x, y] = (x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), 128)
    ImageDraw.Draw(img).rectangle((0, 0, width // 4, height // 4), fill=(255, 255, 255))
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def exif_block(orientation: int | None = None, gps: bool = False, camera: bool = True) -> Image.Exif:
    exif = Image.Exif()
    if camera:
        exif[0x010F] = "Apercu Test Camera"  # Make
        exif[0x0110] = "Model 1\x00\x00"  # Model, with the trailing NULs cameras write
        exif[0x0132] = "2024:05:17 10:11:12"  # DateTime (ExifTool: ModifyDate)
        exif_ifd = exif.get_ifd(0x8769)
        exif_ifd[0x9003] = "2024:05:17 09:08:07"  # DateTimeOriginal
        exif_ifd[0x829A] = TiffImagePlugin.IFDRational(1, 250)  # ExposureTime
        exif_ifd[0x829D] = TiffImagePlugin.IFDRational(28, 10)  # FNumber
        exif_ifd[0x8827] = 200  # ISO
        exif_ifd[0x927C] = b"\x00\x01binary maker note\xff"  # MakerNote
    if orientation is not None:
        exif[0x0112] = orientation
    if gps:
        gps_ifd = exif.get_ifd(0x8825)
        gps_ifd[1] = "N"
        gps_ifd[2] = (TiffImagePlugin.IFDRational(48, 1), TiffImagePlugin.IFDRational(51, 1), TiffImagePlugin.IFDRational(2412, 100))
        gps_ifd[3] = "E"
        gps_ifd[4] = (TiffImagePlugin.IFDRational(2, 1), TiffImagePlugin.IFDRational(21, 1), TiffImagePlugin.IFDRational(75, 10))
    return exif


def jpeg(size: tuple[int, int] = (320, 200), **exif_args: object) -> bytes:
    return encode(gradient(size), "JPEG", quality=90, exif=exif_block(**exif_args))  # type: ignore[arg-type]


def png_rgba() -> bytes:
    img = gradient().convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize(img.size))
    return encode(img, "PNG")


def png_16bit_grey() -> bytes:
    return encode(Image.linear_gradient("L").resize((300, 120)).convert("I").point(lambda v: v * 257).convert("I;16"), "PNG")


def png_palette_transparent() -> bytes:
    img = gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(img, "PNG", transparency=0)


def gif_animated() -> bytes:
    frames = [gradient(), gradient().rotate(180)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def tiff_16bit() -> bytes:
    return encode(Image.linear_gradient("L").resize((256, 128)).convert("I").point(lambda v: v * 257).convert("I;16"), "TIFF")


def heif() -> bytes:
    return encode(gradient(), "HEIF", quality=80)


FACTORIES: dict[str, Callable[[], bytes]] = {
    "JPEG": lambda: jpeg(orientation=6, gps=True),
    "PNG": png_rgba,
    "PNG16": png_16bit_grey,
    "PNG-palette": png_palette_transparent,
    "TIFF": lambda: encode(gradient(), "TIFF", exif=exif_block(orientation=3)),
    "TIFF16": tiff_16bit,
    "BMP": lambda: encode(gradient(), "BMP"),
    "TGA": lambda: encode(gradient(), "TGA", compression="tga_rle"),
    "GIF": gif_animated,
    "WEBP": lambda: encode(gradient(), "WEBP", quality=80, exif=exif_block(orientation=8)),
    "HEIF": heif,
    "AVIF": lambda: encode(gradient(), "AVIF", quality=60),
}
# What each factory's output must be reported as.
EXPECTED_FORMAT = {name: name.split("-")[0].rstrip("16") for name in FACTORIES}


def _s15(value: float) -> bytes:
    return int(round(value * 65536)).to_bytes(4, "big", signed=True)


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \x00\x00\x00\x00" + _s15(x) + _s15(y) + _s15(z)


def adobe_rgb_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC profile with Adobe RGB (1998) primaries (D50-adapted) and gamma 2.2:
    a wide-gamut profile for colour-management tests, built here so no profile file is needed."""
    description = b"Apercu test Adobe RGB\x00"
    desc = b"desc\x00\x00\x00\x00" + len(description).to_bytes(4, "big") + description + b"\x00" * 12 + b"\x00" * 67
    curve = b"curv\x00\x00\x00\x00" + (1).to_bytes(4, "big") + (563).to_bytes(2, "big") + b"\x00\x00"
    tags = [
        (b"desc", desc),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.6097, 0.3111, 0.0195)),
        (b"gXYZ", _xyz(0.2053, 0.6257, 0.0609)),
        (b"bXYZ", _xyz(0.1492, 0.0632, 0.7446)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        data += b"\x00" * (-len(data) % 4)
        table += signature + (offset + len(body)).to_bytes(4, "big") + len(data).to_bytes(4, "big")
        body += data
    size = offset + len(body)
    header = (
        size.to_bytes(4, "big") + b"lcms" + b"\x02\x10\x00\x00" + b"mntrRGB XYZ " + b"\x07\xe8\x00\x01\x00\x01"
        + b"\x00" * 6 + b"acspAPPL" + b"\x00" * 4 + b"\x00" * 8 + b"\x00" * 8 + b"\x00" * 4
        + _s15(0.9642)[0:4] + _s15(1.0) + _s15(0.8249) + b"lcms" + b"\x00" * 44
    )
    assert len(header) == 128, len(header)
    return header + len(tags).to_bytes(4, "big") + table + body
