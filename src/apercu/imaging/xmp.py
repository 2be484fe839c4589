"""The XMP block: an RDF/XML packet flattened to `prefix:Name -> value`, the way ExifTool flattens it.

Arrays (rdf:Bag, rdf:Seq) become JSON arrays, language alternatives (rdf:Alt) their x-default string, and
structures are flattened by joining field names onto the property name (xmpMM:DerivedFrom/stRef:instanceID
becomes `xmpMM:DerivedFromInstanceID`; an array of structures gives one array per field). The packet is
untrusted XML, so it is parsed with defusedxml: no entity expansion, no external references; and within bounds:
a packet over MAX_PACKET bytes or nested deeper than MAX_DEPTH is refused before any tree is built from it.
"""

from __future__ import annotations

import io
import re
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

from apercu.imaging.exif import convert

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# ExifTool's prefixes for the common namespaces, used whatever prefix the packet declared.
PREFIXES = {
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/xap/1.0/rights/": "xmpRights",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
    "http://ns.adobe.com/exif/1.0/aux/": "aux",
    "http://ns.adobe.com/lightroom/1.0/": "lr",
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": "Iptc4xmpCore",
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "Iptc4xmpExt",
    "http://ns.microsoft.com/photo/1.0/": "microsoft",
    "http://ns.microsoft.com/photo/1.0": "microsoft",
    "http://ns.adobe.com/pdf/1.3/": "pdf",
    "adobe:ns:meta/": "x",
}
MAX_PACKET = 1024 * 1024  # a tree of a 1 MiB packet takes up to ~40 MiB; JPEG's XMP segment is at most 64 KiB
MAX_DEPTH = 64  # real packets nest about a dozen levels; the flattening below recurses once per level
# Where ExifTool names an XMP property differently from the schema.
EXIFTOOL_NAMES = {
    "exif:PixelXDimension": "exif:ExifImageWidth",
    "exif:PixelYDimension": "exif:ExifImageHeight",
    "exif:ISOSpeedRatings": "exif:ISO",
    "exif:ExposureBiasValue": "exif:ExposureCompensation",
    "exif:FocalLengthIn35mmFilm": "exif:FocalLengthIn35mmFormat",
    "tiff:ImageLength": "tiff:ImageHeight",
    "photoshop:ICCProfile": "photoshop:ICCProfileName",
    "crs:Temperature": "crs:ColorTemperature",
    "rdf:about": "rdf:About",
    "microsoft:Rating": "microsoft:RatingPercent",
}
RATIONAL = re.compile(r"^(-?\d+)/(\d+)$")


def read_xmp(packet: bytes | str) -> dict[str, Any]:
    """Flattened XMP properties; raises ValueError for a packet that is too large, too deep or not XML."""
    raw = packet.encode("utf-8") if isinstance(packet, str) else packet
    raw = raw.strip(b"\x00 \r\n\t")
    if len(raw) > MAX_PACKET:
        raise ValueError(f"XMP packet of {len(raw)} bytes is larger than the limit of {MAX_PACKET}")
    start = raw.find(b"<")
    if start < 0:
        raise ValueError("XMP packet has no XML")
    declared, root = _parse(raw[start:])
    prefixes = dict(PREFIXES)
    for uri, prefix in declared.items():
        prefixes.setdefault(uri, prefix)
    result: dict[str, Any] = {}
    for rdf in root.iter(f"{{{RDF}}}RDF"):
        for description in rdf.findall(f"{{{RDF}}}Description"):  # nested ones are structure values
            about = description.get(f"{{{RDF}}}about")
            if about:
                result.setdefault("rdf:About", about)
            for name, value in _fields(description, prefixes):
                _flatten(result, EXIFTOOL_NAMES.get(name, name), value)
    return result


def _parse(raw: bytes) -> tuple[dict[str, str], Element]:
    """The namespace prefixes the packet declares and its tree, in one pass that stops beyond MAX_DEPTH."""
    declared: dict[str, str] = {}
    depth = 0
    events = ElementTree.iterparse(io.BytesIO(raw), events=("start-ns", "start", "end"))
    try:
        for event, item in events:
            if event == "start-ns":
                prefix, uri = item
                declared[uri] = prefix
            elif event == "start":
                depth += 1
                if depth > MAX_DEPTH:
                    raise RecursionError(f"XMP nested deeper than {MAX_DEPTH} levels")
            else:
                depth -= 1
    except RecursionError as exc:
        raise ValueError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - defusedxml and expat raise several kinds
        raise ValueError(f"XMP is not well-formed XML: {exc}") from exc
    return declared, events.root


def _qualified(tag: str, prefixes: dict[str, str]) -> str:
    if tag.startswith("{"):
        uri, local = tag[1:].split("}", 1)
        return f"{prefixes.get(uri, 'ns')}:{local}"
    return tag


def _fields(node: Element, prefixes: dict[str, str]) -> list[tuple[str, Any]]:
    """(name, value) of a Description's or structure's properties, attributes included."""
    fields = [
        (_qualified(k, prefixes), v)
        for k, v in node.attrib.items()
        if not k.startswith(f"{{{RDF}}}") and k != XML_LANG
    ]
    fields += [(_qualified(child.tag, prefixes), _value(child, prefixes)) for child in node]
    return fields


def _value(prop: Element, prefixes: dict[str, str]) -> Any:
    resource = prop.get(f"{{{RDF}}}resource")
    if resource is not None:
        return resource
    if prop.get(f"{{{RDF}}}parseType") == "Resource":
        return dict(_fields(prop, prefixes))
    children = list(prop)
    if not children:
        if any(not k.startswith(f"{{{RDF}}}") and k != XML_LANG for k in prop.attrib):
            return dict(_fields(prop, prefixes))
        return (prop.text or "").strip()
    container = children[0]
    if container.tag in (f"{{{RDF}}}Bag", f"{{{RDF}}}Seq"):
        return [_value(li, prefixes) for li in container if li.tag == f"{{{RDF}}}li"]
    if container.tag == f"{{{RDF}}}Alt":
        items = [li for li in container if li.tag == f"{{{RDF}}}li"]
        chosen = next((li for li in items if li.get(XML_LANG) == "x-default"), items[0] if items else None)
        return _value(chosen, prefixes) if chosen is not None else ""
    if container.tag == f"{{{RDF}}}Description":
        return dict(_fields(container, prefixes))
    return dict(_fields(prop, prefixes))


def _flatten(result: dict[str, Any], name: str, value: Any) -> None:
    """Structures become Name + FieldName keys; arrays of structures become one array per field."""
    if isinstance(value, dict):
        for field, inner in value.items():
            _flatten(result, name + _local(field), inner)
        return
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        columns: dict[str, list[Any]] = {}
        for item in value:
            flat: dict[str, Any] = {}
            _flatten(flat, "", item if isinstance(item, dict) else {"": item})
            for field, inner in flat.items():
                columns.setdefault(field, []).append(inner)
        for field, items in columns.items():
            result[name + field] = items
        return
    result.setdefault(name, _typed(name, value))


def _typed(name: str, value: Any) -> Any:
    """Rationals ("72/1") as numbers, with the APEX conversions EXIF gets (see exif_tags)."""
    if isinstance(value, list):
        return [_typed(name, v) for v in value]
    match = RATIONAL.match(value) if isinstance(value, str) else None
    if not match or int(match.group(2)) == 0:
        return value
    number = int(match.group(1)) / int(match.group(2))
    return convert(name.split(":", 1)[-1], number)


def _local(field: str) -> str:
    local = field.split(":", 1)[-1]
    return local[:1].upper() + local[1:]
