# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
# The constraints file pins torch==2.13.0 (a local CPU wheel; anything else pulls GBs of CUDA).
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed
TEST_STAMP := .venv/.installed-test

.PHONY: setup setup-test test test-fast demo serve bench clean

# what the demo and the web page need
setup: $(STAMP)

# PySceneDetect (`ingest`) without its dependencies: its wheel requires opencv-python, which would
# install a second cv2 over opencv-contrib-python (MediaPipe's); it runs on the latter
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[ui]"
	$(PIP) install --quiet --disable-pip-version-check --no-deps -c constraints.txt scenedetect platformdirs
	touch $(STAMP)

# and what only the tests need: the dev extra, and Debian's chromium for the web page's browser test
# (installed when missing and possible: root and apt-get; otherwise that one test is skipped and says why)
setup-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "note: chromium could not be installed; the browser test of the web page will be skipped"; }
	touch $(TEST_STAMP)

test: $(TEST_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests

demo: $(STAMP)
	$(PY) -m directanimator.demo

serve: $(STAMP)
	$(PY) -m directanimator.cli serve

bench: $(STAMP)
	$(PY) benchmarks/cues.py

clean:
	rm -rf .venv out build *.egg-info
