"""Signed rendition URLs: `/r/<signature>/<options>/<id>.<ext>`, as the service checks them.

The signature is base64url (no padding) of HMAC-SHA256, keyed with the UTF-8 bytes of the deployment's
`APERCU_URL_KEY`, over the path after the signature with its leading `/`. This is the server's
`apercu.url_signing.sign`, repeated here because this package must not import the server (a test checks both give
the same signature for the same inputs). Without a key, the signature is `unsafe`, which a deployment accepts only
where it requires no API key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

MIN_KEY_BYTES = 32  # the service refuses a shorter APERCU_URL_KEY, so a shorter key here signs nothing it accepts
UNSAFE = "unsafe"
PREFIX = "/r/"


def sign(path: str, key: str) -> str:
    """The signature of `path` (the part after the signature, leading `/` included)."""
    if not path.startswith("/"):
        raise ValueError(f"sign the path with its leading '/': {path!r}")
    raw = key.encode("utf-8")
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(f"the URL key must be at least {MIN_KEY_BYTES} bytes of UTF-8, not {len(raw)}")
    digest = hmac.new(raw, path.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def rendition_path(
    image_id: str, options: str | Sequence[str] = (), ext: str = "auto", *, key: str | None = None,
    expires: int | None = None,
) -> str:
    """The signed path of a rendition: `options` as `"w:400/h:300"` or `["w:400", "h:300"]` (`p:<preset>` for a
    preset), `ext` one of jpg, png, webp, avif or auto; `expires`, a Unix time after which the URL is refused."""
    parts = [o for o in (options.split("/") if isinstance(options, str) else options) if o]
    if expires is not None:
        parts.append(f"exp:{int(expires)}")
    path = "/" + "/".join([*parts, f"{image_id}.{ext}"])
    return f"{PREFIX}{UNSAFE if key is None else sign(path, key)}{path}"
