"""The JSON Schema of an image's metadata, as `apercu.imaging` produces it, for the OpenAPI document: `Metadata`
and the blocks it holds, typed from the imaging modules' own tables (formats, GPS speed units, ICC intents, IPTC
names), so a format or a field added there is published here.

The schemas are open (no `additionalProperties: false`) so that a field added later does not break clients
generated from the document; the tests check the other way round, that every field a real image produces is
described here.
"""

from __future__ import annotations

from typing import Any

from apercu.imaging.formats import FORMATS
from apercu.imaging.gps import SPEED_UNITS
from apercu.imaging.icc import INTENTS
from apercu.imaging.iptc import DATES, ENVELOPE_NAMES, NAMES, REPEATABLE
from apercu.typed_schema import ref

Json = dict[str, Any]
NUMBER = {"type": "number"}
STRING = {"type": "string"}
TEXT_MAP = {"type": "object", "additionalProperties": STRING}


def described(description: str, base: Json) -> Json:
    return {**base, "description": description}


def iptc_schema() -> Json:
    """IPTC-IIM fields by ExifTool name, typed as `imaging.iptc` reads them."""
    properties: Json = {}
    for name in sorted({*NAMES.values(), *ENVELOPE_NAMES.values()}):
        if name in REPEATABLE:
            properties[name] = {"type": "array", "items": STRING}
        elif name == "ApplicationRecordVersion":
            properties[name] = {"type": ["integer", "string"]}
        elif name in DATES:
            properties[name] = described("`YYYY-MM-DD` when the field holds a valid IIM date", STRING)
        else:
            properties[name] = STRING
    return {
        "type": "object",
        "description": "IPTC-IIM fields (JPEG APP13, TIFF tag 33723) under ExifTool's names; repeatable ones "
        "(`Keywords`, `By-line`, ...) always arrays; text decoded as UTF-8 (else Latin-1).",
        "properties": properties,
        "additionalProperties": {"type": ["string", "integer", "array"]},
    }


SCHEMAS: Json = {
    "Metadata": {
        "type": "object",
        "description": "What the file says about itself, read from its header and metadata blocks. Present once "
        "processing has ended; after a failure it holds whatever could still be read (possibly only `format`, "
        "`bytes`, `sha256` and `warnings`), so every field is optional.",
        "properties": {
            "format": {"type": "string", "enum": [fmt.name for fmt in FORMATS]},
            "mime_type": {"type": "string", "enum": [fmt.mime_type for fmt in FORMATS]},
            "width": described("As displayed (EXIF orientation applied).", {"type": "integer", "minimum": 1}),
            "height": described("As displayed (EXIF orientation applied).", {"type": "integer", "minimum": 1}),
            "raw_width": described("As stored.", {"type": "integer", "minimum": 1}),
            "raw_height": described("As stored.", {"type": "integer", "minimum": 1}),
            "mode": described("Pillow's pixel mode.", {"type": "string", "examples": ["RGB", "RGBA", "L", "P", "CMYK",
                                                                                   "I;16"]}),
            "bit_depth": described("Bits per sample as stored.", {"type": "integer", "minimum": 1}),
            "has_alpha": {"type": "boolean"},
            "frames": described("Frames (animations) or pages (TIFF).", {"type": "integer", "minimum": 1}),
            "dpi": described("Horizontal and vertical resolution, when the file records one.",
                             {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                              "minItems": 2, "maxItems": 2}),
            "orientation": described("EXIF orientation as written (1-8); absent when missing or out of range.",
                                     {"type": "integer", "minimum": 1, "maximum": 8}),
            "color_space": described("The ICC profile's colour space, else the pixel mode's family.",
                                     {"type": "string", "examples": ["RGB", "Gray", "CMYK", "YCbCr", "Lab"]}),
            "bytes": described("Size of the original.", {"type": "integer", "minimum": 1}),
            "sha256": described("Of the original's bytes.", {"type": "string", "pattern": "^[0-9a-f]{64}$"}),
            "phash": described("64-bit perceptual hash (DCT pHash, as the `imagehash` package computes it), as 16 hex "
                               "digits: resized, recompressed or lightly edited copies differ in a few bits.",
                               {"type": "string", "pattern": "^[0-9a-f]{16}$"}),
            "blurhash": described("A BlurHash (https://blurha.sh) of 4x3 components, to paint as a placeholder.",
                                  {"type": "string", "pattern": "^[0-9A-Za-z#$%*+,.:;=?@\\[\\]^_{|}~-]{6,}$"}),
            "focal_point": described(
                "Where the image's interest lies (libvips' attention: skin tones, saturated colour, edges), as "
                "fractions of the displayed (upright) width and height, from the top left; computed once while "
                "processing, for renditions' `g:focal`. Absent when libvips is not installed.",
                {"type": "object", "required": ["x", "y"],
                 "properties": {"x": {"type": "number", "minimum": 0, "maximum": 1},
                                "y": {"type": "number", "minimum": 0, "maximum": 1}},
                 "examples": [{"x": 0.42, "y": 0.31}]}),
            "animated": described("Present (true) for animated GIF, PNG and WebP.", {"type": "boolean"}),
            "loop": described("Loop count of an animation (0: forever).", {"type": "integer", "minimum": 0}),
            "duration_ms": described("Total duration of an animation.", {"type": "integer", "minimum": 0}),
            "exif": ref("Exif"),
            "gps": ref("Gps"),
            "xmp": ref("Xmp"),
            "iptc": ref("Iptc"),
            "icc": ref("Icc"),
            "makernotes": ref("MakerNotes"),
            "text": described("PNG text chunks (tEXt, zTXt, iTXt) by keyword, and JPEG/GIF comments (`Comment`).",
                              TEXT_MAP),
            "warnings": described("What could not be read (a malformed EXIF directory, a corrupt chunk...); the "
                                  "rest still came out.", {"type": "array", "items": STRING, "maxItems": 20}),
        },
    },
    "Exif": {
        "type": "object",
        "description": "Every tag of IFD0, the Exif IFD, the Interop IFD and GPS under ExifTool's tag names "
        "(unknown tags under their hex id, `0xc4a5`), with the values `exiftool -n` gives: numbers, arrays for "
        "multiple values, ISO 8601 dates, text, and binary blobs as `{\"bytes\": N}`.",
        "propertyNames": {"type": "string", "minLength": 1},
        "additionalProperties": ref("ExifValue"),
        "examples": [{"Make": "NIKON", "ExposureTime": 0.0133, "ISO": 64, "DateTimeOriginal": "2008-10-22T16:28:39",
                      "ComponentsConfiguration": [1, 2, 3, 0], "MakerNote": {"bytes": 3298}}],
    },
    "ExifValue": {
        "anyOf": [
            {"type": ["string", "number", "boolean"]},
            ref("Blob"),
            {"type": "array", "items": {"anyOf": [ref("ExifValue"), {"type": "null"}]}},
        ],
    },
    "MakerNotes": {
        "type": "object",
        "description": "The camera maker's notes, decoded by ExifTool (only with APERCU_EXIFTOOL=1 and exiftool "
        "installed): ExifTool's maker groups (`Canon`, `CanonCustom`, `Nikon`, `Apple`, `FujiFilm`...), each with "
        "its tags under ExifTool's names and the values `exiftool -n` gives, typed as in `exif`; values over 4 KiB "
        "as `{\"bytes\": N}`. Absent when the file has none.",
        "additionalProperties": {"type": "object", "additionalProperties": ref("ExifValue")},
        "examples": [{"Canon": {"MacroMode": 2, "FocalLength": 346, "CanonImageType": "IMG:DIGITAL IXUS 40 JPEG",
                                "AFAreaXPositions": [-409, 0, 409]}}],
    },
    "Blob": {
        "type": "object",
        "description": "Binary data, by its size.",
        "required": ["bytes"],
        "properties": {"bytes": {"type": "integer", "minimum": 0}},
    },
    "Gps": {
        "type": "object",
        "description": "The position decoded from the EXIF GPS tags: signed decimal degrees, metres.",
        "properties": {
            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
            "longitude": {"type": "number", "minimum": -180, "maximum": 180},
            "altitude": described("Metres; negative below sea level.", NUMBER),
            "timestamp": described("UTC, ISO 8601 (`2008-10-23T14:27:07.24Z`), from GPSDateStamp and GPSTimeStamp.",
                                   STRING),
            "speed": NUMBER,
            "speed_unit": {"type": "string", "enum": sorted(set(SPEED_UNITS.values()))},
            "direction": described("Direction the camera pointed, in degrees.", NUMBER),
            "direction_ref": {"type": "string", "enum": ["true", "magnetic"]},
            "track": described("Direction of movement, in degrees.", NUMBER),
            "track_ref": {"type": "string", "enum": ["true", "magnetic"]},
        },
        "dependentRequired": {
            "latitude": ["longitude"], "longitude": ["latitude"], "speed": ["speed_unit"],
            "direction": ["direction_ref"], "track": ["track_ref"],
        },
    },
    "Xmp": {
        "type": "object",
        "description": "The XMP packet flattened to `prefix:Name` as ExifTool names them: arrays (Bag, Seq) as "
        "arrays, language alternatives as their x-default text, structures as `NameField` keys, rationals as "
        "numbers.",
        "additionalProperties": {"type": ["string", "number", "array", "null"]},
        "examples": [{"dc:subject": ["travel", "tuscany"], "xmp:Rating": "3", "exif:FNumber": 5.6}],
    },
    "Iptc": iptc_schema(),
    "Icc": {
        "type": "object",
        "description": "The embedded colour profile, from its header and text tags.",
        "properties": {
            "description": STRING,
            "copyright": STRING,
            "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
            "device_class": described("`mntr`, `scnr`, `prtr`, `spac`, ...", STRING),
            "color_space": described("`RGB`, `GRAY`, `CMYK`, `Lab`, ...", STRING),
            "connection_space": described("`XYZ` or `Lab`.", STRING),
            "rendering_intent": {"type": "integer", "minimum": 0},
            "rendering_intent_name": {"type": "string", "enum": [*INTENTS.values(), "unknown"]},
            "cmm": STRING,
            "manufacturer": STRING,
            "model": STRING,
            "created": described("`YYYY-MM-DDTHH:MM:SS` as the profile records it (no time zone).", STRING),
            "bytes": {"type": "integer", "minimum": 128},
        },
    },
}
