"""Similar-image search: precision and recall of the perceptual hash on copies made from the corpus, and the
time of `GET /images?similar_to=` over 10,000 rows on SQLite and PostgreSQL.

    .venv/bin/python bench/similarity.py [--sources 120] [--distance 10] [--rows 10000]

The set: every corpus image (../shared/corpus) that the pipeline renders, at least 100 px on its short side and
not nearly flat (grey standard deviation >= 20: test patterns and flat fills are not what a perceptual hash is
for), becomes a source as the service shows it (upright, sRGB, flattened, 1024 px), unless it shows the same
picture as an earlier source (the corpus has one photograph in many formats: judged by its 16x16 greyscale
thumbnail, not by the hash under test). Each source gets five copies - resized to 40 %, recompressed as JPEG
q40, cropped by 5 % on every side, brighter by 15 %, warmer (red +12, blue -12) - and every image (sources and
copies) goes through the real pipeline (`imaging.analyse`, whose `phash` the service stores).

- recall: the share of (source, copy) pairs within `--distance` bits;
- precision: among all pairs within `--distance`, the share that are the same picture (a source and its copy,
  or two copies of one source); any other pair within the distance is a false match;
- query time: the catalog's `similar()` (the query behind the route) over `--rows` rows of random hashes plus
  the set's, median of 20 queries, on SQLite and (when 127.0.0.1:5432 answers) PostgreSQL.
Prints numbers; never fails.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
import uuid
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import corpus_files  # noqa: E402
from PIL import Image, ImageEnhance, ImageStat  # noqa: E402
from service import postgres_schema_url, reachable  # noqa: E402

from apercu.imaging.analyse import Options, ProcessingFailed, analyse, render_variant  # noqa: E402
from apercu.imaging.fingerprints import distance  # noqa: E402
from apercu.storage.catalog import Catalog, utcnow  # noqa: E402
from apercu.storage.catalog.engine import phash_to_int  # noqa: E402
from apercu.storage.catalog.tables import images  # noqa: E402
from apercu.storage.migrations.schema import create_schema  # noqa: E402

COPIES = ("resized", "recompressed", "cropped", "brighter", "warmer")
MIN_SIDE = 100
MIN_CONTRAST = 20.0  # standard deviation of the grey levels


def encoded(img: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def copies(img: Image.Image) -> dict[str, bytes]:
    width, height = img.size
    dx, dy = width // 20, height // 20
    shifted = zip(img.split(), (12, 0, -12), strict=True)
    warm = Image.merge("RGB", [band.point(lambda v, k=k: max(0, min(255, v + k))) for band, k in shifted])
    return {
        "resized": encoded(img.resize((max(1, width * 2 // 5), max(1, height * 2 // 5)), Image.Resampling.LANCZOS)),
        "recompressed": encoded(img, "JPEG", quality=40),
        "cropped": encoded(img.crop((dx, dy, width - dx, height - dy))),
        "brighter": encoded(ImageEnhance.Brightness(img).enhance(1.15)),
        "warmer": encoded(warm),
    }


def phash(data: bytes) -> str | None:
    try:
        return str(analyse(data).metadata["phash"])
    except ProcessingFailed:
        return None


def picture_key(img: Image.Image) -> list[int]:
    return list(img.convert("L").resize((16, 16), Image.Resampling.BOX).get_flattened_data())  # type: ignore[arg-type]


def same_picture(a: list[int], b: list[int]) -> bool:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a) < 8


def source_picture(path: Path) -> Image.Image | None:
    """The picture as the service shows it (upright, sRGB, flattened: its pipeline at 1024 px), or None for what
    is not a photograph-like source: broken, under MIN_SIDE, or nearly flat (test patterns and flat fills give
    degenerate hashes: a perceptual hash is for pictures)."""
    try:
        rendered = render_variant(path.read_bytes(), Options(), 1024, "WEBP")
    except ProcessingFailed:
        return None
    img = Image.open(io.BytesIO(rendered.data)).convert("RGB")
    if min(img.size) < MIN_SIDE or ImageStat.Stat(img.convert("L")).stddev[0] < MIN_CONTRAST:
        return None
    return img


def build(limit: int) -> tuple[dict[str, str], dict[str, str]]:
    """{name: phash} and {name: source} for the sources and their copies, all hashed by the real pipeline."""
    hashes: dict[str, str] = {}
    source_of: dict[str, str] = {}
    keys: list[list[int]] = []
    for path in corpus_files():
        if len(keys) >= limit:
            break
        img = source_picture(path)
        if img is None:
            continue
        key = picture_key(img)
        if any(same_picture(key, k) for k in keys) or (original := phash(encoded(img))) is None:
            continue
        keys.append(key)
        hashes[path.name], source_of[path.name] = original, path.name
        for kind, data in copies(img).items():
            if (h := phash(data)) is not None:
                hashes[f"{path.name}~{kind}"], source_of[f"{path.name}~{kind}"] = h, path.name
    return hashes, source_of


def figures(hashes: dict[str, str], source_of: dict[str, str], within: int) -> None:
    found = {kind: [0, 0] for kind in COPIES}
    for name, h in hashes.items():
        if "~" in name:
            kind = name.split("~")[1]
            found[kind][1] += 1
            found[kind][0] += distance(hashes[source_of[name]], h) <= within
    true_matches = false_matches = 0
    for (a, ha), (b, hb) in combinations(hashes.items(), 2):
        if distance(ha, hb) <= within:
            if source_of[a] == source_of[b]:
                true_matches += 1
            else:
                false_matches += 1
    sources = len(set(source_of.values()))
    print(f"{sources} sources, {len(hashes) - sources} copies, match within {within} bits\n")
    print("| copy | found | recall |\n|---|---|---|")
    for kind, (hit, total) in found.items():
        print(f"| {kind} | {hit}/{total} | {hit / max(1, total):.3f} |")
    hits, total = sum(f[0] for f in found.values()), sum(f[1] for f in found.values())
    print(f"| all | {hits}/{total} | {hits / max(1, total):.3f} |")
    pairs = len(hashes) * (len(hashes) - 1) // 2
    precision = true_matches / max(1, true_matches + false_matches)
    print(f"\nprecision over all {pairs} pairs: {true_matches} true matches, {false_matches} false: {precision:.4f}")


def query_time(url: str, hashes: dict[str, str], rows: int) -> float:
    catalog = Catalog.from_url(url)
    create_schema(catalog.engine)
    rng = random.Random(7)
    values = list(hashes.values()) + [f"{rng.getrandbits(64):016x}" for _ in range(rows - len(hashes))]
    now = utcnow()
    with catalog.engine.begin() as conn:
        conn.execute(images.insert(), [
            {"id": uuid.uuid4().hex, "status": "success", "uploaded_at": now, "enqueued_at": now, "attempts": 0,
             "phash": phash_to_int(h), "image_metadata": {"phash": h}} for h in values
        ])
    probes = rng.sample(values, 20)
    times = []
    for probe in probes:
        started = time.perf_counter()
        catalog.images.similar(probe, 10, 100)
        times.append(time.perf_counter() - started)
    catalog.engine.dispose()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=120)
    parser.add_argument("--distance", type=int, default=10)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    hashes, source_of = build(args.sources)
    figures(hashes, source_of, args.distance)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"\nsimilar_to over {args.rows} rows, median of 20 queries:")
        print(f"- SQLite: {query_time(f'sqlite:///{tmp}/catalog.sqlite', hashes, args.rows):.1f} ms")
    if reachable(5432):
        url, drop = postgres_schema_url()
        try:
            print(f"- PostgreSQL: {query_time(url, hashes, args.rows):.1f} ms")
        finally:
            drop()


if __name__ == "__main__":
    main()
