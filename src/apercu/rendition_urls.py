"""Which rendition URLs a deployment signs and accepts: `/r/<signature>/<options>/<id>.<ext>`.

With `APERCU_URL_KEY` set, the signature is `url_signing.sign` of the path after it, and nothing else is
accepted. Without one, the signature `unsafe` is accepted, but only where no API key is required either: with
keys, a signed URL is what stands in for one (an `<img>` tag cannot send a header), so an unsigned one would open
every image to anyone. The rule is here once, for the route that checks, and for what hands URLs out (the
image's JSON, `apercu sign`); so is the rule of whether keys are required at all (`keys_required`), which the
access gate (`api.access`) follows too.
"""

from __future__ import annotations

from apercu import url_signing
from apercu.config import Settings
from apercu.storage.catalog.keys import Keys

PREFIX = "/r/"


def keys_required(settings: Settings, catalog_keys: Keys) -> bool:
    """Whether a request needs an API key (outside the public paths): when APERCU_API_KEYS or APERCU_API_KEYS_FILE
    is set (an empty file too: it closes the API rather than opening it), or the catalog has ever held a key
    (`apercu keys create`; a revoked one too, so that revoking the last key does not open everything)."""
    return bool(settings.api_keys or settings.api_keys_file) or catalog_keys.snapshot().any


def signature_for(settings: Settings, keys: Keys, path: str) -> str | None:
    """The signature of `path` (leading `/`) under these settings; None when this deployment accepts none."""
    if settings.url_key:
        return url_signing.sign(path, settings.url_key)
    return None if keys_required(settings, keys) else url_signing.UNSAFE


def url_for(settings: Settings, keys: Keys, path: str) -> str | None:
    """The URL path of a rendition (`/r/<signature><path>`), or None when no URL can be signed."""
    signature = signature_for(settings, keys, path)
    return None if signature is None else f"{PREFIX}{signature}{path}"


def accepts(settings: Settings, keys: Keys, signature: str, path: str) -> bool:
    """Whether a request's signature is good for its path (compared in constant time when a key is set)."""
    if settings.url_key:
        return url_signing.verify(signature, path, settings.url_key)
    return signature == url_signing.UNSAFE and not keys_required(settings, keys)


def preset_urls(settings: Settings, keys: Keys, image_id: str) -> dict[str, str]:
    """A signed URL per configured preset (`/r/<signature>/p:<name>/<id>.auto`): what the image's JSON lists.
    They name the preset, not its options, so that a changed preset changes what they show."""
    found = {name: url_for(settings, keys, f"/p:{name}/{image_id}.auto") for name in settings.rendition_presets}
    return {name: url for name, url in found.items() if url is not None}


# What the web page shows (`api/static/js`): a grid tile and the detail view's preview, each at 1x and 2x density.
PAGE_VIEWS = {"tile": "w:256/h:256/fit:cover", "preview": "w:1200"}
DENSITIES = (1, 2)


def view_urls(settings: Settings, keys: Keys, image_id: str) -> dict[str, dict[str, str]]:
    """Signed `auto` URLs of the page's views, by view and density (`{"tile": {"1x": url, "2x": url}, ...}`):
    the image's JSON carries them so that the page shows a private image by a plain `<img srcset>` without
    holding the URL key. Empty where no URL can be signed (keys required, no URL key): the page then fetches
    thumbnails with its API key, as before."""
    urls: dict[str, dict[str, str]] = {}
    for view, options in PAGE_VIEWS.items():
        for density in DENSITIES:
            url = url_for(settings, keys, f"/{options}/dpr:{density}/{image_id}.auto")
            if url is None:
                return {}  # the same settings sign none of them
            urls.setdefault(view, {})[f"{density}x"] = url
    return urls
