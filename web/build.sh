#!/bin/sh
# Rebuilds web/dist from the sources and the npm lockfile, reproducibly:
# the same sources and package-lock.json give a byte-identical dist/.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node build.mjs
