"""Which formats apercu accepts, and how it recognises them from their content alone.

The file name and the client's Content-Type are never consulted: a format is decided by its magic bytes and then
confirmed by the matching Pillow plugin reading the header, with Pillow restricted to that one plugin so that a
hostile file cannot steer the decision to any of Pillow's other, less hardened, readers. TGA has no magic number,
so it is tried last, by header validation alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from apercu.imaging import limits

HEAD_BYTES = 64


@dataclass(frozen=True)
class Format:
    """A supported format: the name we report, its MIME type, and the Pillow plugins that read it."""

    name: str
    mime_type: str
    plugins: tuple[str, ...]
    magic: Callable[[bytes], bool] | None  # None: it has no magic number, and is tried last (TGA)
    # For a file Pillow cannot open: does its structure still show a real image of this format? Such a file
    # is accepted and fails in processing, with whatever metadata it still has.
    structurally_valid: Callable[[BinaryIO], bool] | None = None
    # Whether Pillow counts the frames by walking through them, which moves the reader (GIF reads every frame's
    # header; TIFF reloads its tags for every directory). Every other plugin reads the count (or knows there
    # is one frame) with the header, so the open image answers as it is (see analyse._frame_count).
    frames_walked: bool = False


def _ftyp_brands(head: bytes) -> set[bytes]:
    """Major and compatible brands of an ISO-BMFF `ftyp` box (HEIF, AVIF), empty when there is none."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return set()
    size = int.from_bytes(head[0:4], "big")
    end = min(max(size, 16), len(head))
    brands = {head[8:12]}
    brands.update(head[i : i + 4] for i in range(16, end - 3, 4))
    return brands


TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
WIDTH, HEIGHT = 0x0100, 0x0101


def tiff_directory(data: bytes) -> Image.Exif | None:
    """IFD0 of a TIFF read as a bare directory (as EXIF is), or None when it holds no image dimensions."""
    if data[:4] not in TIFF_MAGIC[:2]:
        return None
    directory = Image.Exif()
    try:
        directory.load(data)
    except Exception:  # noqa: BLE001 - any parse error means no usable directory
        return None
    return directory if WIDTH in directory and HEIGHT in directory else None


HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}

FORMATS: tuple[Format, ...] = (
    Format("JPEG", "image/jpeg", ("JPEG",), lambda h: h[:3] == b"\xff\xd8\xff"),
    Format("PNG", "image/png", ("PNG",), lambda h: h[:8] == b"\x89PNG\r\n\x1a\n"),
    Format("GIF", "image/gif", ("GIF",), lambda h: h[:6] in (b"GIF87a", b"GIF89a"), frames_walked=True),
    Format("WEBP", "image/webp", ("WEBP",), lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    Format(
        "TIFF",
        "image/tiff",
        ("TIFF",),
        lambda h: h[:4] in TIFF_MAGIC,
        lambda fp: tiff_directory(fp.read()) is not None,
        frames_walked=True,
    ),
    Format("BMP", "image/bmp", ("BMP",), lambda h: h[:2] == b"BM"),
    Format("AVIF", "image/avif", ("AVIF",), lambda h: bool(_ftyp_brands(h) & AVIF_BRANDS)),
    Format("HEIF", "image/heif", ("HEIF",), lambda h: bool(_ftyp_brands(h) & HEIF_BRANDS)),
    Format("TGA", "image/x-tga", ("TGA",), None),
)

BY_NAME = {f.name: f for f in FORMATS}
# Pillow reports some files under a more specific plugin than the one we opened them with.
PILLOW_ALIASES = {"MPO": "JPEG"}


def format_of(pillow_format: str | None) -> Format | None:
    """Our Format for the name Pillow gives an opened image."""
    if pillow_format is None:
        return None
    return BY_NAME.get(PILLOW_ALIASES.get(pillow_format, pillow_format))


def claimed_by(head: bytes) -> Format | None:
    """The format whose magic bytes the file starts with, if any."""
    return next((fmt for fmt in FORMATS if fmt.magic is not None and fmt.magic(head)), None)


def prepare_plugins(head: bytes) -> None:
    """Load the plugins that are loaded on demand (HEIF) when the first bytes call for them."""
    if _ftyp_brands(head) & HEIF_BRANDS:
        limits.enable_heif()


def sniff(fp: BinaryIO) -> Format | None:
    """The format of a seekable stream, or None when it is not an image we accept. Never raises.

    Only headers are read: a file whose pixels are corrupt is still recognised here and fails later, in
    processing, where the failure can be reported on the image itself. This is the web process's error
    boundary (it runs on every upload): a file that makes recognising it fail is not one we accept.
    """
    try:
        return _recognise(fp)
    except Exception:  # noqa: BLE001 - any bytes whatsoever get an answer, never an exception
        return None


def _recognise(fp: BinaryIO) -> Format | None:
    limits.configure_pillow()
    fp.seek(0)
    head = fp.read(HEAD_BYTES)
    prepare_plugins(head)
    for fmt in FORMATS:
        if (fmt.magic is None or fmt.magic(head)) and (_pillow_accepts(fp, fmt) or _structurally_valid(fp, fmt)):
            return fmt
    return None


def _structurally_valid(fp: BinaryIO, fmt: Format) -> bool:
    if fmt.structurally_valid is None:
        return False
    fp.seek(0)
    try:
        return fmt.structurally_valid(fp)
    finally:
        fp.seek(0)


def _pillow_accepts(fp: BinaryIO, fmt: Format) -> bool:
    fp.seek(0)
    try:
        with Image.open(fp, formats=list(fmt.plugins)) as img:
            width, height = img.size
            return width > 0 and height > 0
    except Image.DecompressionBombError:
        return True  # a real image, just too large to decode: refused in processing with a message
    except Exception:  # noqa: BLE001 - any reader error means "not this format"
        return False
    finally:
        fp.seek(0)
