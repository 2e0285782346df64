# Two commands set everything up on a fresh machine (Python 3.11+, git):
#   make serve   - create .venv, install Compound, run `compound serve`
#   make test    - create .venv, install Compound with its test tools, run the suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CLAUDE := tests/claude_stub/node_modules/.package-lock.json

.PHONY: serve test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/compound serve

# The real Claude Code CLI (from npm) for the claude-code backend's end-to-end test.
$(CLAUDE): tests/claude_stub/package-lock.json
	npm ci --prefix tests/claude_stub --no-audit --no-fund --silent

test: $(STAMP) $(CLAUDE)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
