# The two set-up commands of the README: `make build` (the main job) and `make test`.
.PHONY: install build test bench
VENV := .venv
LAB := $(VENV)/bin/lab

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

install: $(VENV)/.installed

build: install
	$(LAB) build taxonomy --preset tiny-cpu --out runs/main

test: install
	$(VENV)/bin/python -m pytest -q

bench: install
	$(VENV)/bin/python bench/validate_throughput.py
