# Two commands: `make demo` and `make test`. Both set everything up first and are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LANDING_DIR ?=
export PYTHONPATH := $(CURDIR)
# Compiled modules are kept, as Python does by default. PYTHONDONTWRITEBYTECODE (many container images set it)
# would make every Python process of a run compile pandas, pyspark, pyarrow, the Cassandra driver and Jupyter's
# modules from source again: the pytest process, each child pipeline, each Spark session's Python workers, the
# notebooks' kernel (ADR 153, session 28).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-prerequisites test-fast lint setup jvm-archive cassandra cassandra-stop cqlsh landing notebooks notebooks-sync benchmark diagram clean-lake help cluster-demo package

help:
	@echo "make demo       - set up, run the five notebooks headless end to end, print Q1/Q2 and the idempotency check"
	@echo "make test       - set up, then run the whole test suite (what CI runs, with lint)"
	@echo "make test-fast  - unit and small-data stage tests only (no notebooks, kill/restart, second node, course data)"
	@echo "make lint       - ruff on the package, scripts, tests and notebook sources"
	@echo "make notebooks  - re-execute the committed notebooks on the course data (needs LANDING_DIR)"
	@echo "make notebooks-sync - write notebooks/NN_*.py (the sources) into their .ipynb, keeping outputs"
	@echo "make cqlsh      - open cqlsh on the local node (CQL=cql/demo_queries.cql runs that file instead)"
	@echo "make benchmark  - time every stage at scales 1, 10, 100 and write docs/performance.md"
	@echo "make cassandra / cassandra-stop - start / stop the local Cassandra"
	@echo "make jvm-archive - build the class archive that makes every later Spark JVM start faster (once)"
	@echo "make cluster-demo - the whole pipeline on a local Spark standalone master + worker (package shipped with --py-files)"
	@echo "make package    - build dist/lakehouse_utils-<version>-<hash>.zip, the --py-files archive for executors"

# --no-compile: pip would byte-compile every module of every package (pyspark's thousands), 13 of a fresh
# install's 31 s; Python compiles the few it imports on first use and keeps them in the venv.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -r requirements-dev.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

# Spark's classes, parsed and verified once and mapped by every later Spark JVM (ADR 090.7, 090.29); a no-op when built.
# Not a step of `demo`: a first demo would pay ~35 s to save less (two JVMs, ~7 s each); it uses the archive when there is one.
jvm-archive: setup
	$(PY) -m lakehouse_utils jvm-archive

cassandra: setup
	$(PY) -m lakehouse_utils cassandra start

cassandra-stop: setup
	$(PY) -m lakehouse_utils cassandra stop

landing: setup
	$(PY) -m scripts.ensure_landing

demo: cassandra landing
	$(PY) -m scripts.run_notebooks --demo

# The node boots while the class archive is built (both need only the venv): a fresh clone waits for the longer one.
test-prerequisites: setup
	@$(MAKE) --no-print-directory -j2 cassandra jvm-archive

test: test-prerequisites
	$(PY) -m pytest

# Everything not marked slow (notebooks, kill/restart, second Cassandra node, scale-1 chains, re-run scenarios, extra JVMs) or course.
test-fast: test-prerequisites
	$(PY) -m pytest -m "not slow and not course"

# notebooks/*.py are the jupytext sources; $(wildcard) leaves them out where they do not exist yet.
lint: setup
	$(VENV)/bin/ruff check lakehouse_utils scripts tests $(wildcard notebooks/*.py)

notebooks: cassandra jvm-archive
	$(PY) -m scripts.run_notebooks --commit

notebooks-sync: setup
	$(PY) -m scripts.sync_notebooks

# cqlsh from PyPI (requirements-dev.txt). CASSANDRA_HOST/PORT as for the pipeline; CQL=file runs a file, in the
# keyspace the pipeline serves (CASSANDRA_KEYSPACE from the environment or .env: the file's `USE cloud_analytics;`
# line is rewritten to it, so a file never reads another lake's keyspace).
CQLSH_HOST = $${CASSANDRA_HOST:-127.0.0.1} $${CASSANDRA_PORT:-9042}
CQLSH_KEYSPACE = $$($(PY) -c 'from lakehouse_utils.config import Settings; print(Settings.load().cassandra_keyspace)')
cqlsh: cassandra
	@keyspace=$(CQLSH_KEYSPACE); echo "-- keyspace $$keyspace (CASSANDRA_KEYSPACE)"; \
	if [ -n "$(CQL)" ]; then mkdir -p .cache && sed "s/^USE cloud_analytics;/USE $$keyspace;/" "$(CQL)" > .cache/cqlsh-file.cql \
	&& $(VENV)/bin/cqlsh $(CQLSH_HOST) -f .cache/cqlsh-file.cql; \
	else echo "tip: SOURCE 'cql/demo_queries.cql'; runs the five demo queries"; $(VENV)/bin/cqlsh $(CQLSH_HOST) -k "$$keyspace"; fi

benchmark: cassandra jvm-archive
	$(PY) -m lakehouse_utils benchmark --scales 1,10,100 --sections stages,course,freshness

cluster-demo: cassandra
	$(PY) -m scripts.cluster_demo

package: setup
	$(PY) -m lakehouse_utils package --out dist

diagram: setup
	$(PY) -m scripts.make_diagram

clean-lake:
	rm -rf data/lake
