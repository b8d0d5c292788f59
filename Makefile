# Hookline. Two commands matter on a fresh machine with Postgres, RabbitMQ and
# Redis running: `make dev` and `make test`.

# Builds share one target directory outside the checkout, so clones (and CI
# on this machine) do not rebuild the world.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hookline/target
CARGO ?= cargo

.PHONY: dev test check-services build openapi openapi-check fmt lint bench clean

## Migrate and run every service in one process on :8000.
dev: check-services
	$(CARGO) run -p hookline -- run all

## The whole test suite against the real Postgres, RabbitMQ and Redis.
test: check-services
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		echo "cargo-nextest not found; using cargo test"; \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

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

## Drive a release build with the benchmark scenarios (results in bench-results/).
bench: check-services
	./scripts/bench.sh

clean:
	$(CARGO) clean
