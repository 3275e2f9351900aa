# The two commands a newcomer needs: `make run` and `make test`. Each installs what is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: install run test test-unit chaos chaos-cluster bench bench-cmdb bench-incident bench-change bench-gate bench-ledger bench-report bench-service-levels bench-kpi bench-scaling lint lock asyncapi clean

install: $(VENV)/.installed .state/.system-packages .state/asyncapi/.installed \
		.state/grafana-validator/.installed .state/k8s-tools/.installed
	$(PY) -m shared.devstack.kafka fetch-jars

# Python packages, pinned with hashes in requirements.lock.
$(VENV)/.installed: requirements.lock
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	touch $@

# PostgreSQL server binaries, Java 17, Maven and promtool from Debian's packages when they are
# missing; again whenever the script changes.
.state/.system-packages: deploy/local/install-system-packages.sh
	@mkdir -p .state
	bash deploy/local/install-system-packages.sh
	touch $@

# The AsyncAPI project's parser, pinned in deploy/asyncapi/package-lock.json: the tests validate
# the event contract with it.
.state/asyncapi/.installed: deploy/asyncapi/package.json deploy/asyncapi/package-lock.json \
		deploy/local/install-asyncapi-parser.sh .state/.system-packages
	bash deploy/local/install-asyncapi-parser.sh

# Grafana's dashboard schema (the Grafana Foundation SDK, pinned in deploy/grafana/validate/go.sum)
# as a small Go program: the tests validate every dashboard in deploy/grafana/ with it.
.state/grafana-validator/.installed: deploy/grafana/validate/main.go deploy/grafana/validate/go.mod \
		deploy/grafana/validate/go.sum deploy/local/install-grafana-validator.sh
	bash deploy/local/install-grafana-validator.sh

# kustomize and kubeconform (pinned in deploy/k8s/tools/go.sum): the tests build every overlay
# of deploy/k8s/ and validate it against the schemas kept in deploy/k8s/schemas/.
.state/k8s-tools/.installed: deploy/k8s/tools/go.mod deploy/k8s/tools/go.sum \
		deploy/k8s/tools/tools.go deploy/local/install-k8s-tools.sh
	bash deploy/local/install-k8s-tools.sh

run: install
	$(PY) -m shared.devstack run

# pytest's exit code 5 (no tests collected) is a failure here, never a silent pass.
test: install
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The fault tier's long run: 20+ kill -9s of services, relays, the broker and PostgreSQL under
# load, then a report (kills, recovery per part, counts, publish delay). `make test` runs a
# short one. CHAOS_ARGS="--seed N --kills M" repeats or resizes a run.
# Then the same at cluster shape (`make chaos-cluster` alone): three KRaft brokers (replication
# 3, min.insync.replicas 2), two replicas of every service, two relays per publishing service;
# CHAOS_CLUSTER_ARGS resizes it.
CHAOS_ARGS ?= --kills 24
CHAOS_CLUSTER_ARGS ?= --kills 16
CHAOS_CLUSTER := $(PY) -m tests.faults.harness --brokers 3 --replicas 2 --relays 2
chaos: install
	$(PY) -m tests.faults.harness $(CHAOS_ARGS)
	$(CHAOS_CLUSTER) $(CHAOS_CLUSTER_ARGS)

chaos-cluster: install
	$(CHAOS_CLUSTER) $(CHAOS_CLUSTER_ARGS)

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

bench: install
	$(PY) -m tests.benchmarks.pipeline

# The CMDB at scale: 100,000 CIs / 300,000 relationships imported, then impact analysis.
bench-cmdb: install
	$(PY) -m tests.benchmarks.cmdb

# Incidents: creation over HTTP vs raw INSERT, a 20,000-alert storm, 100,000 SLA clocks.
bench-incident: install
	$(PY) -m tests.benchmarks.incident

# Change schedule: conflicts of a change on 1,000 CIs among 10,000 changes in a 100,000-CI CMDB.
bench-change: install
	$(PY) -m tests.benchmarks.change_conflicts

# The deployment gate: decisions at 32 concurrent pipelines, beside /health/live.
bench-gate: install
	$(PY) -m tests.benchmarks.change_gate

# The verifiable log: ingestion of 200,000 events beside raw aiokafka, verification of and
# inclusion proofs in a 1,000,000-entry log.
bench-ledger: install
	$(PY) -m tests.benchmarks.ledger

# A service report generated (goal < 5 s) and the management-review pack, beside json.dumps and
# a plain string template of the same figures; the PDF round when chromium is installed.
bench-report: install
	$(PY) -m tests.benchmarks.reports

# A month's availability of one business service over 20,000 outages beside a plain query.
bench-service-levels: install
	$(PY) -m tests.benchmarks.service_levels

# KPIs: a month's figures for one service over 1,000,000 incidents; rebuild from 1,000,000 events.
bench-kpi: install
	$(PY) -m tests.benchmarks.kpis

# What grows with what (docs/scaling.md): end to end with 1-2 incident replicas and 1-2 relays,
# ledger ingestion with 1-2 consumer replicas, CPU per event per part; beside raw baselines.
bench-scaling: install
	$(PY) -m tests.benchmarks.scaling

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services
	$(VENV)/bin/lint-imports --no-logo

# The event contract, docs/asyncapi.json, rewritten from the event catalogue and the service
# registry (tests/unit/test_asyncapi_document.py fails while it is out of date).
asyncapi: $(VENV)/.installed
	$(PY) -m shared.events.asyncapi docs/asyncapi.json

# Re-pin requirements.lock after changing pyproject.toml's dependencies.
lock: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet uv
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 --no-header --no-annotate -o requirements.lock

clean:
	rm -rf .state $(VENV)
