#!/usr/bin/env bash
# make bench: builds the release functions (and the hello-world floor) and measures them
# against one in-memory DynamoDB Local; writes BENCHMARKS.md. Arguments go to the bench
# binary (e.g. --cold-starts 20).
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

ensure_dynamodb_local
log "building the release binaries (every function, the floor, the bench)"
packages=(-p hello-floor -p bench)
for function in functions/*/; do packages+=(-p "$(basename "$function")"); done
cargo build --release --locked "${packages[@]}"

trap stop_dynamodb EXIT
unset DYNAMODB_ENDPOINT # never a DynamoDB from the caller's environment
use_dynamodb_local
export DYNAMODB_LOCAL_PID="$DYNAMODB_PID" # its CPU time is reported next to the functions'
export AWS_REGION="us-east-1"
log "benchmarking"
target/release/bench --binaries target/release --out BENCHMARKS.md "$@"
