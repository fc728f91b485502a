"""Uploads a file to Cairn with tuspy, in two sittings, and checks the download.

Usage: tus_interop.py BASE_URL TOKEN WORK_DIR (run by .ci/tus_interop.sh).
"""
import hashlib
import os
import sys
import urllib.parse
import urllib.request

from tusclient import client

base, token, work = sys.argv[1:4]
auth = {"Authorization": f"Bearer {token}"}

path = os.path.join(work, "file.bin")
data = os.urandom(9 * 1024 * 1024 + 12345)  # a few server chunks, an uneven end
with open(path, "wb") as f:
    f.write(data)

metadata = {"path": "/tus interop/ü file.bin", "onconflict": "rename"}
urllib.request.urlopen(
    urllib.request.Request(
        f"{base}/api/v1/files/mkdir",
        data=b'{"path": "/tus interop"}',
        headers={**auth, "content-type": "application/json"},
    )
)

# First sitting: two chunks of 2 MiB, then the "client" goes away.
first = client.TusClient(f"{base}/api/v1/tus/", headers=auth)
uploader = first.uploader(path, chunk_size=2 * 1024 * 1024, metadata=metadata)
uploader.upload_chunk()
uploader.upload_chunk()
url = uploader.url
assert uploader.offset == 4 * 1024 * 1024, uploader.offset

# Second sitting: a new client resumes at the URL; tuspy asks the server (HEAD) for
# the offset before it sends anything.
second = client.TusClient(f"{base}/api/v1/tus/", headers=auth)
resumed = second.uploader(path, url=url, chunk_size=3 * 1024 * 1024, metadata=metadata)
assert resumed.offset == 4 * 1024 * 1024, resumed.offset
resumed.upload()
assert resumed.offset == len(data), resumed.offset

quoted = urllib.parse.quote(metadata["path"])
with urllib.request.urlopen(
    urllib.request.Request(f"{base}/api/v1/files/content?path={quoted}", headers=auth)
) as resp:
    got = resp.read()
assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), "content differs"
print(f"tuspy {len(data)} bytes in two sittings: identical")
