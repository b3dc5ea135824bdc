#!/usr/bin/env bash
# The stage (and stack suffix) of a git branch: main -> prod; other branches lower-cased,
# non-alphanumerics as "-", at most 20 characters (the template's Stage pattern), with a
# short hash of the full name when shortened so two long branches never collide.
set -euo pipefail
branch="${1:?usage: stage-name.sh <branch>}"
if [ "$branch" = "main" ]; then echo prod; exit 0; fi
name="$(printf '%s' "$branch" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')"
if [ "$name" = "prod" ] || [ -z "$name" ] || [ "${#name}" -gt 20 ]; then
  hash="$(printf '%s' "$branch" | sha256sum | cut -c1-6)"
  name="$(printf '%s' "$name" | cut -c1-13 | sed -E 's/-+$//')-$hash"
  name="${name#-}"
fi
printf '%s\n' "$name"
