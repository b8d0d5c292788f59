# Hookline. Two commands matter on a fresh machine: `make dev` and `make test`.
# Each first runs scripts/setup.sh, which installs and starts what is missing.
#
# Builds go where a bare `cargo` puts them (./target); set CARGO_TARGET_DIR to
# share one directory between clones.
CARGO ?= cargo
# The Python example's receiver and schemathesis live in the project's venv.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: dev test setup-dev setup-test nextest fuzz soak build openapi openapi-check fmt lint bench bench-pairs clean

## Migrate and run every service in one process on :8000, metrics on :9100.
## Receivers on this machine are allowed (HOOKLINE_ALLOW_PRIVATE_TARGETS=false
## to refuse them).
dev: setup-dev
	HOOKLINE_ALLOW_PRIVATE_TARGETS=$${HOOKLINE_ALLOW_PRIVATE_TARGETS:-true} \
	HOOKLINE_OPS_LISTEN=$${HOOKLINE_OPS_LISTEN:-127.0.0.1:9100} \
	$(CARGO) run -p hookline -- run all

setup-dev:
	@./scripts/setup.sh dev

setup-test:
	@./scripts/setup.sh test

## The whole test suite against the real Postgres, RabbitMQ and Redis, then
## a short run of every fuzz target from its stored corpus.
test: setup-test
	@$(MAKE) --no-print-directory nextest fuzz

nextest:
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# cargo-fuzz instruments with flags that need RUSTC_BOOTSTRAP on a stable toolchain.
FUZZ_SECONDS ?= 10
FUZZ_TARGETS := api_key signature event_payload retry_policy
FUZZ_TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR)/fuzz,$(CURDIR)/fuzz/target)

## Each fuzz target for FUZZ_SECONDS (new finds go to a scratch directory).
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not found: cargo install cargo-fuzz --locked"; exit 1; }
	@for t in $(FUZZ_TARGETS); do \
		scratch=$$(mktemp -d); log=$$scratch/fuzz.log; \
		echo "fuzz $$t for $(FUZZ_SECONDS) s"; \
		if RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) $(CARGO) fuzz run --fuzz-dir fuzz $$t \
			$$scratch fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 >$$log 2>&1; then \
			grep -E '^Done' $$log; rm -rf $$scratch; \
		else \
			tail -n 60 $$log; echo "fuzz target $$t failed (artifacts in fuzz/artifacts/$$t)"; exit 1; \
		fi; \
	done

build:
	$(CARGO) build --workspace

## Regenerate docs/openapi.json from the code.
openapi:
	$(CARGO) run -q -p hookline -- openapi > docs/openapi.json

## Fails when docs/openapi.json differs from what the code generates.
openapi-check:
	@$(CARGO) run -q -p hookline -- openapi | diff -u docs/openapi.json - >/dev/null \
		|| { echo "docs/openapi.json is stale: run make openapi"; exit 1; }

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## 30 minutes of steady load with a fault every three minutes; plots every
## service's memory to bench-results/soak-*.svg and checks nothing was lost.
SOAK_SECS ?= 1800
soak: setup-test
	HOOKLINE_SOAK_SECS=$(SOAK_SECS) $(CARGO) nextest run -p hookline --run-ignored only --no-capture -E 'test(=chaos::soak)'

## Drive a release build with the benchmark scenarios (results in bench-results/).
bench: setup-test
	./scripts/bench.sh

## The retry-storm and hanging-endpoint comparisons PAIRS times (default 5),
## calm then loaded, each pair on a fresh stack warmed for 2 s; ratios and
## their median in bench-results/<time>-pairs.md.
PAIRS ?= 5
bench-pairs: setup-test
	./scripts/bench.sh --pairs $(PAIRS)

clean:
	$(CARGO) clean
