#!/usr/bin/env bash
# make fuzz-api (and a short run in make test): schemathesis generates requests from
# openapi.yaml, valid and invalid, and sends them to the local API (the functions under
# `cargo lambda watch`, as make run serves them) with a valid key. It fails on any 5xx and
# on any response that does not conform to the spec (status, content type, headers, body).
#
#   scripts/fuzz-api.sh [EXAMPLES]   EXAMPLES per operation and phase (default 100)
#
# Uses the DynamoDB Local at DYNAMODB_ENDPOINT when set (make test has one running), else
# starts one in memory. Everything it starts is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"

EXAMPLES="${1:-100}"
# Far above what the fuzzer sends, so the run checks behaviour, not 429s; the limiter itself
# is tested in shared/tests/api/ratelimit.rs.
FUZZ_RATE_LIMIT=100000
# Fixed, so a failure reproduces with the same command.
SEED="${FUZZ_SEED:-20260323}"

ensure_dynamodb_local
ensure_cargo_lambda
ensure_schemathesis

scratch_dir_with_cleanup
use_dynamodb_local
export TABLE_NAME="${TABLE_NAME:-developer-ingest-fuzz}"
export AWS_REGION="${AWS_REGION:-us-east-1}"

log "building the functions and the admin CLI"
cargo build --workspace --quiet

ensure_api_key "$work/api-key" "fuzz-$(date +%s)" "$FUZZ_RATE_LIMIT"
api_port="$(free_port)"
log "serving the functions on port $api_port"
API_LOG="${FUZZ_API_LOG:-$work/api.log}" start_local_api "$api_port"

# `cargo lambda watch` starts each function (a `cargo run`, which may wait for cargo's locks)
# on its first request: one request per endpoint first, so no fuzzed request times out on it.
log "starting every function"
"$SCHEMATHESIS_VENV/bin/python" - "$REPO_ROOT/openapi.yaml" <<'PY' | while read -r method path; do
import sys, yaml
for path, operations in yaml.safe_load(open(sys.argv[1]))["paths"].items():
    for method in operations:
        print(method.upper(), path)
PY
  curl -s -o /dev/null --max-time 300 -X "$method" "http://127.0.0.1:$api_port$path" -d '{}'
done

log "schemathesis: up to $EXAMPLES examples per operation and phase, seed $SEED"
report="$work/report"
status=0
# One worker: requests go in a reproducible order, and with two, `cargo lambda watch` answered
# about 1 in 3,600 requests with its own 500 that no function had seen.
# Run from the scratch directory: nothing (hypothesis database, reports) lands in the repo.
(cd "$work" && PYTHONPATH="$REPO_ROOT/scripts" SCHEMATHESIS_HOOKS=fuzz_hooks "$SCHEMATHESIS_VENV/bin/st" --config-file "$REPO_ROOT/schemathesis.toml" run "$REPO_ROOT/openapi.yaml" \
  --url "http://127.0.0.1:$api_port" \
  -H "Authorization: Bearer $(cat "$work/api-key")" \
  --checks all \
  --max-examples "$EXAMPLES" \
  --seed "$SEED" \
  --generation-database none \
  --workers 1 \
  --request-timeout 20 \
  --no-color \
  --report ndjson --report-dir "$report") || status=$?

# The number of requests sent, counted from the run's event log.
requests="$(python3 - "$report" <<'PY'
import json, pathlib, sys
count = 0
for path in pathlib.Path(sys.argv[1]).glob("*.ndjson"):
    for line in path.read_text().splitlines():
        event = json.loads(line)
        for name, body in event.items():
            if name == "ScenarioFinished":
                for case in body.get("recorder", {}).get("interactions", {}).values():
                    count += 1
print(count)
PY
)" || requests="?"
echo "fuzz-api: $requests requests sent"
exit "$status"
