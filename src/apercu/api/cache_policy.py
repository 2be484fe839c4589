"""What caches may keep: one rule for every answer, applied after the route, so that no route has to remember it.

With API keys, an answer given because of a key (to a request that needed one, or that carried one) is
`Cache-Control: private` — a browser may keep it for its user, a shared cache (a CDN, a company proxy) must not
hand it to the next caller, who may have no key or another tenant's — and every answer varies on the
authentication headers (`Vary: X-API-Key, Authorization`), since who asks changes what is answered. Routes say
how long their answer keeps (`max-age`) and whether it may be shared at all (thumbnails and renditions say
`public`); this rule only ever narrows that. Two kinds of answer stay as the route made them, because no key is
what lets them through: signed renditions (/r/...: the signature is the credential, and the same URL is the same
bytes for everyone) and, with APERCU_PUBLIC_THUMBNAILS, thumbnails.

Without keys there is no private answer, and nothing changes. Errors are `no-store` already, wherever they are
made (`api.errors.NO_STORE`), and stay so.
"""

from __future__ import annotations

from flask import Flask, Response, request

from apercu.api import access
from apercu.api.access import is_public, presented_api_key

AUTHENTICATION = ("X-API-Key", "Authorization")  # the headers a key is sent in (`access.presented_api_key`)
RENDITIONS = "/r/*"


def register(app: Flask) -> None:
    the_gate = access.gate(app)
    shared = (RENDITIONS, access.THUMBNAILS) if app.extensions["apercu"].settings.public_thumbnails else (RENDITIONS,)

    @app.after_request
    def _private(response: Response) -> Response:
        keys = the_gate.keys_required()
        path = request.environ.get("PATH_INFO", "")
        if not keys or response.status_code >= 400 or is_public(path, shared):
            return response
        response.vary.update(AUTHENTICATION)
        if not is_public(path, the_gate.public) or presented_api_key(request.headers.get) is not None:
            response.cache_control.public = False
            response.cache_control.private = True
        return response
