# `make demo` and `make test` work on a fresh machine: both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY = 1
export GRADIO_ANALYTICS_ENABLED = False

.PHONY: install browser demo test bench clean

install: $(STAMP)

# torch first, pinned: its CPU wheel is the local one; anything unpinned pulls CUDA packages.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: install
	bash examples/demo.sh

# The review app's browser tests drive Debian's chromium (never `playwright install`): installed
# here when missing; without root they are skipped with that reason.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "chromium could not be installed: browser tests will be skipped"

test: install browser
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) demo-out
