#!/usr/bin/env bash
# make import FILE=path [TYPE=users|events|...] [ARGS='...']: the importer against the API that
# `make run` serves (its API_PORT and .local/dev-api-key). Without TYPE, each NDJSON line
# names its `type`.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"
: "${FILE:?make import FILE=path/to/file.ndjson|.csv [TYPE=users|events|products|sales|conversations|messages|bookings]}"
KEY_FILE=".local/dev-api-key"
[ -s "$KEY_FILE" ] || { echo "no $KEY_FILE: start the API with make run first" >&2; exit 1; }
type_args=()
[ -n "${TYPE:-}" ] && type_args=(--type "$TYPE")
# shellcheck disable=SC2086 # ARGS is a list of flags
exec cargo run --quiet -p importer -- "$FILE" "${type_args[@]}" \
  --url "http://127.0.0.1:${API_PORT:-9000}" --api-key-file "$KEY_FILE" ${ARGS:-}
