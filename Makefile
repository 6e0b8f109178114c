# Set-up is part of every target: a fresh machine needs only python3 (3.10+) with venv, and make.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test tools bench generate clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU wheel that these machines carry; an unpinned torch would pull gigabytes of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job: the whole data path on the bundled corpus with an embedded S3 endpoint
	$(VENV)/bin/pretrainjob demo

# promtool (Debian's prometheus package) checks the chart's alert rules in the tests; Debian's chromium renders
# the corpus report page headless in the tests.
tools:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus) >/dev/null; \
	  else echo "promtool missing: run 'sudo apt-get install prometheus' (Debian/Ubuntu)" >&2; exit 1; fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium) >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' (Debian/Ubuntu)" >&2; exit 1; fi; }

test: $(STAMP) tools  ## ruff, then the whole test suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

# Everything generated from a single source, rewritten in place; tests fail when a committed copy is stale.
generate: $(STAMP)  ## the CRD (and the chart's copy) and README reference from config.py; the bundled corpus
	$(PY) -m pretrain_operator.crd --write
	$(PY) -m pretrain_operator.reference --write
	$(PY) -m tools.bundled_corpus.generate

bench: $(STAMP)  ## print throughput figures (see benchmarks/)
	$(PY) benchmarks/prepare_throughput.py
	$(PY) benchmarks/loader_throughput.py
	$(PY) benchmarks/operator_reconcile.py
	$(PY) benchmarks/corpus_report_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
