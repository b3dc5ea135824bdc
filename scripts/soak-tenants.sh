#!/usr/bin/env bash
# make soak-tenants: the local API (cargo lambda watch) over DynamoDB Local; a quiet org (one
# key) and a flooding org (FLOOD_KEYS keys, 4; total FLOOD_TOTAL tokens/s, 104, set with
# `admin orgs set-total-rate-limit`); then target/debug/soak --flood-key-file: the quiet org
# alone for TENANT_SECONDS (8), then again while the other floods `users/?limit=100` far past
# its limit. Fails unless the quiet org's requests all succeed and its p50/p99 stay within
# LATENCY_FACTOR (3) of its baseline (soak/src/tenants.rs). Uses DYNAMODB_ENDPOINT when set,
# else starts one in memory. Stops what it started, even on failure. Loopback only.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

FLOOD_KEYS="${FLOOD_KEYS:-4}"
FLOOD_TOTAL="${FLOOD_TOTAL:-104}"
TENANT_SECONDS="${TENANT_SECONDS:-8}"
LATENCY_FACTOR="${LATENCY_FACTOR:-3}"

prepare_soak
admin="$REPO_ROOT/target/debug/admin"
ensure_api_key "$work/quiet-key" "quiet-$(date +%s)"
flood_org="flood-$(date +%s)"
for _ in $(seq 1 "$FLOOD_KEYS"); do
  "$admin" keys create --org "$flood_org" --name flood --create-org --env test --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])' >>"$work/flood-keys"
done
"$admin" orgs set-total-rate-limit "$flood_org" "$FLOOD_TOTAL"

api_port="$(free_port)"
log "starting the local API on port $api_port"
API_LOG=".local/soak-tenants-api.log" start_local_api "$api_port"

if ! target/debug/soak --base-url "http://127.0.0.1:$api_port/api/developer" \
  --api-key-file "$work/quiet-key" --flood-key-file "$work/flood-keys" \
  --flood-total "$FLOOD_TOTAL" --tenant-seconds "$TENANT_SECONDS" \
  --latency-factor "$LATENCY_FACTOR"; then
  echo "soak tenants failed; the functions' log is in .local/soak-tenants-api.log" >&2
  exit 1
fi
