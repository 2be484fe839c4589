"""The imaging entry points: the bytes of an original in, its metadata and thumbnail (or another rendering) out.

The image is opened once and its pixels decoded once. Header facts and metadata blocks are read before any
decoding (JPEG shrink-on-load changes the size Pillow reports, Pillow's TIFF decoder strips the orientation
it applies, and PNG chunks are walked rather than loaded), then the pixel limit is checked, then the pixels
are decoded. When anything fails, what the header said is kept and handed over with the failure, so a broken
file still shows its metadata.

Every entry point runs inside one error boundary (`_contained`): whatever the bytes make a reader or decoder
raise leaves as `ProcessingFailed`, with a message for the uploader and the metadata known at that point.
Individual readers are robust too (see `embedded.guarded`), so that a bad block costs only itself; the boundary
is what makes the contract hold for every reader, including the ones nobody thought of.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import threading
import warnings as warnings_module
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image, UnidentifiedImageError

from apercu.imaging import embedded, engines, fingerprints, limits, makernotes, metadata, thumbnail
from apercu.imaging import exif as exif_json
from apercu.imaging.formats import FORMATS, HEAD_BYTES, claimed_by, format_of, prepare_plugins, tiff_directory
from apercu.imaging.renditions import focal
from apercu.imaging.renditions.options import Rendition
from apercu.imaging.renditions.render import Rendered, render

DECODE, LIMITS = "decode", "limits"  # ProcessingFailed.reason


class ProcessingFailed(Exception):
    """The image could not be processed; the message is meant for the person who uploaded it.

    `metadata` holds what could be read before the failure (empty when the file could not even be opened).
    `reason` classes it for the failure metrics, from where it failed rather than from the message's wording:
    DECODE (the file could not be read) or LIMITS (it needs more pixels or memory than a deployment allows)."""

    def __init__(self, message: str, metadata: dict[str, Any] | None = None, reason: str = DECODE) -> None:
        super().__init__(message)
        self.metadata = metadata or {}
        self.reason = reason  # (attributes, unlike extra arguments, survive the pickling out of the sandbox)



@dataclass(frozen=True)
class Options:
    thumbnail_size: int = 256
    thumbnail_quality: int = 85
    max_pixels: int = 100_000_000
    background: tuple[int, int, int] = thumbnail.WHITE
    exiftool: bool = False  # maker notes through ExifTool (see makernotes)
    exiftool_timeout: float = makernotes.TIMEOUT
    decode_threads: int = 1  # libheif's threads for one file (see limits.set_decode_threads)


@dataclass
class Analysis:
    metadata: dict[str, Any]  # what was read, unreadable parts listed under "warnings"
    thumbnail: thumbnail.Thumbnail


MAX_WARNINGS = 20
ALL_PLUGINS = [plugin for fmt in FORMATS for plugin in fmt.plugins]


def _registered_plugins() -> list[str]:
    """Our plugins that this process has loaded: Pillow fails on a format name it does not know (HEIF is
    registered only once a HEIF file has been seen)."""
    Image.init()
    return [plugin for plugin in ALL_PLUGINS if plugin in Image.OPEN]


def analyse(data: bytes, options: Options = Options()) -> Analysis:
    """Metadata and thumbnail of one image; raises ProcessingFailed (only) with a readable message.

    Pillow's own complaints about the file (corrupt EXIF, truncated tags) join the image's `warnings`."""
    return _contained(data, lambda attempt: _analyse(attempt, options))


def render_variant(data: bytes, options: Options, size: int, fmt: str) -> thumbnail.Thumbnail:
    """Another size or format of an already processed image's thumbnail (rendered on first request); raises
    ProcessingFailed (only)."""
    return _contained(data, lambda attempt: _render_variant(attempt, options, size, fmt))


def render_rendition(
    data: bytes, rendition: Rendition, options: Options, *,
    max_output_pixels: int, focal_point: Mapping[str, float] | None = None,
) -> Rendered:
    """A rendition (resolved to a format) of the original; `focal_point` is the image's stored one, for
    `g:focal`. Raises ProcessingFailed (only): reason LIMITS for an output over max_output_pixels."""
    return _contained(data, lambda attempt: _render_rendition(attempt, rendition, options, max_output_pixels,
                                                              focal_point))


MEMORY_MESSAGE = "the image needs more memory than an imaging process is allowed"
UNIDENTIFIED = "its header is not that of a supported format"
REFUSAL = " opening failed. "  # how Pillow words a plugin's refusal: "TIFF opening failed. unknown pixel mode"
T = TypeVar("T")


class _Attempt:
    """One entry point's progress through one file, for the boundary to word a failure: the verb of the message
    ("read" until the header is understood, then "decode") and the metadata known so far."""

    def __init__(self, data: bytes, caught: list[warnings_module.WarningMessage]) -> None:
        self.data = data
        self.caught = caught  # Pillow's warnings about this file
        self.stage = "read image"
        self.facts: dict[str, Any] | None = None
        self.warnings: list[str] = []  # ours
        self.digest: _Digest | None = None

    def reported(self, facts: dict[str, Any]) -> dict[str, Any]:
        """The facts with the warnings: ours first, then Pillow's, each once."""
        return _with_warnings(facts, _merged(self.caught, self.warnings))

    def failure_metadata(self) -> dict[str, Any]:
        """The header facts when they were read, else what the salvage finds; less (or {}) when even that fails."""
        try:
            facts = dict(self.facts) if self.facts is not None else _salvage(self.data, self.warnings)
            if facts:
                facts["sha256"] = self.digest.result() if self.digest else hashlib.sha256(self.data).hexdigest()
            return self.reported(facts) if facts else {}
        except Exception:  # noqa: BLE001 - a salvage that fails only salvages less
            return {}

    def failure_message(self, exc: Exception) -> str:
        if isinstance(exc, limits.ImageRejected):
            return str(exc)
        if isinstance(exc, Image.DecompressionBombError):
            return f"image rejected as a decompression bomb: {exc}"
        if isinstance(exc, UnidentifiedImageError):  # Pillow's message names only the stream object
            return f"cannot read image: {self._refusal() or UNIDENTIFIED}"
        return f"cannot {self.stage}: {embedded.describe(exc)}"

    def _refusal(self) -> str | None:
        """Why the plugin for the file's magic bytes refused its header ("TIFF opening failed. unknown pixel
        mode": Pillow warns it, see limits); None for a file without the magic bytes of any format."""
        fmt = claimed_by(self.data[:HEAD_BYTES])
        refusals = tuple(f"{plugin}{REFUSAL}" for plugin in fmt.plugins) if fmt else ()
        reasons = [str(w.message) for w in self.caught if str(w.message).startswith(refusals)]
        return reasons[0] if reasons else None


def _contained(data: bytes, work: Callable[[_Attempt], T]) -> T:
    """The error boundary of imaging: work(attempt), with every exception but ProcessingFailed turned into one.

    A reader or decoder failing on hostile bytes is a property of the file, never a crash: the message says
    what failed, for the uploader, and the metadata known at that point goes with it. Running out of memory
    (the worker's imaging processes run under a memory limit) is the file's failure too, worded as such once
    the handler has let go of whatever the failed call had allocated. BaseExceptions that are not Exceptions
    (KeyboardInterrupt, SystemExit) pass through untouched.
    """
    with _pillow_warnings() as caught:
        attempt = _Attempt(data, caught)
        try:
            return work(attempt)
        except ProcessingFailed:
            raise
        except MemoryError:
            pass  # reported below, outside the handler: its traceback holds the frames that allocated
        except Exception as exc:  # noqa: BLE001 - the boundary: anything a file makes a reader raise
            raise ProcessingFailed(attempt.failure_message(exc), attempt.failure_metadata(), _reason(exc)) from exc
        raise ProcessingFailed(MEMORY_MESSAGE, attempt.failure_metadata(), LIMITS)


def _reason(exc: Exception) -> str:
    return LIMITS if isinstance(exc, (limits.TooManyPixels, Image.DecompressionBombError)) else DECODE


@contextlib.contextmanager
def _pillow_warnings() -> Iterator[list[warnings_module.WarningMessage]]:
    """Record what Pillow warns about while it reads this one file (workers process one file at a time)."""
    limits.configure_pillow()
    with warnings_module.catch_warnings(record=True) as caught:
        warnings_module.simplefilter("always", UserWarning)
        warnings_module.simplefilter("ignore", Image.DecompressionBombWarning)
        yield caught


def _merged(caught: list[warnings_module.WarningMessage], ours: list[str]) -> list[str]:
    """Ours first, then Pillow's, each once (the same complaint recurs across a file's directories). Its
    plugins' refusals are left out: the one that matters is the failure's message (see _Attempt._refusal)."""
    combined = list(dict.fromkeys(ours))[:MAX_WARNINGS]
    for message in caught:
        text = f"decoder: {str(message.message).strip()}"
        if REFUSAL not in text and text not in combined and len(combined) < MAX_WARNINGS:
            combined.append(text)
    return combined


def _open(data: bytes) -> Image.Image:
    """The image, opened by one of the plugins we accept: its header is read, none of its pixels."""
    prepare_plugins(data[:HEAD_BYTES])
    return Image.open(io.BytesIO(data), formats=_registered_plugins())


class _Digest(threading.Thread):
    """SHA-256 of the original on the other core while the decoder runs (both release the GIL)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(name="apercu-sha256", daemon=True)
        self.data, self.hexdigest = data, ""
        self.start()

    def run(self) -> None:
        self.hexdigest = hashlib.sha256(self.data).hexdigest()

    def result(self) -> str:
        self.join()
        return self.hexdigest


def _analyse(attempt: _Attempt, options: Options) -> Analysis:
    data = attempt.data
    attempt.digest = _Digest(data)
    with _open(data) as img:
        limits.set_decode_threads(options.decode_threads)
        facts, orientation = _header_facts(img, data, attempt.warnings)
        if options.exiftool:  # before decoding: a file that then fails to decode still shows them
            makernotes.add(facts, data, options.exiftool_timeout, attempt.warnings)
        attempt.facts, attempt.stage = facts, "decode image"
        limits.check_before_decoding(img, len(data), options.max_pixels)
        frame, engine = thumbnail.reduce(
            img, data, size=options.thumbnail_size, orientation=orientation, background=options.background
        )
    attempt.stage = "render thumbnail"
    jpeg = thumbnail.encode(frame, "JPEG", options.thumbnail_quality)
    facts["phash"], facts["blurhash"] = fingerprints.phash(frame), fingerprints.blurhash(frame)
    if engines.vips_available():  # as when it was libvips: without it, `g:focal` is the centre
        facts["focal_point"] = focal.focal_point(frame)  # ~0.6 ms, see renditions.focal
    facts["sha256"] = attempt.digest.result()
    return Analysis(attempt.reported(facts), thumbnail.Thumbnail(jpeg, frame.width, frame.height, engine))


def _render_variant(attempt: _Attempt, options: Options, size: int, fmt: str) -> thumbnail.Thumbnail:
    with _open(attempt.data) as img:
        limits.set_decode_threads(options.decode_threads)
        attempt.stage = "render thumbnail"
        limits.check_before_decoding(img, len(attempt.data), options.max_pixels)
        return thumbnail.render(
            img, attempt.data, size=size, quality=options.thumbnail_quality,
            orientation=metadata.orientation_of(img, embedded.exif_only(img, attempt.data)),
            background=options.background, fmt=fmt,
        )


def _render_rendition(
    attempt: _Attempt, rendition: Rendition, options: Options, max_output_pixels: int,
    focal_point: Mapping[str, float] | None,
) -> Rendered:
    with _open(attempt.data) as img:
        limits.set_decode_threads(options.decode_threads)
        attempt.stage = "render image"
        limits.check_before_decoding(img, len(attempt.data), options.max_pixels)
        orientation = metadata.orientation_of(img, embedded.exif_only(img, attempt.data))
        return render(img, attempt.data, orientation, rendition, max_output_pixels=max_output_pixels,
                      focal_point=focal_point)


def _header_facts(img: Image.Image, data: bytes, warnings: list[str]) -> tuple[dict[str, Any], int | None]:
    """Everything but the pixels, and the orientation the thumbnail must apply. Decodes nothing."""
    exif, blocks = embedded.read(img, data, warnings)
    orientation = metadata.orientation_of(img, exif)
    frames = _frame_count(img, data, warnings)
    facts = metadata.basic(img, data, orientation, frames)
    facts["bytes"] = len(data)
    facts.update(blocks)
    color_space = metadata.color_space(img, facts.get("icc"))
    if color_space:
        facts["color_space"] = color_space
    facts.update(metadata.animation(img, data, frames))
    return facts, orientation


def _frame_count(img: Image.Image, data: bytes, warnings: list[str]) -> int:
    """Frames in the file. Where Pillow walks the frames to count them (`Format.frames_walked`), that happens
    on a throwaway opening of the file: walking moves a reader, and a broken later frame must not leave the
    image we decode half-switched to it. Elsewhere the open image already knows, from its header, and a second
    opening would only parse the header again (~0.02 ms, 0.45 ms for a JPEG with a 400 KB ICC profile).
    A broken frame ends the count with a warning; the first one is still shown."""
    fmt = format_of(img.format)
    try:
        if fmt is not None and not fmt.frames_walked:
            return _frames(img)
        with _open(data) as throwaway:
            return _frames(throwaway)
    except Exception as exc:  # noqa: BLE001 - a later frame's damage costs only the frame count
        warnings.append(f"frames after the first unreadable: {embedded.describe(exc)}")
        return 1


def _frames(img: Image.Image) -> int:
    return max(1, int(getattr(img, "n_frames", 1) or 1))


def _salvage(data: bytes, warnings: list[str]) -> dict[str, Any]:
    """What a file Pillow cannot open still tells: for a TIFF, its first directory, read as EXIF is."""
    directory = tiff_directory(data)
    if directory is None:
        return {}
    tags, exif_warnings = exif_json.read_exif(directory)
    warnings.extend(exif_warnings)
    return {"format": "TIFF", "mime_type": "image/tiff", "bytes": len(data), "exif": tags}


def _with_warnings(facts: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    facts = {k: v for k, v in facts.items() if k != "warnings"}
    return {**facts, "warnings": list(warnings)} if warnings else facts
