"""Renditions (issue 18): the URL grammar and its canonical form, the geometry, the renderer's pixels, the
focal point and URL signatures. Pure functions on small generated images: no service is involved."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import random
from collections.abc import Callable

import images
import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageFilter, ImageStat

from apercu import url_signing
from apercu.imaging.analyse import LIMITS, Options, ProcessingFailed, analyse, render_rendition
from apercu.imaging.renditions import geometry
from apercu.imaging.renditions.focal import focal_point
from apercu.imaging.renditions.options import (
    ANCHORS,
    BadOption,
    OutputTooLarge,
    Rendition,
    negotiate,
    parse,
    parse_presets,
    split_path,
)
from apercu.imaging.renditions.render import to_vips

MAX_OUTPUT = 100_000_000
RED, GREEN, BLUE, YELLOW, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)
PRESETS = parse_presets("card=w:400/h:300/fit:cover/g:focal; hero=w:1600/q:70")


def opts(path: str, ext: str = "jpg", **kwargs: object) -> Rendition:
    return parse([s for s in path.split("/") if s], ext, **kwargs)  # type: ignore[arg-type]


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def rendered(data: bytes, path: str, ext: str = "png", **kwargs: object) -> Image.Image:
    out = render_rendition(data, opts(path, ext), Options(), max_output_pixels=MAX_OUTPUT, **kwargs)  # type: ignore[arg-type]
    img = decode(out.data)
    assert (out.width, out.height) == img.size
    assert out.media_type == Image.MIME[img.format or ""]
    return img


def mean(img: Image.Image, box: tuple[int, int, int, int] | None = None) -> tuple[float, ...]:
    part = img.convert("RGB").crop(box) if box else img.convert("RGB")
    return tuple(ImageStat.Stat(part).mean)


def near(actual: tuple[float, ...], expected: tuple[int, ...], tolerance: float = 12) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def quadrants(size: tuple[int, int] = (200, 100)) -> Image.Image:
    """Red, green / blue, yellow: each corner's colour tells where it went."""
    width, height = size
    img = Image.new("RGB", size, RED)
    draw = ImageDraw.Draw(img)
    draw.rectangle((width // 2, 0, width, height // 2), fill=GREEN)
    draw.rectangle((0, height // 2, width // 2, height), fill=BLUE)
    draw.rectangle((width // 2, height // 2, width, height), fill=YELLOW)
    return img


def corner_colours(img: Image.Image) -> list[tuple[float, ...]]:
    """The mean colour of the middle of each quadrant: top-left, top-right, bottom-left, bottom-right."""
    w, h = img.size
    boxes = [(0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2)]
    return [mean(img, (x + w // 8, y + h // 8, x + w * 3 // 8, y + h * 3 // 8)) for x, y in boxes]


def assert_corners(img: Image.Image, expected: list[tuple[int, int, int]]) -> None:
    found = corner_colours(img)
    assert all(near(f, e) for f, e in zip(found, expected, strict=True)), (found, expected)


def bands(across: bool) -> bytes:
    """Red, green, blue thirds, side by side (across) or stacked: which third `cover` keeps."""
    size = (300, 100) if across else (100, 300)
    img = Image.new("RGB", size, RED)
    draw = ImageDraw.Draw(img)
    for i, colour in ((1, GREEN), (2, BLUE)):
        draw.rectangle((i * 100, 0, i * 100 + 99, 99) if across else (0, i * 100, 99, i * 100 + 99), fill=colour)
    return images.encode(img, "PNG")


# --- the grammar ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("w:400", {"w": 400}),
    ("h:300", {"h": 300}),
    ("w:400/h:300/dpr:2", {"w": 800, "h": 600}),
    ("w:333/dpr:1.5", {"w": 500}),
    ("fit:cover/w:1/h:1", {"fit": "cover"}),
    ("fit:pad", {"fit": "pad"}),
    ("fit:stretch", {"fit": "stretch"}),
    ("g:ne", {"gravity": "ne"}),
    ("g:smart", {"gravity": "smart"}),
    ("g:focal", {"gravity": "focal"}),
    ("g:fp:0.25:1", {"gravity": "fp", "focus": (0.25, 1.0)}),
    ("crop:10:20:30:40", {"crop": (10, 20, 30, 40)}),
    ("rot:270", {"rot": 270}),
    ("q:1", {"q": 1}),
    ("bg:FF8000", {"bg": "ff8000", "background": (255, 128, 0)}),
    ("blur:1.5", {"blur": 1.5}),
    ("sharpen:0.5", {"sharpen": 0.5}),
    ("exp:1893456000", {"exp": 1893456000}),
    ("p:card", {"w": 400, "h": 300, "fit": "cover", "gravity": "focal"}),
    ("p:card/dpr:2/g:smart", {"w": 800, "h": 600, "fit": "cover", "gravity": "smart"}),  # extends, overrides
    ("p:hero/q:90", {"w": 1600, "q": 90}),
    ("w:400/w:400", {"w": 400}),  # repeated, not conflicting
])
def test_every_option_is_parsed(path: str, expected: dict[str, object]) -> None:
    rendition = opts(path, presets=PRESETS)
    for name, value in expected.items():
        assert getattr(rendition, name) == value, name


@pytest.mark.parametrize(("path", "option"), [
    ("size:400", "size"), ("w", "w"), ("w:0", "w"), ("w:16384", "w"), ("w:4.5", "w"), ("h:-1", "h"),
    ("w:abc", "w"), ("dpr:0.5", "dpr"), ("dpr:4.01", "dpr"), ("dpr:1.23456", "dpr"), ("w:5000/dpr:4", "dpr"),
    ("fit:fill", "fit"), ("g:center", "g"), ("g:fp:1.5:0", "g"), ("g:fp:0.5", "g"), ("g:fp:a:b", "g"),
    ("crop:1:2:3", "crop"), ("crop:0:0:0:10", "crop"), ("crop:-1:0:10:10", "crop"), ("rot:45", "rot"),
    ("rot:360", "rot"), ("q:0", "q"), ("q:101", "q"), ("bg:fff", "bg"), ("bg:gggggg", "bg"), ("blur:0", "blur"),
    ("blur:101", "blur"), ("sharpen:11", "sharpen"), ("exp:-1", "exp"), ("exp:soon", "exp"), ("p:nope", "p"),
    ("p:Bad!", "p"), ("w:400/w:500", "w"), ("p:card/p:hero", "p"), ("", ""),
])
def test_bad_options_are_refused_by_name(path: str, option: str) -> None:
    with pytest.raises(BadOption) as refused:
        parse(path.split("/"), "jpg", PRESETS)
    assert refused.value.option == option
    assert str(refused.value).startswith(f"{option}: " if option else "unknown option")


VALID = ["w:400", "h:300", "dpr:2", "fit:cover", "fit:pad", "g:n", "g:fp:0.5:0.25", "crop:1:2:30:40", "rot:90",
         "q:70", "q:80", "bg:000000", "blur:1.5", "sharpen:1", "exp:1893456000", "p:card", "p:hero"]


def test_any_segments_parse_or_are_refused_as_bad_options() -> None:
    """Arbitrary option text (pieces of the grammar, digits of other scripts, separators) never raises
    anything but BadOption; what parses has a canonical form that parses to itself."""
    rnd = random.Random(18)
    pieces = ["w", "h", "dpr", "g", "fp", "crop", "q", "bg", "p", "card", "exp", "blur", ":", ":", "0", "1", "-1",
              ".", "5", "99999", "1e3", "٣", "ffffff", " ", "\x00", "é", "nan", "inf"]
    parsed = 0
    for _ in range(3000):
        segments = [rnd.choice(VALID) if rnd.random() < 0.6 else "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 5)))
                    for _ in range(rnd.randint(0, 4))]
        try:
            rendition = parse(segments, rnd.choice(["jpg", "auto", "webp", "x"]), PRESETS, max_pixels=10**8)
        except BadOption:
            continue
        parsed += 1
        again = parse(split_path(rendition.path("id"))[0], rendition.ext)
        assert again.path("id") == rendition.path("id"), segments
    assert parsed > 300


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(BadOption) as refused:
        opts("w:10", "gif")
    assert refused.value.option == "ext"


def test_a_box_over_the_pixel_limit_is_refused_before_any_image() -> None:
    assert opts("w:1000/h:1000", max_pixels=1_000_000).w == 1000
    with pytest.raises(OutputTooLarge) as refused:
        opts("w:1000/h:1000/dpr:1.01", max_pixels=1_000_000)
    assert refused.value.option == "w" and "1010x1010" in str(refused.value)


def test_one_side_over_the_pixel_limit_is_refused_by_the_plan_with_the_image_size() -> None:
    wide = opts("w:4000")
    assert geometry.plan(wide, 8000, 500, max_pixels=2_000_000).output == (4000, 250)
    with pytest.raises(OutputTooLarge):
        geometry.plan(wide, 8000, 1100, max_pixels=2_000_000)


@pytest.mark.parametrize("text", [
    "card=w:0", "two words=w:1", "card=p:hero", "card=exp:100", "card=w:1;card=w:2", "card=w:1/w:2", "=w:1",
])
def test_bad_presets_are_refused(text: str) -> None:
    with pytest.raises(BadOption):
        parse_presets(text)


@pytest.mark.parametrize(("a", "b"), [
    ("w:400/h:300/fit:cover", "fit:cover/h:300/w:400"),
    ("w:400/fit:inside/g:centre/q:80/bg:ffffff", "w:400"),
    ("w:400/dpr:2", "w:800"),
    ("p:card", "w:400/h:300/fit:cover/g:focal"),
    ("w:400/exp:1893456000", "w:400"),
    ("w:400/fit:cover/g:n", "w:400"),  # one side: every fit is inside, gravity unused
    ("w:400/h:300/fit:pad/g:smart", "w:400/h:300/fit:pad"),  # gravity is for cover only
    ("blur:1.50/g:fp:0.5:0.50/w:1/h:1/fit:cover", "blur:1.5/g:fp:0.5:0.5/w:1/h:1/fit:cover"),
])
def test_equivalent_urls_name_one_rendition(a: str, b: str) -> None:
    assert opts(a, presets=PRESETS).key() == opts(b, presets=PRESETS).key()


@pytest.mark.parametrize(("a", "b", "ext"), [
    ("w:400", "w:401", "jpg"), ("w:400/h:300/fit:cover", "w:400/h:300/fit:pad", "jpg"), ("q:80", "q:81", "jpg"),
    ("bg:000000", "", "jpg"), ("w:400/h:300/fit:cover/g:n", "w:400/h:300/fit:cover", "jpg"), ("rot:90", "", "jpg"),
])
def test_different_urls_name_different_renditions(a: str, b: str, ext: str) -> None:
    assert opts(a, ext).key() != opts(b, ext).key()


def test_the_canonical_form_depends_on_the_format() -> None:
    assert opts("q:75", "webp").key() == "plain.webp"  # webp's default quality
    assert opts("q:75", "jpg").key() == "q:75.jpg"
    assert opts("q:10/bg:000000", "png").key() == "plain.png"  # lossless, and its alpha is kept
    assert opts("bg:000000/w:2/h:2/fit:pad", "png").key() == "bg:000000/fit:pad/h:2/w:2.png"
    auto = opts("w:10/q:65/bg:000000", "auto")
    with pytest.raises(ValueError):
        auto.key()
    assert auto.path_options() == "bg:000000/q:65/w:10"  # what they do depends on the format
    assert auto.resolved("avif").key() == "w:10.avif" and auto.resolved("jpg").key() == "bg:000000/q:65/w:10.jpg"
    assert hash(auto) == hash(opts("w:10/bg:000000/q:65", "auto"))  # a frozen value: usable as a key


def test_the_canonical_path_is_what_a_url_signs() -> None:
    card = opts("p:card/exp:1893456000/dpr:2", "auto", presets=PRESETS)
    assert card.path("0a1b") == "/fit:cover/g:focal/h:600/w:800/exp:1893456000/0a1b.auto"
    segments, image_id, ext = split_path(card.path("0a1b"))
    assert parse(segments, ext) == card and image_id == "0a1b"
    assert opts("", "png").path("0a1b") == "/0a1b.png"


def test_expiry() -> None:
    assert opts("exp:100").expired(100.5) and not opts("exp:100").expired(100)
    assert not opts("w:1").expired(10**12)


def test_split_path() -> None:
    assert split_path("/w:400/h:300/0a1b.avif") == (["w:400", "h:300"], "0a1b", "avif")
    assert split_path("/0a1b.jpg") == ([], "0a1b", "jpg")
    with pytest.raises(BadOption):
        split_path("/w:400/0a1b")


@pytest.mark.parametrize(("accept", "ext"), [
    ("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "avif"),  # Chromium
    ("image/webp,*/*", "webp"),
    ("image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", "jpg"),
    ("*/*", "jpg"),
    ("image/avif;q=0, image/webp;q=0.5", "webp"),
    ("image/avif; Q = 0.000, image/webp;q=0", "jpg"),
    ("image/avif;q=0.001", "avif"),
    ("IMAGE/AVIF", "avif"),
    ("", "jpg"),
    (None, "jpg"),
])
def test_auto_is_negotiated_from_accept(accept: str | None, ext: str) -> None:
    assert negotiate(accept) == ext


# --- geometry and pixels ---------------------------------------------------------------------------------------

# On a 400x200 image: (options, the size the plan gives, that of the rendered output).
FITS = [
    ("w:100", (100, 50)),
    ("w:100/h:100", (100, 50)),
    ("h:100", (200, 100)),
    ("w:800", (400, 200)),  # never enlarged
    ("w:100/h:100/fit:cover", (100, 100)),
    ("w:800/h:800/fit:cover", (200, 200)),  # the box's shape at the image's scale
    ("w:100/h:100/fit:pad", (100, 100)),
    ("w:50/h:80/fit:stretch", (50, 80)),
    ("w:600/h:300/fit:stretch", (600, 300)),
    ("crop:0:0:100:50/rot:90", (50, 100)),
    ("crop:350:150:100:100", (50, 50)),  # stops at the edges
    ("crop:0:0:200:100/w:50", (50, 25)),
    ("w:100/dpr:2", (200, 100)),
]


@pytest.mark.parametrize(("path", "size"), FITS)
def test_every_fit_gives_its_size(path: str, size: tuple[int, int]) -> None:
    assert geometry.plan(opts(path), 400, 200).output == size
    assert rendered(images.encode(quadrants((400, 200)), "PNG"), path).size == size


def random_options(rnd: random.Random, width: int, height: int) -> list[str]:
    segments = [f"{side}:{rnd.randint(1, 300)}" for side in ("w", "h") if rnd.random() < 0.8]
    segments += [f"fit:{rnd.choice(['inside', 'cover', 'pad', 'stretch'])}",
                 f"g:{rnd.choice(['centre', 'smart', 'focal', 'fp:0.3:0.8', 'se'])}"]
    if rnd.random() < 0.4:
        segments.append(f"crop:{rnd.randrange(width)}:{rnd.randrange(height)}:{rnd.randint(1, 200)}:{rnd.randint(1, 200)}")
    if rnd.random() < 0.3:
        segments.append(f"rot:{rnd.choice([90, 180, 270])}")
    if rnd.random() < 0.3:
        segments.append(f"dpr:{rnd.choice(['1.5', '2', '2.75'])}")
    return segments


def test_the_renderer_follows_the_plan_for_any_options() -> None:
    """Random sizes, crops, turns, fits and gravities on upright and EXIF-turned JPEGs and PNGs: the output is
    always the size the plan (the web's check) said, whatever the decoder's shrink-on-load did."""
    rnd = random.Random(18)
    for _ in range(60):
        width, height, orientation = rnd.randint(1, 200), rnd.randint(1, 200), rnd.choice([None, 6])
        data = images.encode(images.gradient((width, height)), "JPEG", exif=images.exif_block(orientation=orientation))
        if orientation == 6:
            width, height = height, width
        segments = random_options(rnd, width, height)
        plan = geometry.plan(opts("/".join(segments), "png"), width, height)
        out = rendered(data, "/".join(segments), focal_point={"x": 0.9, "y": 0.1})
        assert out.size == plan.output, (width, height, segments)


def test_a_crop_outside_the_image_is_refused() -> None:
    with pytest.raises(BadOption) as refused:
        geometry.plan(opts("crop:400:0:10:10"), 400, 200)
    assert refused.value.option == "crop"
    with pytest.raises(ProcessingFailed, match="outside the image"):
        rendered(images.encode(quadrants(), "PNG"), "crop:400:0:10:10")


def test_crop_keeps_its_region() -> None:
    data = images.encode(quadrants((200, 100)), "PNG")
    assert near(mean(rendered(data, "crop:100:0:100:50")), GREEN, 1)
    # Shrunk fivefold, the crop's edge row mixes in a little of the red above it (see render.CROP_MARGIN).
    assert near(mean(rendered(data, "crop:0:50:100:50/w:20")), BLUE, 3)


@pytest.mark.parametrize(("rot", "expected"), [
    (90, [BLUE, RED, YELLOW, GREEN]), (180, [YELLOW, BLUE, GREEN, RED]), (270, [GREEN, YELLOW, RED, BLUE]),
])
def test_rot_turns_clockwise(rot: int, expected: list[tuple[int, int, int]]) -> None:
    out = rendered(images.encode(quadrants(), "PNG"), f"rot:{rot}")
    assert out.size == ((100, 200) if rot != 180 else (200, 100))
    assert_corners(out, expected)


INVERSE = {Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_made_upright_before_the_crop(orientation: int) -> None:
    from apercu.imaging.thumbnail import TRANSPOSE

    upright = quadrants((200, 100))
    pose = TRANSPOSE.get(orientation)
    stored = upright if pose is None else upright.transpose(INVERSE.get(pose, pose))
    data = images.encode(stored, "JPEG", quality=95, exif=images.exif_block(orientation=orientation))
    assert_corners(rendered(data, "w:100"), [RED, GREEN, BLUE, YELLOW])
    assert near(mean(rendered(data, "crop:100:50:100:50")), YELLOW)


@pytest.mark.parametrize("gravity", list(ANCHORS))
@pytest.mark.parametrize("across", [True, False])
def test_cover_keeps_the_side_its_gravity_names(gravity: str, across: bool) -> None:
    anchor = ANCHORS[gravity][0 if across else 1]
    expected = {0.0: RED, 0.5: GREEN, 1.0: BLUE}[anchor]
    out = rendered(bands(across), f"w:50/h:50/fit:cover/g:{gravity}")
    assert out.size == (50, 50)
    assert near(mean(out), expected, 2), (gravity, mean(out))


@pytest.mark.parametrize(("gravity", "focal", "expected"), [
    ("g:fp:0.9:0.5", None, BLUE),
    ("g:fp:0.1:0.9", None, RED),
    ("g:focal", {"x": 0.85, "y": 0.2}, BLUE),
    ("g:focal", {"x": 0.5, "y": 0.2}, GREEN),
    ("g:focal", None, GREEN),  # no stored focal point: the centre
])
def test_cover_centres_on_a_focal_point(gravity: str, focal: dict[str, float] | None, expected: tuple[int, ...]) -> None:
    out = rendered(bands(True), f"w:50/h:50/fit:cover/{gravity}", focal_point=focal)
    assert near(mean(out), expected, 2)


def test_a_focal_point_follows_the_crop_and_the_rotation() -> None:
    # The blue third is the right of the original; cropped to the middle and right thirds and turned a quarter
    # clockwise, it is at the bottom, where a focal point on it must still lead.
    out = rendered(bands(True), "crop:100:0:200:100/rot:90/w:50/h:50/fit:cover/g:focal", focal_point={"x": 0.9, "y": 0.5})
    assert near(mean(out), BLUE, 2)


def busy_corner() -> Image.Image:
    """Flat grey, with a patch of saturated skin tone in the right third: what attention looks for."""
    img = Image.new("RGB", (300, 100), (128, 128, 128))
    ImageDraw.Draw(img).ellipse((220, 30, 260, 70), fill=(230, 160, 120))
    return img


def test_smart_gravity_keeps_what_draws_attention() -> None:
    out = rendered(images.encode(busy_corner(), "PNG"), "w:100/h:100/fit:cover/g:smart")
    assert out.size == (100, 100)
    assert mean(out)[0] > 135  # the patch is in


def test_pad_centres_the_image_on_the_background() -> None:
    out = rendered(images.encode(Image.new("RGB", (200, 100), RED), "PNG"), "w:100/h:100/fit:pad/bg:00ff00")
    assert near(mean(out, (0, 0, 100, 20)), GREEN, 1) and near(mean(out, (0, 80, 100, 100)), GREEN, 1)
    assert near(mean(out, (0, 30, 100, 70)), RED, 1)


def alpha_half() -> bytes:
    """Transparent left half (its hidden colour blue), opaque red right half."""
    img = Image.new("RGBA", (100, 50), (0, 0, 255, 0))
    ImageDraw.Draw(img).rectangle((50, 0, 99, 49), fill=(255, 0, 0, 255))
    return images.encode(img, "PNG")


@pytest.mark.parametrize("ext", ["png", "webp", "avif"])
def test_alpha_is_kept_where_the_format_has_it(ext: str) -> None:
    out = rendered(alpha_half(), "w:40", ext)
    assert out.mode in ("RGBA", "LA")
    alpha = out.getchannel("A")
    assert ImageStat.Stat(alpha.crop((0, 0, 15, 20))).mean[0] < 10
    assert ImageStat.Stat(alpha.crop((25, 0, 40, 20))).mean[0] > 245
    assert near(mean(out, (25, 0, 40, 20)), RED, 16)


@pytest.mark.parametrize(("bg", "colour"), [("", WHITE), ("/bg:00ff00", GREEN)])
def test_jpeg_flattens_alpha_on_the_background(bg: str, colour: tuple[int, int, int]) -> None:
    out = rendered(alpha_half(), f"w:40{bg}", "jpg")
    assert out.mode == "RGB"
    assert near(mean(out, (0, 0, 15, 20)), colour) and near(mean(out, (25, 0, 40, 20)), RED)


@pytest.mark.parametrize("ext", ["jpg", "png", "webp", "avif"])
def test_outputs_decode_and_carry_no_metadata(ext: str) -> None:
    data = images.encode(images.gradient((64, 48)), "JPEG", quality=90, exif=images.exif_block(orientation=1, gps=True),
                         icc_profile=images.adobe_rgb_profile(), xmp=images.XMP_PACKET, comment=b"secret place")
    out = rendered(data, "w:32", ext)
    assert out.format == {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}[ext]
    assert not out.getexif() and not out.info.get("icc_profile") and not out.info.get("xmp")
    raw = render_rendition(data, opts("w:32", ext), Options(), max_output_pixels=MAX_OUTPUT).data
    assert b"Apercu Test Camera" not in raw and b"secret place" not in raw and b"fuzz" not in raw


@pytest.mark.parametrize(("fmt", "size"), [("PNG", (64, 48)), ("JPEG", (400, 300)), ("JPEG", (24, 16))])
def test_an_embedded_profile_is_converted_to_srgb(fmt: str, size: tuple[int, int]) -> None:
    """libvips converts a PNG while it shrinks it; a JPEG that Pillow decodes is converted after the resize (and
    one too small to be resized, as it is)."""
    profile = images.adobe_rgb_profile()
    source = Image.new("RGB", size, (60, 160, 40))
    data = images.encode(source, fmt, icc_profile=profile, **({"quality": 95} if fmt == "JPEG" else {}))
    expected = ImageCms.profileToProfile(source, io.BytesIO(profile), ImageCms.createProfile("sRGB")).getpixel((0, 0))
    assert expected != (60, 160, 40)
    assert near(mean(rendered(data, "w:32")), expected, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("animation", [images.gif_animated, images.webp_animated, images.apng])
def test_an_animation_renders_its_first_frame(animation: Callable[[], bytes]) -> None:
    out = rendered(animation(), "w:160")
    w, h = out.size
    assert min(mean(out, (1, 1, w // 5, h // 5))) > 235  # the first frame's white marker, top-left
    assert max(mean(out, (w - w // 5, h - h // 5, w - 1, h - 1))) < 235  # (the second has it bottom-right)


@pytest.mark.parametrize("name", ["PNG16", "TIFF16", "HEIF", "BMP", "TGA", "PNG-palette"])
def test_other_kinds_of_original_render(name: str) -> None:
    out = rendered(images.FACTORIES[name](), "w:64/h:64/fit:cover", "webp")
    assert out.size == (64, 64)


def test_cmyk_is_rendered_in_rgb() -> None:
    data = images.encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG", quality=95)  # red ink
    out = rendered(data, "w:32", "jpg")
    r, g, b = mean(out)
    assert out.mode == "RGB" and r > 180 and g < 80 and b < 80


def edges(img: Image.Image) -> float:
    return ImageStat.Stat(img.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0]


def test_blur_softens_and_sharpen_sharpens() -> None:
    stripes = Image.new("RGB", (200, 120), (96, 96, 96))
    for x in range(0, 200, 16):
        ImageDraw.Draw(stripes).rectangle((x, 0, x + 7, 119), fill=(160, 160, 160))
    data = images.encode(stripes, "PNG")
    plain, blurred, sharpened = (rendered(data, f"w:100{extra}") for extra in ("", "/blur:3", "/sharpen:1.5"))
    assert edges(blurred) < edges(plain) * 0.8
    assert edges(sharpened) > edges(plain) * 1.05
    assert plain.size == blurred.size == sharpened.size


def test_quality_sets_the_encoders_quality() -> None:
    data = images.jpeg((200, 120))
    for ext in ("jpg", "webp", "avif"):
        low, high = (render_rendition(data, opts(f"q:{q}", ext), Options(), max_output_pixels=MAX_OUTPUT).data for q in (10, 95))
        assert len(low) < len(high), ext


def test_plain_options_give_the_image_upright_at_its_size() -> None:
    source = images.gradient((120, 80))
    out = rendered(images.encode(source, "PNG"), "")
    assert out.size == (120, 80) and ImageChops.difference(out.convert("RGB"), source).getbbox() is None


@pytest.mark.parametrize("data", [b"not an image", images.jpeg((64, 48))[:300]])
def test_a_broken_file_fails_with_processing_failed(data: bytes) -> None:
    with pytest.raises(ProcessingFailed):
        render_rendition(data, opts("w:10"), Options(), max_output_pixels=MAX_OUTPUT)


def test_an_output_over_the_limit_fails_as_a_limit() -> None:
    data = images.encode(images.gradient((400, 100)), "PNG")
    with pytest.raises(ProcessingFailed) as failed:
        render_rendition(data, opts("w:400/h:400/fit:stretch"), Options(), max_output_pixels=10_000)
    assert failed.value.reason == LIMITS


def test_a_source_over_the_limit_fails_as_a_limit() -> None:
    with pytest.raises(ProcessingFailed) as failed:
        render_rendition(images.jpeg((320, 200)), opts("w:10"), Options(max_pixels=1000), max_output_pixels=MAX_OUTPUT)
    assert failed.value.reason == LIMITS


def test_auto_must_be_resolved_before_rendering() -> None:
    with pytest.raises(ProcessingFailed):
        render_rendition(images.jpeg((32, 20)), opts("w:10", "auto"), Options(), max_output_pixels=MAX_OUTPUT)


# --- focal point -------------------------------------------------------------------------------------------------


def test_the_focal_point_is_where_attention_goes() -> None:
    point = focal_point(busy_corner())
    assert 0.7 < point["x"] < 0.9 and 0.35 < point["y"] < 0.65
    turned = focal_point(busy_corner().transpose(Image.Transpose.ROTATE_90))  # the patch is now at the top
    assert 0.35 < turned["x"] < 0.65 and turned["y"] < 0.3


def subject_top_left() -> Image.Image:
    """A flat background with a small, busy, high-contrast patch in its top-left quadrant: the obvious subject."""
    img = Image.new("RGB", (400, 300), (110, 120, 130))
    patch = Image.frombytes("RGB", (60, 60), random.Random(18).randbytes(60 * 60 * 3)).resize((90, 90))
    img.paste(patch, (40, 30))
    return img


@pytest.mark.parametrize("orientation", [None, 6])
def test_processing_records_the_focal_point_of_the_upright_image(orientation: int | None) -> None:
    """Stored turned (orientation 6: shown turned a quarter clockwise), the subject is still top left as shown."""
    upright = subject_top_left()
    stored = upright if orientation is None else upright.transpose(Image.Transpose.ROTATE_90)
    exif = images.exif_block(orientation=orientation, camera=False)
    point = analyse(images.encode(stored, "JPEG", quality=90, exif=exif)).metadata["focal_point"]
    assert 0.1 < point["x"] < 0.4 and 0.1 < point["y"] < 0.45, point


def libvips_attention(frame: Image.Image) -> dict[str, float]:
    """What libvips' own smartcrop attention finds (the point `g:smart` crops on), as the same fractions."""
    image = to_vips(frame)
    _, found = image.smartcrop(image.width // 2, image.height // 2, interesting="attention",
                               attention_x=True, attention_y=True)
    return {"x": (found["attention_x"] + 0.5) / image.width, "y": (found["attention_y"] + 0.5) / image.height}


def disc(size: tuple[int, int], centre: tuple[int, int], colour: tuple[int, ...], mode: str = "RGB") -> Image.Image:
    """A grey frame (half transparent in RGBA) with one disc of `colour`: a subject that cannot be missed."""
    img = Image.new(mode, size, (128, 128, 128, 128)[: len(mode)])
    x, y = centre
    ImageDraw.Draw(img).ellipse((x - 20, y - 20, x + 20, y + 20), fill=colour)
    return img


@pytest.mark.parametrize(("size", "centre", "colour", "mode"), [
    ((256, 171), (40, 40), (255, 0, 0, 255), "RGB"),  # saturated red, top left
    ((256, 171), (200, 120), (255, 0, 0, 255), "RGB"),  # bottom right
    ((256, 171), (100, 60), (255, 0, 255, 255), "RGB"),  # magenta
    ((171, 256), (60, 210), (230, 160, 120, 255), "RGB"),  # skin tone, portrait frame
    ((200, 200), (150, 50), (220, 150, 110, 255), "RGBA"),  # skin tone, opaque, on a half-transparent grey
    ((256, 100), (230, 50), (255, 255, 255, 255), "L"),  # white on grey: edges only
])
def test_the_focal_point_is_libvips_attention_point(size: tuple[int, int], centre: tuple[int, int],
                                                    colour: tuple[int, ...], mode: str) -> None:
    """The numpy reimplementation lands where libvips' smartcrop does (to one cell of its 32 x 32 grid), and on
    the subject."""
    frame = disc(size, centre, colour[: len(mode)] if mode != "L" else 255, mode)
    ours, theirs = focal_point(frame), libvips_attention(frame)
    assert abs(ours["x"] - theirs["x"]) <= 1 / 32 + 0.001 and abs(ours["y"] - theirs["y"]) <= 1 / 32 + 0.001
    assert abs(ours["x"] - centre[0] / size[0]) < 0.15 and abs(ours["y"] - centre[1] / size[1]) < 0.15, ours


def test_the_focal_point_agrees_with_libvips_on_a_textured_photo_like_frame() -> None:
    """Noise everywhere and a skin-toned patch: every term of the score (edges, skin, a) is at play."""
    frame = Image.effect_noise((256, 192), 40).convert("RGB")
    frame.paste((225, 155, 115), (150, 30, 210, 90))
    ours, theirs = focal_point(frame), libvips_attention(frame)
    assert abs(ours["x"] - theirs["x"]) <= 1 / 32 + 0.001 and abs(ours["y"] - theirs["y"]) <= 1 / 32 + 0.001


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
def test_the_focal_point_of_any_mode_is_a_pair_of_fractions(mode: str) -> None:
    point = focal_point(images.gradient((64, 40), "RGB").convert(mode))
    assert set(point) == {"x", "y"} and all(0 <= v <= 1 for v in point.values())


# --- signatures ----------------------------------------------------------------------------------------------------

KEY = "k" * 32
PATH = "/w:400/h:300/fit:cover/0a1b2c.avif"


def test_the_signature_is_base64url_hmac_sha256_of_the_path() -> None:
    signature = url_signing.sign(PATH, KEY)
    digest = hmac.new(KEY.encode(), PATH.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=") == digest
    assert len(signature) == 43 and "=" not in signature


def test_verify_accepts_the_signature_and_nothing_else() -> None:
    signature = url_signing.sign(PATH, KEY)
    assert url_signing.verify(signature, PATH, KEY)
    assert not url_signing.verify(signature, PATH.replace("w:400", "w:401"), KEY)  # tampered path
    assert not url_signing.verify(signature, PATH, "j" * 32)  # another key
    assert not url_signing.verify(signature[:-1] + ("A" if signature[-1] != "A" else "B"), PATH, KEY)
    assert not url_signing.verify("", PATH, KEY) and not url_signing.verify("unsafe", PATH, KEY)
    assert not url_signing.verify("é" * 43, PATH, KEY)
    assert not url_signing.verify(signature, PATH.lstrip("/"), KEY)


def test_the_key_has_at_least_32_bytes_of_utf8() -> None:
    with pytest.raises(ValueError):
        url_signing.sign(PATH, "k" * 31)
    with pytest.raises(ValueError):
        url_signing.check_key("é" * 15)  # 30 bytes
    assert url_signing.check_key("é" * 16) == ("é" * 16).encode()
    assert url_signing.verify(url_signing.sign(PATH, "é" * 16), PATH, "é" * 16)
