"""/metrics, request ids and logs: what an operator sees of the service (issue 10, "Metrics and logs").

In-process tests use the Flask test client (metrics then live in this process's default registry, so they
compare before/after values); multi-process behaviour is tested with real processes: forked children writing
one directory, and a live `apercu serve` with two web processes, whose every scrape must agree.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import images
import pytest
from live import Service, free_port
from prometheus_client.parser import text_string_to_metric_families

from apercu import logs, metrics_multiprocess
from apercu.api import create_app
from apercu.api.observe import request_id
from apercu.config import Settings
from apercu.storage import blob_keys
from apercu.tasks import context_of
from apercu.tasks.app import REQUEST_ID_HEADER, TASK_NAME, process_image

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition (which must parse), by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def scrape(client: Any) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def upload(client: Any, data: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post("/images", data={"file": (io.BytesIO(data), "x.jpg")}, headers=headers or {})


# -- /metrics, in process ------------------------------------------------------------------------------------------


def test_metrics_parse_and_name_everything_apercu(client: Any) -> None:
    samples = scrape(client)
    names = {name for name, _ in samples}
    assert {"apercu_images", "apercu_failures_total", "apercu_recovery_resent_total"} <= names
    for status in ("pending", "processing", "success", "failure"):
        assert value(samples, "apercu_images", status=status) == 0
    for reason in ("decode", "limits", "timeout", "crashed", "missing_original", "internal"):
        assert ("apercu_failures_total", frozenset({("reason", reason)})) in samples


def test_an_upload_and_its_processing_move_the_counters(client: Any, process: Any) -> None:
    before = scrape(client)
    data = images.jpeg()
    response = upload(client, data)
    assert response.status_code == 202
    process(response.json["id"])
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("apercu_uploads_total", status="202", outcome="accepted") == 1
    assert moved("apercu_upload_bytes_total") >= len(data)  # the multipart body: the file and its framing
    assert moved("apercu_processing_seconds_count", format="jpeg", outcome="success") == 1
    assert moved("apercu_http_requests_total", method="POST", route="/images", status="202") == 1
    assert value(after, "apercu_images", status="success") == 1
    assert value(after, "apercu_images", status="pending") == 0


def test_rejected_and_replayed_uploads_are_told_apart(client: Any) -> None:
    before = scrape(client)
    assert upload(client, b"not an image at all").status_code == 415
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert upload(client, images.jpeg(), key).status_code == 202
    assert upload(client, images.jpeg(), key).headers["Idempotent-Replayed"] == "true"
    after = scrape(client)
    for status, outcome in (("415", "rejected"), ("202", "accepted"), ("202", "replayed")):
        labels = {"status": status, "outcome": outcome}
        assert value(after, "apercu_uploads_total", **labels) - value(before, "apercu_uploads_total", **labels) == 1


def test_routes_not_paths_label_requests(client: Any) -> None:
    client.get(f"/images/{uuid.uuid4().hex}")
    client.get("/no/such/route")
    samples = scrape(client)
    assert value(samples, "apercu_http_requests_total", method="GET", route="/images/<image_id>", status="404") >= 1
    assert value(samples, "apercu_http_requests_total", method="GET", route="unmatched", status="404") >= 1
    assert not any("/no/such/route" in str(labels) for _, labels in samples)


@pytest.mark.parametrize(
    ("reason", "spoil"),
    [
        ("decode", lambda app, image_id: None),  # the upload itself is a truncated JPEG
        ("missing_original", lambda app, image_id: app.extensions["apercu"].storage.blobs.delete(blob_keys.original(image_id))),
    ],
)
def test_failures_are_counted_by_reason(client: Any, app: Any, process: Any, reason: str, spoil: Any) -> None:
    data = images.jpeg((800, 600))
    data = data[: len(data) // 3] if reason == "decode" else data
    before = scrape(client)
    image_id = upload(client, data).json["id"]
    spoil(app, image_id)
    process(image_id)
    after = scrape(client)
    assert value(after, "apercu_failures_total", reason=reason) - value(before, "apercu_failures_total", reason=reason) == 1
    assert total(after, "apercu_processing_seconds_count", outcome="failure") - total(
        before, "apercu_processing_seconds_count", outcome="failure"
    ) == 1


def test_a_canvas_over_the_pixel_limit_is_a_limits_failure(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", max_pixels=10_000))
    client = app.test_client()
    before = scrape(client)
    image_id = upload(client, images.jpeg((320, 200))).json["id"]
    context_of(app.extensions["apercu"].celery).processor.process(image_id, "test")
    after = scrape(client)
    assert value(after, "apercu_failures_total", reason="limits") - value(before, "apercu_failures_total", reason="limits") == 1
    assert client.get(f"/images/{image_id}").json["status"] == "failure"


def test_variant_renders_are_counted(client: Any, process: Any, render: Any) -> None:
    image_id = upload(client, images.jpeg()).json["id"]
    process(image_id)
    before = scrape(client)
    assert client.get(f"/thumbnails/{image_id}.webp").status_code == 409
    assert render(image_id) == [(256, "webp")]
    after = scrape(client)
    labels = {"format": "webp", "outcome": "success"}
    assert value(after, "apercu_thumbnail_renders_total", **labels) - value(before, "apercu_thumbnail_renders_total", **labels) == 1


def test_recovery_resends_are_counted(app: Any, client: Any) -> None:
    from apercu.tasks.housekeeping import Housekeeping

    upload(client, images.jpeg())
    before = scrape(client)
    housekeeping = Housekeeping(app.extensions["apercu"].celery, "test-worker")
    assert len(housekeeping.recover(0.0)) == 1
    after = scrape(client)
    assert value(after, "apercu_recovery_resent_total") - value(before, "apercu_recovery_resent_total") == 1


def test_metrics_answer_while_the_catalog_does_not(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> dict[str, int]:
        raise RuntimeError("database is down")

    monkeypatch.setattr(app.extensions["apercu"].storage.catalog.images, "counts", down)
    samples = scrape(client)
    assert "apercu_failures_total" in {name for name, _ in samples}
    assert "apercu_images" not in {name for name, _ in samples}


# -- request ids ---------------------------------------------------------------------------------------------------


def test_a_sane_request_id_is_echoed_on_every_answer(client: Any) -> None:
    for path in ("/healthz", f"/images/{uuid.uuid4().hex}", "/nowhere"):
        response = client.get(path, headers={"X-Request-ID": "trace-1;Parent=ab/cd"})
        assert response.headers["X-Request-ID"] == "trace-1;Parent=ab/cd"


@pytest.mark.parametrize("sent", [None, "", "two words", "x" * 201, "caf\u00e9", "new\nline", "tab\there"])
def test_a_missing_or_insane_request_id_is_replaced(sent: str | None) -> None:
    made = request_id(sent)
    assert len(made) == 32 and int(made, 16) >= 0 and made != request_id(sent)


@pytest.mark.parametrize("headers", [{}, {"X-Request-ID": "two words"}, {"X-Request-ID": "x" * 201}])
def test_an_answer_without_a_sane_id_gets_a_new_one(client: Any, headers: dict[str, str]) -> None:
    made = client.get("/healthz", headers=headers).headers["X-Request-ID"]
    assert len(made) == 32 and int(made, 16) >= 0
    assert made != client.get("/healthz", headers=headers).headers["X-Request-ID"]


def test_the_request_id_goes_with_the_task_to_the_worker(
    app: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rid = f"upload-{uuid.uuid4().hex}"
    image_id = upload(client, images.jpeg(), {"X-Request-ID": rid}).json["id"]
    service = app.extensions["apercu"]
    with service.celery.connection_for_read() as conn:
        queue = conn.SimpleQueue(service.settings.queue)
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
    assert message.headers["task"] == TASK_NAME and message.headers[REQUEST_ID_HEADER] == rid
    # The task body, run as a worker runs it, with that message's header: its lines carry the id.
    task = SimpleNamespace(
        app=service.celery, context=context_of(service.celery),
        request=SimpleNamespace(id="task-1", retries=0, **{REQUEST_ID_HEADER: rid}),
    )
    with caplog.at_level(logging.INFO, logger="apercu.processing"):
        assert process_image(task, image_id) == "claimed"
    line = next(r for r in caplog.records if r.name == "apercu.processing")
    assert isinstance(line.args, dict)
    assert line.args["request_id"] == rid and line.args["image_id"] == image_id
    assert line.args["outcome"] == "success" and line.args["format"] == "jpeg"
    assert logs.current_request_id() is None  # and nothing of it is left behind in this thread


# -- logs ------------------------------------------------------------------------------------------------------------


def test_one_access_line_per_request_in_json(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="apercu.access"):
        response = upload(client, images.jpeg(), {"X-Request-ID": "req-42"})
    [record] = [r for r in caplog.records if r.name == "apercu.access"]
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "apercu.access" and line["ts"].endswith("Z")
    assert line["message"].startswith("POST /images 202 in ")
    assert line["method"] == "POST" and line["path"] == "/images" and line["status"] == 202
    assert line["request_id"] == "req-42" and line["bytes_out"] == len(response.data)
    assert line["bytes_in"] > 0 and line["duration_ms"] >= 0
    text = logs.TextFormatter().format(record)
    assert " INFO apercu.access: POST /images 202 in " in text and text.endswith(" request_id=req-42")


def test_lines_logged_during_a_request_carry_its_id() -> None:
    record = logging.LogRecord("apercu.x", logging.WARNING, __file__, 1, "disk %s is slow", ("sda",), None)
    with logs.request_context("abc"):
        entry = json.loads(logs.JsonFormatter().format(record))
        text = logs.TextFormatter().format(record)
    assert entry["message"] == "disk sda is slow" and entry["request_id"] == "abc"
    assert text.endswith("WARNING apercu.x: disk sda is slow request_id=abc")
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record))


def test_an_exception_stays_on_one_json_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("apercu.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = logs.JsonFormatter().format(record)
    assert "\n" not in out and "ValueError: boom" in json.loads(out)["exception"]


def test_configure_installs_one_handler_and_checks_the_format() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        logs.configure(Settings(log_format="json", log_level="WARNING"))
        logs.configure(Settings(log_format="text", log_level="DEBUG"))
        ours = [h for h in root.handlers if getattr(h, "_apercu_handler", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, logs.TextFormatter)
        assert root.level == logging.DEBUG
        with pytest.raises(ValueError, match="APERCU_LOG_FORMAT"):
            logs.configure(Settings(log_format="yaml"))
    finally:
        for handler in [h for h in root.handlers if getattr(h, "_apercu_handler", False)]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(False)


# -- several processes -----------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from apercu import metrics_multiprocess
    metrics_multiprocess.prepare(Path(sys.argv[1]), sys.argv[2])
    from apercu import metrics
    if sys.argv[2] == "worker":  # a worker that stays up until told to stop
        metrics.PROCESSING_SECONDS.labels("png", "success").observe(0.5)
        metrics.PROCESSING_SECONDS.labels("png", "success").observe(1.5)
        print("ready", flush=True)
        sys.stdin.read()
        sys.exit(0)
    children = []
    for uploads in (3, 4):  # a web server: two forked processes counting uploads
        pid = os.fork()
        if pid == 0:
            for _ in range(uploads):
                metrics.UPLOADS.labels("202", "accepted").inc()
            metrics.IN_FLIGHT.inc()
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    metrics.process_exited(children[0])  # as gunicorn's master does when a worker exits
    body, _ = metrics.exposition()
    sys.stdout.write(body.decode())
""")


def run_writer(data_dir: Path, role: str, **kwargs: Any) -> Any:
    env = {k: v for k, v in os.environ.items() if k != metrics_multiprocess.ENV}
    args = [sys.executable, "-c", WRITER, str(data_dir), role]
    if role == "worker":
        return subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kwargs)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_every_process_of_a_data_directory_is_summed(tmp_path: Path) -> None:
    worker = run_writer(tmp_path, "worker")
    try:
        assert worker.stdout.readline() == "ready\n"
        samples = parse(run_writer(tmp_path, "web"))
        assert value(samples, "apercu_uploads_total", status="202", outcome="accepted") == 7  # both children
        assert value(samples, "apercu_processing_seconds_count", format="png", outcome="success") == 2  # the worker
        assert value(samples, "apercu_processing_seconds_sum", format="png", outcome="success") == 2.0
        assert value(samples, "apercu_http_requests_in_flight") == 1  # the exited child's gauge left the sum
        roles = sorted(p.name.split("-")[0] for p in (tmp_path / "metrics").iterdir())
        assert roles == ["web", "worker"]  # the web that ended is left until the next start
    finally:
        worker.communicate("", timeout=30)
    samples = parse(run_writer(tmp_path, "web"))  # a new start: the ended web's and worker's files are gone
    assert value(samples, "apercu_uploads_total", status="202", outcome="accepted") == 7
    assert value(samples, "apercu_processing_seconds_count", format="png", outcome="success") == 0
    assert len(list((tmp_path / "metrics").iterdir())) == 1


def test_a_directory_is_removed_only_once_its_owner_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "metrics"
    live, gone, starting = root / "web-1-a", root / "worker-2-b", root / f"{metrics_multiprocess.NEW}c"
    for folder in (live, gone, starting):
        folder.mkdir(parents=True)
    (gone / metrics_multiprocess.LOCK).touch()
    fd = os.open(live / metrics_multiprocess.LOCK, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert metrics_multiprocess.remove_abandoned(root) == [gone]
        assert live.is_dir() and starting.is_dir()  # a start in progress has not locked its directory yet
    finally:
        os.close(fd)
    assert metrics_multiprocess.remove_abandoned(root) == [live]


# -- a live service ---------------------------------------------------------------------------------------------------

UPLOADS = 6
MAX_UPLOAD = 200_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        "APERCU_WEB_WORKERS": "2",
        "APERCU_LOG_FORMAT": "json",
        "APERCU_LOG_LEVEL": "INFO",
        "APERCU_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
    }
    svc = Service(tmp_path_factory.mktemp("metrics") / "data", env).start("serve")
    try:
        yield svc
    finally:
        svc.stop()


def live_samples(svc: Service) -> Samples:
    reply = svc.get("/metrics")
    assert reply.status == 200
    return parse(reply.body.decode())


def processed_count(svc: Service, count: float, timeout: float = 10.0) -> None:
    """Wait until the worker has counted `count` processed JPEGs: it counts just after recording the outcome
    that the client sees, so a scrape right after the image's status changed may come a moment early."""
    deadline = time.monotonic() + timeout
    name, labels = "apercu_processing_seconds_count", {"format": "jpeg", "outcome": "success"}
    while value(live_samples(svc), name, **labels) < count and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.integration
def test_every_scrape_of_a_live_service_agrees(served: Service) -> None:
    data = images.jpeg()
    replies: list[Any] = []
    threads = [threading.Thread(target=lambda: replies.append(served.upload(data))) for _ in range(UPLOADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status for r in replies) == [202] * UPLOADS
    for reply in replies:
        assert served.wait_final(reply.json()["id"])["status"] == "success"
    too_large = served.request("POST", "/images", b"x" * (2 * MAX_UPLOAD), {"Content-Type": "application/octet-stream"})
    assert too_large.status == 413 and len(too_large.headers["X-Request-ID"]) == 32  # the server's own answer
    processed_count(served, UPLOADS)
    for _ in range(12):  # each on a new connection: whichever web process takes it
        samples = live_samples(served)
        assert value(samples, "apercu_uploads_total", status="202", outcome="accepted") == UPLOADS
        assert value(samples, "apercu_uploads_total", status="413", outcome="rejected") == 1
        assert value(samples, "apercu_processing_seconds_count", format="jpeg", outcome="success") == UPLOADS
        assert value(samples, "apercu_images", status="success") == UPLOADS
        assert total(samples, "apercu_failures_total") == 0


@pytest.mark.integration
def test_json_logs_follow_a_request_from_the_web_to_the_worker(served: Service) -> None:
    rid = f"trace-{uuid.uuid4().hex}"
    reply = _upload_with_id(served, images.jpeg(), rid)
    assert reply.status == 202 and reply.headers["X-Request-ID"] == rid
    image_id = reply.json()["id"]
    assert served.wait_final(image_id)["status"] == "success"
    deadline = time.monotonic() + 10
    while True:
        lines = _json_lines(served.log)
        mine = [line for line in lines if line.get("request_id") == rid]
        if any(line["logger"] == "apercu.processing" for line in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    access = [line for line in mine if line["logger"] == "apercu.access"]
    assert len(access) == 1
    assert access[0]["method"] == "POST" and access[0]["path"] == "/images" and access[0]["status"] == 202
    assert access[0]["duration_ms"] >= 0 and access[0]["bytes_in"] > 0 and access[0]["bytes_out"] > 0
    [processed] = [line for line in mine if line["logger"] == "apercu.processing"]
    assert processed["image_id"] == image_id and processed["outcome"] == "success"
    assert processed["format"] == "jpeg" and processed["duration_ms"] > 0
    assert {"ts", "level", "logger", "message"} <= set(processed)


def _upload_with_id(svc: Service, data: bytes, rid: str) -> Any:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Request-ID": rid}
    return svc.request("POST", "/images", body, headers)


def _json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the service's output, each of which must be a JSON object, but for `serve`'s banner."""
    found = []
    for line in log.read_text().splitlines():
        if not line.strip() or " serving on http://" in line:
            continue
        found.append(json.loads(line))
    return found


@pytest.mark.integration
def test_a_separate_worker_serves_its_own_metrics(tmp_path: Path) -> None:
    port = free_port()
    svc = Service(tmp_path / "data", {"APERCU_METRICS_PORT": str(port)}).start("web", "worker")
    try:
        image_id = svc.upload(images.jpeg()).json()["id"]
        assert svc.wait_final(image_id)["status"] == "success"
        processed_count(svc, 1)
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            own = parse(resp.read().decode())
        assert value(own, "apercu_processing_seconds_count", format="jpeg", outcome="success") == 1
        assert total(own, "apercu_uploads_total") == 0  # the web's counters are the web's to serve
        web = live_samples(svc)  # the same data directory: the web's scrape has both
        assert value(web, "apercu_uploads_total", status="202", outcome="accepted") == 1
        assert value(web, "apercu_processing_seconds_count", format="jpeg", outcome="success") == 1
    finally:
        svc.stop()


def test_a_metrics_file_another_process_is_still_creating_is_skipped_not_a_500(tmp_path: Path) -> None:
    """A process creates its metrics file empty and sizes it a moment later; a scrape in that moment read it and
    answered 500 (seen in CI while a worker started). Such a file holds no values yet: it is left out."""
    from prometheus_client.mmap_dict import MmapedDict

    from apercu.metrics import FilesCollector

    written = MmapedDict(str(tmp_path / "counter_1.db"))
    written.write_value('["apercu_x_total", "apercu_x_total", {}, "x"]', 3.0, 0.0)
    written.close()
    (tmp_path / "counter_2.db").write_bytes(b"")  # created, not yet sized
    (samples,) = [m.samples for m in FilesCollector(str(tmp_path / "*.db")).collect()]
    assert [(s.name, s.value) for s in samples] == [("apercu_x_total", 3.0)]
