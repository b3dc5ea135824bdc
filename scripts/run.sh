#!/usr/bin/env bash
# make run: DynamoDB Local (data kept in .local/dynamodb), the table, a development org and
# key (.local/dev-api-key, reused across runs), the events/ fixtures' key, the change feed's
# stream consumer, and all the functions served by `cargo lambda watch` at their production paths. Installs only what
# that needs (cargo-lambda, DynamoDB Local). Ctrl-C stops everything it started.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

DYNAMODB_PORT="${DYNAMODB_PORT:-8000}"
API_PORT="${API_PORT:-9000}"
export TABLE_NAME="${TABLE_NAME:-developer-ingest}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export DYNAMODB_ENDPOINT="http://127.0.0.1:$DYNAMODB_PORT"
KEY_FILE=".local/dev-api-key"

ensure_run_tools
mkdir -p .local

if port_in_use "$API_PORT"; then
  echo "port $API_PORT is already in use: stop what runs there or set API_PORT" >&2
  exit 1
fi

trap stop_dynamodb EXIT
log "starting DynamoDB Local on port $DYNAMODB_PORT (data in .local/dynamodb)"
DYNAMODB_LOG=.local/dynamodb.log start_dynamodb "$DYNAMODB_PORT" "$REPO_ROOT/.local/dynamodb"

# Not quiet: the first build takes minutes, and cargo's progress says how far it got.
log "building the functions and the admin CLI (the first build takes a few minutes)"
cargo build --workspace --exclude bench --exclude hello-floor --exclude soak

ensure_api_key "$KEY_FILE" dev
# The events/ fixtures' public test key, so `cargo lambda invoke --data-file events/...`
# answers as the file name says (docs/operations.md, Invoking one function). Local tables only.
target/debug/admin fixtures register
API_KEY="$(cat "$KEY_FILE")"

# The change feed: the stream consumer the Lambda runs, fed from DynamoDB Local's stream every
# 200 ms (and the publisher, when EVENTBRIDGE_ENDPOINT names an EventBridge emulator such as
# moto's server), so GET changes/ works here too. Its lines go to .local/changes.log.
follow_args=()
if [ -n "${EVENTBRIDGE_ENDPOINT:-}" ]; then
  follow_args=(--bus developer-ingest-changes)
else
  log "EVENTBRIDGE_ENDPOINT not set: changes are not published to a bus (GET changes/ has them)"
fi
target/debug/admin changes follow "${follow_args[@]}" >.local/changes.log 2>&1 &
FOLLOW_PID=$!
# Changes made by time (booking reminders and ends, lifecycle transitions): the sweeper's
# handler every 10 s instead of every minute. Its lines go to .local/sweeper.log.
target/debug/admin changes sweep --interval-ms 10000 >.local/sweeper.log 2>&1 &
SWEEP_PID=$!
trap 'kill "$FOLLOW_PID" "$SWEEP_PID" 2>/dev/null || true; stop_dynamodb' EXIT
BASE_URL="http://127.0.0.1:$API_PORT/api/developer"

cat <<BANNER

  Developer ingest API running locally
  base URL  $BASE_URL/
  API key   $API_KEY   (also in $KEY_FILE)

  curl -s $BASE_URL/me/ -H "Authorization: Bearer $API_KEY"

  curl -s -X POST $BASE_URL/users/upsert/ \\
    -H "Authorization: Bearer $API_KEY" -H "Content-Type: application/json" \\
    -d '{"external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe"}'

  curl -s $BASE_URL/changes/ -H "Authorization: Bearer $API_KEY"   # the change feed

  Ctrl-C stops the API and DynamoDB Local.

BANNER

# Not exec: the EXIT trap must still stop DynamoDB Local when watch ends.
serve_functions "$API_PORT"
