#!/usr/bin/env bash
# make soak: the local API (cargo lambda watch) over DynamoDB Local, a key with a rate limit
# above the load, then target/debug/soak: SOAK_REQUESTS requests (10,000) from SOAK_CLIENTS
# clients (32) within SOAK_DURATION_LIMIT seconds (300), at most SOAK_MAX_IN_FLIGHT (64) at
# once, and the stored state checked.
# Uses the DynamoDB Local of DYNAMODB_ENDPOINT when set (make test's), else starts one in
# memory. Stops what it started, even on failure. Loopback only.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

SOAK_REQUESTS="${SOAK_REQUESTS:-10000}"
SOAK_CLIENTS="${SOAK_CLIENTS:-32}"
SOAK_DURATION_LIMIT="${SOAK_DURATION_LIMIT:-300}"
# cargo lambda watch stalls for good with more than 100 invocations queued (docs/testing.md, Soak test).
SOAK_MAX_IN_FLIGHT="${SOAK_MAX_IN_FLIGHT:-64}"

prepare_soak
ensure_api_key "$work/key" soak 1000000

api_port="$(free_port)"
log "starting the local API on port $api_port"
API_LOG=".local/soak-api.log" start_local_api "$api_port"

log "soak: $SOAK_REQUESTS requests from $SOAK_CLIENTS clients"
if ! target/debug/soak --base-url "http://127.0.0.1:$api_port/api/developer" \
  --api-key-file "$work/key" --requests "$SOAK_REQUESTS" --clients "$SOAK_CLIENTS" \
  --duration-limit "$SOAK_DURATION_LIMIT" --max-in-flight "$SOAK_MAX_IN_FLIGHT"; then
  echo "soak failed; the functions' log is in .local/soak-api.log" >&2
  exit 1
fi
