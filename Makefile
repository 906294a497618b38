# Two commands on a fresh machine: `make demo` runs the pipeline on the bundled crawl, `make test`
# runs the tests. Both install what they need first (a virtualenv, and Java for Spark if missing).
# `make dist` builds what the README's cluster recipes submit, into dist/.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
DEMO_OUT ?= out/demo

.PHONY: install java browser demo test lint dist clean

install: java $(STAMP)

java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing a headless JRE for Spark"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless; }

# The report test renders report.html in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "chromium not found: installing it for the report rendering test"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

$(STAMP): setup.cfg
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[spark,train,dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/thresher run --sample --config configs/demo.yaml --output $(DEMO_OUT)

test: install browser
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

# --- make dist: the wheel; thresher.zip for --py-files (the wheel's own bytes: thresher/ with its
# configs and shipped models, and the dist-info that `thresher --version` reads); a packed virtualenv
# for --archives (thresher and its runtime dependencies at the versions installed here, no pip, no
# dev tools); a Dockerfile (and its .dockerignore) that installs the wheel on a Spark image.
VERSION := $(shell sed -n 's/^version = //p' setup.cfg)
WHEEL := dist/thresher-$(VERSION)-py3-none-any.whl
DIST_VENV := build/dist-venv
PACKAGED := setup.cfg README.md __init__.py $(shell find schemas pipeline classifiers trainer jobs configs -type f -not -name '*.pyc')

dist: $(WHEEL) dist/thresher.zip dist/thresher-venv.tar.gz dist/Dockerfile

$(WHEEL): $(STAMP) $(PACKAGED)
	rm -rf build/lib build/bdist.* dist/thresher-*.whl  # setuptools' leftovers would go into the wheel
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

dist/thresher.zip: $(WHEEL)
	cp $< $@

dist/thresher-venv.tar.gz: $(WHEEL)
	rm -rf $(DIST_VENV)
	$(PY) -m venv --without-pip $(DIST_VENV)
	$(PY) -m pip freeze --exclude-editable > build/dist-constraints.txt
	$(PY) -m pip --python $(DIST_VENV)/bin/python install -q --no-compile -c build/dist-constraints.txt $(WHEEL)
	$(VENV)/bin/venv-pack -q --force --compress-level 1 -p $(DIST_VENV) -o $@

dist/Dockerfile: Dockerfile.in $(WHEEL)
	sed 's/@WHEEL@/$(notdir $(WHEEL))/g' Dockerfile.in > $@
	printf '*\n!%s\n' $(notdir $(WHEEL)) > dist/.dockerignore

clean:
	rm -rf out bench/work .pytest_cache build dist
