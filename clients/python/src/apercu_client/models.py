"""Typed results: the API's JSON (an image as `GET /images/{id}` shows it, an upload's answer, a page, the index)
as frozen dataclasses, each read from its JSON by `from_json`. Every result keeps the JSON it came from (`raw`), so
a field a newer service adds is there before this library names it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FINAL = frozenset({"success", "failure"})  # an image's statuses after which nothing changes


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class ImageLinks:
    self: str  # /images/{id}
    thumbnail: str  # /thumbnails/{id}.jpg

    @classmethod
    def from_json(cls, data: dict[str, Any], image_id: str) -> ImageLinks:
        """The links given, else the ones every image has (the API always sends them; a stand-in may not)."""
        return cls(data.get("self", f"/images/{image_id}"), data.get("thumbnail", f"/thumbnails/{image_id}.jpg"))


@dataclass(frozen=True)
class Thumbnail:
    """The default JPEG thumbnail, once processing succeeded."""

    width: int
    height: int
    bytes: int
    url: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thumbnail:
        return cls(data["width"], data["height"], data["bytes"], data["url"])


@dataclass(frozen=True)
class Delivery:
    """One completion webhook and how it went (only in one image's GET)."""

    id: str
    url: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delivery:
        return cls(data["id"], data["url"], data["status"], data["attempts"], data.get("last_status"),
                   data.get("last_error"), _time(data.get("delivered_at")))


@dataclass(frozen=True)
class Image:
    """One image: `status` is `pending`, `processing`, then `success` or `failure` (then `error` says why);
    `metadata` (the service's documented metadata object) and `thumbnail` once processed; `distance` only in a
    similarity search's results."""

    id: str
    status: str
    filename: str | None
    uploaded_at: datetime | None  # (always given by the service; read leniently, as every field but id and status)
    processed_at: datetime | None
    error: str | None
    links: ImageLinks
    metadata: dict[str, Any] | None = None
    thumbnail: Thumbnail | None = None
    distance: int | None = None
    renditions: dict[str, str] = field(default_factory=dict)
    views: dict[str, dict[str, str]] = field(default_factory=dict)
    webhooks: tuple[Delivery, ...] = ()
    source_url: str | None = None
    tenant: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def final(self) -> bool:
        """Processing has ended (success or failure): nothing about the image will change."""
        return self.status in FINAL

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Image:
        thumb = data.get("thumbnail")
        return cls(
            data["id"], data["status"], data.get("filename"), _time(data.get("uploaded_at")),
            _time(data.get("processed_at")), data.get("error"), ImageLinks.from_json(data.get("links", {}), data["id"]),
            metadata=data.get("metadata"), thumbnail=None if thumb is None else Thumbnail.from_json(thumb),
            distance=data.get("distance"), renditions=data.get("renditions", {}), views=data.get("views", {}),
            webhooks=tuple(Delivery.from_json(d) for d in data.get("webhooks", ())),
            source_url=data.get("source_url"), tenant=data.get("tenant"), raw=data,
        )


@dataclass(frozen=True)
class Upload:
    """What an upload was answered: the image's id and status then; `duplicate` when the service already had these
    bytes (`APERCU_DEDUP=reuse`: that image, nothing new), `replayed` when its idempotency key had been used (the
    first upload's image); `image`, the image after the wait, when the upload asked to wait. A resumable upload's
    `resumed_from` is the byte it was last resumed from (None when it never had to ask where it stood)."""

    id: str
    status: str
    links: ImageLinks
    duplicate: bool = False
    replayed: bool = False
    image: Image | None = None
    resumed_from: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], replayed: bool) -> Upload:
        links = ImageLinks.from_json(data.get("links", {}), data["id"])
        return cls(data["id"], data["status"], links, bool(data.get("duplicate")), replayed)


@dataclass(frozen=True)
class Page:
    """One page of the list, newest first; `next_cursor` is None on the last."""

    items: tuple[Image, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Page:
        return cls(tuple(Image.from_json(item) for item in data["items"]), data.get("next_cursor"))


@dataclass(frozen=True)
class Caller:
    """The API key a request carried, as the service knows it."""

    name: str
    tenant: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class ServiceInfo:
    """`GET /`: the service's status and version, and who the API key is (None without one, or without keys)."""

    status: str
    version: str
    caller: Caller | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceInfo:
        who = data.get("caller")
        caller = None if who is None else Caller(who["name"], who["tenant"], tuple(who["scopes"]))
        return cls(data["status"], data.get("version", ""), caller, data)
