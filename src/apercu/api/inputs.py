"""Every input a route takes (path, query, header, form field), declared once: its name and place, its type and
range, default and description, and the error a bad value gets. The routes read their inputs through these
declarations (`api.operation.Given`), with one parse function per kind (Integer, Number, Text, Cursor, Url; a
File part is checked by `api.uploads.checked_file` with its declaration's errors), and the OpenAPI document
publishes the same declarations as its parameters and request body, so a route cannot take or refuse anything
the document does not say.

Exactly as the routes always parsed them: an image id that is not one is a 404 (as no such image), integers are
ASCII digits only, `?wait=` tells a number out of range from no number at all.
"""

from __future__ import annotations

import base64
import binascii
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, Literal, Self, TypeVar

from apercu.api.errors import CODES, NO_IMAGE, ApiError
from apercu.config import Settings
from apercu.images import ID_PATTERN
from apercu.imaging.fingerprints import PHASH_BITS
from apercu.outbound import MAX_URL

Json = dict[str, Any]
T = TypeVar("T")
Where = Literal["path", "query", "header", "form"]

MAX_WAIT = 30  # seconds ?wait= may hold a request
DEFAULT_PAGE, MAX_PAGE = 20, 100  # images per page of GET /images
DEFAULT_DISTANCE = 10  # bits of 64: resized, recompressed, lightly cropped or colour-shifted copies stay within it
MAX_DIGITS = 18  # int() refuses more than 4300 digits; no integer input needs more than a few


@dataclass(frozen=True)
class Declared(ABC):
    """What every input says of itself: a bad value is refused with `status`, `code` and `message`."""

    name: str
    where: Where
    description: str
    code: str
    message: str
    status: int = 400
    variable: str = ""  # a path input's name in the Flask rule, when not `name`: the HTTP metrics label by rule
    converter: str = ""  # a path input's Flask converter, when not the default's (`path`: slashes included)

    @property
    def sent_as(self) -> str:
        return self.variable or self.name

    @property
    def in_rule(self) -> str:
        """How the Flask rule writes this path input: `<image_id>`, `<path:rendition>`."""
        return f"<{self.converter}:{self.sent_as}>" if self.converter else f"<{self.sent_as}>"

    @abstractmethod
    def schema(self) -> Json: ...

    def configured(self, settings: Settings) -> Self:
        """This input as a deployment takes it (its allowed values may follow the settings)."""
        return self

    def refused(self, message: str | None = None) -> ApiError:
        return ApiError(self.status, message or self.message, code=self.code)

    def parameter(self) -> Json:
        """This input as an OpenAPI parameter object."""
        described = {"description": self.description} if self.description else {}
        return {"name": self.name, "in": self.where, "required": self.where == "path", **described,
                "schema": self.schema()}


class Input(Declared, Generic[T]):
    """An input read from text: `parse` turns it into a value or refuses it; `default` is both the value when
    it is absent and what the document publishes."""

    @property
    def default(self) -> T | None:
        return None

    @abstractmethod
    def parse(self, raw: str) -> T: ...


@dataclass(frozen=True)
class Integer(Input[int]):
    """A whole number within a range, or among `choices` when there are any. ASCII digits only (str.isdigit
    also takes "²", which int() refuses), and few enough of them for int()."""

    minimum: int = 0
    maximum: int = 0
    fallback: int = 0  # the default
    choices: tuple[int, ...] = ()

    @property
    def default(self) -> int:
        return self.fallback

    def parse(self, raw: str) -> int:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS):
            raise self.refused()
        value = int(raw)
        if not (value in self.choices if self.choices else self.minimum <= value <= self.maximum):
            raise self.refused()
        return value

    def schema(self) -> Json:
        allowed = {"enum": list(self.choices)} if self.choices else {"minimum": self.minimum, "maximum": self.maximum}
        return {"type": "integer", **allowed, "default": self.fallback}


@dataclass(frozen=True)
class Number(Input[float]):
    """A number within a range; `message` refuses one out of range, `malformed` what is no number at all."""

    minimum: float = 0
    maximum: float = 0
    fallback: float = 0.0  # the default
    malformed: str = ""

    @property
    def default(self) -> float:
        return self.fallback

    def parse(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise self.refused(self.malformed) from None
        if not self.minimum <= value <= self.maximum:  # NaN too
            raise self.refused()
        return value

    def schema(self) -> Json:
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum, "default": self.fallback}


@dataclass(frozen=True)
class Text(Input[str]):
    """Text matching `pattern` (the whole of it), of a bounded length, among `enum` when there is one; `lower`
    folds it to lower case. The message may name the refused value as `{value!r}`."""

    pattern: str | None = None
    min_length: int = 0
    max_length: int | None = None
    lower: bool = False
    enum: tuple[str, ...] = ()

    def parse(self, raw: str) -> str:
        too_long = self.max_length is not None and len(raw) > self.max_length
        unknown = self.enum and raw not in self.enum
        if len(raw) < self.min_length or too_long or unknown or (self.pattern and not re.fullmatch(self.pattern, raw)):
            raise self.refused(self.message.format(value=raw))
        return raw.lower() if self.lower else raw

    def schema(self) -> Json:
        schema: Json = {"type": "string"}
        for keyword, value in (("enum", list(self.enum)), ("minLength", self.min_length),
                               ("maxLength", self.max_length), ("pattern", self.pattern)):
            if value:
                schema[keyword] = value
        return schema


@dataclass(frozen=True)
class Cursor(Input["tuple[datetime, str] | None"]):
    """Where a page starts: opaque to clients, the upload time and id of the previous page's last image."""

    def parse(self, raw: str) -> tuple[datetime, str] | None:
        if not raw:
            return None
        try:
            stamp, image_id = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split("|")
            if not re.fullmatch(ID_PATTERN, image_id):
                raise ValueError(image_id)
            return datetime.fromisoformat(stamp), image_id
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise self.refused() from None

    @staticmethod
    def encode(uploaded_at: datetime, image_id: str) -> str:
        raw = f"{uploaded_at.isoformat()}|{image_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def schema(self) -> Json:
        return {"type": "string"}


@dataclass(frozen=True)
class Url(Input[str]):
    """A URL the service will call: taken as sent here, then checked by the service against the outbound address
    policy (`outbound.addresses.check`, with the deployment's allowed hosts), whose reason is the message."""

    def parse(self, raw: str) -> str:
        return raw

    def schema(self) -> Json:
        return {"type": "string", "format": "uri", "maxLength": MAX_URL}


@dataclass(frozen=True)
class File(Declared):
    """A file part of a multipart body, checked by `api.uploads.checked_file`: `code` and `message` when it is
    missing, `empty_code` and `empty_message` when it has no bytes."""

    empty_code: str = ""
    empty_message: str = ""

    def empty(self) -> ApiError:
        return ApiError(self.status, self.empty_message, code=self.empty_code)

    def schema(self) -> Json:
        return {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream",
                "description": self.description}


def codes(inputs: list[Declared]) -> list[str]:
    """The error codes these inputs answer 400 with, once each."""
    found = [i.code for i in inputs if i.status == 400] + [i.empty_code for i in inputs if isinstance(i, File)]
    return list(dict.fromkeys(found))


IMAGE_ID = Text(
    "id", "path", "The image's id, as the upload returned it (32 lowercase hex digits); anything else is a 404.",
    CODES[404], NO_IMAGE, status=404, variable="image_id", pattern=ID_PATTERN,
)
WAIT = Number(
    "wait", "query", f"Hold the request up to this many seconds (at most {MAX_WAIT}) until processing (or the "
    "rendering of a thumbnail variant) has ended, instead of answering at once.",
    "invalid_wait", f"wait must be between 0 and {MAX_WAIT} seconds", maximum=MAX_WAIT,
    malformed="wait must be a number of seconds",
)
LIMIT = Integer(
    "limit", "query", f"Images per page, 1 to {MAX_PAGE}.",
    "invalid_limit", f"limit must be an integer from 1 to {MAX_PAGE}", minimum=1, maximum=MAX_PAGE,
    fallback=DEFAULT_PAGE,
)
CURSOR = Cursor(
    "cursor", "query", "Where the page starts: the `next_cursor` of the previous page (opaque). Absent or empty: "
    "the newest images.", "invalid_cursor", "cursor is not one this server issued",
)
SHA256 = Text(
    "sha256", "query", "Only the images whose original has these bytes (`metadata.sha256`), newest first, one "
    "page (`cursor` does not apply).", "invalid_sha256", "sha256 must be 64 hexadecimal digits",
    pattern="^[0-9a-fA-F]{64}$", lower=True,
)
SIMILAR_TO = Text(
    "similar_to", "query", "Only the images that look like this one (perceptual hashes within `max_distance` "
    "bits), nearest first, itself included, each with its `distance`; one page (`cursor` does not apply).",
    CODES[404], NO_IMAGE, status=404, pattern=ID_PATTERN,
)
MAX_DISTANCE = Integer(
    "max_distance", "query", f"With `similar_to`: how many of the {PHASH_BITS} bits of the perceptual hash may "
    "differ.", "invalid_max_distance", f"max_distance must be an integer from 0 to {PHASH_BITS} (bits)",
    maximum=PHASH_BITS, fallback=DEFAULT_DISTANCE,
)
IDEMPOTENCY_KEY = Text(
    "Idempotency-Key", "header", "Makes the upload safe to retry: a later upload with the same key (within "
    "`APERCU_IDEMPOTENCY_TTL` seconds) gets the first upload's image, with `Idempotent-Replayed: true`, instead of "
    "creating a second one. 1 to 255 printable ASCII characters.",
    "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters",
    pattern="^[!-~]([ -~]*[!-~])?$", min_length=1, max_length=255,
)
FILE = File(
    "file", "form", "The image; its part's filename is kept for display. Required unless `url` is sent.",
    "missing_file", "multipart form field 'file' (or 'url') is required",
    empty_code="empty_file", empty_message="the uploaded file is empty",
)
CALLBACK_URL = Url(
    "callback_url", "form", "Told when the image reaches success or failure: a POST of its JSON with the event's "
    "`type` (`image.succeeded`, `image.failed`) and `timestamp`, signed by the Standard Webhooks scheme (headers "
    "`webhook-id`, `webhook-timestamp`, `webhook-signature`; needs `APERCU_WEBHOOK_SECRET`; public http(s) hosts "
    "only, unless `APERCU_WEBHOOK_ALLOWED_HOSTS`).",
    "invalid_callback_url", "callback_url is not a URL this service calls",
)

SOURCE_URL = Url(
    "url", "form", "Upload by URL, instead of `file` (or as the JSON body `{\"url\": \"...\"}`): the worker "
    "fetches the image from this http(s) URL (at most 3 redirects, `APERCU_FETCH_TIMEOUT` per read, "
    "`APERCU_FETCH_DEADLINE` in all, `APERCU_MAX_UPLOAD_BYTES`), then processes it as an upload; the image shows it "
    "as `source_url`. No user name or password in it, and public hosts only, unless `APERCU_FETCH_ALLOWED_HOSTS`: "
    "an address refused by its text alone (a private, loopback or link-local IP, `localhost`) is a 400 "
    "`invalid_url` at once; one refused once resolved, and a fetch that fails, end the image as `failure` saying "
    "why.",
    "invalid_url", "url is not a URL this service fetches",
)


@dataclass(frozen=True)
class Size(Integer):
    """?size=: one of the sizes the deployment serves (`Settings.sizes`), its default size when absent."""

    def configured(self, settings: Settings) -> Self:
        sizes = settings.sizes
        return replace(self, choices=sizes, fallback=settings.thumbnail_size,
                       message=f"size must be one of {', '.join(map(str, sizes))}")


SIGNATURE = Text(
    "signature", "path", "`base64url(HMAC-SHA256(APERCU_URL_KEY, rendition))` without padding, where `rendition` is "
    "the rest of the path with its leading `/`; `unsafe` where no URL key is set and no API key is required.",
    "bad_signature", "the signature does not match this URL", status=403, max_length=64,
)
RENDITION = Text(
    "rendition", "path", "Options in any order, each `name:value[:value]` and followed by `/`, then `<id>.<ext>`: "
    "`w:<px>`, `h:<px>`, `dpr:<1-4>`, `fit:<inside|cover|pad|stretch>`, `g:<centre|n|ne|e|se|s|sw|w|nw|smart|focal>` "
    "or `g:fp:<x>:<y>`, `crop:<x>:<y>:<w>:<h>`, `rot:<90|180|270>`, `q:<1-100>`, `bg:<rrggbb>`, `blur:<sigma>`, "
    "`sharpen:<sigma>`, `exp:<unix seconds>`, `p:<preset>`; `<ext>` is `jpg`, `png`, `webp`, `avif` or `auto` (by "
    "`Accept`). Its slashes are not escaped.",
    "invalid_option", "the rendition's path is too long", max_length=2048, converter="path",
)
SIZE = Size(
    "size", "query", "Longest side in pixels: one of the configured sizes (`APERCU_THUMBNAIL_SIZES`, plus "
    "`APERCU_THUMBNAIL_SIZE`, the default). Other sizes than the default are rendered on first request.",
    "invalid_size", "size must be one of the configured sizes",
)

@dataclass(frozen=True)
class Required(Integer):
    """An integer without a default: a request that needs it and does not send it is refused (its `message`)."""

    @property
    def default(self) -> int | None:  # type: ignore[override]
        return None

    def schema(self) -> Json:
        return {key: value for key, value in super().schema().items() if key != "default"}


# Resumable uploads (tus 1.0, `api.tus`): the protocol's headers, as tus names them.
TUS_VERSION = "1.0.0"
MAX_LENGTH = 2**62  # beyond any upload; APERCU_MAX_UPLOAD_BYTES is the real limit (413)
UPLOAD_ID = Text(
    "upload_id", "path", "The resumable upload's id, from the `Location` its creation answered (32 lowercase hex "
    "digits); anything else is a 404.", CODES[404], "no upload with this id", status=404, pattern=ID_PATTERN,
)
TUS_RESUMABLE = Text(
    "Tus-Resumable", "header", f"The tus protocol version the client speaks: `{TUS_VERSION}`, required on every "
    "resumable upload request but OPTIONS; anything else is a 412 (with `Tus-Version`).",
    "unsupported_tus_version", f"Tus-Resumable must be {TUS_VERSION}", status=412, enum=(TUS_VERSION,),
)
UPLOAD_LENGTH = Required(
    "Upload-Length", "header", "The upload's whole size in bytes, required at creation (no deferred length); more "
    "than `APERCU_MAX_UPLOAD_BYTES` is a 413.", "invalid_upload_length",
    "Upload-Length must be the upload's size in bytes (at least 1)", minimum=1, maximum=MAX_LENGTH,
)
UPLOAD_OFFSET = Required(
    "Upload-Offset", "header", "Where this request's bytes go: the offset HEAD answered (required on PATCH); "
    "another offset is a 409.", "invalid_upload_offset", "Upload-Offset must be a byte offset",
    maximum=MAX_LENGTH,
)
UPLOAD_METADATA = Text(
    "Upload-Metadata", "header", "Comma-separated `key base64(value)` pairs; `filename` is the image's file name.",
    "invalid_upload_metadata", "Upload-Metadata must be comma-separated `key base64value` pairs, each key once",
    max_length=4096,
)
UPLOAD_CHECKSUM = Text(
    "Upload-Checksum", "header", "`<algorithm> <base64 digest>` of this request's bytes, `sha1` or `sha256`: a "
    "mismatch is a 460 and nothing is appended.", "invalid_checksum",
    "Upload-Checksum must be `sha1` or `sha256`, a space and the base64 digest of the request's bytes",
    pattern="^(sha1|sha256) [A-Za-z0-9+/]+={0,2}$", max_length=200,
)
