# honua-plan developer entry points. `make test` is what CI runs (.ci/run).
# Everything runs in .venv, built by scripts/bootstrap.sh from requirements.lock.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
LOCK_PYTHON ?= 3.11

.PHONY: test demo lint bootstrap lock test-latest shell fresh-check

bootstrap:
	scripts/bootstrap.sh

test:
	scripts/test.sh $(PYTEST_ARGS)

demo:
	scripts/demo.sh

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m mypy

# Re-resolve requirements.lock: one universal lock (Python 3.11 and 3.12+) with hashes.
# Run `make test-latest` first: it tries the versions this would pick.
lock: bootstrap
	UV_SYSTEM_CERTS=1 $(VENV)/bin/uv pip compile pyproject.toml requirements-build.in \
	  --extra dev --extra server --extra ai --extra s3 --universal --python-version $(LOCK_PYTHON) \
	  --generate-hashes --upgrade -q -o requirements.lock
	scripts/bootstrap.sh

# The suite against the newest versions pyproject.toml allows, in .venv-latest.
test-latest: bootstrap
	scripts/test-latest.sh $(PYTEST_ARGS)

# A shell with .venv active (honua and honua-ai on PATH).
shell: bootstrap
	@echo "honua-plan: .venv is active; 'exit' to leave" >&2
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $${SHELL:-/bin/bash} -i

# Clone this repository and run the README's two commands with the system Python only.
fresh-check:
	scripts/fresh-check.sh
