# Flightline — the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
STACK := deploy/local/stack.sh
BIN := target/debug/flightline

.PHONY: help setup build run test lint test-rust test-interop test-browser test-dashboard test-fuzz test-chaos chaos chaos-load soak dashboard stack-up stack-down stack-status migrate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## install build prerequisites missing on this machine (apt, rustup components, pip)
	@deploy/local/setup.sh

build: setup ## build the flightline binary (debug profile)
	$(CARGO) build --bin flightline

stack-up: ## bring up Kafka (KRaft), PostgreSQL, Redis and the Cassandra node (the archive) locally
	@$(STACK) up

stack-down: ## stop the local stack
	@$(STACK) down

stack-status: ## one line per local service
	@$(STACK) status

migrate: build stack-up ## apply database migrations
	$(BIN) migrate

run: build stack-up ## stack up, migrate, every role in one process plus a simulated fleet
	@deploy/local/run.sh

test: setup lint stack-up test-rust test-interop test-dashboard test-browser test-fuzz test-chaos ## lints, stack up, then every test against the real services

lint: setup ## rustfmt and clippy (warnings are errors) over the whole workspace
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The Kafka outage test stops and restarts the shared broker, so it runs alone, after the rest.
test-rust:
	$(CARGO) test --workspace --no-fail-fast -- --skip kafka_outage
	$(CARGO) test --test kafka_outage

test-interop:
	bash schemas/interop/run.sh

test-dashboard: ## the dashboard type-checks, its helpers pass their tests, the committed bundle is what its sources build
	bash query/dashboard/test.sh
	bash query/dashboard/build.sh --check

test-browser: ## the dashboard in headless Chromium against a real deployment
	bash tests/browser/run.sh

test-fuzz: build ## schemathesis against /openapi.json of a real deployment: no 5xx, no response off the schema
	bash tests/api_fuzz/run.sh

test-chaos: build ## the fault harness, short: one or two trials per scenario, and a 150-s soak
	python3 tests/chaos/run.py --quick --no-build --results "$${TMPDIR:-/tmp}/flightline-chaos-quick.md"
	python3 tests/chaos/run.py --no-build --scenario soak --soak-s 150 --soak-every-s 30 --soak-outage-s 10 \
		--fleet-pps 2000 --fleet-drones 10 --max-s 900 --results "$${TMPDIR:-/tmp}/flightline-soak-quick.md"

chaos: build stack-up ## the fault harness, full (tests/chaos/README.md); results in tests/chaos/RESULTS.md
	python3 tests/chaos/run.py --no-build

chaos-load: stack-up ## the full fault harness while a fleet offers 20 000 packets/s (release build)
	$(CARGO) build --release --bin flightline
	python3 tests/chaos/run.py --no-build --bin target/release/flightline --fleet-pps 20000

soak: stack-up ## 30 min at 20 000 packets/s, a fault every 3 min: nothing lost, memory flat (release build)
	$(CARGO) build --release --bin flightline
	python3 tests/chaos/run.py --no-build --bin target/release/flightline --scenario soak

dashboard: ## rebuild the dashboard bundle (query/dashboard/dist, committed)
	bash query/dashboard/build.sh
