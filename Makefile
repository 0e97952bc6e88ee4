# honua-plan developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: test demo lint bootstrap

bootstrap:
	scripts/bootstrap.sh

test:
	scripts/test.sh $(PYTEST_ARGS)

demo:
	scripts/demo.sh

lint: bootstrap
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy
