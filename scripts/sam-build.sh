#!/usr/bin/env bash
# sam build on this machine. AWS runs the functions on arm64, but the arm64 Rust target
# cannot be installed here (no network beyond the package registries), so this builds for
# the machine's own x86_64: it proves the template, the build (lambda/Makefile: one release
# build of every function, then a copy per function) and the release profile. The CI
# workflow builds arm64 on an arm64 runner (lambda/Makefile's default).
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"
ensure_python_tools
LAMBDA_ARCH=x86_64 sam build --parameter-overrides Architecture=x86_64 "$@"
