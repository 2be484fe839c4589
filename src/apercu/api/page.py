"""The web page for people at `/`: one HTML document and its static assets, served by the API's own Flask app.

Browsers and API clients share `/`: a browser prefers text/html and gets the page, while curl (`*/*`), clients
without an Accept header and JSON clients keep the JSON status they always got (`wants_html`). The page is plain
HTML, CSS and JavaScript modules under `static/`, with no build step and nothing fetched from elsewhere, so it
works offline and ships inside the package. It talks to the same public API as any client, and must load without
an API key (it asks for one when the API answers 401): `/` and `/static/*` are among access.PUBLIC_PATHS.

It offers only what its key may do: `GET /` (JSON, sent with the key) tells the key's holder its name, tenant and
scopes (`caller`, `routes.index`), and the page hides the upload controls without `write` and Delete without
`delete` (static/js/scopes.js). The service stays the judge: a 403 `insufficient_scope` makes the page ask again.
"""

from __future__ import annotations

from pathlib import Path

from flask import Request, render_template
from flask.typing import ResponseReturnValue

from apercu import __version__

HERE = Path(__file__).parent
STATIC_FOLDER = HERE / "static"
TEMPLATE_FOLDER = HERE / "templates"
STATIC_URL_PATH = "/static"  # public, with `/`, in access.PUBLIC_PATHS: the page loads before it has a key

# The page loads its scripts, styles and images from this origin only: images by signed rendition URLs (the image
# JSON's `views`), or through blob: URLs where a thumbnail must be fetched with an API key (keys required and no
# APERCU_URL_KEY to sign with); nothing may frame it.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' blob: data:",
        "style-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def wants_html(request: Request) -> bool:
    """True only when the client ranks text/html strictly above application/json.

    Browsers send `text/html,...,*/*;q=0.8`; curl sends `*/*`, which ranks both equally, and a missing header
    ranks everything equally too: both of those keep getting JSON, so no existing client sees a change.
    """
    accept = request.accept_mimetypes
    return accept.best_match(["application/json", "text/html"]) == "text/html" and accept.quality(
        "text/html"
    ) > accept.quality("application/json")


def html() -> ResponseReturnValue:
    """The page itself; the data comes later, from the API, through the page's scripts."""
    body = render_template("index.html", version=__version__)
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
        "Vary": "Accept",
    }
    return body, 200, headers
