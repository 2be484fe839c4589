"""Where settings come from (`apercu.config`): secrets read from APERCU_<NAME>_FILE, and `apercu config`, which
shows every setting in force, secrets masked, with its source."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

import pytest
from live import Service

from apercu import cli
from apercu.config import MASK, SettingError, Settings, Source, Spec, env_name, file_variables, mask_url

SECRET = "a-url-signing-key-of-32-bytes-or-more"
TOKEN = "scraper-token-1"


def secret_file(tmp_path: Path, text: str | bytes, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(SettingError) as raised:
        Settings.from_env(environ)
    return str(raised.value)


def test_every_secret_and_every_url_with_credentials_has_a_file_form_and_nothing_else_does() -> None:
    confidential = {f.name for f in fields(Settings) if f.metadata.get("spec", Spec()).confidential}
    assert set(file_variables()) == confidential - {"api_keys"}
    assert {"url_key", "webhook_secret", "metrics_token", "database_url", "broker_url"} <= set(file_variables())
    assert file_variables()["url_key"] == "APERCU_URL_KEY_FILE" and "port" not in file_variables()
    # APERCU_API_KEYS_FILE is a setting of its own (a file of named, scoped keys), not the secret's file form
    assert "api_keys" not in file_variables() and "APERCU_API_KEYS_FILE" in {env_name(f.name) for f in fields(Settings)}


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\n\n", ""])
def test_a_secret_is_read_from_its_file_without_the_line_break_that_ends_it(tmp_path: Path, ending: str) -> None:
    path = secret_file(tmp_path, SECRET + ending)
    settings, sources = Settings.traced({"APERCU_URL_KEY_FILE": path})
    assert settings.url_key == SECRET
    assert sources["url_key"] == Source("file", f"APERCU_URL_KEY_FILE={path}")
    assert sources["port"] == Source("default")


def test_a_file_value_is_checked_as_the_variable_would_be(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "short")
    refused = refusal({"APERCU_URL_KEY_FILE": path})
    assert refused.startswith("APERCU_URL_KEY is not at least 32 bytes")
    assert refused.endswith(f" (read from APERCU_URL_KEY_FILE={path})")  # the variable the operator did set
    assert "short" not in refused  # a secret, even a bad one, is never shown


def test_a_secret_given_both_ways_is_refused(tmp_path: Path) -> None:
    environ = {"APERCU_URL_KEY": SECRET, "APERCU_URL_KEY_FILE": secret_file(tmp_path, SECRET)}
    assert refusal(environ) == "APERCU_URL_KEY and APERCU_URL_KEY_FILE are both set: give its value one way only"
    assert Settings.from_env({**environ, "APERCU_URL_KEY": ""}).url_key == SECRET  # empty is unset, as ever


@pytest.mark.parametrize(
    "content, reason",
    [(None, "cannot read it (No such file or directory)"), (b"", "the file is empty"), (b"\n", "the file is empty"),
     (b"\xff\xfe key", "cannot read it (not UTF-8 text)"), ("directory", "cannot read it (Is a directory)")],
    ids=["missing", "empty", "blank", "binary", "directory"],
)
def test_a_file_that_holds_no_secret_is_a_one_line_refusal(
    tmp_path: Path, content: bytes | str | None, reason: str
) -> None:
    path = tmp_path / "secret"
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    assert refusal({"APERCU_METRICS_TOKEN_FILE": str(path)}) == f"APERCU_METRICS_TOKEN_FILE={path}: {reason}"


def test_only_secrets_have_a_file_form() -> None:
    assert refusal({"APERCU_PORT_FILE": "/etc/hostname"}) == (
        "APERCU_PORT_FILE is not a setting: APERCU_PORT is no secret, and only secrets are read from a file")
    assert refusal({"APERCU_URL_KEY_FIEL": "/x"}) == (
        "APERCU_URL_KEY_FIEL is not a setting; did you mean APERCU_URL_KEY_FILE?")


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://apercu:s3cret@db:5432/apercu", f"postgresql://apercu:{MASK}@db:5432/apercu"),
        ("redis://:s3cret@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("amqp://guest@mq//", "amqp://guest@mq//"),
        ("postgresql://db/x?sslmode=require&password=s3cret", f"postgresql://db/x?sslmode=require&password={MASK}"),
        ("https://hooks.example/in?token=s3cret&x=1", f"https://hooks.example/in?token={MASK}&x=1"),
        ("postgresql://u:p%40ss@db@x/y", f"postgresql://u:{MASK}@x/y"),
    ],
)
def test_a_url_shows_all_but_its_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def config_output(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["config", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment with one value from each kind of source but a flag, and secrets of each kind."""
    environ = {
        "APERCU_URL_KEY_FILE": secret_file(tmp_path, SECRET + "\n"),
        "APERCU_DATABASE_URL": "postgresql://apercu:pg-password@db:5432/apercu",
        "APERCU_METRICS_PUBLIC": "false",
        "APERCU_METRICS_TOKEN": TOKEN,
        "APERCU_PORT": "8000",
    }
    for name in [n for n in os.environ if n.startswith("APERCU_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return environ


def test_apercu_config_shows_each_setting_masked_with_its_source(
    deployment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = config_output(capsys, "--port", "9000")
    assert (code, err) == (0, "")
    assert SECRET not in out and "pg-password" not in out and TOKEN not in out
    lines = {line.split()[0]: line.split(None, 2)[1:] for line in out.splitlines()}
    assert set(lines) == {env_name(f.name) for f in fields(Settings)}  # every setting, once
    assert lines["APERCU_URL_KEY"] == [MASK, f"file APERCU_URL_KEY_FILE={deployment['APERCU_URL_KEY_FILE']}"]
    assert lines["APERCU_METRICS_TOKEN"] == [MASK, "environment APERCU_METRICS_TOKEN"]
    assert lines["APERCU_DATABASE_URL"] == [f"postgresql://apercu:{MASK}@db:5432/apercu",
                                            "environment APERCU_DATABASE_URL"]
    assert lines["APERCU_PORT"] == ["9000", "flag --port"]  # the flag wins over APERCU_PORT, as for `serve`
    assert lines["APERCU_QUEUE"] == ["apercu", "default"]
    assert lines["APERCU_WEBHOOK_SECRET"] == ["(empty)", "default"]  # a secret that is not set says so


def test_apercu_config_json_says_whether_a_secret_is_set(
    deployment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = config_output(capsys, "--json", "--data-dir", "/srv/apercu")
    assert code == 0 and SECRET not in out and TOKEN not in out
    shown = {item["variable"]: item for item in json.loads(out)}
    assert len(shown) == len(fields(Settings))
    assert shown["APERCU_URL_KEY"] == {"variable": "APERCU_URL_KEY", "value": MASK, "secret": True, "set": True,
                                       "source": "file", "from": f"APERCU_URL_KEY_FILE={deployment['APERCU_URL_KEY_FILE']}"}
    assert shown["APERCU_WEBHOOK_SECRET"] == {"variable": "APERCU_WEBHOOK_SECRET", "value": "", "secret": True,
                                              "set": False, "source": "default", "from": ""}
    assert shown["APERCU_DATA_DIR"]["value"] == "/srv/apercu" and shown["APERCU_DATA_DIR"]["from"] == "--data-dir"
    assert shown["APERCU_THUMBNAIL_SIZES"]["value"] == "128,256,512"  # as the environment would give it
    assert shown["APERCU_PORT"]["source"] == "environment" and not shown["APERCU_PORT"]["secret"]


def test_apercu_config_refuses_what_serve_would_refuse(
    deployment: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APERCU_URL_KEY_FILE", "/nonexistent/url-key")
    assert config_output(capsys, "--json") == (
        2, "", "apercu config: APERCU_URL_KEY_FILE=/nonexistent/url-key: cannot read it (No such file or directory)\n")


def test_a_child_of_serve_reads_a_secret_from_its_file_too(tmp_path: Path) -> None:
    """`serve` hands its children the environment that rebuilds its settings, without writing a secret read from a
    file into it (and without giving it both ways, which they would refuse)."""
    environ = {"APERCU_URL_KEY_FILE": secret_file(tmp_path, SECRET), "APERCU_PORT": "8000"}
    settings = Settings.from_env(environ, port=9000)
    child = settings.child_environment(environ)
    assert "APERCU_URL_KEY" not in child and child["APERCU_URL_KEY_FILE"] == environ["APERCU_URL_KEY_FILE"]
    assert child["APERCU_PORT"] == "9000"
    assert Settings.from_env(child) == settings


@pytest.mark.integration
def test_a_served_deployment_runs_on_secrets_from_files(tmp_path: Path) -> None:
    """A real `apercu serve`, its token and its database URL given only as files: both halves start (`/readyz`
    waits for the worker), and the web holds the token (a scrape with it passes, one without is refused)."""
    data = tmp_path / "data"
    database = f"sqlite:///{(tmp_path / 'catalog.sqlite').resolve()}"
    env = {
        "APERCU_METRICS_PUBLIC": "false",
        "APERCU_METRICS_TOKEN_FILE": secret_file(tmp_path, TOKEN + "\n", "token"),
        "APERCU_DATABASE_URL_FILE": secret_file(tmp_path, database + "\n", "database"),
    }
    service = Service(data, env).start("serve")
    try:
        assert service.get("/metrics").status == 401
        assert service.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
        assert (tmp_path / "catalog.sqlite").exists() and not (data / "catalog.sqlite").exists()
    finally:
        assert service.stop() == [0], service.log.read_text()[-3000:]
