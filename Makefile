# One task runner for people and CI (`.ci/run` calls `make test`).
#   make run    start the control plane, one data-plane node and a mock upstream on SQLite (the quickstart)
#   make test   check services, then formatting, lints and every test suite (SQLite and Postgres)
#   make fault  the fault scenarios (control plane, Postgres, node SIGKILL, upstream, Redis) with 30 s faults

CARGO ?= cargo

.PHONY: run test lint services fault

run:
	$(CARGO) build --bins
	$(CARGO) run --quiet --bin switchyard-control-plane -- quickstart

services:
	bash .ci/services

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# cargo-nextest when the machine has it (a clear summary line, one process per test), cargo test otherwise.
# The binaries first: the SIGKILL and fault tests start `target/debug/switchyard-data-plane` as a child process,
# which no test target builds; without this they fail on a fresh clone, or run a stale binary on a warm one.
test: services lint
	$(CARGO) build --workspace --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --all-targets --no-fail-fast; \
	fi

# The fault script (control-plane/tests/api/faults.rs) with 30 s faults, one scenario after the other: steady load
# through two nodes while the control plane is unreachable, its Postgres (a private cluster) stopped, one node
# SIGKILLed and restarted, the upstream failing (500s, hangs, garbage, cut streams), Redis stopped. Each prints
# `fault=<name> served=N stored=N lost=0 duplicated=0`. The test suite runs the same scenarios with 3 s faults.
fault:
	$(CARGO) build --bins
	SWITCHYARD_FAULT_OUTAGE_SECS=30 $(CARGO) test -p switchyard-control-plane --test api faults:: -- \
		--nocapture --test-threads=1
