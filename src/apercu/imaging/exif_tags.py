"""EXIF tag names and value conversions as ExifTool gives them with `-n`.

ExifTool is the reference photographers and photo systems compare against, so apercu uses its tag names
(`ISO`, `ModifyDate`, `CreateDate`, ...) rather than the EXIF specification's or Pillow's, and applies the
value conversions ExifTool keeps even in its numeric mode (APEX values become seconds and f-numbers, GPS
degree/minute/second triples become decimal degrees, version bytes become text).
"""

from __future__ import annotations

from PIL import ExifTags

# Where ExifTool's name differs from Pillow's, or Pillow has none.
EXIFTOOL_NAMES: dict[int, str] = {
    0x00FE: "SubfileType",
    0x00FF: "OldSubfileType",
    0x0101: "ImageHeight",
    0x011E: "XPosition",
    0x011F: "YPosition",
    0x0132: "ModifyDate",
    0x0201: "OtherImageStart",
    0x0202: "OtherImageLength",
    0x84E0: "Site",
    0x84E1: "ColorSequence",
    0x84E2: "IT8Header",
    0x84E3: "RasterPadding",
    0x84E4: "BitsPerRunLength",
    0x84E5: "BitsPerExtendedRunLength",
    0x84E6: "ColorTable",
    0x84E7: "ImageColorIndicator",
    0x84E8: "BackgroundColorIndicator",
    0x84E9: "ImageColorValue",
    0x84EA: "BackgroundColorValue",
    0x84EB: "PixelIntensityRange",
    0x84EC: "TransparencyIndicator",
    0x84ED: "ColorCharacterization",
    0x84EE: "HCUsage",
    0x84EF: "TrapIndicator",
    0x8827: "ISO",
    0x8828: "Opto-ElectricConvFactor",
    0x9004: "CreateDate",
    0x9204: "ExposureCompensation",
    0x9214: "SubjectArea",
    0x9290: "SubSecTime",
    0x9291: "SubSecTimeOriginal",
    0x9292: "SubSecTimeDigitized",
    0xA000: "FlashpixVersion",
    0xA214: "SubjectLocation",
    0xA405: "FocalLengthIn35mmFormat",
    0xA432: "LensInfo",
    0xEA1C: "Padding",
    0xEA1D: "OffsetSchema",
}
NAMES: dict[int, str] = {**ExifTags.TAGS, **EXIFTOOL_NAMES}
INTEROP_NAMES: dict[int, str] = {
    0x0001: "InteropIndex",
    0x0002: "InteropVersion",
    0x1000: "RelatedImageFileFormat",
    0x1001: "RelatedImageWidth",
    0x1002: "RelatedImageHeight",
}
GPS_NAMES: dict[int, str] = dict(ExifTags.GPSTAGS)

# Pointers to other IFDs, and blocks that have groups of their own (XMP, IPTC, ICC): not EXIF values.
NOT_VALUES = {0x8769, 0x8825, 0xA005, 0x014A, 0x02BC, 0x83BB, 0x8773}

# Undefined-type tags whose bytes ExifTool shows as text (versions) or as small integers.
VERSION_TAGS = {"ExifVersion", "FlashpixVersion", "InteropVersion"}
BYTE_LIST_TAGS = {"ComponentsConfiguration", "GPSVersionID"}
BYTE_INT_TAGS = {"FileSource", "SceneType", "GPSAltitudeRef"}
CHARSET_TEXT_TAGS = {"UserComment", "GPSProcessingMethod", "GPSAreaInformation"}
UCS2_TAGS = {"XPTitle", "XPComment", "XPAuthor", "XPKeywords", "XPSubject"}
APEX_TIME_TAGS = {"ShutterSpeedValue"}  # seconds = 2 ** -value
APEX_APERTURE_TAGS = {"ApertureValue", "MaxApertureValue"}  # f-number = 2 ** (value / 2)
DMS_TAGS = {"GPSLatitude", "GPSLongitude", "GPSDestLatitude", "GPSDestLongitude"}

# Date tags, and the tag holding the UTC offset of each (EXIF 2.31).
DATE_TAGS = {
    "ModifyDate": "OffsetTime",
    "DateTimeOriginal": "OffsetTimeOriginal",
    "CreateDate": "OffsetTimeDigitized",
    "GPSDateStamp": None,
    "PreviewDateTime": None,
}
