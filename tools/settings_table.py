"""The table of settings in docs/CONFIGURATION.md, generated from `apercu.config.Settings`.

Why generated: a default or a range written by hand drifts from the code the day someone changes the code. Here
the variable, its command-line flag, its default and what it allows come from the declarations in `config.py`
(and the flags from `apercu.cli`'s parser); only the meaning column is written by people, and it is kept from
the document as it stands. A setting that is new to the table gets its comment from `config.py` as a first
meaning; one with neither is marked TODO, which `tests/test_docs_facts.py` refuses, as it refuses a table that
is not what this script would write.

    python tools/settings_table.py            # rewrite the table in docs/CONFIGURATION.md
    python tools/settings_table.py --check    # exit 1 if it is not up to date
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from apercu import cli, config
from apercu.config import Settings, Spec, env_name

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "CONFIGURATION.md"
BEGIN = "<!-- settings table: generated from src/apercu/config.py by `python tools/settings_table.py`; " \
        "edit only the meaning column -->"
END = "<!-- end of settings table -->"
HEADER = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
TODO = "TODO: say what this setting is for"
# The flags of `serve`, `web` and `worker` whose dest is not the setting's own name (see `cli._settings`).
FLAG_ALIASES = {"concurrency": "worker_concurrency"}


def flags() -> dict[str, str]:
    """Each setting's command-line flag, from the parser of `apercu serve | web | worker`."""
    parser = cli.build_parser()
    found: dict[str, str] = {}
    for action in parser._subparsers._group_actions if parser._subparsers else ():  # argparse keeps them private
        for name, sub in getattr(action, "choices", {}).items():
            if name not in ("serve", "web", "worker"):
                continue
            for option in sub._actions:
                if option.option_strings and option.dest != "help":
                    found[FLAG_ALIASES.get(option.dest, option.dest)] = option.option_strings[-1]
    return found


def comments() -> dict[str, str]:
    """The comment beside each field in config.py's `Settings`, a first meaning for a setting new to the table."""
    source = inspect.getsource(config)
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "Settings":
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    _, _, comment = lines[item.lineno - 1].partition("  # ")
                    if comment:
                        found[item.target.id] = comment.strip()
    return found


def default_text(value: Any) -> str:
    """A default as the table shows it: `unset` for nothing, the environment's text otherwise."""
    if value in ("", (), frozenset()):
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return "`" + ",".join(map(str, value)) + "`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and value >= config.MIB and value % config.MIB == 0:
        return f"`{value}` ({value // config.MIB} MiB)"
    return f"`{value}`"


def allowed_text(kind: Any, spec: Spec) -> str:
    """What a value may be, in the words `config.py` refuses others with."""
    container = get_origin(kind)
    item = get_args(kind)[0] if container in (tuple, frozenset) else kind
    words: str
    if spec.rule is not None:
        words = spec.rule.allowed
    elif item is bool:
        words = "true or false (1/0, yes/no, on/off)"
    elif get_origin(item) is Literal:
        words = "one of " + ", ".join(f"`{choice}`" for choice in get_args(item))
    else:
        words = {int: "an integer", float: "a number", Path: "a path"}.get(item, "text")
    if container in (tuple, frozenset):
        words = "a comma-separated list" + ("" if words == "text" else f", each {words}")
    return words + ("; a secret, never shown" if spec.secret else "")


def rows(meanings: dict[str, str]) -> list[str]:
    """The table's rows, one per setting, in config.py's order."""
    kinds, flag_of, noted = config._kinds(), flags(), comments()  # config's resolved types, cached there
    from_files = file_variables()
    out = []
    for f in fields(Settings):
        variable = env_name(f.name)
        name = f"`{variable}`" + (f" (`{flag_of[f.name]}`)" if f.name in flag_of else "")
        allowed = allowed_text(kinds[f.name], _spec(f))
        if f.name in from_files:
            allowed += f"; or read from the file `{from_files[f.name]}` names"
        meaning = meanings.get(variable) or noted.get(f.name) or TODO
        out.append(f"| {name} | {default_text(_default(f))} | {allowed} | {meaning} |")
    return out


def file_variables() -> dict[str, str]:
    """The settings that may be read from a file, and the variable naming it, where config.py offers that
    (`config.file_variables`); none where it does not."""
    offered: dict[str, str] = getattr(config, "file_variables", dict)()
    return offered


def _default(f: Field[Any]) -> Any:
    """A setting's default: `Settings` declares every one as a value (all are immutable), never a factory."""
    assert f.default is not MISSING, f.name
    return f.default


def _spec(f: Field[Any]) -> Spec:
    spec: Spec = f.metadata.get("spec", config.PLAIN)
    return spec


def current(text: str) -> tuple[str, str, list[str]]:
    """The document split around its table: (before, after, the table's rows as they are)."""
    before, begin, rest = text.partition(BEGIN)
    table, end, after = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{DOCUMENT}: the markers of the settings table are missing")
    lines = [line for line in table.strip().splitlines() if line.startswith("|")]
    return before, after, lines[len(HEADER):]


def meanings_of(table: list[str]) -> dict[str, str]:
    """The meaning column of the rows as they are, by variable."""
    found = {}
    for line in table:
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        variable = re.search(r"`(APERCU_[A-Z0-9_]+)`", cells[0])
        if variable:
            found[variable.group(1)] = cells[-1].strip()
    return found


def generated(text: str) -> str:
    """The whole document with its table as this script writes it."""
    before, after, table = current(text)
    body = "\n".join([*HEADER, *rows(meanings_of(table))])
    return f"{before}{BEGIN}\n{body}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is not up to date")
    args = parser.parse_args(argv)
    text = DOCUMENT.read_text()
    new = generated(text)
    if args.check:
        if new != text:
            print(f"{DOCUMENT} is out of date: run python tools/settings_table.py", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
