"""metadata.makernotes (APERCU_EXIFTOOL=1): ExifTool's maker groups, and an exiftool that can never hang us.

Three parts: a fake `exiftool` put first on PATH (a Python script speaking the -stay_open protocol, told by the
file's JPEG comment to hang, die mid-answer or flood) for the bounds and restarts; the real exiftool on generated
images, through the worker's sandbox, and against the corpus readings (per-tag match rate, with a floor); and the
setting off, which must change nothing and start nothing. Without exiftool the real-tool tests skip (fail in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fidelity
import images
import pytest
from conftest import REQUIRE_SERVICES, corpus_files, require_corpus, unavailable

from apercu.config import Settings
from apercu.imaging import makernotes
from apercu.imaging.analyse import Options, analyse
from apercu.imaging.gps import without_location
from apercu.tasks import context_of

MAKER_TAG_FLOOR = 0.99  # measured: 346 of 346 maker tags of the corpus readings match (ExifTool 12.57)

FAKE_EXIFTOOL = r'''#!{python}
"""A stand-in for `exiftool -stay_open True -@ -`: answers from a table, or misbehaves as the file asks."""
import os, sys, time
if os.environ.get("FAKE_EXIFTOOL_STARTS"):
    with open(os.environ["FAKE_EXIFTOOL_STARTS"], "a") as log:
        log.write(f"{os.getpid()}\n")
out = sys.stdout
path, previous = None, None
while True:
    line = sys.stdin.readline()
    if not line:
        time.sleep(0.05)  # as exiftool: stdin closed is no reason to leave
        continue
    line = line.rstrip("\n")
    if previous == "-stay_open" and line == "False":
        sys.exit(0)
    previous = line
    if not line.startswith("-execute"):
        path = line
        continue
    ready = "{ready" + line[len("-execute"):] + "}\n"
    data = open(path, "rb").read()
    if b"FAKE:HANG" in data:
        time.sleep(3600)
    if b"FAKE:DIE" in data:
        out.write('[{"SourceFile": "x", "Canon:Mac')
        out.flush()
        os._exit(3)
    if b"FAKE:HUGE" in data:  # far more than the bound, without end in sight
        out.write('[{"SourceFile": "x", "Canon:Flood": "')
        for _ in range(4096):
            out.write("A" * 65536)
        out.write('"}]\n' + ready)
        out.flush()
        continue
    value = "B" * 100_000 if b"FAKE:BIGVALUE" in data else "FINE   "
    answer = [{"SourceFile": path, "Canon:MacroMode": 2, "Canon:Quality": value, "CanonCustom:Custom1": "0 1"}]
    out.write(__import__("json").dumps(answer) + "\n" + ready)
    out.flush()
'''


def jpeg_saying(word: str) -> bytes:
    """A JPEG with EXIF (so it is asked about) whose comment tells the fake exiftool what to do."""
    return images.encode(images.gradient((32, 24)), "JPEG", exif=images.exif_block(), comment=f"FAKE:{word}".encode())


@pytest.fixture
def fake_exiftool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake first on PATH; yields the file where each start writes its pid."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "exiftool"
    script.write_text(FAKE_EXIFTOOL.replace("{python}", sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    starts = tmp_path / "starts"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_EXIFTOOL_STARTS", str(starts))
    makernotes.shutdown()
    yield starts
    makernotes.shutdown()


@pytest.fixture
def real_exiftool() -> Iterator[None]:
    if shutil.which("exiftool") is None:
        unavailable("exiftool not installed (Debian: libimage-exiftool-perl; `make test` installs it)", REQUIRE_SERVICES)
    makernotes.shutdown()
    yield
    makernotes.shutdown()


def started(starts: Path) -> list[int]:
    return [int(line) for line in starts.read_text().split()] if starts.exists() else []


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether the process has ended (exited, or a zombie nobody has reaped yet)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


FAST = Options(exiftool=True, exiftool_timeout=1.0)


# --- values -------------------------------------------------------------------------------------------------


def test_values_are_typed_as_the_exif_block_types_them() -> None:
    typed = makernotes.typed
    assert typed(2) == 2 and typed(7.1) == 7.1 and typed(True) is True
    assert typed("0.00157274446479419") == pytest.approx(0.00157274446479419)  # ExifTool's JSON quotes long numbers
    assert typed("11319829869458") == 11319829869458
    assert typed("-409 0 409") == [-409, 0, 409] and typed("0.45 0.39") == [0.45, 0.39]
    assert typed("0100") == "0100" and typed("0221 0100") == "0221 0100"  # versions stay text
    assert typed("FINE   ") == "FINE" and typed("") == ""
    assert typed("(Binary data 59071 bytes, use -b option to extract)") == {"bytes": 59071}
    assert typed("2008:05:30 15:56:01") == "2008-05-30T15:56:01"
    assert typed("2008:05:30 15:56:01+02:00") == "2008-05-30T15:56:01+02:00"
    assert typed("undef undef undef") == "undef undef undef" and typed("1e999") == "1e999"
    assert typed(float("inf")) is None and typed({"a": 1}) is None
    assert typed(["a ", "1"]) == ["a", 1]


def test_tags_are_grouped_and_oversized_values_kept_as_their_size() -> None:
    notes = makernotes.grouped({
        "SourceFile": "/dev/fd/3", "Canon:MacroMode": 2, "CanonCustom:Custom1": "0 1", "Canon:Huge": "x" * 5000,
        "Canon:Many": " ".join(["1"] * 3000), "Nikon:Nothing": float("nan"),
    })
    assert notes == {
        "Canon": {"MacroMode": 2, "Huge": {"bytes": 5000}, "Many": {"bytes": 5999}},
        "CanonCustom": {"Custom1": [0, 1]},
    }


def test_gps_drop_removes_the_location_tags_of_maker_notes() -> None:
    metadata = {"makernotes": {
        "Panasonic": {"City": "Paris", "Country": "France", "State": "", "Landmark": "Tour", "WhiteBalance": 1},
        "Pentax": {"GPSLatitude": 48.8, "HometownCity": 12},
        "Sony": {"BatteryCapacity": 3, "LocationInfo": 1},
    }}
    assert without_location(metadata) == {"makernotes": {"Panasonic": {"WhiteBalance": 1}, "Sony": {"BatteryCapacity": 3}}}
    assert without_location({"makernotes": {"Pentax": {"GPSLatitude": 48.8}}}) == {}


# --- the fake exiftool: bounds and restarts -------------------------------------------------------------------


def test_a_hanging_exiftool_is_killed_and_the_next_file_gets_a_new_one(fake_exiftool: Path) -> None:
    start = time.monotonic()
    hung = analyse(jpeg_saying("HANG"), FAST).metadata
    assert time.monotonic() - start < 5
    assert "makernotes" not in hung
    assert hung["warnings"] == ["maker notes unreadable: exiftool took longer than 1 s"]
    assert hung["width"] == 32  # the rest of the image is unaffected
    first = started(fake_exiftool)
    assert len(first) == 1 and gone(first[0])

    after = analyse(jpeg_saying("OK"), FAST).metadata
    assert after["makernotes"] == {"Canon": {"MacroMode": 2, "Quality": "FINE"}, "CanonCustom": {"Custom1": [0, 1]}}
    assert "warnings" not in after
    assert len(started(fake_exiftool)) == 2


def test_an_exiftool_dying_mid_answer_is_replaced(fake_exiftool: Path) -> None:
    died = analyse(jpeg_saying("DIE"), FAST).metadata
    assert died["warnings"] == ["maker notes unreadable: exiftool exited (code 3) before answering"]
    assert "makernotes" not in died
    assert analyse(jpeg_saying("OK"), FAST).metadata["makernotes"]["Canon"]["MacroMode"] == 2
    assert len(started(fake_exiftool)) == 2


def test_an_exiftool_killed_between_files_is_replaced_without_a_warning(fake_exiftool: Path) -> None:
    assert "makernotes" in analyse(jpeg_saying("OK"), FAST).metadata
    pid = makernotes.client().process_id
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert gone(pid)
    again = analyse(jpeg_saying("OK"), FAST).metadata
    assert again["makernotes"]["Canon"]["MacroMode"] == 2 and "warnings" not in again
    assert len(started(fake_exiftool)) == 2


def test_a_flood_of_output_is_cut_at_the_bound(fake_exiftool: Path) -> None:
    """256 MiB on offer: reading stops past 256 KiB, the process is killed, the file gets a warning."""
    start = time.monotonic()
    flooded = analyse(jpeg_saying("HUGE"), Options(exiftool=True, exiftool_timeout=30)).metadata
    assert time.monotonic() - start < 10
    assert flooded["warnings"] == ["maker notes unreadable: exiftool's answer is larger than 256 KiB"]
    assert "makernotes" not in flooded
    assert analyse(jpeg_saying("OK"), FAST).metadata["makernotes"]["Canon"]["MacroMode"] == 2


def test_a_value_over_the_bound_is_kept_as_its_size(fake_exiftool: Path) -> None:
    notes = analyse(jpeg_saying("BIGVALUE"), FAST).metadata["makernotes"]
    assert notes["Canon"]["Quality"] == {"bytes": 100_000}
    assert notes["Canon"]["MacroMode"] == 2


def test_the_bytes_do_not_stay_in_the_spool(fake_exiftool: Path) -> None:
    analyse(jpeg_saying("OK"), FAST)
    spool = makernotes.client()._spool
    assert spool is not None and os.fstat(spool.fd).st_size == 0


# --- the setting off, exiftool missing --------------------------------------------------------------------------


def test_the_setting_off_changes_nothing_and_starts_nothing(fake_exiftool: Path) -> None:
    assert Settings().imaging_options().exiftool is False
    for data in (jpeg_saying("OK"), images.jpeg_rich(), images.tiff_rich(), images.heif()):
        assert "makernotes" not in analyse(data, Options()).metadata
        assert "makernotes" not in analyse(data, Settings().imaging_options()).metadata
    assert started(fake_exiftool) == [] and not makernotes.running()


def test_the_setting_reaches_imaging_with_a_timeout_within_the_time_limit() -> None:
    options = Settings.from_env({"APERCU_EXIFTOOL": "1"}).imaging_options()
    assert options.exiftool is True and options.exiftool_timeout == 10.0
    assert Settings.from_env({"APERCU_EXIFTOOL": "yes", "APERCU_TASK_TIME_LIMIT": "4"}).imaging_options().exiftool_timeout == 2.0


def test_files_that_cannot_carry_maker_notes_are_not_asked_about(fake_exiftool: Path) -> None:
    no_exif = images.encode(images.gradient((32, 24)), "JPEG", comment=b"FAKE:OK")
    for data in (no_exif, images.png_rgba(), images.gif_rich(), images.FACTORIES["BMP"]()):
        assert "makernotes" not in analyse(data, FAST).metadata
    assert started(fake_exiftool) == []


def test_a_missing_exiftool_is_a_warning_on_each_image_and_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.setattr(makernotes, "_told_missing", False)
    makernotes.shutdown()
    for _ in range(2):
        meta = analyse(jpeg_saying("OK"), FAST).metadata
        assert meta["warnings"] == [makernotes.MISSING] and "makernotes" not in meta
        assert meta["exif"]["Make"] == "Apercu Test Camera"
    logged = [r for r in caplog.records if r.name == "apercu.imaging.makernotes"]
    assert len(logged) == 1 and "exiftool is not on PATH" in logged[0].getMessage()
    makernotes.shutdown()


# --- the real exiftool ------------------------------------------------------------------------------------------


def test_a_maker_note_exiftool_does_not_know_gives_no_block(real_exiftool: None) -> None:
    """tests/images.py writes a MakerNote of arbitrary bytes under an unknown maker: nothing to decode, no key,
    no warning (ExifTool keeps such a note in ExifIFD, outside its MakerNotes group)."""
    for data in (images.jpeg(), images.jpeg_rich(), images.tiff_rich(), images.webp_rich(), images.png_rich()):
        meta = analyse(data, Options(exiftool=True)).metadata
        assert "makernotes" not in meta and "warnings" not in meta, meta.get("warnings")
    assert makernotes.running()


@pytest.mark.corpus
def test_maker_groups_and_tags_match_exiftools_readings(real_exiftool: None, app: Any) -> None:
    """Every corpus file: the same maker groups as its ExifTool reading, equal tags, the documented shape."""
    from test_openapi import Contract

    from apercu.api.openapi import document

    corpus = require_corpus()
    contract = Contract(document(app))

    def read(path: Path) -> dict[str, Any]:
        meta = fidelity.ours_with_makernotes(path)
        contract.validate(json.loads(json.dumps(meta, allow_nan=False)), {"$ref": "#/components/schemas/Metadata"})
        return meta

    tallies, group_misses = fidelity.compare_makernotes(corpus, corpus_files(), read)
    assert not group_misses, "\n".join(group_misses)
    assert {"Canon", "Nikon", "Olympus", "Apple", "FujiFilm", "Casio"} <= set(tallies)
    matched, total = sum(t.matched for t in tallies.values()), sum(t.total for t in tallies.values())
    figures = ", ".join(f"{group} {t.matched}/{t.total}" for group, t in sorted(tallies.items()))
    print(f"\nmaker tags matching ExifTool's readings: {matched}/{total} ({matched / total:.1%}): {figures}")
    assert total >= 300
    misses = "\n".join(miss for t in tallies.values() for miss in t.misses)
    assert matched / total >= MAKER_TAG_FLOOR, f"{matched / total:.2%} < {MAKER_TAG_FLOOR:.0%}:\n{misses}"


@pytest.mark.corpus
def test_a_broken_file_keeps_its_maker_notes(real_exiftool: None) -> None:
    """jpg_corrupted.jpg fails to decode; its Olympus notes come with the failure's metadata (read before)."""
    from apercu.imaging.analyse import ProcessingFailed

    data = (require_corpus() / "exif" / "jpg_corrupted.jpg").read_bytes()
    try:
        meta = analyse(data, Options(exiftool=True)).metadata
    except ProcessingFailed as exc:
        meta = exc.metadata
    assert meta["makernotes"]["Olympus"]["CameraType2"] == "D4344"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The app's settings (conftest's `settings`, overridden here) with APERCU_EXIFTOOL on."""
    return Settings(data_dir=tmp_path / "data", queue=f"test-{uuid.uuid4().hex[:8]}", exiftool=True)


@pytest.mark.corpus
def test_through_the_worker_sandbox_and_gone_with_it(real_exiftool: None, app: Any, client: Any, process: Any) -> None:
    """The real path: upload, the worker's imaging child reads the notes, the API shows them; the child's
    exiftool is its own child and dies with it (SIGKILLed as at a time limit), never outliving it."""
    from conftest import parse_json
    from test_openapi import Contract

    path = require_corpus() / "exif" / "jpg_gps_DSCN0010.jpg"
    image_id = client.post("/images", data={"file": (path.open("rb"), path.name)}).get_json()["id"]
    process(image_id)
    contract = Contract(client.get("/openapi.json").get_json())
    body = parse_json(contract.check("GET", "/images/{id}", client.get(f"/images/{image_id}")))
    assert body["status"] == "success"
    nikon = body["metadata"]["makernotes"]["Nikon"]
    assert nikon["Quality"] == "FINE" and nikon["DataDump"] == {"bytes": 2542} and nikon["FaceDetectFrameSize"] == [320, 240]

    processor = context_of(app.extensions["apercu"].celery).processor
    child = processor.sandbox._process.pid
    exiftools = [pid for pid in _children(child) if b"exiftool" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(exiftools) == 1
    processor.close()  # kills the imaging child
    assert gone(exiftools[0])
    assert not makernotes.running()  # this process never started one


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found
