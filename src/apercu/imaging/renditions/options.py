"""The options of a rendition URL, `/r/<signature>/<option>/.../<id>.<ext>`: parsed into one `Rendition` value.

Pure and free of the web: the web parses with it (and answers a `BadOption` as a 400 naming the option), the
worker renders from the value, and the value's canonical form (`Rendition.key`) is what names the kept
rendition, so that every URL that asks for the same pixels - options in another order, defaults spelled out,
a preset written out, `w:400/dpr:2` or `w:800`, another `exp` - finds the one rendition rendered for them.

Each option is `name:value[:value]`. Sizes are in CSS pixels times `dpr`; the canonical form keeps device pixels
only. Unknown, malformed and out-of-range options, and an option given twice with two values, are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

FITS = ("inside", "cover", "pad", "stretch")
# Named gravities: which edge (0), centre (0.5) or far edge (1) of the image `cover` keeps, across and down.
ANCHORS = {
    "centre": (0.5, 0.5), "n": (0.5, 0.0), "ne": (1.0, 0.0), "e": (1.0, 0.5), "se": (1.0, 1.0),
    "s": (0.5, 1.0), "sw": (0.0, 1.0), "w": (0.0, 0.5), "nw": (0.0, 0.0),
}
GRAVITIES = (*ANCHORS, "smart", "focal")  # and fp:<x>:<y>
ROTATIONS = (90, 180, 270)
EXTENSIONS = ("jpg", "png", "webp", "avif")
AUTO = "auto"
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif"}
# Each lossy format's default quality: those of imgproxy's benchmark (JPEG 80, WebP 75, AVIF 65), which make
# files of about the same size and look for a photo. PNG is lossless: `q` does not apply to it.
DEFAULT_QUALITY = {"jpg": 80, "webp": 75, "avif": 65}
WHITE = "ffffff"
MAX_SIDE = 16383  # device pixels: the largest WebP (and libheif's default AVIF limit is larger)
MAX_DPR = 4
MAX_BLUR, MAX_SHARPEN = 100, 10  # sigma, in output pixels
MAX_EXP = 10**11  # unix seconds: anything later is a typo, not an expiry
PRESET_NAME = re.compile(r"[a-z0-9_-]{1,32}")
DECIMAL = re.compile(r"[0-9]{1,5}(\.[0-9]{1,4})?")  # 0-99999.9999: fractions, dpr, sigmas
INTEGER = re.compile(r"[0-9]{1,11}")


class BadOption(ValueError):
    """An option the grammar refuses; `option` names it as written in the URL (`w`, `crop`, `p`...)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option


class OutputTooLarge(BadOption):
    """The output would have more pixels than the deployment allows (`APERCU_MAX_RENDITION_PIXELS`)."""


def check_pixels(width: int, height: int, max_pixels: int, option: str) -> None:
    """Refuse an output (or an intermediate image) of more than max_pixels, naming the option that sized it."""
    if width * height > max_pixels:
        raise OutputTooLarge(
            option, f"the output would be {width}x{height} = {width * height} pixels, more than {max_pixels}"
        )


@dataclass(frozen=True)
class Rendition:
    """What to render, in device pixels: every field that changes the output, and `exp`, which does not.

    `w`/`h` (None: not constrained), `fit`, `gravity` (`centre`, a compass point, `smart`, `focal` or `fp`
    with `focus` = (x, y) fractions of the upright original), `crop` = (x, y, w, h) in pixels of the upright
    original, `rot` clockwise, `q` (None: the format's default), `bg` (rrggbb), `blur`/`sharpen` sigmas (0: none),
    `ext` (one of EXTENSIONS, or `auto` until `resolved`)."""

    w: int | None = None
    h: int | None = None
    fit: str = "inside"
    gravity: str = "centre"
    focus: tuple[float, float] | None = None
    crop: tuple[int, int, int, int] | None = None
    rot: int = 0
    q: int | None = None
    bg: str = WHITE
    blur: float = 0.0
    sharpen: float = 0.0
    exp: int | None = None
    ext: str = AUTO

    def resolved(self, ext: str) -> Rendition:
        """This rendition in a concrete format: `auto` becomes `ext` (see `negotiate`); others stay."""
        if ext not in EXTENSIONS:
            raise ValueError(f"not an output format: {ext}")
        return replace(self, ext=ext) if self.ext == AUTO else self

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.ext]

    @property
    def quality(self) -> int:
        """The encoder's quality: `q`, else the format's default (PNG: unused)."""
        return self.q if self.q is not None else DEFAULT_QUALITY.get(self.ext, 100)

    @property
    def background(self) -> tuple[int, int, int]:
        return int(self.bg[0:2], 16), int(self.bg[2:4], 16), int(self.bg[4:6], 16)

    @property
    def fills_box(self) -> bool:
        """Whether `fit` matters: with one side (or none) given, every fit is `inside`."""
        return self.w is not None and self.h is not None and self.fit != "inside"

    def expired(self, now: float) -> bool:
        """Whether the URL's `exp` has passed (a URL without one never expires)."""
        return self.exp is not None and now > self.exp

    def path_options(self) -> str:
        """The canonical options, joined by `/` ("" for none): sorted, defaults and what has no effect dropped,
        presets and dpr folded in, `exp` left out (it changes when the URL works, not what it shows), `bg` only
        where it shows (padding, or JPEG, which has no alpha). With `auto`, `q` and `bg` stay as given: what
        they change depends on the format."""
        fit = self.fit if self.fills_box else "inside"
        auto = self.ext == AUTO
        named = {
            "w": _text(self.w), "h": _text(self.h), "fit": None if fit == "inside" else fit,
            "g": _gravity_text(self) if fit == "cover" else None,
            "crop": ":".join(map(str, self.crop)) if self.crop else None,
            "rot": _text(self.rot or None), "blur": _text(self.blur or None), "sharpen": _text(self.sharpen or None),
            "q": _text(self.q) if auto or (self.ext != "png" and self.quality != DEFAULT_QUALITY[self.ext]) else None,
            "bg": None if self.bg == WHITE or not (auto or self.ext == "jpg" or fit == "pad") else self.bg,
        }
        return "/".join(f"{name}:{value}" for name, value in sorted(named.items()) if value)

    def path(self, image_id: str) -> str:
        """The canonical part of a URL after its signature, `exp` included: `/<options>/<id>.<ext>`, what a
        signed URL for this rendition signs (`apercu sign`, the image JSON's preset URLs)."""
        segments = [self.path_options()] + ([f"exp:{self.exp}"] if self.exp is not None else [])
        return "/" + "/".join([*filter(None, segments), f"{image_id}.{self.ext}"])

    def key(self) -> str:
        """The name of the kept rendition, the same for every URL that asks for the same pixels:
        `<canonical options>.<ext>`, `plain.<ext>` without options (options always hold a `:`)."""
        if self.ext == AUTO:
            raise ValueError("resolve `auto` to a format before naming the rendition")
        return f"{self.path_options() or 'plain'}.{self.ext}"


def _text(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


def _gravity_text(r: Rendition) -> str | None:
    if r.gravity == "fp" and r.focus:
        return f"fp:{r.focus[0]:g}:{r.focus[1]:g}"
    return None if r.gravity == "centre" else r.gravity


def parse(
    segments: Sequence[str], ext: str, presets: Mapping[str, Sequence[str]] | None = None,
    max_pixels: int | None = None,
) -> Rendition:
    """The rendition the option segments and the extension ask for (`ext` may be `auto`).

    `p:<name>` brings a preset's options, which the URL's own options override. With both sides given, the
    box times `dpr` must stay within `max_pixels` (with one side, see `plan`, which knows the image)."""
    if ext not in (*EXTENSIONS, AUTO):
        raise BadOption("ext", f"unknown format {ext!r}: one of {', '.join((*EXTENSIONS, AUTO))}")
    given = _read(segments, allow_preset=True)
    preset = given.pop("p", None)
    values = dict(_preset(preset, presets or {})) if preset is not None else {}
    values.update(given)
    rendition = _build(values, ext)
    if max_pixels is not None and rendition.w and rendition.h:
        check_pixels(rendition.w, rendition.h, max_pixels, "w")
    return rendition


def parse_presets(text: str) -> dict[str, tuple[str, ...]]:
    """`APERCU_PRESETS`: `name=opt/opt;name=opt/...` into each preset's options, each preset checked as the
    grammar checks a URL (no `p`, no `exp` in a preset). Raises BadOption naming the preset and the option."""
    presets: dict[str, tuple[str, ...]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, body = item.partition("=")
        name = name.strip()
        if not PRESET_NAME.fullmatch(name) or name in presets:
            raise BadOption("p", f"preset name {name!r} is repeated or not 1-32 of a-z 0-9 _ -")
        segments = tuple(filter(None, body.strip().split("/")))
        try:
            values = _read(segments, allow_preset=False)
            if "exp" in values:
                raise BadOption("exp", "a preset cannot expire")
            _build(values, AUTO)
        except BadOption as exc:
            raise BadOption(exc.option, f"in preset {name!r}: {exc}") from exc
        presets[name] = segments
    return presets


def split_path(path: str) -> tuple[list[str], str, str]:
    """`/w:400/h:300/<id>.<ext>` (the signed part of a rendition URL) into (option segments, id, ext)."""
    *segments, last = path.lstrip("/").split("/")
    image_id, dot, ext = last.rpartition(".")
    if not dot or not image_id:
        raise BadOption("ext", f"the path must end in <id>.<ext>, not {last!r}")
    return segments, image_id, ext


def negotiate(accept: str | None) -> str:
    """What `auto` becomes for a request's Accept header: AVIF, else WebP, else JPEG. Only an explicit type
    counts (`image/*` and `*/*` promise nothing: browsers send them too), and one with q=0 is refused."""
    accepted = set()
    for item in (accept or "").split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        if not any(_is_zero_weight(param) for param in params):
            accepted.add(media_type.lower())
    return next((ext for ext in ("avif", "webp") if MEDIA_TYPES[ext] in accepted), "jpg")


def _is_zero_weight(param: str) -> bool:
    name, _, value = (part.strip() for part in param.partition("="))
    return name.lower() == "q" and DECIMAL.fullmatch(value) is not None and float(value) == 0


# --- reading one option ------------------------------------------------------------------------------------


def _read(segments: Iterable[str], *, allow_preset: bool) -> dict[str, Any]:
    """Each option's parsed value by its name; a name given twice must have the same value both times."""
    values: dict[str, Any] = {}
    for segment in segments:
        name, _, raw = segment.partition(":")
        reader = READERS.get(name)
        if reader is None or (name == "p" and not allow_preset):
            raise BadOption(name, f"unknown option {segment!r}")
        value = reader(name, raw)
        if name in values and values[name] != value:
            raise BadOption(name, "given twice with different values")
        values[name] = value
    return values


def _integer(name: str, raw: str, low: int, high: int) -> int:
    if not INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadOption(name, f"{raw!r} is not a whole number from {low} to {high}")
    return int(raw)


def _decimal(name: str, raw: str, low: float, high: float, *, above_low: bool = False) -> float:
    number = float(raw) if DECIMAL.fullmatch(raw) else None
    if number is None or number < low or number > high or (above_low and number == low):
        bound = "above" if above_low else "from"
        raise BadOption(name, f"{raw!r} is not a number {bound} {low:g} to {high:g} (up to 4 decimals)")
    return number


def _choice(name: str, raw: str, allowed: Iterable[str | int]) -> str:
    options = [str(a) for a in allowed]
    if raw not in options:
        raise BadOption(name, f"{raw!r} is not one of {', '.join(options)}")
    return raw


def _gravity(name: str, raw: str) -> tuple[str, tuple[float, float] | None]:
    if raw.startswith("fp:"):
        x, _, y = raw[3:].partition(":")
        return "fp", (_decimal(name, x, 0, 1), _decimal(name, y, 0, 1))
    return _choice(name, raw, GRAVITIES), None


def _crop(name: str, raw: str) -> tuple[int, int, int, int]:
    parts = raw.split(":")
    if len(parts) != 4:
        raise BadOption(name, f"{raw!r} is not x:y:w:h")
    x, y = (_integer(name, p, 0, 10**6) for p in parts[:2])
    w, h = (_integer(name, p, 1, 10**6) for p in parts[2:])
    return x, y, w, h


def _colour(name: str, raw: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{6}", raw):
        raise BadOption(name, f"{raw!r} is not a colour as rrggbb")
    return raw.lower()


def _preset_name(name: str, raw: str) -> str:
    if not PRESET_NAME.fullmatch(raw):
        raise BadOption(name, f"{raw!r} is not a preset name")
    return raw


READERS: dict[str, Callable[[str, str], Any]] = {
    "w": lambda n, r: _integer(n, r, 1, MAX_SIDE),
    "h": lambda n, r: _integer(n, r, 1, MAX_SIDE),
    "dpr": lambda n, r: _decimal(n, r, 1, MAX_DPR),
    "fit": lambda n, r: _choice(n, r, FITS),
    "g": _gravity,
    "crop": _crop,
    "rot": lambda n, r: int(_choice(n, r, ROTATIONS)),
    "q": lambda n, r: _integer(n, r, 1, 100),
    "bg": _colour,
    "blur": lambda n, r: _decimal(n, r, 0, MAX_BLUR, above_low=True),
    "sharpen": lambda n, r: _decimal(n, r, 0, MAX_SHARPEN, above_low=True),
    "exp": lambda n, r: _integer(n, r, 0, MAX_EXP),
    "p": _preset_name,
}


def _preset(name: str, presets: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    if name not in presets:
        known = ", ".join(sorted(presets)) or "none are configured"
        raise BadOption("p", f"unknown preset {name!r} ({known})")
    return _read(presets[name], allow_preset=False)


AS_GIVEN = ("fit", "crop", "rot", "q", "bg", "blur", "sharpen", "exp")  # options whose field is their value


def _build(values: Mapping[str, Any], ext: str) -> Rendition:
    """The Rendition of parsed values: sides multiplied by dpr (and kept within MAX_SIDE)."""
    dpr = values.get("dpr", 1.0)
    sides = {}
    for side in ("w", "h"):
        if side in values:
            sides[side] = max(1, round(values[side] * dpr))
            if sides[side] > MAX_SIDE:
                raise BadOption("dpr", f"{side}:{values[side]} at dpr {dpr:g} is more than {MAX_SIDE} pixels")
    gravity, focus = values.get("g", ("centre", None))
    same = {name: values[name] for name in AS_GIVEN if name in values}
    return Rendition(**sides, gravity=gravity, focus=focus, ext=ext, **same)

