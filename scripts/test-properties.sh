#!/usr/bin/env bash
# make test-properties: the client record's and the inbox's property tests (tests/api/record_properties.rs)
# with many more cases than make test runs (RECORD_CASES, default 300), against a DynamoDB
# Local of its own (or DYNAMODB_ENDPOINT's).
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

ensure_dynamodb_local
trap stop_dynamodb EXIT
use_dynamodb_local
export TABLE_NAME="${TABLE_NAME:-developer-ingest-properties}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export RECORD_CASES="${RECORD_CASES:-300}"
log "property test of the client record: $RECORD_CASES cases"
cargo test -p shared --test api --locked record_properties -- --nocapture
