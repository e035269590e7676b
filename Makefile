# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
# The constraints file pins torch==2.13.0 (a local CPU wheel; anything else pulls GBs of CUDA).
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

demo: $(STAMP)
	$(PY) -m directanimator.demo

bench: $(STAMP)
	$(PY) benchmarks/cues.py

clean:
	rm -rf .venv out build *.egg-info
