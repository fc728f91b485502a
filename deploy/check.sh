#!/bin/sh
# Validates the proxy samples with the real tools: `nginx -t` on deploy/nginx.conf
# (inside a minimal main configuration, since the sample is an http{} snippet) and
# `haproxy -c` on deploy/haproxy.cfg. Their certificate paths are pointed at a
# throwaway self-signed certificate, because both tools load the files they name.
# Needs nginx, haproxy and openssl (Debian: apt-get install nginx haproxy openssl).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=files.example.org \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/haproxy.pem"

sed -e "s#/etc/ssl/cairn/fullchain.pem#$tmp/cert.pem#" \
    -e "s#/etc/ssl/cairn/privkey.pem#$tmp/key.pem#" \
    "$here/nginx.conf" >"$tmp/cairn.conf"
cat >"$tmp/nginx.conf" <<CONF
pid $tmp/nginx.pid;
error_log stderr;
events {}
http {
    include $tmp/cairn.conf;
}
CONF
nginx -t -c "$tmp/nginx.conf"

sed -e "s#/etc/haproxy/certs/cairn.pem#$tmp/haproxy.pem#" \
    "$here/haproxy.cfg" >"$tmp/haproxy.cfg"
haproxy -c -f "$tmp/haproxy.cfg"
