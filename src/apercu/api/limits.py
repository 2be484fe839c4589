"""What the routes accept, in one place: the routes check requests against it and the OpenAPI document
publishes it, so the two cannot disagree."""

ID_PATTERN = "^[0-9a-f]{32}$"  # an image id
MAX_WAIT = 30  # seconds ?wait= may hold a request
DEFAULT_PAGE, MAX_PAGE = 20, 100  # images per page of GET /images
DEFAULT_DISTANCE = 10  # bits of 64: resized, recompressed, lightly cropped or colour-shifted copies stay within it
