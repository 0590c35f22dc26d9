# defectspectrum — set-up and everyday commands.
#   make demo   end-to-end run on embedded generated data; prints where the HTML report is
#   make test   lint (ruff), type check (mypy) and the test suite
#   make bench  speed/memory benchmarks (print ratios against a baseline measured in the same run)
#   make table5 the paper's Table 5 (QC with coarse vs refined labels) on procedural data, ~8 min
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench table5 clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[all,test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m defectspectrum.demo --out demo_output

test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/bench_convert.py
	$(PY) benchmarks/bench_seg.py
	$(PY) benchmarks/bench_gen.py

table5: $(STAMP)
	$(PY) benchmarks/qc_table5.py

clean:
	rm -rf $(VENV) demo_output build *.egg-info src/*.egg-info
