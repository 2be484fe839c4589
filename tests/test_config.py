"""The settings (`apercu.config`): read once, checked whole at start, refused with a message that says what to fix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from apercu.config import NOT_SETTINGS, SettingError, Settings, env_name, file_variables

ROOT = Path(__file__).resolve().parents[1]


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(SettingError) as raised:
        Settings.from_env(environ)
    return str(raised.value)


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("APERCU_WEB_WORKER", "APERCU_WEB_WORKERS"),
        ("APERCU_PROT", "APERCU_PORT"),
        ("APERCU_THUMBNAIL_SIZ", "APERCU_THUMBNAIL_SIZE"),
        ("APERCU_API_KEYSFILE", "APERCU_API_KEYS_FILE"),
        ("APERCU_CORPSE", "APERCU_CORPUS"),  # the tools' names are known names too
    ],
)
def test_an_unknown_variable_is_refused_naming_the_closest_setting(name: str, suggestion: str) -> None:
    assert refusal({name: "4"}) == f"{name} is not a setting; did you mean {suggestion}?"


def test_an_unknown_variable_like_no_setting_is_refused_all_the_same() -> None:
    assert refusal({"APERCU_FOO": "1"}) == "APERCU_FOO is not a setting"
    both = refusal({"APERCU_WEB_WORKER": "4", "APERCU_FOO": "1", "APERCU_PORT": "8080"})
    assert both.splitlines() == ["APERCU_FOO is not a setting",
                                 "APERCU_WEB_WORKER is not a setting; did you mean APERCU_WEB_WORKERS?"]


def test_other_variables_are_not_the_settings_business() -> None:
    environ = {name: "1" for name in NOT_SETTINGS} | {"APERCUX": "1", "PATH": "/bin", "apercu_port": "-5"}
    assert Settings.from_env(environ) == Settings()


def test_every_apercu_variable_in_the_repository_is_a_setting_or_declared_as_not_one() -> None:
    """The one list of what the tools around the service own stays complete: a test, a bench or the upload
    client that reads a new APERCU_ variable must declare it, or every service it starts refuses to."""
    files = [ROOT / "Makefile", ROOT / "README.md"]
    for folder in ("src", "tests", "bench", ".ci"):
        files += [path for path in (ROOT / folder).rglob("*") if path.is_file() and path.suffix != ".pyc"]
    files.remove(Path(__file__).resolve())  # this file misspells names on purpose
    files.remove(Path(__file__).resolve().with_name("test_config_sources.py"))  # and so does this one
    known = {env_name(name) for name in get_type_hints(Settings)} | set(NOT_SETTINGS) | set(file_variables().values())
    found = {name for path in files for name in re.findall(r"APERCU_[A-Z0-9_]+", path.read_text(errors="replace"))}
    unknown = {name for name in found if not name.endswith("_")} - known  # APERCU_REQUIRE_*: a family, not a name
    assert not unknown
    assert "APERCU_DEDUP" in found and "APERCU_CORPUS" in found  # the scan saw both kinds


@pytest.mark.parametrize(
    "variable, value, allowed",
    [
        ("APERCU_PORT", "-5", "between 1 and 65535"),
        ("APERCU_PORT", "0", "between 1 and 65535"),
        ("APERCU_PORT", "65536", "between 1 and 65535"),
        ("APERCU_PORT", "eighty", "an integer"),
        ("APERCU_METRICS_PORT", "-1", "between 0 and 65535"),
        ("APERCU_THUMBNAIL_QUALITY", "500", "between 1 and 100"),
        ("APERCU_THUMBNAIL_QUALITY", "0", "between 1 and 100"),
        ("APERCU_THUMBNAIL_SIZE", "15", "between 16 and 4096"),
        ("APERCU_TASK_TIME_LIMIT", "-1", "more than 0"),
        ("APERCU_TASK_TIME_LIMIT", "0", "more than 0"),
        ("APERCU_TASK_TIME_LIMIT", "nan", "a number"),
        ("APERCU_REQUEST_TIMEOUT", "inf", "a number"),
        ("APERCU_BROKER_POLL_INTERVAL", "0", "more than 0"),
        ("APERCU_WEBHOOK_BACKOFF", "-5", "more than 0"),
        ("APERCU_WEB_WORKERS", "0", "1 or more"),
        ("APERCU_WEB_THREADS", "0", "1 or more"),
        ("APERCU_WEB_CONNECTIONS", "0", "1 or more"),
        ("APERCU_MAX_ATTEMPTS", "0", "1 or more"),
        ("APERCU_WEBHOOK_ATTEMPTS", "0", "1 or more"),
        ("APERCU_RECOVERY_INTERVAL", "0", "1 or more"),
        ("APERCU_ORPHAN_INTERVAL", "0", "1 or more"),
        ("APERCU_MAX_UPLOAD_BYTES", "0", "1 or more"),
        ("APERCU_MAX_PIXELS", "0", "1 or more"),
        ("APERCU_WORKER_CONCURRENCY", "-1", "0 or more"),
        ("APERCU_MAX_PENDING", "-1", "0 or more"),
        ("APERCU_MIN_FREE_MB", "-1", "0 or more"),
        ("APERCU_IDEMPOTENCY_TTL", "-1", "0 or more"),
        ("APERCU_RECOVERY_GRACE", "-1", "0 or more"),
        ("APERCU_ORPHAN_GRACE", "-1", "0 or more"),
        ("APERCU_RESTART_BACKOFF_MAX", "-1", "0 or more"),
        ("APERCU_REQUEST_MIN_RATE", "-1", "0 or more"),
        ("APERCU_WORKER_MEMORY_LIMIT", "-1", "0 or more"),
        ("APERCU_S3_PRESIGN", "604801", "between 0 and 604800"),
        ("APERCU_GPS", "Drop", "one of keep, drop"),
        ("APERCU_DEDUP", "on", "one of off, reuse"),
        ("APERCU_LOG_FORMAT", "yaml", "one of text, json"),
        ("APERCU_LOG_LEVEL", "loud", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("APERCU_EXIFTOOL", "maybe", "one of 1, true, yes, on, 0, false, no, off"),
        ("APERCU_THUMBNAIL_BACKGROUND", "white", "a colour like #rrggbb"),
    ],
)
def test_a_value_out_of_what_its_setting_allows_is_refused(variable: str, value: str, allowed: str) -> None:
    assert refusal({variable: value}) == f"{variable}={value!r} is not {allowed}"


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("APERCU_THUMBNAIL_SIZES", "128,big", "APERCU_THUMBNAIL_SIZES size 2 ('big') is not an integer"),
        ("APERCU_THUMBNAIL_SIZES", "64,4097", "APERCU_THUMBNAIL_SIZES size 2 ('4097') is not between 16 and 4096"),
        ("APERCU_THUMBNAIL_SIZES", " , ", "APERCU_THUMBNAIL_SIZES is set but holds no size"),
        ("APERCU_CORS_ORIGINS", "https://a.example/",
         "APERCU_CORS_ORIGINS origin 1 ('https://a.example/') is not an origin like https://example.com:8443"),
        ("APERCU_CORS_ORIGINS", "https://a.example,null", "APERCU_CORS_ORIGINS origin 2 ('null') is not an origin"),
        ("APERCU_CORS_ORIGINS", ",", "APERCU_CORS_ORIGINS is set but holds no origin"),
        ("APERCU_WEBHOOK_ALLOWED_HOSTS", ",", "APERCU_WEBHOOK_ALLOWED_HOSTS is set but holds no value"),
        ("APERCU_API_KEYS", "k3y-one,secret two", "APERCU_API_KEYS key 2 is not visible ASCII characters"),
        ("APERCU_API_KEYS", " , ", "APERCU_API_KEYS is set but holds no key"),
    ],
)
def test_each_item_of_a_list_is_checked(variable: str, value: str, message: str) -> None:
    assert refusal({variable: value}).startswith(message)


def test_a_secret_is_never_shown() -> None:
    assert "secret" not in refusal({"APERCU_API_KEYS": "secret two"})
    assert "secret" not in refusal({"APERCU_WEBHOOK_URL": "https://example.com/hook", "APERCU_WEBHOOK_SECRET": ""})


def test_a_webhook_url_needs_a_secret() -> None:
    assert "needs APERCU_WEBHOOK_SECRET" in refusal({"APERCU_WEBHOOK_URL": "https://example.com/hook"})


@pytest.mark.parametrize(
    "environ",
    [
        {"APERCU_PORT": "1", "APERCU_METRICS_PORT": "0", "APERCU_THUMBNAIL_QUALITY": "1", "APERCU_THUMBNAIL_SIZE": "16"},
        {"APERCU_PORT": "65535", "APERCU_METRICS_PORT": "65535", "APERCU_THUMBNAIL_QUALITY": "100",
         "APERCU_THUMBNAIL_SIZES": "16,4096", "APERCU_S3_PRESIGN": "604800"},
        {"APERCU_WORKER_CONCURRENCY": "0", "APERCU_MAX_PENDING": "0", "APERCU_MIN_FREE_MB": "0",
         "APERCU_IDEMPOTENCY_TTL": "0", "APERCU_REQUEST_MIN_RATE": "0", "APERCU_WORKER_MEMORY_LIMIT": "0",
         "APERCU_RECOVERY_GRACE": "0", "APERCU_ORPHAN_GRACE": "0", "APERCU_RESTART_BACKOFF_MAX": "0"},
        {"APERCU_TASK_TIME_LIMIT": "0.05", "APERCU_BROKER_POLL_INTERVAL": "0.2", "APERCU_WEBHOOK_BACKOFF": "0.2",
         "APERCU_REQUEST_TIMEOUT": "1.5", "APERCU_REQUEST_MIN_RATE": str(1024**3), "APERCU_RECOVERY_INTERVAL": "1"},
        # the README's examples
        {"APERCU_API_KEYS": "k3y-one,k3y-two", "APERCU_API_KEYS_FILE": "/etc/apercu/keys",
         "APERCU_CORS_ORIGINS": "https://app.example,https://admin.example", "APERCU_DEDUP": "reuse",
         "APERCU_EXIFTOOL": "1", "APERCU_GPS": "drop", "APERCU_LOG_FORMAT": "json", "APERCU_PUBLIC_THUMBNAILS": "true",
         "APERCU_STORAGE_URL": "s3://my-bucket/apercu", "APERCU_S3_ENDPOINT_URL": "http://s3-host:8333",
         "APERCU_DATABASE_URL": "postgresql://apercu:secret@db-host:5432/apercu",
         "APERCU_BROKER_URL": "redis://redis-host:6379/0", "APERCU_WEBHOOK_URL": "https://example.com/hook",
         "APERCU_WEBHOOK_SECRET": "0123abcd", "APERCU_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,Hooks.Internal",
         "APERCU_THUMBNAIL_BACKGROUND": "#FFffFF", "APERCU_S3_PRESIGN": "600"},
        *({"APERCU_LOG_LEVEL": level, "APERCU_EXIFTOOL": flag}
          for level, flag in (("DEBUG", "yes"), ("info", "on"), ("Warning", "false"), ("critical", "0"))),
    ],
)
def test_every_value_in_use_is_accepted_and_rebuilt_by_to_env(environ: dict[str, str]) -> None:
    settings = Settings.from_env(environ)
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env({**environ, **settings.to_env()}) == settings  # serve's children see both


def test_lists_and_choices_are_parsed_once_into_their_types() -> None:
    settings = Settings.from_env({
        "APERCU_THUMBNAIL_SIZES": " 1024, 64,64", "APERCU_THUMBNAIL_SIZE": "200", "APERCU_API_KEYS": "k1, k2 ,",
        "APERCU_CORS_ORIGINS": "https://App.example,https://b.example:8443", "APERCU_LOG_LEVEL": "warning",
        "APERCU_WEBHOOK_ALLOWED_HOSTS": "Hooks.Internal, 127.0.0.1", "APERCU_PUBLIC_THUMBNAILS": "yes",
    })
    assert settings.thumbnail_sizes == (1024, 64, 64) and settings.sizes == (64, 200, 1024)
    assert settings.sizes is settings.sizes  # computed once, not on every thumbnail request
    assert settings.api_keys == ("k1", "k2")
    assert settings.cors_origins == frozenset({"https://app.example", "https://b.example:8443"})
    assert settings.webhook_allowed_hosts == frozenset({"hooks.internal", "127.0.0.1"})
    assert settings.log_level == "WARNING" and settings.public_thumbnails is True
    assert Settings().sizes == (128, 256, 512) and Settings().api_keys == () and not Settings().cors_origins
    kinds = get_type_hints(Settings)
    assert get_args(kinds["gps"]) == ("keep", "drop") and get_args(kinds["dedup"]) == ("off", "reuse")
    assert get_args(kinds["log_format"]) == ("text", "json") and "WARNING" in get_args(kinds["log_level"])


def test_overrides_are_parsed_and_checked_like_the_environment() -> None:
    settings = Settings.from_env({"APERCU_PORT": "8080"}, port=9000, data_dir="/srv/x", host=None)
    assert settings.port == 9000 and settings.data_dir == Path("/srv/x") and settings.host == "127.0.0.1"
    assert settings.with_overrides(thumbnail_sizes="64", gps="drop", port=None).sizes == (64, 256)
    with pytest.raises(SettingError, match="APERCU_PORT=0 is not between 1 and 65535"):
        settings.with_overrides(port=0)
    with pytest.raises(SettingError, match="APERCU_GPS='Drop'"):
        Settings(gps="Drop")  # type: ignore[arg-type]
    with pytest.raises(SettingError, match="APERCU_WORKER_CONCURRENCY=-2"):
        Settings.from_env({}, worker_concurrency=-2)


def test_settings_read_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APERCU_THUMBNAIL_QUALITY", "70")
    assert Settings.from_env().thumbnail_quality == 70
    monkeypatch.setenv("APERCU_WEB_WORKER", "4")
    with pytest.raises(SettingError, match="did you mean APERCU_WEB_WORKERS"):
        Settings.from_env()


def run(args: list[str], tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APERCU_DATA_DIR": str(tmp_path / "data"), **environ}
    return subprocess.run([sys.executable, "-m", "apercu", *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    "command, environ, message",
    [
        ("web", {"APERCU_WEB_WORKER": "4"}, "APERCU_WEB_WORKER is not a setting; did you mean APERCU_WEB_WORKERS?"),
        ("serve", {"APERCU_PORT": "-5"}, "APERCU_PORT='-5' is not between 1 and 65535"),
        ("worker", {"APERCU_TASK_TIME_LIMIT": "-1"}, "APERCU_TASK_TIME_LIMIT='-1' is not more than 0"),
        ("worker", {"APERCU_THUMBNAIL_QUALITY": "500"}, "APERCU_THUMBNAIL_QUALITY='500' is not between 1 and 100"),
        ("web", {"APERCU_API_KEYS_FILE": "/nonexistent/keys"}, "APERCU_API_KEYS_FILE='/nonexistent/keys' cannot"),
    ],
)
def test_a_bad_setting_stops_the_command_with_its_message(
    tmp_path: Path, command: str, environ: dict[str, str], message: str
) -> None:
    result = run([command], tmp_path, **environ)
    assert result.returncode == 2
    assert f"apercu {command}: {message}" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_cli_flag_is_refused_like_its_setting(tmp_path: Path) -> None:
    result = run(["serve", "--port", "70000"], tmp_path)
    assert result.returncode == 2 and result.stderr == "apercu serve: APERCU_PORT=70000 is not between 1 and 65535\n"


def test_secrets_are_passed_to_children_as_they_are() -> None:
    settings = Settings.from_env({"APERCU_API_KEYS": "k3y-one,k3y-two", "APERCU_WEBHOOK_SECRET": "s e c"})
    assert settings.to_env()["APERCU_API_KEYS"] == "k3y-one,k3y-two"
    assert settings.to_env()["APERCU_WEBHOOK_SECRET"] == "s e c"
