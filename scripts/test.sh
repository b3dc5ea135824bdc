#!/usr/bin/env bash
# make test: installs what is missing, starts one DynamoDB Local for the whole run, runs
# every check, and stops DynamoDB Local again, even when a check fails.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

ensure_tools

trap 'stop_dynamodb; stop_moto' EXIT
unset DYNAMODB_ENDPOINT EVENTBRIDGE_ENDPOINT # never a DynamoDB or a bus from the caller's environment
use_dynamodb_local
use_moto
export TABLE_NAME="developer-ingest-test"
export AWS_REGION="us-east-1"

log "cargo fmt --check"
cargo fmt --all --check

log "docs: links resolve, mentioned make targets exist"
python3 scripts/check-docs.py --self-test
python3 scripts/check-docs.py

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "unit and integration tests (events/ fixtures included)"
results="$(mktemp)"
cargo test --workspace --all-targets --locked 2>&1 | tee "$results"

log "soak test, short (make soak sends 10,000 requests)"
SOAK_REQUESTS=1000 SOAK_DURATION_LIMIT=120 bash scripts/soak.sh

log "smoke test (scripts/smoke.sh, as after every deploy) and cargo lambda invoke of events/ fixtures, against the local API"
bash scripts/smoke-local.sh

log "benchmark smoke run (make bench measures; this only checks it still runs)"
cargo build --workspace --locked --quiet
target/debug/bench --binaries target/debug --smoke >/dev/null

log "API fuzzing: schemathesis from openapi.yaml against the local API (short; make fuzz-api runs longer)"
bash scripts/fuzz-api.sh 20

# Offline: no GitHub API calls (the audits that need them are skipped); any finding fails.
log "zizmor: the workflow and its action (template injection, unpinned actions, permissions)"
"$ZIZMOR_VENV/bin/zizmor" --offline --no-progress .github/

log "sam validate --lint"
sam validate --lint --template template.yaml --region us-east-1

log "all checks passed"
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$results"
rm -f "$results"
