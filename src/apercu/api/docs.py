"""Interactive API documentation at /docs: Swagger UI 5 rendering /openapi.json, every file served from here.

The assets are the Swagger UI distribution that the flask-swagger-ui package ships (its `dist/`); nothing is
fetched from a CDN, and Swagger UI's online validator badge (which sends the document's URL to
validator.swagger.io) is turned off. The page has no inline script and is served under the web page's strict
Content-Security-Policy (`api.page`: scripts, styles and connections to this origin only).
"""

from __future__ import annotations

from html import escape
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from flask import Blueprint, Response, request, send_file, url_for
from flask.typing import ResponseReturnValue

from apercu.api.errors import CODES
from apercu.api.inputs import Text
from apercu.api.page import CONTENT_SECURITY_POLICY

DIST = Path(str(files("flask_swagger_ui").joinpath("dist")))
SWAGGER_UI_VERSION = version("flask-swagger-ui")
INIT = "apercu-docs.js"
# What the page loads, with its media type (not guessed from the system's MIME table).
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
    INIT: "text/javascript",
}
ASSET = Text("asset", "path", "", CODES[404], "no documentation asset named {value!r}", status=404,
             enum=tuple(sorted(ASSETS)))
MAX_AGE = 86400

INIT_SCRIPT = """\
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    tryItOutEnabled: false
  });
});
"""

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="swagger-ui-version" content="{version}">
<title>apercu API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon32}" sizes="32x32">
<link rel="icon" type="image/png" href="{icon16}" sizes="16x16">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{spec}"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""

bp = Blueprint("docs", __name__)


def _asset_url(name: str) -> str:
    return url_for("docs.asset", asset=name, v=SWAGGER_UI_VERSION)


@bp.get("/docs")
def page() -> ResponseReturnValue:
    html = PAGE.format(
        version=escape(SWAGGER_UI_VERSION),
        css=escape(_asset_url("swagger-ui.css")),
        icon32=escape(_asset_url("favicon-32x32.png")),
        icon16=escape(_asset_url("favicon-16x16.png")),
        spec=escape(url_for("api.openapi")),
        bundle=escape(_asset_url("swagger-ui-bundle.js")),
        init=escape(_asset_url(INIT)),
    )
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@bp.get("/docs/<asset>")
def asset(asset: str) -> ResponseReturnValue:
    asset = ASSET.parse(asset)
    if asset == INIT:
        response = Response(INIT_SCRIPT, mimetype=ASSETS[asset])
        response.add_etag()
        response.make_conditional(request)
    else:
        response = send_file(DIST / asset, mimetype=ASSETS[asset], max_age=MAX_AGE, conditional=True)
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    return response

