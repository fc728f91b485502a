#!/usr/bin/env bash
# What the web interface's browser tests need, installed idempotently: Debian's Chromium
# (driven by playwright-core, which must not download a browser of its own), openssl (a
# certificate for the HTTPS test) and the npm packages of web/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] || ! command -v openssl >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium openssl >/dev/null
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
# Installed again only when the lockfile changed since the last install.
if ! cmp -s web/package-lock.json web/node_modules/.installed-lock.json 2>/dev/null; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  cp web/package-lock.json web/node_modules/.installed-lock.json
fi
