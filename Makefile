# Refrain: two commands do all the set-up on a fresh machine.
#   make run    the platform on the embedded default (SQLite + Celery filesystem transport + a real worker)
#   make test   the whole suite (set DATABASE_URL / CELERY_BROKER_URL for PostgreSQL / Redis)
#   make mutation   mutation testing on a time budget per file (not part of make test)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements/base.txt requirements/dev.txt
STAMP := $(VENV)/.installed
APT_PACKAGES := fluidsynth fluid-soundfont-gm vorbis-tools
# The browser tests (tests/web) drive the system Chromium with Playwright for Python (requirements/dev.txt);
# `playwright install` would download a browser, which needs the internet.
BROWSER_PACKAGES := chromium
# Wait up to 5 minutes for the dpkg lock (unattended-upgrades, another apt) instead of failing at once.
APT_GET := apt-get -o DPkg::Lock::Timeout=300
DEMO_PER_COLLECTION ?= 40

.PHONY: run test lint mutation install system-deps browser-deps migrate demo-data import-full check-deploy compose-config clean

run: install system-deps migrate demo-data
	@bin/run-dev

test: install system-deps browser-deps
	@$(PY) manage.py check --settings=config.settings.test >/dev/null
	$(PY) -m pytest

# Lint, format check, types and the import contracts (also a pre-commit hook: `.venv/bin/pre-commit install`).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# Seconds per mutated file; the files and their tests are listed in bench/mutation.py.
MUTATION_BUDGET ?= 180

mutation: install
	nice -n 10 $(PY) bench/mutation.py --budget $(MUTATION_BUDGET)

install: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	@touch $(STAMP)

# Audio rendering needs FluidSynth, a General MIDI SoundFont and an Ogg Vorbis encoder.
system-deps:
	@if command -v fluidsynth >/dev/null && command -v oggenc >/dev/null && [ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing $(APT_PACKAGES) (audio rendering)"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
		sudo $(APT_GET) update -qq && sudo DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	else \
		echo "Audio rendering needs: $(APT_PACKAGES) (Debian/Ubuntu package names). Install them and re-run."; exit 1; \
	fi

# Chromium for the browser tests (tests/web/test_browser.py skips them, saying so, where it is missing).
browser-deps:
	@if command -v chromium >/dev/null || [ -x "$${REFRAIN_CHROMIUM:-/usr/bin/chromium}" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing $(BROWSER_PACKAGES) (browser tests)"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
		sudo $(APT_GET) update -qq && sudo DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	else \
		echo "The browser tests need Chromium ($(BROWSER_PACKAGES) on Debian/Ubuntu); they are skipped without it."; \
	fi

migrate: install
	@$(PY) manage.py migrate --noinput -v0

demo-data: migrate
	@$(PY) manage.py register_default_model
	@$(PY) manage.py import_corpus --per-collection $(DEMO_PER_COLLECTION) --process
	@echo "Demo accounts:"
	@$(PY) manage.py create_demo_users

# The whole corpus (about 13,000 tunes); prints the time it took and writes var/import.json.
import-full: migrate
	$(PY) manage.py import_corpus --json var/import.json

check-deploy: install
	SECRET_KEY=$$($(PY) -c "import secrets; print(secrets.token_urlsafe(60))") ALLOWED_HOSTS=refrain.example.com \
		DATABASE_URL=postgres://refrain@db:5432/refrain CACHE_URL=redis://cache:6379/1 \
		$(PY) manage.py check --deploy --settings=config.settings.production --fail-level WARNING

# Validates the compose file (docker compose v2, or docker-compose v1 where only that is installed).
compose-config:
	@SECRET_KEY=$${SECRET_KEY:-validate-only} sh -c 'if docker compose version >/dev/null 2>&1; then \
		docker compose -f docker/compose.yaml config --quiet; else docker-compose -f docker/compose.yaml config --quiet; fi' \
		&& echo "docker/compose.yaml is valid"

clean:
	rm -rf var .pytest_cache .hypothesis
