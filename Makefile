# Hookline. Two commands matter on a fresh machine with Postgres, RabbitMQ and
# Redis running: `make dev` and `make test`.

# Builds share one target directory outside the checkout, so clones (and CI
# on this machine) do not rebuild the world.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hookline/target
CARGO ?= cargo

.PHONY: dev test nextest fuzz soak check-services build openapi openapi-check fmt lint bench bench-pairs clean

## Migrate and run every service in one process on :8000.
dev: check-services
	$(CARGO) run -p hookline -- run all

## The whole test suite against the real Postgres, RabbitMQ and Redis, then
## a short run of every fuzz target from its stored corpus.
test: nextest fuzz

nextest: check-services
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# cargo-fuzz instruments with flags that need RUSTC_BOOTSTRAP on a stable toolchain.
FUZZ_SECONDS ?= 10
FUZZ_TARGETS := api_key signature event_payload retry_policy
FUZZ_TARGET_DIR ?= $(HOME)/.cache/hookline/fuzz-target

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

## Says clearly which backing service is missing.
check-services:
	@./scripts/check-services.sh

build:
	$(CARGO) build --workspace

## Regenerate docs/openapi.json from the code.
openapi:
	$(CARGO) run -q -p hookline -- openapi > docs/openapi.json

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## 30 minutes of steady load with a fault every three minutes; plots every
## service's memory to bench-results/soak-*.svg and checks nothing was lost.
SOAK_SECS ?= 1800
soak: check-services
	HOOKLINE_SOAK_SECS=$(SOAK_SECS) $(CARGO) nextest run -p hookline --run-ignored only --no-capture -E 'test(=chaos::soak)'

## Drive a release build with the benchmark scenarios (results in bench-results/).
bench: check-services
	./scripts/bench.sh

## The retry-storm and hanging-endpoint comparisons PAIRS times (default 5),
## calm then loaded, each pair on a fresh stack warmed for 2 s; ratios and
## their median in bench-results/<time>-pairs.md.
PAIRS ?= 5
bench-pairs: check-services
	./scripts/bench.sh --pairs $(PAIRS)

clean:
	$(CARGO) clean
