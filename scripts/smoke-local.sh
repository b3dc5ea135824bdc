#!/usr/bin/env bash
# make smoke (and make test): the local API (cargo lambda watch, as make run serves it) over
# DynamoDB Local in a table of its own, then
#   1. scripts/smoke.sh against it, with a key of an org `smoke`, as the deploy runs it on AWS;
#   2. docs/operations.md's `cargo lambda invoke --data-file events/...` for a few fixtures, with the
#      fixtures' key registered as make run does: each must answer the status its name says.
# Uses the DynamoDB Local of DYNAMODB_ENDPOINT when set (make test's), else starts one in
# memory. Stops what it started, even on failure.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

# A fresh table per run: the fixtures' 201s create their records.
export TABLE_NAME="developer-ingest-smoke-$(date +%s)-$$"
export AWS_REGION="${AWS_REGION:-us-east-1}"
# The fixtures in the order a newcomer would try them: reads after the write that they read.
INVOKED_FIXTURES=(
  health.200.ok
  me.200.ok
  me.401.invalid_api_key
  users-upsert.201.created
  users-upsert.400.missing_user_identity
  users-get.200.ok
  users-get.404.user_not_found
)

ensure_run_tools
mkdir -p .local
scratch_dir_with_cleanup
use_dynamodb_local

cargo build --workspace --locked --quiet
ensure_api_key "$work/key" smoke
target/debug/admin fixtures register

api_port="$(free_port)"
log "starting the local API on port $api_port"
METRICS_NAMESPACE="DeveloperIngest/smoke" API_LOG=".local/smoke-api.log" start_local_api "$api_port"

log "smoke test against the local API"
if ! API_KEY="$(cat "$work/key")" SMOKE_TIMEOUT=120 bash scripts/smoke.sh "http://127.0.0.1:$api_port/api/developer/"; then
  echo "the functions' log is in .local/smoke-api.log" >&2
  exit 1
fi

log "the functions' metric lines (CloudWatch Embedded Metric Format)"
python3 - .local/smoke-api.log <<'PY'
import json, sys
documents = []
for line in open(sys.argv[1], errors="replace"):
    start = line.find('{"')
    try:
        document = json.loads(line[start:]) if start >= 0 else None
    except ValueError:
        continue
    if isinstance(document, dict) and "_aws" in document:
        documents.append(document)
def count(function, outcome):
    return sum(1 for d in documents if d["function"] == function and d["outcome"] == outcome)
# smoke.sh: users/upsert/ twice accepted and once refused; health/ twice.
assert count("users-upsert", "ok") == 2 and count("users-upsert", "rejected") == 1, documents
assert count("health", "ok") >= 2, documents
assert sum(d.get("Ingested", 0) for d in documents if d["function"] == "users-upsert") == 2, documents
print(f"ok   {len(documents)} metric lines, in namespace {documents[0]['_aws']['CloudWatchMetrics'][0]['Namespace']}")
PY

log "cargo lambda invoke --data-file events/... (${#INVOKED_FIXTURES[@]} fixtures)"
failed=0
for fixture in "${INVOKED_FIXTURES[@]}"; do
  function="${fixture%%.*}"
  expected="$(printf '%s' "$fixture" | cut -d. -f2)"
  answer="$(cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$api_port" \
    "$function" --data-file "events/$fixture.json" 2>&1)" || true
  status="$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["statusCode"])' 2>/dev/null)" ||
    status="no answer"
  if [ "$status" = "$expected" ]; then
    echo "ok   $status $fixture"
  else
    echo "FAIL $fixture: expected $expected, got $status: $(printf '%s' "$answer" | head -c 300)" >&2
    failed=$((failed + 1))
  fi
done
if [ "$failed" -gt 0 ]; then
  echo "$failed of ${#INVOKED_FIXTURES[@]} fixtures did not answer as their names say" >&2
  exit 1
fi
