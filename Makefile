# Quick start (see README): `make demo` runs the main job on the embedded synthetic dataset,
# `make test` runs the whole test suite. Both create .venv and install the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint clean docs docs-serve

# The HTML report's browser test drives Debian's chromium, never a browser build of its own:
# installed here where we are root with apt-get; elsewhere that test is skipped, saying so.
CHROMIUM := /usr/bin/chromium
# The PostgreSQL test starts a throw-away server from Debian's postgresql package (installed
# here where we are root with apt-get; elsewhere that test is skipped, saying so).
PG_CTL := $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl) /usr/lib/postgresql/pg_ctl)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# $(call apt_install,DEBIAN PACKAGE,THE TESTS THAT NEED IT): installed with apt-get where we
# are root; elsewhere those tests are skipped, and this says how to install the package.
define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's $(1) (for $(2))"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) \
	    || echo "WARNING: $(1) could not be installed: $(2) will be skipped"; \
	else \
	  echo "NOTE: $(1) is not installed: $(2) will be skipped."; \
	  echo "      Install it with: sudo apt-get install $(1) (Debian), then run make test."; \
	fi
endef

$(CHROMIUM):
	$(call apt_install,chromium,the HTML report's browser test)

$(PG_CTL):
	$(call apt_install,postgresql,the PostgreSQL tuning tests)


install: $(STAMP) $(CHROMIUM) $(PG_CTL)

demo: $(STAMP)
	$(BIN)/bench data synthetic
	$(BIN)/bench data prepare --rate 100
	$(BIN)/bench data info
	$(BIN)/bench tasks
	$(BIN)/bench data benchmark --rate 100
	$(BIN)/bench run --method jepa --task all --preset smoke
	@echo
	@echo "Done. Everything generated is under results/: data/ (the synthetic dataset), cache/,"
	@echo "pretrain/ (checkpoints), records/ (one JSON + predictions per evaluation), leaderboard/ (open leaderboard.html)"
	@echo "and mlflow.db (browse it with: .venv/bin/bench ui). On real data: PTBXL_DIR=/path/to/ptb-xl make demo,"
	@echo "or .venv/bin/bench run --method all --task all --preset cpu --data-dir /path/to/ptb-xl"

test: $(STAMP) $(CHROMIUM) $(PG_CTL)
	$(BIN)/python -m pytest --durations=15

# The documentation site from docs/ (strict: a broken link, anchor or page fails the build).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve --strict --dev-addr 127.0.0.1:8000

lint: $(STAMP)
	$(BIN)/ruff check bench methods tasks tests
	$(BIN)/ruff format --check bench methods tasks tests

clean:
	rm -rf results/cache results/data site
