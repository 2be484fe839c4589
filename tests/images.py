"""Test images made with Pillow, so a fresh clone tests every format without any file from outside."""

from __future__ import annotations

import io
from collections.abc import Callable

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


# Small images carrying every kind of metadata block, as seeds for the fuzzer (tests/fuzzing.py): small so that
# thousands of mutated copies decode in a minute, rich so that every metadata reader sees mutated input.

XMP_PACKET = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
    b' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
    b"<dc:subject><rdf:Bag><rdf:li>fuzz</rdf:li><rdf:li>seed</rdf:li></rdf:Bag></dc:subject>"
    b"<xmp:Rating>3</xmp:Rating></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
)


def iptc_datasets() -> bytes:
    """IPTC-IIM: coded character set UTF-8 (1:90), a keyword and a caption (2:25, 2:120)."""
    fields = [(1, 90, b"\x1b%G"), (2, 25, b"keyword"), (2, 120, "caption é".encode())]
    return b"".join(b"\x1c" + bytes([record, dataset]) + len(value).to_bytes(2, "big") + value
                    for record, dataset, value in fields)


def photoshop_app13(iptc: bytes) -> bytes:
    """A JPEG APP13 segment: Photoshop image resource 0x0404 holding the IPTC datasets."""
    body = iptc + b"\x00" * (len(iptc) % 2)
    resource = b"8BIM\x04\x04\x00\x00" + len(iptc).to_bytes(4, "big") + body
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload


def with_segment(jpeg_data: bytes, segment: bytes) -> bytes:
    """The JPEG with one more marker segment right after SOI."""
    return jpeg_data[:2] + segment + jpeg_data[2:]


def jpeg_rich() -> bytes:
    data = encode(gradient((64, 48)), "JPEG", quality=80, exif=exif_block(orientation=6, gps=True),
                  icc_profile=adobe_rgb_profile(), xmp=XMP_PACKET, comment=b"fuzz seed")
    return with_segment(data, photoshop_app13(iptc_datasets()))


def png_rich() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "seed")
    info.add_text("Comment", "compressed comment", zip=True)
    info.add_itxt("Author", "Zoë", lang="fr", tkey="Auteur", zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
    img = gradient((48, 32)).convert("RGBA")
    return encode(img, "PNG", pnginfo=info, icc_profile=adobe_rgb_profile(),
                  exif=exif_block(orientation=3, gps=True), dpi=(72, 72))


def apng() -> bytes:
    frames = [gradient((40, 30)), gradient((40, 30)).rotate(180)]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=[50, 70], loop=2)


def tiff_rich() -> bytes:
    """Two pages: RGB with EXIF (Exif and GPS sub-IFDs), ICC, XMP and IPTC tags; then 16-bit grey."""
    exif = exif_block(orientation=6, gps=True)
    for ifd in (0x8769, 0x8825):
        exif[ifd] = dict(exif.get_ifd(ifd))  # written as sub-IFDs by Pillow's own (uncompressed) TIFF writer
    exif[700] = XMP_PACKET
    exif[33723] = iptc_datasets()
    second = Image.linear_gradient("L").resize((24, 16)).convert("I").point(lambda v: v * 257).convert("I;16")
    return encode(gradient((40, 30)), "TIFF", exif=exif, icc_profile=adobe_rgb_profile(), save_all=True,
                  append_images=[second])


def tiff_tiled_pyramid() -> bytes:
    """A tiled, deflate-compressed pyramid TIFF (several IFDs, TileOffsets), as libvips writes it."""
    import pyvips

    rgb = gradient((300, 200))
    vips = pyvips.Image.new_from_memory(rgb.tobytes(), rgb.width, rgb.height, 3, "uchar")
    return bytes(vips.tiffsave_buffer(tile=True, tile_width=64, tile_height=64, pyramid=True, compression="deflate"))


def png_interlaced() -> bytes:
    """Adam7-interlaced (Pillow does not write those; libvips does)."""
    import pyvips

    rgb = gradient((48, 32))
    return bytes(pyvips.Image.new_from_memory(rgb.tobytes(), 48, 32, 3, "uchar").pngsave_buffer(interlace=True))


def webp_alpha() -> bytes:
    """Lossy colour with a separate alpha chunk (ALPH)."""
    img = gradient((48, 32)).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize(img.size))
    return encode(img, "WEBP", quality=60)


def gif_rich() -> bytes:
    frames = [gradient((40, 30)).convert("P"), gradient((40, 30)).rotate(90).convert("P"), gradient((40, 30)).convert("P")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[40, 60, 80], loop=0,
                  transparency=0, comment=b"fuzz seed", disposal=2)


def webp_rich() -> bytes:
    return encode(gradient((48, 32)), "WEBP", quality=60, exif=exif_block(orientation=8, gps=True),
                  icc_profile=adobe_rgb_profile(), xmp=XMP_PACKET)


def webp_animated() -> bytes:
    frames = [gradient((32, 24)), gradient((32, 24)).rotate(180)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=[30, 50], loop=1,
                  lossless=True)


FUZZ_SEEDS: dict[str, Callable[[], bytes]] = {
    "jpeg-rich": jpeg_rich,
    "jpeg-progressive-cmyk": lambda: encode(gradient((40, 24), "CMYK"), "JPEG", progressive=True),
    "mpo": lambda: encode(gradient((48, 32)), "MPO", save_all=True, append_images=[gradient((48, 32)).rotate(180)],
                          exif=exif_block(orientation=6)),
    "png-rich": png_rich,
    "png-palette": lambda: encode(gradient((40, 30)).convert("P", colors=8), "PNG", transparency=1),
    "png-16bit": lambda: encode(Image.linear_gradient("L").resize((24, 16)).convert("I").point(
        lambda v: v * 257).convert("I;16"), "PNG"),
    "apng": apng,
    "png-interlaced": png_interlaced,
    "tiff-rich": tiff_rich,
    "tiff-tiled-pyramid": tiff_tiled_pyramid,
    "tiff-lzw": lambda: encode(gradient((40, 30)), "TIFF", compression="tiff_lzw", exif=exif_block(orientation=3)),
    "tiff-jpeg-ycbcr": lambda: encode(gradient((48, 32)), "TIFF", compression="jpeg"),
    "bigtiff": lambda: encode(gradient((40, 30)), "TIFF", big_tiff=True, exif=exif_block(orientation=3, gps=True)),
    "tiff-packbits-bilevel": lambda: encode(gradient((40, 30), "1"), "TIFF", compression="packbits"),
    "gif-animated": gif_rich,
    "bmp-24": lambda: encode(gradient((40, 30)), "BMP"),
    "bmp-palette": lambda: encode(gradient((40, 30)).convert("P", colors=16), "BMP"),
    "tga-rle": lambda: encode(gradient((40, 30)), "TGA", compression="tga_rle"),
    "tga-palette": lambda: encode(gradient((40, 30)).convert("P", colors=16), "TGA"),
    "webp-rich": webp_rich,
    "webp-animated": webp_animated,
    "webp-alpha": webp_alpha,
    "heif": lambda: encode(gradient((64, 48)), "HEIF", quality=50),
    "avif": lambda: encode(gradient((64, 48)), "AVIF", quality=50),
}
