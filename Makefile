# One task runner for people and CI (`.ci/run` calls `make test`).
#   make run    start the control plane, one data-plane node and a mock upstream on SQLite (the quickstart)
#   make test   check services, then formatting, lints and every test suite (SQLite and Postgres)
#   make fault  the fault scenario with a 30 s control-plane outage (the test suite runs it with 3 s)

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
test: services lint
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --all-targets --no-fail-fast; \
	fi

# Steady load through two nodes; the control plane unreachable for 30 s; one node SIGKILLed and restarted
# halfway. Prints requests served, usage records stored, lost and duplicated.
fault:
	$(CARGO) build --bins
	SWITCHYARD_FAULT_OUTAGE_SECS=30 $(CARGO) test -p switchyard-control-plane --test api \
		usage_spool::fault_ -- --nocapture
