# qnetlearn: set-up, lab, tests and benchmarks.
#   make lab     start JupyterLab on notebooks/   (PORT=8888, LAB_ARGS=--no-browser)
#   make test    install everything the tests need, then run pytest   (PYTEST_ARGS=...)
#   make bench   run every benchmarks/bench_*.py (figures as JSON lines)
#   make fuzz    the long fuzzing runs, benchmarks/fuzz_*.py
#   make clean   remove caches and build output; `make distclean` removes .venv too
# Works on a fresh Debian 12 with python3, python3-venv and make; as root it installs
# the missing system tools with apt.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8888
LAB_ARGS ?=
PYTEST_ARGS ?=

VPY := $(VENV)/bin/python
IS_ROOT := $(filter 0,$(shell id -u))

# System tools the tests use: command=Debian package.
SYSTEM_TOOLS := tshark=tshark tcpdump=tcpdump ip=iproute2 ping=iputils-ping chromium=chromium

export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help lab test bench fuzz grade clean distclean system-tools

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

# ---- the virtual environment -------------------------------------------------------
$(VPY):
	@echo "== creating $(VENV) with $(PYTHON)"
	if ! $(PYTHON) -m venv $(VENV); then
	  rm -rf $(VENV)
	  if [ -n "$(IS_ROOT)" ] && command -v apt-get >/dev/null; then
	    echo "== venv failed (no ensurepip?): installing python3-venv"
	    apt-get install -y --no-install-recommends python3-venv \
	      || { apt-get update && apt-get install -y --no-install-recommends python3-venv; }
	    $(PYTHON) -m venv $(VENV)
	  else
	    echo "$(PYTHON) -m venv failed: install python3-venv (sudo apt-get install python3-venv)" >&2
	    exit 1
	  fi
	fi

# A stamp newer than pyproject.toml means that extra is installed; pyproject changes redo it.
$(VENV)/.installed-course: pyproject.toml | $(VPY)
	$(VPY) -m pip install -e '.[course]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VPY)
	$(VPY) -m pip install -e '.[course,test]'
	touch $@ $(VENV)/.installed-course

# ---- system tools ------------------------------------------------------------------
system-tools:
	@missing=()
	for pair in $(SYSTEM_TOOLS); do
	  PATH="$$PATH:/usr/sbin:/sbin" command -v "$${pair%%=*}" >/dev/null || missing+=("$${pair#*=}")
	done
	[ $${#missing[@]} -eq 0 ] && exit 0
	if [ -z "$(IS_ROOT)" ] || ! command -v apt-get >/dev/null; then
	  echo "== missing system packages: $${missing[*]} (not root: the tests that need them will skip)"
	  exit 0
	fi
	echo "== installing system packages: $${missing[*]}"
	echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
	apt_install() { apt-get install -y --no-install-recommends "$${missing[@]}"; }
	# Update the package lists only when there are none, or when the install fails on stale ones.
	if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then apt-get update; fi
	apt_install || { apt-get update && apt_install; }

# ---- targets -------------------------------------------------------------------------
lab: $(VENV)/.installed-course
	mkdir -p notebooks
	exec $(VENV)/bin/jupyter lab --port=$(PORT) --ServerApp.root_dir=notebooks \
	  $(if $(IS_ROOT),--allow-root) $(LAB_ARGS)

test: $(VENV)/.installed-test system-tools
	export PATH="$(abspath $(VENV))/bin:$$PATH"    # nbgrader runs its tools from the venv
	$(VPY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	@shopt -s nullglob
	files=(benchmarks/bench_*.py)
	[ $${#files[@]} -gt 0 ] || { echo "no benchmarks in benchmarks/"; exit 0; }
	for f in "$${files[@]}"; do
	  echo "== $$f"
	  $(VPY) "$$f"
	done

fuzz: $(VENV)/.installed-test
	@for f in benchmarks/fuzz_*.py; do echo "== $$f"; $(VPY) "$$f"; done

#   make grade   nbgrader: student versions of every exercise (exercises/release/), then
#                autograde exercises/submitted/ (SUBMISSIONS=dir copies <student>/<assignment>/ in first)
ASSIGNMENTS ?= $(notdir $(wildcard exercises/source/*))
SUBMISSIONS ?=

grade: $(VENV)/.installed-course
	export PATH="$(abspath $(VENV))/bin:$$PATH"
	cd exercises
	if [ -n "$(SUBMISSIONS)" ]; then mkdir -p submitted && cp -r "$(abspath $(SUBMISSIONS))"/. submitted/; fi
	for a in $(ASSIGNMENTS); do
	  nbgrader generate_assignment "$$a" --force --log-level=WARN
	  if compgen -G "submitted/*/$$a" > /dev/null; then
	    nbgrader autograde "$$a" --create --force --log-level=WARN
	  fi
	done
	nbgrader export --log-level=WARN
	echo "== grades: exercises/grades.csv"

clean:
	rm -rf build dist .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \
	  -o -name .ipynb_checkpoints \) -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
