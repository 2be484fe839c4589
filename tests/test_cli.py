"""`apercu inspect` and the command line, run as a user would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import images

from apercu.api import create_app
from apercu.config import Settings
from apercu.tasks import context_of


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apercu", *args], capture_output=True, text=True, timeout=120)


def test_inspect_json_lines_match_the_api(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(images.jpeg(orientation=6, gps=True))
    (tmp_path / "sub" / "b.png").write_bytes(images.png_rgba())
    (tmp_path / "sub" / "notes.txt").write_text("not an image")
    result = run("inspect", "--json", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {Path(line["path"]).name: line for line in lines}
    assert set(by_name) == {"a.jpg", "b.png", "notes.txt"}
    assert by_name["notes.txt"]["error"] and "metadata" not in by_name["notes.txt"]
    assert by_name["a.jpg"]["metadata"]["gps"]["latitude"] > 48
    # Exactly what the API stores for the same bytes.
    app = create_app(Settings(data_dir=tmp_path / "data"))
    client = app.test_client()
    import io

    data = {"file": (io.BytesIO(images.jpeg(orientation=6, gps=True)), "a.jpg")}
    image_id = client.post("/images", data=data).json["id"]
    context_of(app.extensions["apercu"].celery).processor.process(image_id, "t")
    assert client.get(f"/images/{image_id}").json["metadata"] == by_name["a.jpg"]["metadata"]


def test_inspect_summary_is_readable(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(images.jpeg())
    result = run("inspect", str(tmp_path / "a.jpg"))
    assert result.returncode == 0
    assert "JPEG 320x200 RGB" in result.stdout and "exif.Make: \"Apercu Test Camera\"" in result.stdout


def test_inspect_usage_errors_exit_non_zero(tmp_path: Path) -> None:
    assert run("inspect").returncode == 2
    missing = run("inspect", str(tmp_path / "missing.jpg"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_broken_files_exit_zero(tmp_path: Path) -> None:
    data = images.jpeg((800, 600))
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    result = run("inspect", "--json", str(tmp_path))
    assert result.returncode == 0
    line = json.loads(result.stdout)
    assert line["error"].startswith("cannot decode") and line["metadata"]["format"] == "JPEG"


def test_parsing_the_command_line_leaves_the_metrics_library_unloaded() -> None:
    """`apercu web` and `apercu worker` point prometheus_client at the shared metrics directory once they have
    their settings, and that only works before anything imports it: a subcommand's parser that imported the
    API (as `keys` once did, for a default) left every process counting alone, and a scrape saw one process."""
    code = "import sys, apercu.cli as c; c.build_parser(); print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
