#!/usr/bin/env bash
# The smoke test of a running API: every documented path with and without its trailing
# slash, one 401, one 400 and an upsert read back. The deploy workflow runs it against each
# stack it deploys (with a short-lived key of the org `smoke`), make test against the local API.
#
#   API_KEY=dfk_... scripts/smoke.sh BASE_URL     BASE_URL: the stack's ApiUrl output,
#                                                 e.g. https://<id>.execute-api.us-east-1.amazonaws.com/api/developer/
#
# Writes only ids of its own (smoke_*_<run>) and erases its user at the end (the erasure
# takes its events, sale, thread, message and booking; the product `smoke_product` stays).
# Exits 1 naming every failed check; SMOKE_TIMEOUT (30) seconds per request.
set -uo pipefail

base="${1:?usage: API_KEY=<key> scripts/smoke.sh BASE_URL}"
base="${base%/}"
: "${API_KEY:?API_KEY must hold an API key (of an org used only for smoke tests)}"
timeout="${SMOKE_TIMEOUT:-30}"

run="$(date -u +%Y%m%dT%H%M%S)_$RANDOM"
user="smoke_user_$run"
thread="smoke_thread_$run"
name="Smoke test $run"
# Far from real data, and before the 24-hour future bound of sent_at (which it has not).
window_from="2030-01-01T00:00:00Z"
window_to="2030-01-02T00:00:00Z"

response="$(mktemp)"
response_headers="$(mktemp)"
trap 'rm -f "$response" "$response_headers"' EXIT
checks=0
failures=()

fail() { failures+=("$1"); echo "FAIL $1" >&2; }

# request METHOD PATH [BODY] [AUTH]: sends it (AUTH "none" sends no Authorization) and
# prints the status ("000" when there was no answer); the body is left in $response. A 429
# is retried after its Retry-After (at most 5 s, 3 times), as a client should: a costly
# read (stats/users/ costs 78 of the key's 100 tokens a second) right after another is
# refused by design.
request() {
  local method="$1" path="$2" body="${3:-}" auth="${4:-key}" args=() status wait attempt
  [ "$auth" = key ] && args+=(-H "Authorization: Bearer $API_KEY")
  [ -n "$body" ] && args+=(-H "Content-Type: application/json" --data-binary "$body")
  for attempt in 1 2 3 4; do
    : >"$response"
    status="$(curl -s -D "$response_headers" -o "$response" -w '%{http_code}' --max-time "$timeout" \
      -X "$method" "${args[@]}" "$base/$path" || true)"
    [ "$status" = 429 ] && [ "$attempt" -lt 4 ] || break
    wait="$(awk 'tolower($1) == "retry-after:" { print ($2 + 0 > 5) ? 5 : $2 + 0 }' "$response_headers")"
    sleep "${wait:-1}"
  done
  echo "$status"
}

# check EXPECTED METHOD PATH [BODY] [AUTH]: EXPECTED is a status pattern such as 200 or 20[01].
check() {
  local expected="$1" method="$2" path="$3" status
  checks=$((checks + 1))
  status="$(request "$method" "$path" "${4:-}" "${5:-key}")"
  # shellcheck disable=SC2053 # EXPECTED is a pattern
  if [[ $status == $expected ]]; then
    echo "ok   $status $method /$path"
    return 0
  fi
  fail "$method /$path: expected $expected, got $status $(head -c 300 "$response")"
  return 1
}

# both EXPECTED METHOD PATH [QUERY] [BODY]: the path with its trailing slash, then without.
both() {
  local expected="$1" method="$2" path="$3" query="${4:+?$4}" body="${5:-}"
  check "$expected" "$method" "$path/$query" "$body"
  check "$expected" "$method" "$path$query" "$body"
}

# expect_json WHAT PYTHON_EXPRESSION: checks the last response body, parsed as `body`.
expect_json() {
  checks=$((checks + 1))
  if python3 -c 'import json, sys; body = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
    "$response" "$2" 2>/dev/null; then
    echo "ok   $1"
  else
    fail "$1: $(head -c 300 "$response")"
  fi
}

echo "smoke test of $base/ (run $run)"

both 200 GET health
both 200 GET me

# Each upsert twice (slash, no slash): created, then updated.
both "20[01]" POST users/upsert "" "{\"external_user_id\": \"$user\", \"email\": \"$user@smoke.example\", \"name\": \"$name\", \"plan\": \"smoke\"}"
both 201 POST events "" "{\"event\": \"app_opened\", \"user\": {\"external_user_id\": \"$user\"}}"
both "20[01]" POST products/upsert "" '{"external_product_id": "smoke_product", "title": "Smoke test product", "currency": "USD", "price": "1.00"}'
both "20[01]" POST sales/upsert "" "{\"sale_id\": \"smoke_sale_$run\", \"total\": \"1.00\", \"currency\": \"USD\", \"buyer\": {\"external_user_id\": \"$user\"}, \"product\": {\"external_product_id\": \"smoke_product\"}}"
both "20[01]" POST conversations/upsert "" "{\"thread_id\": \"$thread\", \"contact\": {\"external_user_id\": \"$user\"}, \"channel\": {\"external_channel_id\": \"smoke_channel\"}}"
both "20[01]" POST messages/upsert "" "{\"message_id\": \"smoke_message_$run\", \"thread_id\": \"$thread\", \"direction\": \"in\", \"text\": \"smoke test\", \"contact\": {\"external_user_id\": \"$user\"}}"
both "20[01]" POST bookings/upsert "" "{\"booking_id\": \"smoke_booking_$run\", \"scheduled_at\": \"2030-01-01T10:00:00Z\", \"client\": {\"external_user_id\": \"$user\"}}"
both 200 POST batch "" "{\"batch\": [{\"type\": \"user\", \"external_user_id\": \"$user\", \"plan\": \"smoke\"}]}"

# The round trip: what was upserted is what is read back.
both 200 GET "users/$user"
both 200 GET "users/email/$user@smoke.example"
expect_json "users/$user reads back the upserted name" "body['user']['name'] == '$name'"
expect_json "users/$user lists its two events and its sale" "len(body['events']) == 2 and len(body['sales']) == 1"
both 200 GET users "plan=smoke&limit=5"
both 200 GET stats/users "group_by=lifecycle_stage&plan=smoke"
expect_json "stats/users counts the smoke user" "body['total'] >= 1"
both 200 GET "conversations/$thread"
both 200 GET inbox "status=awaiting_reply"
both 200 GET bookings "from=$window_from&to=$window_to"
both 200 GET changes "limit=5"

# Refusals: no key, and a body without an identity.
if check 401 GET me/ "" none; then
  expect_json "me/ without a key says missing_authorization" "body['error']['code'] == 'missing_authorization'"
fi
if check 400 POST users/upsert/ '{"name": "no identity"}'; then
  expect_json "users/upsert/ without an identity says missing_user_identity" "body['error']['code'] == 'missing_user_identity'"
fi

# Erase what the run wrote; the second erasure finds nothing and still answers 200.
both 200 DELETE "users/$user"

if [ "${#failures[@]}" -gt 0 ]; then
  echo >&2
  echo "smoke test FAILED: ${#failures[@]} of $checks checks against $base/" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "smoke test passed: $checks checks against $base/"
