#!/usr/bin/env bash
# make admin ARGS='...': the admin CLI against the DynamoDB Local that `make run` uses.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"
export DYNAMODB_ENDPOINT="${DYNAMODB_ENDPOINT:-http://127.0.0.1:${DYNAMODB_PORT:-8000}}"
export TABLE_NAME="${TABLE_NAME:-developer-ingest}"
exec cargo run --quiet -p admin -- "$@"
