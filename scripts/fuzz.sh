#!/usr/bin/env bash
# make fuzz: every libFuzzer target (fuzz/fuzz_targets) for FUZZ_SECONDS each (default 60),
# seeded from the bodies in events/. Corpora and crash artifacts stay in .local/fuzz.
# A crash, a panic, a leak or an input that makes a target use more than 128 MB in one
# allocation (or 1 GB in all) fails the run and leaves the input in .local/fuzz/artifacts.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cd "$REPO_ROOT"
ensure_cargo_fuzz

seconds="${FUZZ_SECONDS:-60}"
work="$REPO_ROOT/.local/fuzz"
mkdir -p "$work/artifacts"

# Seeds: every request body of events/, and header values worth starting from.
python3 - "$work/corpus" <<'PY'
import glob, json, os, sys
corpus = sys.argv[1]
for target in ("request_body", "headers"):
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
for path in sorted(glob.glob("events/*.json")):
    with open(path) as f:
        event = json.load(f)
    name = os.path.basename(path)
    if event.get("body"):
        with open(os.path.join(corpus, "request_body", name), "w") as f:
            f.write(event["body"])
    for header in ("authorization", "idempotency-key"):
        value = (event.get("headers") or {}).get(header)
        if value:
            with open(os.path.join(corpus, "headers", f"{header}-{name}"), "w") as f:
                f.write(value)
for i, value in enumerate(["Bearer dfk_test_0123456789abcdef_" + "ab" * 24, "bearer  x ", "Basic a:b", "retry-1"]):
    with open(os.path.join(corpus, "headers", f"seed-{i}"), "w") as f:
        f.write(value)
PY

# cargo-fuzz passes nightly-only flags (sanitizers, coverage passes); this machine has one
# toolchain (stable) and cannot fetch another, and RUSTC_BOOTSTRAP lets it accept them.
export RUSTC_BOOTSTRAP=1
for target in request_body headers; do
  log "fuzzing $target for ${seconds}s"
  output="$work/$target.log"
  if ! cargo fuzz run "$target" "$work/corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 -malloc_limit_mb=128 \
    -timeout=10 -artifact_prefix="$work/artifacts/$target-" -print_final_stats=1 >"$output" 2>&1; then
    tail -n 40 "$output" >&2
    echo "fuzz target $target failed: the input is in $work/artifacts, the log in $output" >&2
    exit 1
  fi
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added)|^Done " "$output" || true
done
log "no crash, panic or oversized allocation found"
