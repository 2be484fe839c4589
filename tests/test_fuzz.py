"""Fuzzing the imaging entry points: thousands of mutated images, and nothing but ProcessingFailed comes out.

sniff, the inspect path (sniff + analyse on a file), analyse and render_variant get structure-aware mutations of
generated images of every format (tests/fuzzing.py), then of a sample of the corpus. Every case is identified by
its seed and index, and a failure prints the command that replays it with its traceback. Each case must also
finish within TIME_BOUND. The seed is fixed so that a run is reproducible; APERCU_FUZZ_SEED explores others and
APERCU_FUZZ_CASES runs more cases (`make fuzz` runs for minutes, see bench/fuzz.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error

import fuzzing
import pytest
from conftest import corpus_files, require_corpus

from apercu.imaging.analyse import ProcessingFailed, analyse

SEED = int(os.environ.get("APERCU_FUZZ_SEED", "20240517"))
CASES = int(os.environ.get("APERCU_FUZZ_CASES", "6000"))
CORPUS_CASES = CASES // 3
MAX_REPORTED = 10


# Every crasher and time bomb the fuzzer found, as a named, deterministic edit of a generated seed image, with
# what it did before it was fixed.


@dataclass(frozen=True)
class Regression:
    build: Callable[[], bytes]
    found: str


def tiff_tag(page: int, tag: int, /, **fields: int) -> Callable[[bytearray], None]:
    return lambda data: fuzzing.set_tiff_fields(data, page, tag, **fields)


def both(*edits: Callable[[bytearray], None]) -> Callable[[bytearray], None]:
    def apply(data: bytearray) -> None:
        for edit in edits:
            edit(data)

    return apply


def short_graphic_control_block(data: bytearray) -> None:
    """The second frame's Graphic Control Extension declares 2 bytes instead of 4 (its transparency flag set)."""
    labels = [pos for name, pos, _ in fuzzing.gif_fields(data) if name == "extension label" and data[pos] == 0xF9]
    data[labels[1] + 1] = 2


def truncated_after_second_frame_descriptor(data: bytearray) -> None:
    _, pos, _ = [f for f in fuzzing.gif_fields(data) if f[0] == "LZW code size"][1]
    del data[pos:]


def truncated_in_second_frame_descriptor(data: bytearray) -> None:
    _, pos, _ = [f for f in fuzzing.gif_fields(data) if f[0] == "frame x"][1]
    del data[pos + 6 :]  # 7 of its 9 bytes (after the 0x2C)


def bigtiff_next_page_beyond_2_63(data: bytearray) -> None:
    """BigTIFF: 8-byte first-IFD offset at 8; an IFD is an 8-byte count, 20-byte entries, an 8-byte next offset."""
    ifd = fuzzing.get(data, 8, 8, "<")
    fuzzing.put(data, ifd + 8 + 20 * fuzzing.get(data, ifd, 8, "<"), 8, 2**63, "<")


REGRESSIONS = {
    # Pillow reads the other pages' IFDs only when counting frames (n_frames), after opening the first fine.
    "tiff-page2-without-width": Regression(
        fuzzing.edited("tiff-rich", tiff_tag(1, 256, tag=0x9999)),
        "TypeError: Missing dimensions (from KeyError: 256), TiffImagePlugin._setup via n_frames in metadata.basic"),
    "tiff-page2-rational-width": Regression(
        fuzzing.edited("tiff-rich", tiff_tag(1, 256, type=5)), "ValueError: Invalid dimensions, _setup via n_frames"),
    "tiff-page2-unknown-pixel-mode": Regression(
        fuzzing.edited("tiff-rich", tiff_tag(1, 262, value=5)),
        "SyntaxError: unknown pixel mode (from KeyError((b'II', 5, (1,), 1, (16,), ()))), _setup via n_frames"),
    "tiff-page2-unknown-compression": Regression(
        fuzzing.edited("tiff-rich", tiff_tag(1, 259, value=8370)), "KeyError: 8370, _setup via n_frames"),
    "tiff-page2-without-strips": Regression(
        fuzzing.edited("tiff-rich", tiff_tag(1, 273, tag=0x9999)),
        "SyntaxError: unknown data organization, _setup via n_frames"),
    "tiff-page2-rational-samples-per-pixel": Regression(
        fuzzing.edited("tiff-tiled-pyramid", tiff_tag(1, 277, type=5)),
        "TypeError: slice indices must be integers or None, _setup via n_frames"),
    "tiff-page2-text-samples-per-pixel": Regression(
        fuzzing.edited("tiff-tiled-pyramid", tiff_tag(1, 277, type=2)),
        "TypeError: '>' not supported between instances of 'str' and 'int', _setup via n_frames"),
    "tiff-page2-two-bits-per-sample-for-three-samples": Regression(
        fuzzing.edited("tiff-tiled-pyramid", tiff_tag(1, 258, count=2)),
        "SyntaxError: unknown data organization (samples and bits disagree), _setup via n_frames"),
    "bigtiff-next-page-beyond-2-63": Regression(
        fuzzing.edited("bigtiff", bigtiff_next_page_beyond_2_63),
        "ValueError: Unable to seek to frame, TiffImagePlugin._seek via n_frames"),
    "tiff-xmp-as-shorts": Regression(
        fuzzing.edited("tiff-rich", tiff_tag(0, 700, type=3)),
        "ValueError: bytes must be in range(0, 256), from embedded._xmp_packet (outside any guard)"),
    # A value count that does not fit the tag: Pillow drops the value lazily, raising when it is asked for.
    "tiff-photometric-with-two-values": Regression(
        fuzzing.edited("tiff-packbits-bilevel", tiff_tag(0, 262, count=2)),
        "KeyError: 262, ImageFileDirectory_v2.__getitem__ via exif.read_exif in embedded.read"),
    "tiff-unopenable-with-undecodable-entry": Regression(
        fuzzing.edited("tiff-packbits-bilevel", both(tiff_tag(0, 259, value=8370), tiff_tag(0, 262, count=2))),
        "KeyError: 262, ImageFileDirectory_v2.__getitem__ via exif.read_exif in analyse._salvage, while handling "
        "the KeyError: 8370 of Pillow's open"),
    # Pillow's GIF reader indexes blocks without checking their length while it counts frames.
    "gif-short-graphic-control-block": Regression(
        fuzzing.edited("gif-animated", short_graphic_control_block),
        "IndexError: index out of range, GifImagePlugin._seek via n_frames"),
    "gif-truncated-after-frame-descriptor": Regression(
        fuzzing.edited("gif-animated", truncated_after_second_frame_descriptor),
        "IndexError: index out of range, GifImagePlugin._seek via n_frames"),
    "gif-truncated-in-frame-descriptor": Regression(
        fuzzing.edited("gif-animated", truncated_in_second_frame_descriptor),
        "struct.error: unpack_from requires a buffer of at least 8 bytes, PIL._binary.i16le via n_frames"),
    # Time bombs: small files declaring a large canvas (within the pixel limit) that libvips filled, slowly.
    "png-truncated-tall-canvas": Regression(
        fuzzing.edited("png-16bit", lambda d: fuzzing.set_png_size(d, 24, 2_101_264)),
        "17-53 s: libvips ignored thumbnail_buffer's fail_on and zero-filled 2 million missing rows"),
    "png-truncated-wide-canvas": Regression(
        fuzzing.edited("png-rich", lambda d: fuzzing.set_png_size(d, 4_000_000, 24)),
        "4-16 s: libvips on a 4000000-pixel-wide image"),
    "tiff-tiled-wide-canvas": Regression(
        fuzzing.edited("tiff-tiled-pyramid", both(tiff_tag(0, 256, type=4, value=1_600_000),
                                                   tiff_tag(0, 257, type=4, value=24))),
        "60-95 s: libvips is quadratic in the tiles across a tiled TIFF (25000 here)"),
}


def fuzz(bases: dict[str, bytes], cases: int, scratch: Path, replay_flags: str = "") -> None:
    """Run cases 0..cases-1 of SEED over the bases; fail listing (up to MAX_REPORTED) what went wrong."""
    failures: list[str] = []
    slowest = (0.0, -1)
    for index in range(cases):
        case = fuzzing.make_case(SEED, index, bases)
        outcome = fuzzing.run_case(case.data, scratch, render=index % 8 == 0)
        slowest = max(slowest, (outcome.seconds, index))
        problems = [f"{c.entry} raised {c.error} at {fuzzing.origin(c.trace)}" for c in outcome.crashes]
        if outcome.seconds > fuzzing.TIME_BOUND:
            problems.append(f"took {outcome.seconds:.1f} s, more than {fuzzing.TIME_BOUND:g} s")
        if problems:
            replay = f".venv/bin/python bench/fuzz.py --seed {SEED} --case {index}{replay_flags}"
            failures.append(f"{case.describe()}\n    " + "\n    ".join(problems) + f"\n    replay: {replay}")
    print(f"{cases} cases, seed {SEED}; slowest: case {slowest[1]}, {slowest[0]:.2f} s")
    assert not failures, f"{len(failures)} of {cases} cases failed:\n" + "\n".join(failures[:MAX_REPORTED])


def test_fuzz_generated_images(tmp_path: Path) -> None:
    fuzz(fuzzing.generated_bases(), CASES, tmp_path / "case")


@pytest.mark.corpus
def test_fuzz_corpus_sample(tmp_path: Path) -> None:
    require_corpus()
    fuzz(fuzzing.corpus_bases(corpus_files()), CORPUS_CASES, tmp_path / "case", replay_flags=" --corpus")


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzzer_finding_stays_fixed(name: str, tmp_path: Path) -> None:
    """Each crasher and time bomb the fuzzer found, rebuilt from a seed image, at the production pixel limit."""
    regression = REGRESSIONS[name]
    outcome = fuzzing.run_case(regression.build(), tmp_path / "case", fuzzing.PRODUCTION, render=True)
    assert not outcome.crashes, f"{name} (was: {regression.found}): {outcome.crashes[0].trace}"
    assert outcome.seconds < fuzzing.TIME_BOUND, f"{name} (was: {regression.found}) took {outcome.seconds:.1f} s"


def test_a_broken_later_page_costs_only_the_frame_count() -> None:
    """The first page opened fine: it is still analysed and thumbnailed, with a warning about the rest."""
    result = analyse(REGRESSIONS["tiff-page2-unknown-pixel-mode"].build())
    meta = result.metadata
    assert meta["frames"] == 1 and (meta["width"], meta["height"]) == (30, 40)  # orientation 6
    assert meta["exif"]["Make"] == "Apercu Test Camera" and meta["gps"]["latitude"] > 48
    assert any("frames after the first unreadable: SyntaxError: unknown pixel mode" in w for w in meta["warnings"])


def test_an_undecodable_entry_costs_only_that_entry() -> None:
    meta = analyse(REGRESSIONS["tiff-photometric-with-two-values"].build()).metadata
    assert meta["exif"]["ImageWidth"] == 40 and "PhotometricInterpretation" not in meta["exif"]
    assert any("IFD0 entries unreadable: 0x0106 (KeyError)" in w for w in meta["warnings"])


def test_a_tiff_pillow_cannot_open_is_salvaged_without_its_broken_entry() -> None:
    with pytest.raises(ProcessingFailed, match=r"^cannot read image: TIFF opening failed\. 8370$") as failure:
        analyse(REGRESSIONS["tiff-unopenable-with-undecodable-entry"].build())
    meta = failure.value.metadata
    assert meta["format"] == "TIFF" and len(meta["sha256"]) == 64
    assert meta["exif"]["Compression"] == 8370 and "PhotometricInterpretation" not in meta["exif"]
    assert any("IFD0 entries unreadable: 0x0106 (KeyError)" in w for w in meta["warnings"])


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (KeyError(256), "cannot read image: KeyError: 256"),
        (MemoryError(), "the image needs more memory than an imaging process is allowed"),
    ],
)
def test_the_boundary_words_any_exception(failure: Exception, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from apercu.imaging import analyse as module

    def fail(data: bytes) -> None:
        raise failure

    monkeypatch.setattr(module, "_open", fail)
    with pytest.raises(ProcessingFailed) as raised:
        analyse(fuzzing.generated_bases()["jpeg-rich"])
    assert str(raised.value) == message


@pytest.mark.parametrize("failure", [KeyboardInterrupt, SystemExit])
def test_the_boundary_lets_interrupts_through(failure: type[BaseException], monkeypatch: pytest.MonkeyPatch) -> None:
    from apercu.imaging import analyse as module

    def fail(data: bytes) -> None:
        raise failure()

    monkeypatch.setattr(module, "_open", fail)
    with pytest.raises(failure):
        analyse(fuzzing.generated_bases()["jpeg-rich"])


BLOCKS = {"exif", "gps", "xmp", "iptc", "icc", "text"}


@pytest.mark.parametrize(
    ("reader", "lost"),
    [
        ("apercu.imaging.exif.read_exif", {"exif", "gps"}),  # GPS is decoded from the EXIF tags
        ("apercu.imaging.embedded.read_gps", {"gps"}),
        ("apercu.imaging.embedded.read_xmp", {"xmp"}),
        ("apercu.imaging.embedded.read_iptc", {"iptc"}),
        ("apercu.imaging.embedded.read_icc", {"icc"}),
    ],
)
def test_a_reader_that_fails_costs_only_its_block(reader: str, lost: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise KeyError(256)

    monkeypatch.setattr(reader, fail)
    result = analyse(fuzzing.generated_bases()["jpeg-rich"])
    assert BLOCKS - result.metadata.keys() == lost
    assert any(w.endswith("unreadable: KeyError: 256") for w in result.metadata["warnings"])
    assert result.thumbnail.width == 48  # orientation 6 still applied: 64x48 stored


def test_a_salvage_that_fails_only_salvages_less(monkeypatch: pytest.MonkeyPatch) -> None:
    from apercu.imaging import analyse as module

    def fail(*args: object) -> None:
        raise struct_error("unpack_from requires a buffer of at least 2 bytes")

    monkeypatch.setattr(module, "_salvage", fail)
    with pytest.raises(ProcessingFailed, match="^cannot read image: TIFF opening failed") as failure:
        analyse(REGRESSIONS["tiff-unopenable-with-undecodable-entry"].build())
    assert failure.value.metadata == {}
