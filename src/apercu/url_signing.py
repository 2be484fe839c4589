"""Signatures of rendition URLs: `/r/<signature>/<options>/<id>.<ext>`.

The signature is HMAC-SHA256, keyed with the UTF-8 bytes of `APERCU_URL_KEY`, over the path after the
signature with its leading `/` (for `/r/<sig>/w:400/<id>.avif`, over `/w:400/<id>.avif`), written in base64url
without padding (as imgproxy signs, without its salt), so that a client signs in a line of any language:

    Python      base64.urlsafe_b64encode(hmac.new(key.encode(), path.encode(), hashlib.sha256).digest()).rstrip(b"=")
    JavaScript  crypto.createHmac("sha256", key).update(path).digest("base64url")        (Node.js)

Whoever holds the key can ask for any rendition; whoever holds a URL can ask for that one, until its `exp`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

MIN_KEY_BYTES = 32  # as many as the hash's output: a shorter key is easier to guess than the HMAC to forge
UNSAFE = "unsafe"  # the signature accepted where no key is set and no API key is required (the web decides)


def check_key(key: str) -> bytes:
    """The key's bytes; ValueError when it has fewer than MIN_KEY_BYTES of them (for the settings' check)."""
    raw = key.encode("utf-8")
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(f"the URL key must be at least {MIN_KEY_BYTES} bytes of UTF-8, not {len(raw)}")
    return raw


def sign(path: str, key: str) -> str:
    """The signature of `path` (the part after the signature, leading `/` included)."""
    if not path.startswith("/"):
        raise ValueError(f"sign the path with its leading '/': {path!r}")
    digest = hmac.new(check_key(key), path.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(signature: str, path: str, key: str) -> bool:
    """Whether `signature` is the one for `path`, compared in constant time (its length aside, which is
    public: every good signature has 43 characters). A path without its leading `/` has none."""
    if not path.startswith("/"):
        return False
    return hmac.compare_digest(sign(path, key).encode("ascii"), signature.encode("utf-8", "surrogateescape"))
