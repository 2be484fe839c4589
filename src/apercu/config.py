"""One settings object, read from APERCU_* environment variables and overridden by CLI flags, checked whole when
it is built.

Every process of a deployment (web, worker, the embedded `serve`) builds its settings the same way, so the
environment is the one place where a deployment is described; `serve` passes its flags on to the worker it
starts through that same environment (`Settings.to_env`).

Each setting is declared once, as a field of `Settings`: its name (the variable's without APERCU_), its type, its
default, what it allows (a `Rule` beside it, or the choices of its `Literal` type) and a comment saying what it
is for. A value may be given as the environment's text (by `from_env`, a CLI flag or a test): it is parsed when
the object is built, comma-separated lists included, so that no consumer parses a setting again. A value the
service cannot run with raises `SettingError` there, naming the variable, the value and what is allowed, and so
does an APERCU_* variable that is no setting (a misspelt name must not silently leave the default in force):
a process with a bad setting does not start.

A secret (`secret=True`, or `credentials=True` for a URL that may hold a password) may also be given as a file,
APERCU_<NAME>_FILE (`file_variables`), the way container platforms hand secrets over; `Settings.traced` says where
each value came from (default, variable, file or flag) and `describe` shows them masked: `apercu config`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit, urlunsplit

from apercu import url_signing
from apercu.imaging.renditions.options import BadOption, parse_presets

if TYPE_CHECKING:
    from apercu.imaging.analyse import Options

T = TypeVar("T")
PREFIX = "APERCU_"
MIB = 1024 * 1024
WEEK = 7 * 24 * 3600  # the longest an S3 presigned URL may be valid (SigV4)
EXIFTOOL_TIMEOUT = 10.0  # seconds exiftool may take over one file's maker notes
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}

# APERCU_* variables that are not the service's settings: the tools around it own them. The upload client's are
# part of its command line; the test suite's and the benches' reach every service process they start, by
# inheritance. Declared here, next to the settings, because this is where an unknown name is refused; a test
# checks that every APERCU_ name in the repository is either a setting or listed here. A list, not a prefix
# reserved for the tools: the upload client's names are the user's and stay, so a list is needed anyway, and
# renaming the test suite's would quietly break every command and CI job that sets them (tests would skip).
NOT_SETTINGS = {
    "APERCU_URL": "apercu upload: the service it sends to",
    "APERCU_API_KEY": "apercu upload: the key it sends",
    "APERCU_READY_FD": "apercu serve: the pipe each half says it is ready on (`supervisor.announce_ready`)",
    "APERCU_CORPUS": "tests and benches: the directory of sample images",
    "APERCU_REQUIRE_CORPUS": "tests: 1 fails (rather than skips) a test that needs the corpus (CI)",
    "APERCU_REQUIRE_SERVICES": "tests: 1 fails (rather than skips) a test that needs PostgreSQL, Redis, RabbitMQ",
    "APERCU_TEST_POSTGRES": "tests: the PostgreSQL database they make their schemas in",
    "APERCU_TEST_REDIS": "tests: the Redis server they use",
    "APERCU_TEST_RABBITMQ": "tests: the RabbitMQ server they use",
    "APERCU_FUZZ_SEED": "tests: the fuzzer's seed",
    "APERCU_FUZZ_CASES": "tests: how many cases the fuzzer runs",
}

Gps = Literal["keep", "drop"]
Dedup = Literal["off", "reuse"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SettingError(ValueError):
    """A setting the service cannot run with; the message names the variable, the value (unless it is a secret)
    and what is allowed. `apercu` prints it and exits non-zero, without a traceback."""


@dataclass(frozen=True)
class Rule:
    """What a value (for a list: each item) may be: `test` passes it, else the value `is not {allowed}`."""

    test: Callable[[Any], object]
    allowed: str
    item: str = "value"  # what one item of a list is called, in messages

    def check(self, value: object, where: str) -> None:
        if not self.test(value):
            raise SettingError(f"{where} is not {self.allowed}")


def between(low: int, high: int, item: str = "value") -> Rule:
    return Rule(lambda value: low <= value <= high, f"between {low} and {high}", item)


def at_least(low: int) -> Rule:
    return Rule(lambda value: value >= low, f"{low} or more")


def above(low: float) -> Rule:
    return Rule(lambda value: value > low, f"more than {low:g}")


def _is_origin(text: str) -> bool:
    """`scheme://host[:port]`, as a browser sends it in Origin: a path, a trailing slash, `*` or `null` never
    match one, so an allow-list holding them is a mistake to refuse."""
    parts = urlsplit(text)
    return bool(parts.scheme and parts.netloc) and not (parts.path or parts.query or parts.fragment or "@" in text)


WHSEC = "whsec_"  # Standard Webhooks' form of an HMAC secret: this prefix, then the key's bytes in base64
WHSEC_MIN_BYTES = 24  # the least that form holds (the spec: 24 to 64 random bytes)


def webhook_key(secret: str) -> bytes:
    """The HMAC-SHA256 key APERCU_WEBHOOK_SECRET stands for: in the Standard Webhooks form `whsec_<base64>`, the
    decoded bytes (what a receiver's `standardwebhooks` library makes of the same text), else the text's UTF-8
    bytes, as before that form was known. ValueError for a `whsec_` text that is not the base64 (padded or not) of
    24 bytes or more: taken as plain text it would sign with a key no receiver's library derives from it."""
    if not secret.startswith(WHSEC):
        return secret.encode()
    text = secret.removeprefix(WHSEC)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None
    if len(key) < WHSEC_MIN_BYTES:
        raise ValueError(f"{len(key)} bytes")
    return key


def _is_webhook_secret(secret: str) -> bool:
    try:
        webhook_key(secret)
    except ValueError:
        return False
    return True


WEBHOOK_SECRET = Rule(_is_webhook_secret, f"{WHSEC} followed by the base64 of {WHSEC_MIN_BYTES} or more bytes (the "
                      f"Standard Webhooks form, e.g. {WHSEC}$(openssl rand -base64 32); a plain secret may not begin "
                      f"with {WHSEC})")


PORT = between(1, 65535)
SIZE = between(16, 4096, "size")  # px, a thumbnail's longest side
COLOUR = Rule(re.compile(r"#?[0-9a-fA-F]{6}").fullmatch, "a colour like #rrggbb")
ORIGIN = Rule(_is_origin, "an origin like https://example.com:8443", "origin")
URL_KEY = Rule(lambda key: not key or len(key.encode()) >= url_signing.MIN_KEY_BYTES,
               f"at least {url_signing.MIN_KEY_BYTES} bytes of UTF-8 (or empty: no signed URLs)")
# visible ASCII but the comma, which separates APERCU_API_KEYS; APERCU_API_KEYS_FILE's keys are held to it too
API_KEY = Rule(re.compile(r"[\x21-\x2b\x2d-\x7e]+").fullmatch, "visible ASCII characters without spaces or commas",
               "key")
TOKEN = Rule(lambda token: not token or API_KEY.test(token), f"{API_KEY.allowed} (or empty: none)")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


NETWORK = Rule(_is_network, "an IP address or network like 10.0.0.0/8 or fd00::/8", "address")


@dataclass(frozen=True)
class Spec:
    """What a field allows beyond its type: its rule, a normal form for its text, and whether it is a secret."""

    rule: Rule | None = None
    fold: Callable[[str], str] | None = None  # applied to the text (each item of a list) first: str.upper...
    secret: bool = False  # never shown (in a message, by `apercu config`); may be read from a file (`file_variable`)
    credentials: bool = False  # a URL whose password is never shown (the rest is); may be read from a file too

    @property
    def confidential(self) -> bool:
        """Whether any of the value is to be kept out of sight, and so may be given as a file."""
        return self.secret or self.credentials


def setting(default: T, rule: Rule | None = None, *, fold: Callable[[str], str] | None = None,
            secret: bool = False, credentials: bool = False) -> T:
    """A field of `Settings` with what it allows beside it."""
    return field(default=default, metadata={"spec": Spec(rule, fold, secret, credentials)})


@dataclass(frozen=True)
class Settings:
    """The whole configuration. Field names are the environment names without the APERCU_ prefix."""

    data_dir: Path = Path("apercu-data")  # this process's own files: staging, and the embedded catalog and broker
    storage_url: str = ""  # where images are kept: empty (inside data_dir), file:///path or s3://bucket/prefix
    s3_endpoint_url: str = ""  # an S3-compatible server that is not AWS (MinIO, SeaweedFS, Ceph...)
    s3_presign: int = setting(0, between(0, WEEK))  # >0: thumbnails redirect to an S3 URL valid this many seconds
    database_url: str = setting("", credentials=True)  # empty: SQLite catalog inside data_dir
    broker_url: str = setting("", credentials=True)  # empty: embedded SQLite broker inside data_dir
    queue: str = "apercu"
    host: str = "127.0.0.1"
    port: int = setting(5000, PORT)
    web_workers: int = setting(2, at_least(1))
    web_threads: int = setting(16, at_least(1))
    web_connections: int = setting(1000, at_least(1))  # open client connections per web worker, stalled ones too
    request_timeout: float = setting(30.0, above(0))  # seconds a client has to send a request (and take the answer)...
    request_min_rate: int = setting(16384, at_least(0))  # ...plus 1 s per this many bytes received (0: none): 408
    worker_concurrency: int = setting(0, at_least(0))  # 0: one process per CPU
    max_upload_bytes: int = setting(50 * MIB, at_least(1))
    max_pixels: int = setting(100_000_000, at_least(1))
    thumbnail_size: int = setting(256, SIZE)
    thumbnail_sizes: tuple[int, ...] = setting((128, 256, 512), SIZE)  # what ?size=N may ask for, besides the default
    thumbnail_quality: int = setting(85, between(1, 100))
    thumbnail_background: str = setting("#ffffff", COLOUR)  # what transparency is flattened onto
    task_time_limit: float = setting(120.0, above(0))
    max_attempts: int = setting(3, at_least(1))
    broker_poll_interval: float = setting(0.02, above(0))
    worker_memory_limit: int = setting(2048, at_least(0))  # MiB of address space for each imaging process (0: no cap)
    recovery_interval: int = setting(10, at_least(1))  # seconds between sweeps for lost work
    recovery_grace: int = setting(300, at_least(0))  # a pending image is re-sent only once it has waited this long
    orphan_interval: int = setting(3600, at_least(1))  # seconds between sweeps for files without rows and vice versa
    orphan_grace: int = setting(3600, at_least(0))  # what is younger than this is work in flight, never an orphan
    idempotency_ttl: int = setting(86400, at_least(0))  # how long an Idempotency-Key answers with its first image
    restart_backoff_max: int = setting(30, at_least(0))  # `serve`: longest wait before restarting a half that dies
    log_level: LogLevel = setting("INFO", fold=str.upper)
    log_format: LogFormat = "text"  # or "json": one JSON object per line
    metrics_port: int = setting(0, between(0, 65535))  # >0: a worker also serves its own metrics on this port
    api_keys: tuple[str, ...] = setting((), API_KEY, secret=True)  # comma-separated; none (nor a file): no key needed
    api_keys_file: str = ""  # a key per line: `<name> <tenant> <scopes> <key>`, or a bare key (admin); see api.access
    metrics_public: bool = True  # false: /metrics needs an admin key or APERCU_METRICS_TOKEN
    metrics_token: str = setting("", TOKEN, secret=True)  # what a scraper sends as `Authorization: Bearer <token>`
    public_thumbnails: bool = False  # thumbnails readable without a key when keys are set
    gps: Gps = "keep"  # or "drop": no GPS in stored or returned metadata
    max_pending: int = setting(0, at_least(0))  # more images than this waiting: uploads get 503 (0: no limit)
    min_free_mb: int = setting(512, at_least(0))  # less free space than this on the data disk: uploads get 507
    rate_limit: int = setting(0, at_least(0))  # requests per second per key (per address without one): 429 (0: none)
    upload_rate_limit: int = setting(0, at_least(0))  # uploads per minute per key, the same way (0: none)
    # X-Forwarded-For/-Proto/-Host/-Prefix are honoured from these addresses or networks only (`api.forwarded`)
    trusted_proxies: tuple[str, ...] = setting((), NETWORK)
    cors_origins: frozenset[str] = setting(frozenset(), ORIGIN, fold=str.lower)  # may call the API from a browser
    dedup: Dedup = "off"  # or "reuse": an upload of bytes already stored answers 200 with the stored image
    exiftool: bool = False  # metadata.makernotes, read by ExifTool (`exiftool` on PATH) in the imaging process
    # told of every image that reaches success or failure (beside an upload's callback_url)
    webhook_url: str = setting("", credentials=True)
    webhook_secret: str = setting("", WEBHOOK_SECRET, secret=True)  # signs webhooks (`webhook_key`); they need one
    webhook_allowed_hosts: frozenset[str] = setting(frozenset(), fold=str.lower)  # may resolve to private addresses
    webhook_attempts: int = setting(8, at_least(1))  # deliveries are tried this many times...
    webhook_backoff: float = setting(5.0, above(0))  # ...waiting this long after the first failure, then twice as long
    fetch_allowed_hosts: frozenset[str] = setting(frozenset(), fold=str.lower)  # upload by URL: may be non-public
    fetch_timeout: float = setting(10.0, above(0))  # upload by URL: seconds to connect, and between two reads...
    fetch_deadline: float = setting(60.0, above(0))  # ...and for the whole fetch, redirects included
    url_key: str = setting("", URL_KEY, secret=True)  # signs rendition URLs (/r/<signature>/...): see url_signing
    presets: str = ""  # named rendition options, `card=w:400/h:300/fit:cover;hero=w:1600/q:70`, for `p:<name>`
    max_rendition_pixels: int = setting(25_000_000, at_least(1))  # a rendition asking for more output is a 400
    rendition_wait: float = setting(20.0, above(0))  # seconds a first request waits for its render, then 503
    renditions_max_mb: float = setting(1024.0, at_least(0))  # what renders keep beyond this goes, least used first
    upload_expiry: int = setting(86400, at_least(1))  # seconds a resumable (tus) upload may take before the sweep
    max_open_uploads: int = setting(20, at_least(1))  # unfinished resumable uploads per key (per address without)

    def __post_init__(self) -> None:
        """Parse what was given as text and check every value (SettingError): a Settings is always one to run."""
        kinds = _kinds()
        for f in fields(self):
            spec: Spec = f.metadata.get("spec", PLAIN)
            object.__setattr__(self, f.name, _value(f.name, kinds[f.name], spec, getattr(self, f.name)))
        if self.metrics_token and self.metrics_public:
            raise SettingError("APERCU_METRICS_TOKEN is set but APERCU_METRICS_PUBLIC is not false: /metrics would "
                               "stay open to anyone")
        if self.webhook_url and not self.webhook_secret:
            raise SettingError("APERCU_WEBHOOK_URL needs APERCU_WEBHOOK_SECRET: webhooks are always signed")
        try:
            self.rendition_presets  # noqa: B018 - parsed (and cached) now, so that a bad preset stops the start
        except BadOption as exc:
            raise SettingError(f"APERCU_PRESETS: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read APERCU_<FIELD> variables (empty ones are unset) and, for a secret, APERCU_<FIELD>_FILE, then apply
        non-None keyword overrides (CLI flags). SettingError for an APERCU_ variable that is no setting, a secret
        given both ways or in a file that cannot be read, or a value out of what its setting allows."""
        return cls.traced(environ, **overrides)[0]

    @classmethod
    def traced(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> tuple[Settings, dict[str, Source]]:
        """`from_env`'s settings, and where each value came from (`apercu config` shows both)."""
        given = _given(os.environ if environ is None else environ)
        flags = {name: value for name, value in overrides.items() if value is not None}
        sources = {f.name: DEFAULT for f in fields(cls)} | {name: source for name, (_, source) in given.items()}
        sources |= {name: Source("flag", name) for name in flags}
        values: dict[str, Any] = {name: text for name, (text, _) in given.items()} | flags
        try:
            return cls(**values), sources
        except SettingError as exc:  # a value from a file: say which file, since no variable of that name is set
            read = [source.detail for source in sources.values() if source.kind == "file"
                    and str(exc).startswith(source.detail.partition("_FILE=")[0] + " ")]
            raise SettingError(f"{exc} (read from {read[0]})" if read else str(exc)) from None

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """The environment that rebuilds these settings in a child process."""
        return {env_name(f.name): _text(getattr(self, f.name)) for f in fields(self)}

    def child_environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The environment of a process `serve` starts: `environ` with these settings (`to_env`), except that a
        value `environ` gives as a file stays given so: its _FILE variable is passed on, and the value itself is
        not written into an environment, where the file was there to keep it from (and where the child would
        find it set both ways). Flags never set a secret, so the file still holds the value in force."""
        env = {**environ, **self.to_env()}
        for name, variable in file_variables().items():
            if environ.get(variable):
                del env[env_name(name)]
        return env

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'catalog.sqlite').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return f"apercu-sqlite+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @cached_property
    def sizes(self) -> tuple[int, ...]:
        """Every size ?size=N may ask for, in order: the listed ones and the default."""
        return tuple(sorted({*self.thumbnail_sizes, self.thumbnail_size}))

    @cached_property
    def rendition_presets(self) -> dict[str, tuple[str, ...]]:
        """APERCU_PRESETS: each preset's option segments, by name (checked when these settings were built)."""
        return parse_presets(self.presets)

    @property
    def background(self) -> tuple[int, int, int]:
        """APERCU_THUMBNAIL_BACKGROUND as RGB (a #rrggbb colour: checked when these settings were built)."""
        text = self.thumbnail_background.lstrip("#")
        return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))

    def imaging_options(self) -> Options:
        """The part of the settings the imaging functions take (they know nothing of this module)."""
        from apercu.imaging.analyse import Options

        return Options(
            thumbnail_size=self.thumbnail_size,
            thumbnail_quality=self.thumbnail_quality,
            max_pixels=self.max_pixels,
            background=self.background,
            exiftool=self.exiftool,
            # a file that keeps exiftool busy must leave the rest of imaging most of its time limit
            exiftool_timeout=min(EXIFTOOL_TIMEOUT, self.task_time_limit / 2),
        )


PLAIN = Spec()
MASK = "****"  # what is shown for a secret, or a URL's password
SENSITIVE_PARAMETER = re.compile(r"pass|secret|token|key", re.IGNORECASE)  # a URL's query parameter holding one


@dataclass(frozen=True)
class Source:
    """Where a setting's value came from: its default, its environment variable, a file (its _FILE variable) or a
    command-line flag overriding them (`detail` then names the setting: the CLI knows its flags' spelling)."""

    kind: Literal["default", "environment", "file", "flag"]
    detail: str = ""  # the variable, `APERCU_<NAME>_FILE=<path>`, or the overridden setting


DEFAULT = Source("default")


@dataclass(frozen=True)
class Shown:
    """One setting as `apercu config` shows it: its value as the environment's text, with secrets masked."""

    variable: str
    value: str
    secret: bool  # some of it is masked when set (all of it, or a URL's password)
    set: bool  # not empty
    source: Source


def describe(settings: Settings, sources: Mapping[str, Source]) -> list[Shown]:
    """Every setting of `settings` (in declaration order), masked, with where it came from (`Settings.traced`)."""
    shown = []
    for f in fields(settings):
        spec: Spec = f.metadata.get("spec", PLAIN)
        text = _text(getattr(settings, f.name))
        shown.append(Shown(env_name(f.name), masked(text, spec), spec.confidential, bool(text), sources[f.name]))
    return shown


def masked(value: Any, spec: Spec) -> Any:
    """`value` fit to show: a secret's text is MASK; a URL with credentials keeps all but its password, which
    is what tells an operator where it points."""
    if not isinstance(value, str) or not value or not spec.confidential:
        return value
    return MASK if spec.secret else mask_url(value)


def mask_url(url: str) -> str:
    """`url` with its password, and any query parameter named like one (`?password=`, `?token=`), as MASK."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:  # `user:password@host`, `:password@host` (Redis), `user@host`
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{colon and ':' + MASK}@{host}"
    query = "&".join(
        f"{key}={MASK}" if equals and SENSITIVE_PARAMETER.search(key) else f"{key}{equals}{value}"
        for key, equals, value in (item.partition("=") for item in parts.query.split("&") if parts.query)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def env_name(name: str) -> str:
    """The environment variable of the setting `name`."""
    return f"{PREFIX}{name.upper()}"


@cache
def _kinds() -> dict[str, Any]:
    """Each field's type, resolved once (the annotations are text, under `from __future__ import annotations`)."""
    return get_type_hints(Settings)


@cache
def file_variables() -> dict[str, str]:
    """APERCU_<NAME>_FILE, the variable naming a file that holds the setting <name>'s value, by setting: for
    secrets and URLs with credentials only, whose value is better kept out of the environment (which `ps e`,
    /proc/<pid>/environ, `docker inspect` and crash reports show) and which container platforms hand over as files
    (Docker and Kubernetes secrets). None for a secret whose _FILE name is a setting of its own: APERCU_API_KEYS_FILE
    is a file of keys with their names, tenants and scopes (see `api.access`)."""
    specs = {f.name: f.metadata.get("spec", PLAIN) for f in fields(Settings)}
    return {name: f"{env_name(name)}_FILE" for name, spec in specs.items()
            if spec.confidential and f"{name}_file" not in specs}


def _given(environ: Mapping[str, str]) -> dict[str, tuple[str, Source]]:
    """The text of each setting `environ` gives (an empty variable gives nothing), and where it came from."""
    _refuse_unknown(environ)
    files = file_variables()
    given: dict[str, tuple[str, Source]] = {}
    for f in fields(Settings):
        variable, file_variable = env_name(f.name), files.get(f.name, "")
        path = environ.get(file_variable, "") if file_variable else ""
        if path and environ.get(variable):
            raise SettingError(f"{variable} and {file_variable} are both set: give its value one way only")
        if path:
            given[f.name] = (_read_file(file_variable, path), Source("file", f"{file_variable}={path}"))
        elif environ.get(variable):
            given[f.name] = (environ[variable], Source("environment", variable))
    return given


def _read_file(variable: str, path: str) -> str:
    """A secret's file's content, without the line break that `echo` and editors end it with. SettingError (one
    line) for a file that cannot be read, and for an empty one: an empty secret is a mount that failed rather than
    a choice, and taken as unset it would quietly turn a protection off."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingError(f"{variable}={path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise SettingError(f"{variable}={path}: cannot read it (not UTF-8 text)") from None
    text = text.rstrip("\r\n")
    if not text:
        raise SettingError(f"{variable}={path}: the file is empty")
    return text


def _refuse_unknown(environ: Mapping[str, str]) -> None:
    """SettingError naming every APERCU_ variable that is neither a setting, nor a secret's _FILE form, nor in
    NOT_SETTINGS, with the known name closest to each; the _FILE form of a setting that is no secret is told so."""
    settings = [env_name(f.name) for f in fields(Settings)]
    known = settings + list(file_variables().values()) + list(NOT_SETTINGS)
    problems = []
    for name in sorted(n for n in environ if n.startswith(PREFIX) and n not in known):
        base = name.removesuffix("_FILE")
        if base != name and base in settings:
            problems.append(f"{name} is not a setting: {base} is no secret, and only secrets are read from a file")
            continue
        # compared without the prefix, which every name shares and which would make any two look alike
        closest = difflib.get_close_matches(name.removeprefix(PREFIX), [k.removeprefix(PREFIX) for k in known], n=1)
        problems.append(f"{name} is not a setting" + (f"; did you mean {PREFIX}{closest[0]}?" if closest else ""))
    if problems:
        raise SettingError("\n".join(problems))


def _value(name: str, kind: Any, spec: Spec, value: Any) -> Any:
    """`value` of the setting `name` as its type `kind`, parsed if it is text; SettingError unless allowed."""
    variable = env_name(name)
    container = get_origin(kind)
    if container not in (tuple, frozenset):
        return _item(kind, spec, value, variable if spec.secret else f"{variable}={masked(value, spec)!r}")
    noun = spec.rule.item if spec.rule else "value"
    items = _split(value, f"{variable} is set but holds no {noun}") if isinstance(value, str) else value
    return container(
        _item(get_args(kind)[0], spec, item, f"{variable} {noun} {number}" + ("" if spec.secret else f" ({item!r})"))
        for number, item in enumerate(items, 1)
    )


def _split(text: str, empty: str) -> list[str]:
    """A comma-separated list: empty text is none; text that names nothing (" , ") is refused with `empty`."""
    if text == "":
        return []
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise SettingError(empty)
    return items


def _item(kind: Any, spec: Spec, value: Any, where: str) -> Any:
    if isinstance(value, str) and spec.fold is not None:
        value = spec.fold(value)
    if isinstance(value, str) and kind is not str:
        value = _parse(kind, value, where)
    if spec.rule is not None:
        spec.rule.check(value, where)
    return value


def _parse(kind: Any, text: str, where: str) -> Any:
    """The text of a setting as `kind`: bool, int, float, Path or one of a Literal's choices."""
    if kind is bool or get_origin(kind) is Literal:
        key = text.strip().lower() if kind is bool else text
        choices = BOOLEANS if kind is bool else {choice: choice for choice in get_args(kind)}
        if key not in choices:
            raise SettingError(f"{where} is not one of {', '.join(choices)}")
        return choices[key]
    if kind is Path:
        return Path(text)
    try:
        number = kind(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise SettingError(f"{where} is not {'an integer' if kind is int else 'a number'}")
    return number


def _text(value: Any) -> str:
    """A setting's value as the environment's text, which `_value` parses back to it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, frozenset):
        return ",".join(sorted(value))
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)
