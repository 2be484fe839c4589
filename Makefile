# Two commands do everything: `make run` starts the service, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-thumbnails bench-throughput bench-renditions fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/apercu serve

test: $(STAMP) browser exiftool nginx containers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the web page's browser tests (tests/test_page.py; Playwright drives it, as its own browser
# download cannot be fetched here). Without it those tests skip, or fail where APERCU_REQUIRE_SERVICES=1 (CI).
.PHONY: browser
browser:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "chromium could not be installed: tests/test_page.py will skip (or fail in CI)"

# Debian's ExifTool for the maker-notes tests (tests/test_makernotes.py; APERCU_EXIFTOOL=1 in a deployment).
# Without it those tests skip, or fail where APERCU_REQUIRE_SERVICES=1 (CI).
.PHONY: exiftool
exiftool:
	command -v exiftool >/dev/null || (apt-get update -q && apt-get install -y -q libimage-exiftool-perl) \
		|| echo "exiftool could not be installed: tests/test_makernotes.py will skip (or fail in CI)"

# Debian's nginx (and openssl, for the test's certificate) for the reverse-proxy tests (tests/test_proxy_nginx.py,
# which runs deploy/nginx/apercu.conf). Without them those tests skip, or fail where APERCU_REQUIRE_SERVICES=1 (CI).
.PHONY: nginx
nginx:
	(command -v nginx || test -x /usr/sbin/nginx) >/dev/null && command -v openssl >/dev/null \
		|| (apt-get update -q && apt-get install -y -q nginx openssl) \
		|| echo "nginx could not be installed: tests/test_proxy_nginx.py will skip (or fail in CI)"

# Debian's podman, podman-compose and debootstrap for the container image's tests (tests/test_container.py builds
# the Containerfile on a locally made debian:bookworm-slim, reads compose.yaml with podman-compose, and runs the
# image under chroot). Without them those tests skip, or fail where APERCU_REQUIRE_SERVICES=1 (CI).
.PHONY: containers
containers:
	(command -v podman && command -v podman-compose && command -v debootstrap) >/dev/null \
		|| (apt-get update -q && apt-get install -y -q podman podman-compose debootstrap) \
		|| echo "podman, podman-compose or debootstrap could not be installed: tests/test_container.py will skip (or fail in CI)"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench clients/python tools
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/service.py

bench-throughput: $(STAMP)
	$(BIN)/python bench/throughput.py

bench-renditions: $(STAMP)
	$(BIN)/python bench/renditions.py

bench-thumbnails: $(STAMP)
	command -v djpeg >/dev/null || (apt-get update -q && apt-get install -y -q libjpeg-turbo-progs) || true
	$(BIN)/python bench/thumbnails.py

fuzz: $(STAMP)
	$(BIN)/python bench/fuzz.py $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) apercu-data .pytest_cache bench/.venv-thumbor
