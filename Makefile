# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := build/demo

.PHONY: demo test test-fast lint install setup clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/checkpoint2svc pin examples/classifier.ipynb --cell predict -o $(DEMO)/classifier.ckpt --force
	$(BIN)/checkpoint2svc inspect $(DEMO)/classifier.ckpt
	$(BIN)/checkpoint2svc run $(DEMO)/classifier.ckpt '{"features": [6.7, 3.0, 5.2, 2.3]}'

lint: install
	$(BIN)/ruff check checkpoint2svc tests benchmarks
	$(BIN)/ruff format --check checkpoint2svc tests benchmarks
	$(BIN)/mypy

# The Docker engine, haproxy and the local base image (scripts/setup-engine; quick when present).
setup: install
	scripts/setup-engine $(BIN)/checkpoint2svc

test: lint setup
	CHECKPOINT2SVC_REQUIRE_DOCKER=1 $(BIN)/python -m pytest -n 2 --dist loadgroup tests

# The unit and in-process tiers (tests/inprocess: the controller over memory backends); the
# end-to-end tests (marked slow) are left out.
test-fast: install
	$(BIN)/python -m pytest -n 2 -m "not slow" tests

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
