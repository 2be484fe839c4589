"""Metadata fidelity against ExifTool: how many of ExifTool's facts about the corpus we report, equal.

For each corpus file, `_exiftool/<folder>/<file>.json` holds `exiftool -j -G1 -n -a`. A tag counts as matched
when our metadata (as `apercu inspect` and the API give it) has it with an equal value: numbers within 1e-4
relative, dates equal once both are ISO 8601, text equal once trimmed, space-separated number lists equal
element-wise to our arrays, "(Binary data N bytes...)" equal to our {"bytes": N}. Used by test_fidelity.py
and bench/metadata.py.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apercu.config import Settings
from apercu.imaging.analyse import Options
from apercu.imaging.exif import iso_date
from apercu.inspect import inspect_file

EXIF_GROUPS = ("IFD0", "ExifIFD", "InteropIFD", "GPS")
BINARY = re.compile(r"^\(Binary data (\d+) bytes")
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Tally:
    matched: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, ok: bool, where: str) -> None:
        self.total += 1
        self.matched += ok
        if not ok:
            self.misses.append(where)

    @property
    def rate(self) -> float:
        return self.matched / self.total if self.total else 1.0


def reference(corpus: Path, image: Path) -> dict[str, Any] | None:
    path = corpus / "_exiftool" / image.parent.name / f"{image.name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def ours(image: Path) -> dict[str, Any]:
    options = Options(max_pixels=Settings().max_pixels)
    return inspect_file(image, options).get("metadata", {})


def equal(expected: Any, actual: Any) -> bool:
    """ExifTool's value against ours, by the rules in the module docstring."""
    if actual is None:
        return False
    if isinstance(expected, str) and (match := BINARY.match(expected)):
        size = int(match.group(1))
        if isinstance(actual, list):  # ExifTool calls a long number list binary: its text's length
            return len(" ".join(str(v) for v in actual)) == size
        return isinstance(actual, dict) and actual.get("bytes") == size
    if isinstance(expected, list) or isinstance(actual, list):
        exp = expected if isinstance(expected, list) else _split(expected)
        act = actual if isinstance(actual, list) else _split(actual)
        return len(exp) == len(act) and all(equal(e, a) for e, a in zip(exp, act, strict=True))
    exp_num, act_num = _as_number(expected), _as_number(actual)
    if exp_num is not None and act_num is not None:
        return math.isclose(exp_num, act_num, rel_tol=1e-4, abs_tol=1e-9)
    exp_text, act_text = str(expected).strip(), str(actual).strip()
    if exp_text == act_text:
        return True
    exp_iso = iso_date(exp_text.replace("\x00", ""))
    return exp_iso == act_text or (len(exp_iso) == 19 and act_text[:19] == exp_iso)


def _split(value: Any) -> list[Any]:
    text = str(value).strip()
    parts = text.split()
    return parts if len(parts) > 1 and all(NUMBER.match(p) for p in parts) else [value]


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and NUMBER.match(value.strip()):
        return float(value)
    return None


def _lookup_ci(block: dict[str, Any], key: str) -> Any:
    """XMP names differ from ExifTool's only in the first letter's case (dc:subject vs Subject)."""
    if key in block:
        return block[key]
    lowered = key.lower()
    return next((v for k, v in block.items() if k.lower() == lowered), None)


def icc_version(ours_icc: dict[str, Any]) -> int | None:
    parts = [int(p) for p in str(ours_icc.get("version", "")).split(".") if p.isdigit()]
    return (parts[0] << 8) | (parts[1] << 4) | parts[2] if len(parts) == 3 else None


ICC_HEADER = {
    "ProfileClass": lambda icc: icc.get("device_class"),
    "ColorSpaceData": lambda icc: icc.get("color_space"),
    "ProfileConnectionSpace": lambda icc: icc.get("connection_space"),
    "RenderingIntent": lambda icc: icc.get("rendering_intent"),
    "ProfileVersion": icc_version,
    "ProfileCMMType": lambda icc: icc.get("cmm"),
}
ICC_PROFILE = {"ProfileDescription": "description", "ProfileCopyright": "copyright"}


def counterpart(tag: str, meta: dict[str, Any]) -> tuple[str, Any] | None:
    """(group, our value) for an ExifTool `Group:Name`, or None when the tag is outside what we compare."""
    group, _, name = tag.partition(":")
    if group in EXIF_GROUPS:
        return "exif", meta.get("exif", {}).get(name)
    if group == "Composite" and name in ("GPSLatitude", "GPSLongitude"):
        return "gps", meta.get("gps", {}).get(name[3:].lower())
    if group.startswith("XMP-") and group != "XMP-x":
        return "xmp", _lookup_ci(meta.get("xmp", {}), f"{group[4:]}:{name}")
    if group == "IPTC":
        return "iptc", meta.get("iptc", {}).get(name)
    if group == "ICC-header" and name in ICC_HEADER:
        return "icc", ICC_HEADER[name](meta.get("icc", {}))
    if group == "ICC_Profile" and name in ICC_PROFILE:
        return "icc", meta.get("icc", {}).get(ICC_PROFILE[name])
    return None


def compare(corpus: Path, images: Iterable[Path], read: Callable[[Path], dict[str, Any]] = ours) -> dict[str, Tally]:
    """Match tallies per group (exif, gps, xmp, iptc, icc) over the given corpus files."""
    tallies: dict[str, Tally] = {}
    for image in images:
        expected = reference(corpus, image)
        if not expected:
            continue
        meta = read(image)
        for tag, value in expected.items():
            pair = counterpart(tag, meta)
            if pair is None:
                continue
            group, actual = pair
            ok = equal(value, actual) if not (group == "gps") else _gps_equal(value, actual)
            tallies.setdefault(group, Tally()).add(ok, f"{image.parent.name}/{image.name} {tag}: exiftool {value!r} ours {actual!r}")
    return tallies


def _gps_equal(expected: Any, actual: Any) -> bool:
    """Decimal coordinates: equal to 1e-6 degrees (about 10 cm)."""
    exp = _as_number(expected)
    return exp is not None and isinstance(actual, (int, float)) and abs(exp - actual) <= 1e-6


def overall_exif(tallies: dict[str, Tally]) -> float:
    tally = tallies.get("exif", Tally())
    return tally.rate


# ExifTool's family-1 groups inside its family-0 MakerNotes group: maker names, and their sub-groups
# (CanonCustom, NikonCustom, ...). The readings name only family 1, so the maker groups are told by name.
MAKER_GROUP = re.compile(
    r"^(Apple|Canon|Casio|DJI|FLIR|FujiFilm|GE|HP|JVC|Kodak|Kyocera|Leica|Minolta|Motorola|Nikon|Nintendo|Olympus"
    r"|Panasonic|Pentax|PhaseOne|Reconyx|Ricoh|Samsung|Sanyo|Sigma|Sony)"
)


def ours_with_makernotes(image: Path) -> dict[str, Any]:
    options = Options(max_pixels=Settings().max_pixels, exiftool=True)
    return inspect_file(image, options).get("metadata", {})


def maker_groups(tags: Iterable[str]) -> set[str]:
    return {tag.partition(":")[0] for tag in tags if MAKER_GROUP.match(tag.partition(":")[0])}


def compare_makernotes(
    corpus: Path, images: Iterable[Path], read: Callable[[Path], dict[str, Any]] = ours_with_makernotes
) -> tuple[dict[str, Tally], list[str]]:
    """Match tallies per maker group over every maker tag of the readings and of ours (a tag only one side has
    is a miss), and the files whose maker groups differ from the reading's (ours must have exactly the groups
    ExifTool's reading has, none when it has none)."""
    tallies: dict[str, Tally] = {}
    group_misses: list[str] = []
    for image in images:
        expected = reference(corpus, image)
        if expected is None:
            continue
        notes = read(image).get("makernotes", {})
        wanted = maker_groups(expected)
        if set(notes) != wanted:
            group_misses.append(f"{image.parent.name}/{image.name}: exiftool {sorted(wanted)} ours {sorted(notes)}")
        for tag, value in expected.items():
            group, _, name = tag.partition(":")
            if group in wanted:
                actual = notes.get(group, {}).get(name)
                where = f"{image.parent.name}/{image.name} {tag}: exiftool {value!r} ours {actual!r}"
                tallies.setdefault(group, Tally()).add(equal(value, actual), where)
        for group, tags in notes.items():  # a tag the reading does not have is a miss too
            for name, actual in tags.items():
                if f"{group}:{name}" not in expected:
                    where = f"{image.parent.name}/{image.name} {group}:{name}: exiftool - ours {actual!r}"
                    tallies.setdefault(group, Tally()).add(False, where)
    return tallies, group_misses
