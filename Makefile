# Haven: two commands on a fresh machine.
#   make run   — install, migrate, create a first admin if none, serve on http://127.0.0.1:8000
#   make test  — install the test tools and run the whole suite against PostgreSQL and Redis
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATABASE_URL_TEST ?= postgresql://postgres@127.0.0.1:5432/haven
CELERY_BROKER_URL_TEST ?= redis://127.0.0.1:6379/15
# Test processes in parallel (pytest-xdist; each has its own database, broker database and data
# folder: tests/worker_isolation.py). Most of the suite waits on servers it started, so two cores
# keep more than two busy. PYTEST_WORKERS=0 runs in this process only.
PYTEST_WORKERS ?= 3

.PHONY: run test install install-test system-deps browser-deps proxy-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python system-deps
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# SAML signatures are checked by xmlsec1 (Debian's package); install it when we can (root), or say how.
system-deps:
	@command -v xmlsec1 >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q xmlsec1 || (apt-get update -q && apt-get install -y -q xmlsec1)) >/dev/null; \
	  else echo "make: xmlsec1 is missing: sudo apt-get install xmlsec1" >&2; exit 1; fi; }

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed | browser-deps proxy-deps
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

# Browser tests drive Debian's chromium through Playwright (`playwright install` cannot download
# here and is not needed): install it when we can (root), or say how.
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)) >/dev/null; \
	  else echo "make: chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

# The deployment tests put Debian's nginx in front of gunicorn (deploy/nginx/haven.conf), on loopback.
proxy-deps:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -q nginx || (apt-get update -q && apt-get install -y -q nginx)) >/dev/null; \
	  else echo "make: nginx is missing: sudo apt-get install nginx" >&2; exit 1; fi; }

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap
	$(BIN)/python manage.py serve

test: install-test
	DATABASE_URL="$${DATABASE_URL:-$(DATABASE_URL_TEST)}" CELERY_BROKER_URL="$${CELERY_BROKER_URL:-$(CELERY_BROKER_URL_TEST)}" \
	  $(BIN)/python tests/preflight.py
	DATABASE_URL="$${DATABASE_URL:-$(DATABASE_URL_TEST)}" CELERY_BROKER_URL="$${CELERY_BROKER_URL:-$(CELERY_BROKER_URL_TEST)}" \
	  HAVEN_DATA_DIR="$${HAVEN_DATA_DIR:-$(CURDIR)/var/test}" \
	  $(BIN)/python -m pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)
