# One task runner for people and CI (`.ci/run` calls `make test`).
#   make run    start the control plane, one data-plane node and a mock upstream on SQLite (the quickstart)
#   make test   check services, then formatting, lints and every test suite (SQLite and Postgres)

CARGO ?= cargo

.PHONY: run test lint services

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
