# The two set-up commands of the README: `make build` (the main job) and `make test`.
# Both install from the lock (requirements/lock.txt, see scripts/lock.sh) into .venv first.
.PHONY: install build test test-latest lock bench
VENV := .venv
LAB := $(VENV)/bin/lab

$(VENV)/.installed: pyproject.toml requirements/lock.txt scripts/install.sh
	bash scripts/install.sh
	touch $@

install: $(VENV)/.installed

build: install
	$(LAB) build taxonomy --preset tiny-cpu --out runs/main

test: install
	$(VENV)/bin/python -m pytest -q

# Re-resolve the lock to the newest versions pyproject.toml and requirements/constraints.txt
# allow (LOCK_ARGS="--upgrade-package NAME" for one package, as uv pip compile takes it).
lock:
	bash scripts/lock.sh

# Non-blocking drift check: the suite against the newest releases, in its own .venv-latest; the
# lock and .venv are left alone. Its exit status is reported, never fails the make run.
test-latest:
	VENV=.venv-latest LAB_LATEST=1 bash scripts/install.sh
	LAB_LATEST=1 .venv-latest/bin/python -m pytest -q \
	  || echo "make test-latest: the newest releases FAIL the suite (the lock still passes); see above" >&2

bench: install
	$(VENV)/bin/python bench/validate_throughput.py
