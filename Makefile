# Two commands on a fresh machine: `make demo` runs the pipeline on the bundled crawl, `make test`
# runs the tests. Both install what they need first (a virtualenv, and Java for Spark if missing).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
DEMO_OUT ?= out/demo

.PHONY: install java browser demo test lint clean

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

clean:
	rm -rf out bench/work .pytest_cache
