"""`apercu inspect`: the metadata the API would return, for files on disk, without a server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

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


def inspect_paths(paths: list[Path], settings: Settings, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"apercu inspect: no such file or directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    options = settings.imaging_options()
    files = list(iter_files(paths))
    progress = len(files) > PROGRESS_ABOVE and sys.stderr.isatty()  # a bar for people, not for logs
    for index, path in enumerate(files, 1):
        result = inspect_file(path, options)
        line = json.dumps(result, allow_nan=False, ensure_ascii=False) if as_json else summary(result)
        print(line, file=out, flush=True)
        if progress:
            print(f"\r[{index}/{len(files)}] {path.name[:60]:<60}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return 0
