#!/usr/bin/env bash
# Checks that web/dist (committed, and embedded in the binary) is exactly what web/build.sh
# makes from web/src and web/package-lock.json: rebuilds it and fails on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
web/build.sh >/dev/null
if ! git diff --quiet --exit-code -- web/dist || [ -n "$(git status --porcelain --untracked-files=all -- web/dist)" ]; then
  echo "web/dist differs from what web/build.sh makes of the sources: run web/build.sh and commit web/dist" >&2
  git status --short -- web/dist >&2
  exit 1
fi
echo "web/dist matches its sources"
