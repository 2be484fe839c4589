"""The Flask app factory: settings in, a WSGI app out, with storage and the Celery client attached."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from apercu.api import (
    access,
    cache_policy,
    docs,
    errors,
    forwarded,
    metrics_endpoint,
    observe,
    outage_breaker,
    page,
    rate_limit,
    routes,
    tus,
)
from apercu.api.uploads import MULTIPART_SLACK, UploadRequest
from apercu.config import Settings
from apercu.service import Service
from apercu.storage import open_storage
from apercu.storage.watcher import Watcher
from apercu.tasks import make_celery


class StrictJSONProvider(DefaultJSONProvider):
    """Refuse NaN and infinities: a bug must surface as an error, never as JSON that parsers reject."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    # The web page's assets (api/page.py) as the app's own static folder: its `static` endpoint is no API route.
    app = Flask(
        "apercu", static_folder=page.STATIC_FOLDER, static_url_path=page.STATIC_URL_PATH,
        template_folder=page.TEMPLATE_FOLDER,
    )
    app.json = StrictJSONProvider(app)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + MULTIPART_SLACK
    storage = open_storage(settings)
    celery = make_celery(settings)
    app.extensions["apercu"] = Service(settings, storage, celery, Watcher(storage.catalog))
    errors.register(app)
    # Each dependency's readiness check tells its breaker when an outage is over.
    outage_breaker.install(app, {"storage": storage.blobs.check, "catalog": storage.catalog.ping,
                                 "broker": lambda: routes.ping_broker(celery)})
    access.register(app)  # API keys, backpressure and CORS: before any route, and before any body is read
    rate_limit.register(app)  # after the gate: it counts admitted requests, against their key
    cache_policy.register(app)  # what caches may keep of every answer
    app.register_blueprint(routes.bp)
    tus.register(app)  # resumable uploads (tus 1.0) at /uploads/
    app.register_blueprint(docs.bp)
    app.register_blueprint(metrics_endpoint.bp)
    observe.install(app)  # request ids, one log line and the HTTP metrics for every request
    forwarded.install(app)  # outermost: behind a trusted proxy, every layer sees the client's request
    return app
