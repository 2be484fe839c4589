"""`apercu inspect`: the metadata the API would return, for files on disk, without a server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from apercu.config import Settings
from apercu.imaging.analyse import Options, ProcessingFailed, analyse
from apercu.imaging.formats import sniff

PROGRESS_ABOVE = 5


def iter_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def inspect_file(path: Path, options: Options) -> dict[str, Any]:
    """{"path", "metadata"} or {"path", "error"}: one line of `--json` output. Whatever the file holds, this
    returns: sniff answers None for what it does not recognise, and analyse raises only ProcessingFailed."""
    try:
        with path.open("rb") as fp:
            if sniff(fp) is None:
                return {"path": str(path), "error": "not an image in a supported format"}
            data = fp.read()
        return {"path": str(path), "metadata": analyse(data, options).metadata}
    except ProcessingFailed as exc:
        return {"path": str(path), "error": str(exc), **({"metadata": exc.metadata} if exc.metadata else {})}
    except OSError as exc:
        return {"path": str(path), "error": str(exc)}


def summary(result: dict[str, Any]) -> str:
    """A few readable lines per file: the basic facts, then each block's fields as dotted names."""
    meta = result.get("metadata")
    head = f"{result['path']}: error: {result['error']}" if "error" in result else f"{result['path']}:"
    if not meta:
        return head
    lines = [head]
    if "width" in meta:
        lines.append(f"  {meta['format']} {meta['width']}x{meta['height']} {meta['mode']}, {meta['bytes']} bytes")
    for key, value in meta.items():
        if isinstance(value, dict):
            lines += [f"  {key}.{name}: {json.dumps(inner, ensure_ascii=False)[:200]}" for name, inner in value.items()]
        elif key not in ("format", "width", "height", "mode", "bytes"):
            lines.append(f"  {key}: {json.dumps(value, ensure_ascii=False)[:200]}")
    return "\n".join(lines)


def inspect_paths(
    paths: list[Path], settings: Settings, *, as_json: bool, out: TextIO = sys.stdout, progress: bool = True
) -> int:
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"apercu inspect: no such file or directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    options = settings.imaging_options()
    files = list(iter_files(paths))  # all of them first: the bar's total
    with progress_bar(len(files), progress and wants_bar(sys.stderr, len(files))) as bar:
        for path in files:
            result = inspect_file(path, options)
            line = json.dumps(result, allow_nan=False, ensure_ascii=False) if as_json else summary(result)
            emit(line, out, bar)
            bar.update(1)
    return 0


def wants_bar(stream: TextIO, count: int) -> bool:
    """A bar for people at a terminal, and only when there is enough to wait for; never in logs or pipes,
    which get exactly the lines and nothing else."""
    return count > PROGRESS_ABOVE and stream.isatty()


def progress_bar(total: int, enabled: bool) -> tqdm[Any]:
    """Files done, rate and ETA, on stderr so that stdout (the results, perhaps JSON Lines) stays clean."""
    return tqdm(total=total, unit="file", desc="inspect", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def emit(line: str, out: TextIO, bar: tqdm[Any]) -> None:
    """Print one result, flushed (a reader downstream sees each file as it is done); with a bar showing, the bar
    is lifted for the line and drawn again under it, so the two never mix on one terminal."""
    if bar.disable or not out.isatty():
        print(line, file=out, flush=True)
        return
    with bar.external_write_mode(file=out):
        print(line, file=out, flush=True)
