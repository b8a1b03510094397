# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench typecheck clean prometheus-for-tests

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/oomscope $(ARGS)

test: $(STAMP) prometheus-for-tests
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

# The real-Prometheus tests run Debian's `prometheus` binary (about 6 s to install). Best effort:
# where it is missing and we are root with apt-get it is installed, with services kept from
# starting; whatever happens, `make test` goes on, and those tests skip saying why.
define INSTALL_PROMETHEUS
command -v prometheus >/dev/null 2>&1 && exit 0
if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus is not installed (installing it needs root and apt-get): the real-Prometheus tests will be skipped"
  exit 0
fi
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1
fi
install() { DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; }
echo "installing Debian's prometheus for the real-Prometheus tests..."
install || { timeout 120 apt-get update -qq >/dev/null 2>&1; install; }
[ -n "$$guard" ] && rm -f /usr/sbin/policy-rc.d
command -v prometheus >/dev/null 2>&1 || echo "prometheus could not be installed: the real-Prometheus tests will be skipped"
exit 0
endef
export INSTALL_PROMETHEUS

prometheus-for-tests:
	@sh -c "$$INSTALL_PROMETHEUS" || true

typecheck: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .hypothesis
