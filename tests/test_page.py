"""The web page at `/`: content negotiation through the Flask test client, then the page itself in a real browser
(Debian's Chromium, driven by Playwright) against a real `apercu serve`.

The browser tests upload through the file picker (opened from the keyboard) and by a drop, wait for the gallery's
tiles (signed `auto` renditions, 1x or 2x) to be really decoded, read one image's facts, delete the other through
the confirmation dialog, and leave screenshots in test-output/ for a person to look at. With API keys on, the
pictures come by signed URLs without the key, or, with no URL key to sign with, fetched with it into blob: URLs.
With a real key file of scoped keys: a read-only key browses with no upload or delete control (a note says why), a
read-write key uploads and deletes; when the operator takes its scopes away (403) or the key (401) while the page
is open, the page says so and adapts, or asks for a key again. What the page learns of its key (`caller` in
`GET /`) is checked with the Flask test client against the OpenAPI document.
Chromium comes from Debian (`make browser` installs it); without it these tests skip on a laptop and fail in CI
(APERCU_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import images
import pytest
from conftest import REQUIRE_SERVICES, parse_json, unavailable
from live import Service
from PIL import Image, ImageDraw
from test_openapi import Contract

from apercu.api import create_app
from apercu.config import Settings
from apercu.rendition_urls import view_urls
from apercu.url_signing import verify

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
TIMEOUT_MS = 60_000
API_KEY = "secret-key"
URL_KEY = "a-url-key-of-at-least-32-bytes-long"
ID = "0123456789abcdef0123456789abcdef"
READER, WRITER, ADMIN = "r3ader-key-for-the-page", "wr1ter-key-for-the-page", "adm1n-key-for-the-page"


def keys_file(folder: Path) -> str:
    """A real key file: a read-only key and a read-write one in the tenant `acme`, an admin in `default`."""
    path = folder / "keys"
    path.write_text(f"viewer acme read {READER}\neditor acme read,write,delete {WRITER}\nops default admin {ADMIN}\n")
    return str(path)


# --- negotiation, without a browser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("application/json;q=0.5, text/html", True),
        ("*/*", False),  # curl
        (None, False),  # no header at all
        ("application/json", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html, application/json", False),  # a tie keeps the JSON
    ],
)
def test_index_negotiates_html_for_browsers_and_json_for_api_clients(client: Any, accept: str | None, html: bool) -> None:
    response = client.get("/", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert "Accept" in response.headers.get("Vary", "")
    if html:
        assert response.mimetype == "text/html"
        text = response.get_data(as_text=True)
        assert '<script type="module" src="/static/js/app.js">' in text and 'id="dropzone"' in text
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    else:
        body = parse_json(response)
        assert response.mimetype == "application/json"
        assert body["status"] == "ok" and body["message"] == "Server is up and running" and body["endpoints"]


def test_index_tells_a_key_who_it_is_and_nothing_without_one(settings: Settings, tmp_path: Path) -> None:
    """What the page asks to learn what its key may do: `caller` in `GET /`, only for the key presented."""
    client = create_app(settings.with_overrides(api_keys_file=keys_file(tmp_path))).test_client()
    contract = Contract(client.get("/openapi.json").get_json())
    schema = contract.doc["components"]["schemas"]
    assert schema["Index"]["properties"]["caller"]["$ref"] == "#/components/schemas/Caller"
    assert schema["Caller"]["required"] == ["name", "tenant", "scopes"]
    expected = {
        READER: {"name": "viewer", "tenant": "acme", "scopes": ["read"]},
        WRITER: {"name": "editor", "tenant": "acme", "scopes": ["read", "write", "delete"]},
        ADMIN: {"name": "ops", "tenant": "default", "scopes": ["read", "write", "delete", "admin"]},  # admin holds all
    }
    for key, caller in expected.items():
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
            response = contract.check("GET", "/", client.get("/", headers=headers))
            assert parse_json(response)["caller"] == caller
            assert response.cache_control.private and not response.cache_control.public
            assert {"Accept", "X-API-Key", "Authorization"} <= set(response.vary)
    for headers in ({}, {"X-API-Key": "not-a-key"}, {"X-API-Key": f"sha256:{'0' * 64}"}):
        response = contract.check("GET", "/", client.get("/", headers=headers))  # public: 200, saying nothing of keys
        assert "caller" not in parse_json(response)
        assert {"X-API-Key", "Authorization"} <= set(response.vary)  # a keyed answer is never served for it
    open_app = create_app(settings).test_client()  # no keys at all: every operation is open, nothing to tell
    assert "caller" not in parse_json(open_app.get("/", headers={"X-API-Key": READER}))


def test_page_assets_are_served_from_the_package(client: Any) -> None:
    for path, mimetype in [
        ("/static/js/app.js", "text/javascript"),
        ("/static/css/apercu.css", "text/css"),
        ("/static/icon.svg", "image/svg+xml"),
    ]:
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == mimetype, path
    missing = client.get("/static/js/nothing.js")
    assert missing.status_code == 404 and parse_json(missing)["error"]["code"] == "not_found"


@pytest.mark.parametrize(("url_key", "api_keys"), [("", ()), (URL_KEY, (API_KEY,)), (URL_KEY, ()), ("", (API_KEY,))])
def test_the_pages_views_are_rendition_urls_signed_where_a_signature_is_possible(
    tmp_path: Path, url_key: str, api_keys: tuple[str, ...]
) -> None:
    settings = Settings(data_dir=tmp_path, url_key=url_key, api_keys=api_keys)
    views = view_urls(settings, create_app(settings).extensions["apercu"].storage.catalog.keys, ID)
    if api_keys and not url_key:
        assert views == {}  # nothing can be signed: the page fetches thumbnails with its key (blob: URLs)
        return
    paths = {"tile": "/w:256/h:256/fit:cover/dpr:{}/" + ID + ".auto", "preview": "/w:1200/dpr:{}/" + ID + ".auto"}
    assert {view: sorted(urls) for view, urls in views.items()} == {"tile": ["1x", "2x"], "preview": ["1x", "2x"]}
    for view, urls in views.items():
        for density, url in urls.items():
            path = paths[view].format(density[0])
            signature, rest = url.removeprefix("/r/").split("/", 1)
            assert "/" + rest == path
            assert verify(signature, path, url_key) if url_key else signature == "unsafe"


# --- the page in a browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"Chromium not found at {CHROMIUM} (`make test` installs Debian's chromium package)", REQUIRE_SERVICES)
    from playwright.sync_api import expect, sync_playwright

    # `expect` waits for its condition as long as a page action may (a loaded CI machine processes an upload in
    # more than Playwright's default 5 s); it returns as soon as the condition holds.
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
            expect.set_options(timeout=None)  # Playwright's default again, for other modules


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "data").start("serve")
    yield svc
    svc.stop()


def landscape(size: tuple[int, int]) -> Image.Image:
    """A picture that reads as one in a screenshot: sky, sun, hills."""
    width, height = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=(int(60 + 170 * t), int(110 + 90 * t), int(200 - 40 * t)))
    draw.ellipse((width * 0.62, height * 0.18, width * 0.78, height * 0.18 + width * 0.16), fill=(255, 214, 102))
    draw.polygon([(0, height * 0.75), (width * 0.3, height * 0.5), (width * 0.6, height * 0.72), (width, height * 0.55),
                  (width, height), (0, height)], fill=(46, 110, 78))
    draw.polygon([(0, height), (width * 0.45, height * 0.78), (width, height * 0.92), (width, height)], fill=(30, 80, 55))
    return img


def sample_files(folder: Path) -> tuple[Path, Path]:
    """A JPEG with a camera's EXIF and GPS (tests/images.py's block), and a PNG with text chunks and an ICC profile."""
    jpeg = folder / "lighthouse.jpg"
    jpeg.write_bytes(images.encode(landscape((1200, 800)), "JPEG", quality=88, exif=images.exif_block(gps=True)))
    png = folder / "harbour.png"
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Harbour at dusk")
    info.add_text("Author", "Zoë <script>alert(1)</script>")  # shown as text, never parsed
    png.write_bytes(images.encode(landscape((640, 480)).rotate(180), "PNG", pnginfo=info,
                                  icc_profile=images.adobe_rgb_profile()))
    return jpeg, png


def new_page(context: Any) -> Any:
    """A page whose file choosers Playwright intercepts from the start. Playwright subscribes to them without
    waiting for the browser's answer when the first listener comes: registered only by `expect_file_chooser`, right
    before the key press, the chooser sometimes opened unintercepted and the wait timed out."""
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("filechooser", lambda _chooser: None)
    return page


def watch_errors(page: Any) -> list[str]:
    """Script errors and Content Security Policy violations seen by the page."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    return errors


def pick_files(page: Any, files: list[Path]) -> None:
    """Open the picker the way a keyboard user does: focus the drop zone, press Enter."""
    from playwright.sync_api import expect

    expect(page.locator("#dropzone")).to_be_visible()  # shown once the page knows the key may upload
    page.locator("#dropzone").focus()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files([str(f) for f in files])


def drop_file(page: Any, file: Path, mime: str) -> None:
    """Drop a file on the drop zone, as a drag from the desktop ends."""
    page.evaluate(
        """([name, mime, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const zone = document.getElementById("dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [file.name, mime, base64.b64encode(file.read_bytes()).decode()],
    )


def wait_for_thumbnails(page: Any, count: int) -> None:
    """Until the gallery shows `count` cards, each with its thumbnail decoded (not merely requested)."""
    page.wait_for_function(
        """(count) => {
            const imgs = [...document.querySelectorAll("#gallery .card img")];
            return imgs.length === count && imgs.every((img) => img.complete && img.naturalWidth > 0);
        }""",
        arg=count,
        timeout=TIMEOUT_MS,
    )


def shown_facts(page: Any) -> dict[str, str]:
    """Label -> text of every fact outside the collapsed metadata blocks."""
    return dict(
        page.evaluate(
            """() => [...document.querySelectorAll(".detail .group .facts__row")]
                .map((row) => [row.querySelector("dt").textContent, row.querySelector("dd").textContent])"""
        )
    )


def shown_tiles(page: Any) -> list[dict[str, Any]]:
    """Each gallery <img>: the URL it shows, its decoded size, its width and height attributes, its loading."""
    return list(page.eval_on_selector_all("#gallery .card img", """imgs => imgs.map((img) => ({
        src: img.currentSrc, natural: [img.naturalWidth, img.naturalHeight],
        size: [img.getAttribute("width"), img.getAttribute("height")], loading: img.loading }))"""))


def image_ids(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#gallery .card", "cards => cards.map((card) => card.dataset.id)"))


def open_page(browser: Any, svc: Service) -> tuple[Any, list[str], str]:
    """A desktop-sized page on the service's `/`, its script errors watched; with the URL it opened."""
    OUTPUT.mkdir(exist_ok=True)  # for the screenshots
    url = f"http://127.0.0.1:{svc.port}/"
    page = new_page(browser.new_context(viewport={"width": 1280, "height": 900}, reduced_motion="reduce"))
    errors = watch_errors(page)
    page.goto(url)
    return page, errors, url


def test_upload_browse_inspect_and_delete_in_a_browser(browser: Any, service: Service, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    jpeg, png = sample_files(tmp_path)
    page, errors, url = open_page(browser, service)
    expect(page.get_by_role("heading", name="Images", exact=True)).to_be_visible()
    expect(page.locator("#gallery-empty")).to_be_visible()

    pick_files(page, [jpeg])
    drop_file(page, png, "image/png")
    expect(page.locator(".upload")).to_have_count(2)
    expect(page.locator('.upload[data-status="success"]')).to_have_count(2)
    wait_for_thumbnails(page, 2)
    # No keys at all: the tiles are `unsafe` rendition URLs, 256 px squares at this screen's density, lazily loaded.
    for tile in shown_tiles(page):
        assert tile["src"].startswith(f"{url}r/unsafe/w:256/h:256/fit:cover/dpr:1/") and tile["src"].endswith(".auto")
        assert (tile["natural"], tile["size"], tile["loading"]) == ([256, 256], ["256", "256"], "lazy")
    names = page.locator("#gallery .card__name").all_text_contents()
    assert sorted(names) == ["harbour.png", "lighthouse.jpg"]
    expect(page.locator('#gallery .card[data-status="success"]')).to_have_count(2)
    page.evaluate("() => document.activeElement.blur()")  # the drop zone's focus ring is no part of the picture
    page.screenshot(path=str(OUTPUT / "gallery.png"), full_page=True)

    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                has_touch=True, reduced_motion="reduce")
    phone_page = phone.new_page()
    phone_page.goto(url)
    wait_for_thumbnails(phone_page, 2)
    # The 2x URLs on a phone (naturalWidth is in CSS pixels: a 2x source's device pixels over 2).
    assert all("/dpr:2/" in tile["src"] and tile["natural"][0] > 0 for tile in shown_tiles(phone_page))
    phone_page.screenshot(path=str(OUTPUT / "gallery-phone.png"), full_page=True)

    # One image's page: the facts read from its metadata, grouped.
    page.locator("#gallery").get_by_role("link", name="lighthouse.jpg").click()
    expect(page.get_by_role("heading", name="lighthouse.jpg")).to_be_focused()
    page.wait_for_function(
        "() => { const img = document.querySelector('.preview__img'); return img && img.complete && img.naturalWidth > 0; }"
    )
    preview = page.eval_on_selector(".preview__img", "img => [img.currentSrc, img.naturalWidth, img.width, img.height]")
    assert "/r/unsafe/w:1200/dpr:1/" in preview[0] and preview[1] == 1200  # the preview view, at this density
    assert preview[2] / preview[3] == 1200 / 800  # the image's proportions, from its width and height attributes
    facts = shown_facts(page)
    assert facts["Format"] == "JPEG (image/jpeg)"
    assert facts["Dimensions"] == "1200 × 800 px"
    assert facts["Make"] == "Apercu Test Camera" and facts["Model"] == "Model 1"
    assert facts["Exposure"] == "1/250 s" and facts["Aperture"] == "ƒ/2.8" and facts["ISO"] == "200"
    assert facts["Taken"] == "2024-05-17 09:08:07"
    assert facts["Position"] == "48.856700°\u00a0N, 2.352083°\u00a0E"  # no line break inside a coordinate
    assert len(facts["SHA-256"]) == 64
    osm = page.get_by_role("link", name="Show on OpenStreetMap")
    assert osm.get_attribute("href").startswith("https://www.openstreetmap.org/?mlat=48.856700&mlon=2.352083")
    page.locator('details[data-block="exif"] summary').click()
    raw = page.locator('details[data-block="json"]')
    raw.locator("summary").click()
    detail_id = page.locator("article.detail").get_attribute("data-id")
    assert json.loads(raw.locator("pre").text_content())["id"] == detail_id
    page.evaluate("() => window.scrollTo(0, 0)")  # the preview is sticky: capture it where it starts
    page.screenshot(path=str(OUTPUT / "detail.png"), full_page=True)

    phone_page.goto(f"{url}#/images/{detail_id}")
    phone_page.wait_for_function("() => document.querySelector('.preview__img')?.naturalWidth > 0")
    assert "/w:1200/dpr:2/" in phone_page.eval_on_selector(".preview__img", "img => img.currentSrc")
    expect(phone_page.locator(".preview__note")).to_have_text("Preview 1200 × 800")  # its own pixels, not CSS ones
    phone_page.screenshot(path=str(OUTPUT / "detail-phone.png"), full_page=True)
    phone.close()

    # The PNG's page: its text chunks as text (the markup in one is shown, not run), then delete it.
    page.get_by_role("link", name="All images").click()
    expect(page.locator("#gallery").get_by_role("link", name="lighthouse.jpg")).to_be_focused()
    page.locator("#gallery").get_by_role("link", name="harbour.png").click()
    text_block = page.locator('details[data-block="text"]')
    text_block.locator("summary").click()
    expect(text_block).to_contain_text("Zoë <script>alert(1)</script>")
    expect(page.locator('details[data-block="icc"]')).to_contain_text("ICC colour profile")
    png_id = page.locator("article.detail").get_attribute("data-id")

    page.get_by_role("button", name="Delete…").click()
    dialog = page.get_by_role("dialog", name="Delete this image?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("harbour.png")
    dialog.get_by_role("button", name="Cancel").click()  # changing one's mind deletes nothing
    expect(dialog).to_be_hidden()
    assert service.get(f"/images/{png_id}").status == 200
    page.get_by_role("button", name="Delete…").click()
    dialog.get_by_role("button", name="Delete", exact=True).click()

    expect(page).to_have_url(url + "#/")
    expect(page.locator("#gallery .card")).to_have_count(1)
    assert image_ids(page) == [detail_id]
    assert service.get(f"/images/{png_id}").status == 404
    page.reload()
    wait_for_thumbnails(page, 1)
    assert errors == []
    page.context.close()


@pytest.mark.parametrize("url_key", [URL_KEY, ""], ids=["url-key", "no-url-key"])
def test_page_asks_for_an_api_key_and_sends_it(browser: Any, tmp_path: Path, url_key: str) -> None:
    from playwright.sync_api import expect

    svc = Service(tmp_path / "data", {"APERCU_API_KEYS": API_KEY, "APERCU_URL_KEY": url_key}).start("serve")
    try:
        url = f"http://127.0.0.1:{svc.port}/"
        assert svc.get("/images").status == 401  # keys are on: the API itself is closed...
        assert svc.get("/", headers={"Accept": BROWSER_ACCEPT}).status == 200  # ...the page and its assets are not
        assert svc.get("/static/js/app.js").status == 200
        jpeg, _ = sample_files(tmp_path)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = new_page(context)
        errors = watch_errors(page)
        thumbnails: list[str] = []  # what was asked of /thumbnails/, the path that needs the API key
        page.on("request", lambda req: thumbnails.append(req.url) if "/thumbnails/" in req.url else None)
        page.goto(url)

        # The gallery's first request is refused: the page asks for a key; a wrong one is refused in turn.
        dialog = page.get_by_role("dialog", name="API key needed")
        expect(dialog).to_be_visible()
        dialog.get_by_label("API key").fill("not-the-key")
        dialog.get_by_role("button", name="Use this key").click()
        expect(page.locator("#key-message")).to_contain_text("refused")
        dialog.get_by_label("API key").fill(API_KEY)
        dialog.get_by_role("button", name="Use this key").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#gallery-empty")).to_be_visible()
        assert page.evaluate("() => localStorage.getItem('apercu.apiKey')") == API_KEY

        pick_files(page, [jpeg])
        expect(page.locator('.upload[data-status="success"]')).to_have_count(1)
        wait_for_thumbnails(page, 1)
        page.locator("#gallery").get_by_role("link", name="lighthouse.jpg").click()
        page.wait_for_function("() => document.querySelector('.preview__img')?.naturalWidth > 0")
        expect(page.get_by_role("heading", name="lighthouse.jpg")).to_be_visible()
        preview = page.eval_on_selector(".preview__img", "img => img.currentSrc")
        page.get_by_role("link", name="All images").click()
        [tile] = shown_tiles(page)
        if url_key:
            # <img> cannot send the header: a signed rendition URL (from the image's JSON) stands in for the key.
            assert tile["src"].startswith(f"{url}r/") and "/unsafe/" not in tile["src"] and tile["natural"][0] > 0
            assert preview.startswith(f"{url}r/") and "/w:1200/" in preview
            assert thumbnails == []  # neither fetched with the key (no blob: URL) nor asked for at all
        else:
            # Nothing can be signed: the thumbnail came through fetch() with the key, shown from a blob: URL.
            assert tile["src"].startswith("blob:") and preview.startswith("blob:") and thumbnails

        # Kept across visits; forgetting it brings the question back.
        page.goto(url)
        wait_for_thumbnails(page, 1)
        expect(dialog).to_be_hidden()
        page.get_by_role("button", name="Forget API key").click()
        expect(dialog).to_be_visible()
        assert errors == []
        context.close()
    finally:
        svc.stop()


# --- the page with keys of different scopes (a real key file) --------------------------------------------------


@pytest.fixture
def keyed_service(tmp_path: Path) -> Iterator[Service]:
    """`apercu serve` with a key file of named, scoped keys, and a URL key: pictures come by signed URLs."""
    svc = Service(tmp_path / "data", {"APERCU_API_KEYS_FILE": keys_file(tmp_path), "APERCU_URL_KEY": URL_KEY})
    yield svc.start("serve")
    svc.stop()


def enter_key(page: Any, key: str, refused: bool = False) -> None:
    """Answer the page's question for a key (asked on a 401; `refused`: the stored key was refused)."""
    from playwright.sync_api import expect

    dialog = page.get_by_role("dialog", name="API key needed")
    expect(dialog).to_be_visible()
    if refused:
        expect(page.locator("#key-message")).to_contain_text("refused the API key this browser had")
    dialog.get_by_label("API key").fill(key)
    dialog.get_by_role("button", name="Use this key").click()
    expect(dialog).to_be_hidden()


def restart_with_keys(svc: Service, lines: str) -> None:
    """What an operator does to change a key file's keys: edit it, restart (on the same port: the page's origin)."""
    Path(svc.env["APERCU_API_KEYS_FILE"]).write_text(lines)
    svc.stop()
    svc.start("serve")


def assert_signed_tiles(page: Any, url: str) -> None:
    for tile in shown_tiles(page):
        assert tile["src"].startswith(f"{url}r/") and "/unsafe/" not in tile["src"] and tile["natural"][0] > 0


def test_a_read_only_key_browses_without_upload_or_delete(browser: Any, keyed_service: Service,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    jpeg, _ = sample_files(tmp_path)
    assert keyed_service.upload(jpeg.read_bytes(), jpeg.name, {"X-API-Key": WRITER}).status == 202
    page, errors, url = open_page(browser, keyed_service)
    thumbnails: list[str] = []  # what was asked of /thumbnails/, the path that needs the API key
    page.on("request", lambda req: thumbnails.append(req.url) if "/thumbnails/" in req.url else None)
    enter_key(page, READER)  # (nothing is listed, so no picture asked for, before the key)

    # The gallery and its pictures, by signed URLs; nothing to upload with, and a note saying why.
    wait_for_thumbnails(page, 1)
    assert_signed_tiles(page, url)
    note = page.locator("#scope-note")
    expect(note).to_have_text("The API key “viewer” is read-only: you can browse images, but not upload or delete them.")
    expect(page.locator("#dropzone")).to_be_hidden()
    expect(page.locator(".upload-panel")).to_be_hidden()
    expect(page.get_by_role("button", name="Refresh")).to_be_visible()
    page.screenshot(path=str(OUTPUT / "gallery-read-only.png"), full_page=True)

    # The image's page from the keyboard: its facts and preview, and no Delete button.
    page.locator("#gallery .card__link").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="lighthouse.jpg")).to_be_focused()
    page.wait_for_function("() => document.querySelector('.preview__img')?.naturalWidth > 0")
    assert page.eval_on_selector(".preview__img", "img => img.currentSrc").startswith(f"{url}r/")
    assert shown_facts(page)["Make"] == "Apercu Test Camera"
    expect(page.locator("article.detail")).to_be_visible()
    expect(page.get_by_role("button", name="Delete…")).to_have_count(0)
    expect(note).to_be_visible()
    page.screenshot(path=str(OUTPUT / "detail-read-only.png"), full_page=True)
    page.get_by_role("link", name="All images").press("Enter")
    expect(page.locator("#gallery .card__link")).to_be_focused()
    assert thumbnails == [] and errors == []
    page.context.close()


def test_a_read_write_key_uploads_and_deletes_then_loses_its_scopes(browser: Any, keyed_service: Service,
                                                                   tmp_path: Path) -> None:
    from playwright.sync_api import expect

    jpeg, png = sample_files(tmp_path)
    page, errors, url = open_page(browser, keyed_service)
    enter_key(page, WRITER)
    note = page.locator("#scope-note")
    expect(page.locator("#gallery-empty")).to_be_visible()
    expect(note).to_be_hidden()

    pick_files(page, [jpeg])
    drop_file(page, png, "image/png")
    expect(page.locator('.upload[data-status="success"]')).to_have_count(2)
    wait_for_thumbnails(page, 2)
    assert_signed_tiles(page, url)
    page.locator("#gallery").get_by_role("link", name="harbour.png").click()
    png_id = page.locator("article.detail").get_attribute("data-id")
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("dialog", name="Delete this image?").get_by_role("button", name="Delete", exact=True).click()
    expect(page).to_have_url(url + "#/")
    expect(page.locator("#gallery .card")).to_have_count(1)
    assert keyed_service.get(f"/images/{png_id}", headers={"X-API-Key": WRITER}).status == 404

    # The operator makes the key read-only while the page is open, in two tabs: what each still offers is
    # refused (403), said in words, and taken away.
    other = new_page(page.context)  # a second tab, on the image's page
    other.goto(f"{url}#/images/{image_ids(page)[0]}")
    expect(other.get_by_role("button", name="Delete…")).to_be_visible()
    lines = f"viewer acme read {READER}\n"
    restart_with_keys(keyed_service, f"{lines}editor acme read {WRITER}\n")
    drop_file(page, png, "image/png")
    refused = page.locator('.upload[data-status="failure"]')
    expect(refused).to_contain_text("Not uploaded: this API key does not hold the 'write' scope")
    expect(page.locator("#dropzone")).to_be_hidden()
    expect(refused).to_be_visible()  # the upload's row stays, to say what happened
    expect(note).to_contain_text("“editor” is read-only")
    other.get_by_role("button", name="Delete…").click()
    other.get_by_role("dialog", name="Delete this image?").get_by_role("button", name="Delete", exact=True).click()
    expect(other.get_by_role("alert")).to_have_text(
        "The image could not be deleted: this API key does not hold the 'delete' scope, which this request needs.")
    expect(other.get_by_role("button", name="Delete…")).to_have_count(0)
    expect(other.locator("#main")).to_be_focused()  # not lost with the button it was on
    expect(other.locator("#scope-note")).to_contain_text("“editor” is read-only")
    expect(other.get_by_role("heading", name="lighthouse.jpg")).to_be_visible()  # the image's page still works
    other.screenshot(path=str(OUTPUT / "detail-scope-taken.png"), full_page=True)
    other.close()

    # Then revokes it: the next request is refused (401), and the page asks for a key again.
    restart_with_keys(keyed_service, lines)
    page.get_by_role("button", name="Refresh").click()
    enter_key(page, READER, refused=True)
    wait_for_thumbnails(page, 1)
    expect(note).to_contain_text("“viewer” is read-only")
    assert page.evaluate("() => localStorage.getItem('apercu.apiKey')") == READER
    assert errors == []
    page.context.close()
