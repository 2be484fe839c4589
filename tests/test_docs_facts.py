"""The documents against the code: every setting's default and range, the figures and schedules the documents
give, and the README's commands, checked against what the code declares and does.

A figure written by hand drifts the day the code changes (the README once said webhooks were retried for "about
21 min"; the code gave up after about 10.6). So the settings table is generated (`tools/settings_table.py`), and
every other figure that comes from a constant is listed below with the constant it must match. Each is a phrase
that must appear in its document, with the code's value in it: change either, and this test names the line.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import images
import pytest
from apercu_client import _core as client_core

from apercu import supervisor
from apercu.api import backpressure, cors, errors, inputs, observe, outage_breaker, rate_limit, routes, tus
from apercu.api.server import bodies
from apercu.config import EXIFTOOL_TIMEOUT, NOT_SETTINGS, Settings
from apercu.imaging import engines, exiftool, limits, makernotes, thumbnail, xmp
from apercu.inspect import PROGRESS_ABOVE
from apercu.metrics import FAILURE_REASONS
from apercu.outbound.fetch import MAX_REDIRECTS
from apercu.storage.catalog import kept, keys, workers
from apercu.storage.catalog.engine import POSTGRES_TIMEOUTS
from apercu.tasks import app as tasks_app
from apercu.tasks import housekeeping, processing
from apercu.webhooks import transport

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "tools"))
import settings_table  # noqa: E402 - tools/ is not a package: found through the path above

DEFAULTS = Settings()
KIB, MIB = 1024, 1024 * 1024


def text_of(name: str) -> str:
    """A document with its line breaks and indentation folded to single spaces, as a reader sees its sentences."""
    path = ROOT / name if name in ("README.md", "CHANGELOG.md") else DOCS / name
    return re.sub(r"\s+", " ", path.read_text())


def number(value: float) -> str:
    """A number as the documents write it: 5, 31536000, 0.02."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def webhook_waits(settings: Settings) -> list[float]:
    """The waits between a delivery's attempts, by the real `Deliveries` on a real catalog, every attempt answered
    503 (the POST is the one part replaced: it is the network, not our code)."""
    from apercu.storage.catalog import Catalog
    from apercu.storage.migrations.schema import create_schema
    from apercu.webhooks import Deliveries

    catalog = Catalog.from_url("sqlite://")
    try:
        create_schema(catalog.engine)
        catalog.images.add("d" * 32, "doc.jpg", callback_url="http://127.0.0.1:9/hook")
        assert catalog.leases.fail("d" * 32, "a failure, for its webhook", webhook_url="")
        [delivery] = catalog.deliveries.of_image("d" * 32)
        deliveries = Deliveries(settings, catalog, lambda *_: transport.Answer(503, "busy"))
        waits = []
        while (wait := deliveries.attempt(delivery.id)) is not None:
            waits.append(wait)
        return waits
    finally:
        catalog.engine.dispose()


def test_the_settings_table_says_what_config_declares() -> None:
    text = settings_table.DOCUMENT.read_text()
    assert settings_table.generated(text) == text, "run `python tools/settings_table.py` and write the meanings"
    assert settings_table.TODO not in text
    rows = settings_table.current(text)[2]
    assert len(rows) == len(settings_table.meanings_of(rows)) == len(DEFAULTS.to_env())


def test_the_settings_table_shows_defaults_and_ranges_from_the_code() -> None:
    """The generator's reading of config.py, on settings whose default and rule are known: a broken generator
    would pass the test above with a wrong table."""
    rows = {re.search(r"`(APERCU_\w+)`", row).group(1): row  # type: ignore[union-attr]
            for row in settings_table.current(settings_table.DOCUMENT.read_text())[2]}
    assert "| `APERCU_PORT` (`--port`) | `5000` | between 1 and 65535 |" in rows["APERCU_PORT"]
    assert "| `52428800` (50 MiB) | 1 or more |" in rows["APERCU_MAX_UPLOAD_BYTES"]
    assert "| `8` | 1 or more |" in rows["APERCU_WEBHOOK_ATTEMPTS"] and "| `5` | more than 0 |" in rows[
        "APERCU_WEBHOOK_BACKOFF"]
    assert "| `128,256,512` | a comma-separated list, each between 16 and 4096 |" in rows["APERCU_THUMBNAIL_SIZES"]
    assert "one of `keep`, `drop`" in rows["APERCU_GPS"] and "a secret, never shown" in rows["APERCU_URL_KEY"]
    assert "(`--concurrency`) | `0` |" in rows["APERCU_WORKER_CONCURRENCY"]


def test_the_webhook_schedule_is_what_deliveries_do() -> None:
    """The documents give the default schedule: its waits, and about how long the last attempt comes after the
    first. Computed here by running the deliveries, not by repeating the formula."""
    waits = webhook_waits(Settings(webhook_secret="s" * 32, webhook_allowed_hosts="127.0.0.1"))
    assert len(waits) == DEFAULTS.webhook_attempts - 1  # the last attempt ends the delivery: no wait after it
    listed = ", ".join(number(w) for w in waits[:-1]) + f" and {number(waits[-1])} s"
    total = sum(waits)
    for document in ("API.md", "OPERATIONS.md"):
        text = text_of(document)
        assert f"{listed}" in text, document
        assert f"about {total / 60:.1f} min" in text, document
    assert f"8 attempts and a 5 s backoff, the waits between attempts are {listed}" in text_of("API.md")
    assert f"about {total / 60:.1f} min ({number(total)} s) after the first" in text_of("API.md")
    assert f"(at most {number(transport.TOTAL_TIMEOUT)} s each)" in text_of("API.md")


# (document, phrase with {} for the value, the value from the code)
FACTS: list[tuple[str, str, object]] = [
    # the API
    ("README.md", "(at most {} s)", inputs.MAX_WAIT),
    ("API.md", "?wait=N holds the request up to N seconds, max {}", inputs.MAX_WAIT),
    ("API.md", "differs in at most `max_distance` bits (0-64, default {})", inputs.DEFAULT_DISTANCE),
    ("API.md", "`Cache-Control: public, max-age={}` when no key is needed", routes.THUMBNAIL_MAX_AGE),
    ("API.md", "`Cache-Control: public, max-age={}, immutable`", routes.RENDITION_MAX_AGE),
    ("API.md", "progressive above {} px", thumbnail.PROGRESSIVE_ABOVE),
    ("API.md", "keeping {}x the target, then a box reduce to within {}x",
     (engines.DRAFT_MARGIN, engines.REDUCING_GAP)),
    ("API.md", "A JPEG whose longest side is at most {} px", DEFAULTS.thumbnail_size),
    ("README.md", "whose longest side is at most {} px", DEFAULTS.thumbnail_size),
    ("API.md", "Encoded at quality {}", DEFAULTS.thumbnail_quality),
    ("API.md", "(default {})", ", ".join(map(str, DEFAULTS.thumbnail_sizes))),
    ("OPERATIONS.md", "(PNG text and ICC chunks {} MiB each and {} MiB in all, XMP {} MiB and {} levels deep)",
     (limits.MAX_TEXT_CHUNK // MIB, limits.MAX_TEXT_TOTAL // MIB, xmp.MAX_PACKET // MIB, xmp.MAX_DEPTH)),
    ("API.md", "a value over {} KiB is kept as", makernotes.MAX_VALUE // KIB),
    ("API.md", "keeps it busy past {} s (at most half of `APERCU_TASK_TIME_LIMIT`)", EXIFTOOL_TIMEOUT),
    ("API.md", "or makes it print more than {} KiB", exiftool.MAX_OUTPUT // KIB),
    ("API.md", "at most {} redirects (each checked again)", MAX_REDIRECTS),
    ("API.md", "connecting times out after {} s, each read of the answer after {} s and the whole attempt after {} s, "
     "and at most {} KiB", (transport.CONNECT_TIMEOUT, transport.READ_TIMEOUT, transport.TOTAL_TIMEOUT,
                            transport.MAX_ANSWER // KIB)),
    ("API.md", "exposed headers {}.", ", ".join(f"`{name}`" for name in cors.EXPOSED_HEADERS)),
    ("API.md", "(methods {}; headers {})", (", ".join(cors.METHODS), ", ".join(cors.REQUEST_HEADERS))),
    ("API.md", "a browser may reuse the answer for {} s", cors.PREFLIGHT_MAX_AGE),
    ("API.md", "checks the catalog's keys for a change every {} seconds", keys.RELOAD_EVERY),
    ("API.md", "(logged once per outage, retried every {} s)", rate_limit.RETRY_AFTER_FAILURE),
    ("API.md", "(PostgreSQL {} s, the broker {} s, S3 {} s)",
     (POSTGRES_TIMEOUTS["connect_timeout"], tasks_app.BROKER_CONNECT_TIMEOUT, "S3")),
    ("OPERATIONS.md", "kept in memory up to {} KiB", bodies.SPOOL_IN_MEMORY // KIB),
    ("API.md", "(`--concurrency N` at a time, default {})", "upload --concurrency"),
    ("API.md", "(seconds to wait once the uploads are done, default {})", "upload --timeout"),
    ("API.md", "when there are more than {} files", PROGRESS_ABOVE),
    # operations
    ("OPERATIONS.md", "(visible ASCII, no spaces, at most {} characters)", "X-Request-ID"),
    ("OPERATIONS.md", "failures by reason (`apercu_failures_total{{reason}}`: {})", ", ".join(FAILURE_REASONS)),
    ("OPERATIONS.md", "stopped beating for {} s", workers.WORKER_TIMEOUT),
    ("OPERATIONS.md", "every {} s; a worker silent for {} s", (housekeeping.BEAT_INTERVAL, workers.WORKER_TIMEOUT)),
    ("OPERATIONS.md", "no worker has beaten in the last {} s", workers.WORKER_TIMEOUT),
    ("OPERATIONS.md", "at worker start, then every {} s; a pending image waits {} s",
     (DEFAULTS.recovery_interval, DEFAULTS.recovery_grace)),
    ("OPERATIONS.md", "at worker start, then every {} s; anything younger than {} s",
     (DEFAULTS.orphan_interval, DEFAULTS.orphan_grace)),
    ("OPERATIONS.md", "least recently used first | every {} s |", housekeeping.KEPT_INTERVAL),
    ("OPERATIONS.md", "at most every {} s per file", kept.TOUCH_EVERY),
    ("OPERATIONS.md", "| {} s: `APERCU_FETCH_DEADLINE` + `APERCU_TASK_TIME_LIMIT` + {} s |",
     (DEFAULTS.fetch_deadline + DEFAULTS.task_time_limit + processing.LEASE_MARGIN, processing.LEASE_MARGIN)),
    ("OPERATIONS.md", "after {} s ({} s in all)", "outage retries"),
    ("OPERATIONS.md", "after {} s", "outage retries in the table"),
    ("OPERATIONS.md", "| after {} s | `APERCU_IDEMPOTENCY_TTL` |", DEFAULTS.idempotency_ttl),
    ("OPERATIONS.md", "| checked every {} s |", keys.RELOAD_EVERY),
    ("OPERATIONS.md", "| a rate-limit store that failed left alone | {} s |", rate_limit.RETRY_AFTER_FAILURE),
    ("OPERATIONS.md", "at once after a run of {} s or more, else with a backoff up to {} s",
     (supervisor.STABLE_AFTER, DEFAULTS.restart_backoff_max)),
    ("OPERATIONS.md", "restarts a half at once when it dies after running for {} s", supervisor.STABLE_AFTER),
    ("OPERATIONS.md", "Connecting gives up after {} s for PostgreSQL, {} s for the broker",
     (POSTGRES_TIMEOUTS["connect_timeout"], tasks_app.BROKER_CONNECT_TIMEOUT)),
    ("OPERATIONS.md", "A worker that meets an outage while processing or rendering retries under the same lease after "
     "{} s", "outage retries"),
    ("DEPLOYMENT.md", "(a multipart upload above {} MiB)", "S3 multipart"),
    # health, errors, the proxy
    ("OPERATIONS.md", "| at least one worker beat in the last {} s |", workers.WORKER_TIMEOUT),
    ("OPERATIONS.md", "no worker has reported in the last {} s", workers.WORKER_TIMEOUT),
    ("API.md", "| `type` | `{}`: one per code", errors.PROBLEM_TYPE.replace("{code}", "<code>")),
    ("DEPLOYMENT.md", "client_max_body_size {}k;", DEFAULTS.max_upload_bytes // KIB + 64),
    ("DEPLOYMENT.md", "(`?wait=` up to {} s, `APERCU_RENDITION_WAIT`, {} s by default)",
     (inputs.MAX_WAIT, DEFAULTS.rendition_wait)),
    # resumable uploads
    ("API.md", "with the extensions {} ({})",
     (" and ".join(", ".join(f"`{e}`" for e in tus.EXTENSIONS.split(",")).rsplit(", ", 1)),
      ", ".join(f"`{a}`" for a in tus.ALGORITHMS))),
    ("API.md", "Settings: `APERCU_UPLOAD_EXPIRY` ({} s) and `APERCU_MAX_OPEN_UPLOADS` ({})",
     (DEFAULTS.upload_expiry, DEFAULTS.max_open_uploads)),
    ("OPERATIONS.md", "once past their `Upload-Expires` ({} s after creation)", DEFAULTS.upload_expiry),
    ("API.md", "A file above {} MiB goes from the page by", "page RESUMABLE_ABOVE"),
    ("API.md", "in {} MiB requests, with the API key the page already sends", "page RESUMABLE_CHUNK"),
    # the client library
    ("API.md", "tried again up to {} times (after {} s); a {} up to {} times after its `Retry-After` (at most {} s each)",
     (client_core.RETRIES.connect,
      ", ".join(number(client_core.Retries.backoff(n)) for n in range(1, client_core.RETRIES.connect + 1)),
      " or ".join(", ".join(map(str, sorted(client_core.RETRY_STATUSES))).rsplit(", ", 1)),
      client_core.RETRIES.busy, client_core.RETRIES.max_delay)),
    ("API.md", "(default: {} s, {} s to connect", (client_core.DEFAULT_TIMEOUT.read or 0,
                                                   client_core.DEFAULT_TIMEOUT.connect or 0)),
    # performance
    ("PERFORMANCE.md", "must leave **{}x** the target for the final LANCZOS (`DRAFT_MARGIN`), and `reduce()` stops {}x "
     "above it (`REDUCING_GAP`", (engines.DRAFT_MARGIN, engines.REDUCING_GAP)),
]


def resolved(value: object) -> tuple[str, ...]:
    """The text(s) a fact's value stands for: numbers as written, and a few values read from where the code keeps
    them (an argparse default, a compiled pattern, a source line)."""
    named: dict[str, Callable[[], tuple[str, ...]]] = {
        "upload --concurrency": lambda: (number(_upload_default("concurrency")),),
        "upload --timeout": lambda: (number(_upload_default("timeout")),),
        "X-Request-ID": lambda: (re.fullmatch(r"\[!-~\]\{1,(\d+)\}", observe.VALID_ID.pattern).group(1),),  # type: ignore[union-attr]
        "outage retries": lambda: (_outage_waits(", ", " and "), number(sum(2**n for n in range(
            tasks_app.OUTAGE_RETRIES)))),
        "outage retries in the table": lambda: (_outage_waits(", ", " and "),),
        "S3 multipart": lambda: (number(_s3_multipart_threshold() // MIB),),
        "S3": lambda: (number(_s3_connect_timeout()),),
        "page RESUMABLE_ABOVE": lambda: (_page_mib("RESUMABLE_ABOVE"),),
        "page RESUMABLE_CHUNK": lambda: (_page_mib("RESUMABLE_CHUNK"),),
    }
    if isinstance(value, tuple):
        return tuple(text for item in value for text in resolved(item))
    if isinstance(value, str) and value in named:
        return named[value]()
    return (number(value) if isinstance(value, int | float) else str(value),)


def _upload_default(option: str) -> float:
    import argparse

    from apercu import upload_command

    parser = argparse.ArgumentParser()
    upload_command.add_arguments(parser)
    default: float = parser.get_default(option)
    return default


def _outage_waits(comma: str, last: str) -> str:
    waits = [number(2**n) for n in range(tasks_app.OUTAGE_RETRIES)]
    return comma.join(waits[:-1]) + last + waits[-1]


def _page_mib(name: str) -> str:
    """A size in MiB the page's script declares (`const NAME = N * 1024 * 1024;`): the page has no Python side."""
    script = (ROOT / "src" / "apercu" / "api" / "static" / "js" / "api.js").read_text()
    return re.search(rf"\b{name} = (\d+) \* 1024 \* 1024;", script).group(1)  # type: ignore[union-attr]


def _s3_source() -> str:
    return (ROOT / "src" / "apercu" / "storage" / "blobs" / "s3.py").read_text()


def _s3_multipart_threshold() -> int:
    pytest.importorskip("boto3")
    from apercu.storage.blobs import s3

    threshold: int = s3.MULTIPART.multipart_threshold
    return threshold


def _s3_connect_timeout() -> int:
    """The S3 client's connect timeout: an argument in s3.py's source, where it is not a named constant (every
    client the store makes is read, and they must agree)."""
    found = {int(n) for n in re.findall(r"_client\(endpoint_url, connect_timeout=(\d+)", _s3_source())}
    assert len(found) == 1, found
    return found.pop()


@pytest.mark.parametrize("document, phrase, value", FACTS, ids=[f"{d}:{p[:40]}" for d, p, _ in FACTS])
def test_a_figure_in_the_documents_is_the_codes(document: str, phrase: str, value: object) -> None:
    expected = phrase.format(*resolved(value))
    assert expected in text_of(document), f"{document} should say: {expected}"


# (document, phrase, the constant that must be 1 second for the phrase to hold)
ONCE_A_SECOND = [
    ("API.md", "at most once a second one request asks it whether it is back", outage_breaker.PROBE_INTERVAL),
    ("API.md", "Both readings are refreshed at most once a second per web process", backpressure.TTL),
    ("OPERATIONS.md", "| refreshed at most once a second per web process |", backpressure.TTL),
    ("OPERATIONS.md", "| at most once a second per web process |", outage_breaker.PROBE_INTERVAL),
]


@pytest.mark.parametrize("document, phrase, seconds", ONCE_A_SECOND)
def test_what_the_documents_say_happens_once_a_second_does(document: str, phrase: str, seconds: float) -> None:
    assert phrase in text_of(document) and seconds == 1.0


def test_every_apercu_variable_the_documents_name_is_a_setting_or_declared() -> None:
    """What test_config checks of the repository's code, for the documents: a misspelt or renamed setting in a
    document would send a reader to a variable that stops the service."""
    known = set(DEFAULTS.to_env()) | set(NOT_SETTINGS) | set(settings_table.file_variables().values())
    documents = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
    named = {(path.name, match.group(1)) for path in documents  # (a misspelling shown as refused is no mistake)
             for match in re.finditer(r"(APERCU_[A-Z0-9_]+)\b(?! is not a setting)", path.read_text())
             if not match.group(1).endswith("_")}
    assert {name for _, name in named} & known >= {"APERCU_DATA_DIR", "APERCU_WEBHOOK_ATTEMPTS"}
    assert not {(document, name) for document, name in named if name not in known}


def test_every_document_is_listed_in_the_table_of_contents_and_every_link_lands() -> None:
    contents = (DOCS / "README.md").read_text()
    for path in DOCS.glob("*.md"):
        if path.name != "README.md":
            assert f"]({path.name})" in contents, path.name
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)?(?:#([^)\s]+))?\)", path.read_text()):
            linked = (path.parent / target).resolve() if target else path
            assert linked.is_file(), f"{path.name} links to {target}"
            if anchor:
                assert anchor in anchors(linked), f"{path.name} links to {target}#{anchor}"


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a document's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_the_readme_is_the_two_minute_path() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 170
    assert "make run" in readme and "make test" in readme and "docs/README.md" in readme
    assert re.search(r"^make test\b", (ROOT / ".ci" / "run").read_text(), flags=re.MULTILINE)  # CI runs it too


# The commands of the README, and of API.md's tour, run against the app: each must reach a route that answers it.
def curl_commands(document: Path, after: str = "") -> list[list[str]]:
    text = document.read_text()
    text = text[text.index(after):] if after else text
    if after:
        text = text[: text.index("```", text.index("```sh") + 5)]
    lines = re.findall(r"^curl .*$", text, flags=re.MULTILINE)
    return [shlex.split(line, comments=True) for line in lines]


def request_of(argv: list[str]) -> tuple[str, str, dict[str, str], list[str]]:
    """(method, url, headers, form fields) of a curl command line."""
    method, headers, form, url = "GET", {}, [], ""
    words = iter(argv[1:])
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(": ")
            headers[name] = value
        elif word == "-F":
            form.append(next(words))
            method = "POST" if method == "GET" else method
        elif word in ("--output", "-o", "-d"):
            next(words)
        elif word.startswith("http"):
            url = word
    return method, url, headers, form


@pytest.mark.parametrize("document, after", [("README.md", ""), ("docs/API.md", "## A tour with curl")])
def test_the_documents_curl_commands_are_answered(document: str, after: str, client: Any, process: Any,
                                                   render: Any) -> None:
    from apercu.tasks import context_of
    from apercu.tasks.housekeeping import host_identity

    jpeg = images.jpeg()
    image_id, seen = "", []
    catalog = context_of(client.application.extensions["apercu"].celery).processor.storage.catalog
    catalog.workers.beat("docs-test", host_identity(), os.getpid())  # /readyz/workers wants a live worker: this test is one
    commands = [request_of(argv) + (argv,) for argv in curl_commands(ROOT / document, after)]
    for method, url, headers, form, argv in sorted(commands, key=lambda c: c[0] == "DELETE"):  # deletes last
        parts = urlsplit(url.replace("<id>", image_id or "x").replace("<hex>", hashlib.sha256(jpeg).hexdigest()))
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "wait"])  # no worker to wait for here
        path = parts.path + (f"?{query}" if query else "")
        data = {"file": (io.BytesIO(jpeg), "image.jpg")} if any(f.startswith("file=@") for f in form) else None
        answer = client.open(path, method=method, data=data, headers=headers)
        if answer.status_code == 409 and image_id:  # a variant, rendered on first request: as a worker would
            render(image_id)
            answer = client.open(path, method=method, data=data, headers=headers)
        assert answer.status_code < 400, f"{' '.join(argv)}: {answer.status_code} {answer.get_data(as_text=True)}"
        if method == "POST" and not image_id:
            image_id = answer.get_json()["id"]
            process(image_id)
        seen.append(parts.path)
    assert image_id and len(seen) >= 6


CONFLICT_MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)
HOUSE_SUFFIXES = {".md", ".py", ".toml", ".yaml", ".cfg", ".conf", ".js", ".html", ".css", ".sh", ""}


def _house_files() -> Iterator[Path]:
    """The project's own text files: the tree without what tools make (virtualenvs, git, caches, builds), and
    without links (a link to a virtualenv was once committed by mistake, and loops)."""
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "__")) and d not in ("build", "dist", "node_modules")]
        paths = (Path(folder, name) for name in names if Path(name).suffix in HOUSE_SUFFIXES)
        yield from (path for path in paths if not path.is_symlink() and path.is_file())


def test_no_file_of_the_project_holds_a_merge_conflict_marker() -> None:
    """A merge left `<<<<<<< HEAD` ... `>>>>>>> branch` in docs/ARCHITECTURE.md once, and every test passed."""
    marked = [path for path in _house_files() if CONFLICT_MARKER.search(path.read_text(errors="replace"))]
    assert marked == []
