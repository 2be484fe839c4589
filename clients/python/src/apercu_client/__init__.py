"""apercu's HTTP API for Python programs: `Client` (blocking) and `AsyncClient` (asyncio), on httpx.

    from apercu_client import Client
    with Client("http://127.0.0.1:5000", api_key="...") as apercu:
        image = apercu.upload("photo.jpg", wait=30).image
"""

from apercu_client._async import AsyncClient
from apercu_client._core import DEFAULT_URL, MAX_WAIT, MIN_POLL, VERSION, Retries
from apercu_client._sync import Client
from apercu_client.bodies import Progress, Source
from apercu_client.errors import (
    ApercuError,
    ApiError,
    AuthenticationError,
    Closed,
    NotFound,
    SourceError,
    Unreachable,
)
from apercu_client.models import Caller, Delivery, Image, ImageLinks, Page, ServiceInfo, Thumbnail, Upload
from apercu_client.resume import ResumeStore
from apercu_client.signing import rendition_path, sign

__version__ = VERSION
__all__ = [
    "DEFAULT_URL", "MAX_WAIT", "MIN_POLL", "ApercuError", "ApiError", "AsyncClient", "AuthenticationError", "Caller",
    "Client", "Closed", "Delivery", "Image", "ImageLinks", "NotFound", "Page", "Progress", "ResumeStore", "Retries",
    "ServiceInfo", "Source", "SourceError", "Thumbnail", "Unreachable", "Upload", "rendition_path", "sign",
]
