# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .uv/bin/uv
BIN := .venv/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# `make run PORT=9000` serves (and issues tokens) as http://127.0.0.1:9000 unless IDP_ISSUER is set
RUN_ENV = IDP_ISSUER=$${IDP_ISSUER:-http://$(HOST):$(PORT)}

.PHONY: run install install-dev peers test lint messages bench-crypto clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==$(UV_VERSION)

install: $(UV)  ## runtime dependencies from the lock file (test packages already there stay)
	$(UV) sync --frozen --no-dev --inexact --quiet

install-dev: $(UV)  ## runtime + test dependencies from the lock file
	$(UV) sync --frozen --quiet

peers:  ## third-party peers the tests talk to (openssl, node packages, ...)
	scripts/install-peers.sh

run: install  ## migrate, seed the demo city, serve on http://$(HOST):$(PORT)
	$(BIN)/idp db upgrade
	$(RUN_ENV) $(BIN)/idp demo
	@echo
	@echo "  Start page:      http://$(HOST):$(PORT)/"
	@echo "  Demo app (RP):   http://$(HOST):$(PORT)/demo/rp"
	@echo "  Discovery:       http://$(HOST):$(PORT)/.well-known/openid-configuration"
	@echo "  Readiness:       http://$(HOST):$(PORT)/readyz"
	@echo "  Admin console:   http://$(HOST):$(PORT)/admin  (cityadmin, schooladmin, helpdesk)"
	@echo "  Demo accounts:   var/demo.json"
	@echo
	$(RUN_ENV) $(BIN)/idp serve --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: install-dev peers lint  ## the whole suite on SQLite + memory, then PostgreSQL + Redis if set
	env -u IDP_TEST_DATABASE_URL -u IDP_TEST_REDIS_URL $(BIN)/pytest
	@if [ -n "$$IDP_TEST_DATABASE_URL" ] && [ -n "$$IDP_TEST_REDIS_URL" ]; then \
		echo "== again on PostgreSQL + Redis =="; $(BIN)/pytest; \
	else echo "== PostgreSQL + Redis run skipped: IDP_TEST_DATABASE_URL / IDP_TEST_REDIS_URL unset =="; fi

messages: install-dev  ## extract translatable strings into the .po catalogs
	$(BIN)/python -m core.web.catalog

bench-crypto: install-dev
	$(BIN)/python bench/crypto.py

clean:
	rm -rf .venv .uv var tests/interop/node_modules
