# The two commands: `make run` serves the API locally, `make test` proves it.
.PHONY: run test test-properties smoke soak soak-tenants fuzz-api admin import bench fuzz events template sam-build clean

run: ## Serve all functions at http://127.0.0.1:$${API_PORT:-9000}/api/developer/ over DynamoDB Local
	@bash scripts/run.sh

test: ## fmt, clippy, unit + integration tests against DynamoDB Local, events/ fixtures, the smoke test, a short soak, sam validate
	@bash scripts/test.sh

test-properties: ## The client record and inbox property tests with many cases (RECORD_CASES=300): any order, duplicates, concurrency
	@bash scripts/test-properties.sh

smoke: ## scripts/smoke.sh (what runs after every deploy) and a few `cargo lambda invoke`s of events/ against the local API
	@bash scripts/smoke-local.sh

soak: ## 10,000 requests from 32 clients against the local API, then the stored state checked (SOAK_REQUESTS=...)
	@bash scripts/soak.sh

soak-tenants: ## One org floods the local API past its limit while another's success and latency are checked (TENANT_SECONDS=...)
	@bash scripts/soak-tenants.sh

fuzz-api: ## schemathesis against the local API from openapi.yaml, longer than make test's run (EXAMPLES=1000)
	@bash scripts/fuzz-api.sh $${EXAMPLES:-1000}

admin: ## The admin CLI against make run's DynamoDB Local, e.g. make admin ARGS='orgs list'
	@bash scripts/admin.sh $(ARGS)

import: ## Load a file into make run's API through batch/, e.g. make import FILE=users.csv TYPE=users (resumable)
	@bash scripts/import.sh

bench: ## Release binaries vs their floors: cold start, storage cost, warm latency, size, memory -> BENCHMARKS.md
	@bash scripts/bench.sh $(ARGS)

fuzz: ## libFuzzer on every body parser and the parsed headers, FUZZ_SECONDS (60) per target
	@bash scripts/fuzz.sh

events: ## Regenerate events/ from scripts/generate-events.py
	@python3 scripts/generate-events.py

template: ## Regenerate from endpoints.toml template.yaml's functions, log groups and alarms, and Cargo.toml's watch router
	@python3 scripts/generate-template.py

sam-build: ## sam build for this machine's architecture (x86_64); deploys build arm64
	@bash scripts/sam-build.sh

clean:
	cargo clean
	rm -rf .aws-sam
