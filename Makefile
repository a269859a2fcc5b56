# Assay developer entry points. Everything installs from the repository's own files:
# the locked Python deps into .venv, uv and the Kubernetes binaries into ~/.cache/assay
# (installed or built once, reused).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
LOCK_ARGS ?= --upgrade
# make up NODES=real: a real node (containerd, kubelet, kube-proxy, CoreDNS) instead of the agents.
NODES ?= agents
export UV_PYTHON_DOWNLOADS := never

.PHONY: help deps jslibs lock kube node helm promtool browser xlt postgres seaweedfs crds check-crds check test test-unit test-cluster test-postgresql up down status demo kind-e2e images clean

help:
	@echo "make demo        run a sharded LoadTest end to end on the local control plane"
	@echo "make test        install everything needed and run the test suite (then the gateway's tests on PostgreSQL + S3)"
	@echo "make test-postgresql   only the gateway's tests, on PostgreSQL + S3"
	@echo "make test-unit   only the tests that need no cluster"
	@echo "make check       the guard rails: ruff format and lint, the import contracts, mypy on crds/, CRDs up to date"
	@echo "make test PYTEST_ARGS='-m \"not slow\"'   skip the long accuracy runs"
	@echo "make up / down   start / stop the local stack (control plane, node agent, operator)"
	@echo "make up NODES=real   the same with a real node: containerd, kubelet, kube-proxy, CoreDNS (needs root)"
	@echo "make images      build the operator, gateway and runner images with buildah, no registry needed (hack/build-images.sh)"
	@echo "make jslibs      vendor the JavaScript libraries scripts get (CryptoJS, Underscore, Moment)"
	@echo "make xlt         fetch Xceptance XLT (Maven Central) for the XLT report test"
	@echo "make promtool    build the pinned promtool that checks the chart's alerting rules (hack/install-promtool.sh)"
	@echo "make crds        regenerate crds/*.yaml from the models"
	@echo "make lock        refresh requirements*.lock to the newest releases pyproject.toml allows"

# The venv holds exactly what requirements-dev.txt pins (hash-checked), plus this project.
$(STAMP): pyproject.toml requirements-dev.txt
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	uv="$$(bash hack/uv-path.sh)" && \
	  "$$uv" pip sync --quiet --python $(BIN)/python --require-hashes requirements-dev.txt && \
	  "$$uv" pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $@

deps: $(STAMP) jslibs

# CryptoJS, Underscore and Moment for scripts, from the npm registry exactly as
# runner-image/runner/apitest/jslibs/package-lock.json pins them (needs Node.js and npm).
jslibs:
	@bash hack/vendor-js.sh

lock:
	bash hack/lock.sh $(LOCK_ARGS)

kube:
	@bash hack/build-kube.sh >/dev/null

# What a real node runs (hack/realnode.py): containerd, runc, CNI plugins, kubelet, kube-proxy,
# kube-scheduler, CoreDNS and the local pause image; for make up NODES=real and the e2e tests.
node:
	@bash hack/install-node.sh

# A pinned helm built from its Go module, for the chart tests (tests/cluster/test_chart.py).
helm:
	@bash hack/install-helm.sh >/dev/null

# A pinned promtool built from Prometheus's Go module, for the chart's alerting rules
# (tests/cluster/test_chart_monitoring.py runs `promtool check rules` and `promtool test rules`).
promtool:
	@bash hack/install-promtool.sh >/dev/null

# Debian's PostgreSQL server binaries, for the store's tests on PostgreSQL (they start their own
# throwaway server; hack/install-postgres.sh creates no cluster).
postgres:
	@bash hack/install-postgres.sh >/dev/null

# A pinned SeaweedFS `weed` built from its Go module (~9 minutes once, then cached), the S3
# server of the store's tests on object storage (tests/support/s3.py).
seaweedfs:
	@bash hack/install-seaweedfs.sh >/dev/null

# Debian's chromium, for the tests that render reports in a real browser.
browser:
	@bash hack/install-browser.sh >/dev/null

# Xceptance XLT from Maven Central (needs Java 17+ and Maven), for the test that runs XLT's
# report generator on a result archive's XLT layout (tests/unit/test_xlt_report.py).
xlt:
	@bash hack/install-xlt.sh >/dev/null

crds: deps
	$(BIN)/python hack/gen_crds.py

check-crds: deps
	$(BIN)/python hack/gen_crds.py --check

# The guard rails, configured in pyproject.toml. Every one runs, and the target fails if any did.
check: deps
	@failed=""; \
	  $(BIN)/ruff format --check --quiet . || failed="$$failed ruff-format"; \
	  $(BIN)/ruff check . || failed="$$failed ruff"; \
	  $(BIN)/lint-imports || failed="$$failed lint-imports"; \
	  $(BIN)/mypy || failed="$$failed mypy"; \
	  $(BIN)/python hack/gen_crds.py --check || failed="$$failed gen_crds"; \
	  if [ -n "$$failed" ]; then echo "make check failed:$$failed" >&2; exit 1; fi

# Twice: everything on the default store, then every test that starts a gateway again with
# its store on PostgreSQL + S3 (servers the suite starts).
test: deps kube node helm promtool browser xlt postgres seaweedfs images
	$(BIN)/pytest $(PYTEST_ARGS)
	$(BIN)/pytest --gateway-store=postgresql $(PYTEST_ARGS)

test-postgresql: deps kube helm browser postgres seaweedfs
	$(BIN)/pytest --gateway-store=postgresql $(PYTEST_ARGS)

test-unit: deps postgres seaweedfs
	$(BIN)/pytest -m "not cluster and not slow" $(PYTEST_ARGS)

test-cluster: deps kube node helm
	$(BIN)/pytest -m cluster $(PYTEST_ARGS)

up: deps kube $(if $(filter real,$(NODES)),node)
	@NODES=$(NODES) bash hack/stack.sh up

down:
	@bash hack/stack.sh down

status:
	@bash hack/stack.sh status

demo: deps kube
	@bash hack/demo.sh

kind-e2e: deps
	@bash hack/kind-e2e.sh

# The three images from runner-image/Dockerfile with buildah, on base images made from Debian
# packages, exported as docker-archives into ~/.cache/assay/images (see hack/build-images.sh).
images:
	@bash hack/install-image-tools.sh
	@bash hack/build-images.sh

clean: down
	rm -rf .assay $(VENV)
