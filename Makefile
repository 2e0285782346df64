# Two commands set everything up on a fresh machine (Python 3.11+, git):
#   make serve   - create .venv, install Compound, run `compound serve`
#   make test    - create .venv, install Compound with its test tools, run the suite
# Both install the pinned versions of requirements.lock (`make lock` renews it
# from pyproject.toml), then Compound itself in editable mode.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CLAUDE := tests/claude_stub/node_modules/.package-lock.json

.PHONY: serve test install check lock bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/compound serve

# The real Claude Code CLI (from npm) for the claude-code backend's end-to-end test.
$(CLAUDE): tests/claude_stub/package-lock.json
	npm ci --prefix tests/claude_stub --no-audit --no-fund --silent

test: $(STAMP) $(CLAUDE)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The linter, the formatter and the type checker, as CI runs them.
check: $(STAMP)
	$(BIN)/ruff check bot handlers tests bench
	$(BIN)/ruff format --check bot handlers tests bench
	$(BIN)/mypy

# Renew requirements.lock after a change to the dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 pyproject.toml --extra test --extra lint -o requirements.lock

bench: $(STAMP)
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
