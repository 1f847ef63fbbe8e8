#!/usr/bin/env python3
"""Fetches or uploads many objects in one process, for the mount tests' references and sources.

  s3_bulk.py ENDPOINT BUCKET get KEYS_FILE DIR   each key of KEYS_FILE (one per line) to DIR/KEY
  s3_bulk.py ENDPOINT BUCKET put DIR             every file under DIR, as its path relative to DIR

Requests are signed by botocore (the independent SigV4 signer, as in the listing test) with
$AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY, region us-east-1, path-style; 8 at a time. One
process instead of one client per object: under AddressSanitizer each client start costs about
0.2 s, and a thousand of them were most of a mount test's time."""
import concurrent.futures
import os
import sys
import urllib.parse
import urllib.request

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def request(endpoint, bucket, credentials, method, key, body=None):
    url = f"{endpoint}/{bucket}/{urllib.parse.quote(key, safe='/~')}"
    req = AWSRequest(method=method, url=url, data=body,
                     headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method,
                                                       headers=headers), timeout=60) as answer:
        return answer.read()


def main():
    if len(sys.argv) < 5 or sys.argv[3] not in ("get", "put"):
        sys.exit(__doc__)
    endpoint, bucket, verb = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    if not os.environ.get("AWS_ACCESS_KEY_ID") or not os.environ.get("AWS_SECRET_ACCESS_KEY"):
        sys.exit("s3_bulk.py: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
    credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    if verb == "get":
        if len(sys.argv) != 6:
            sys.exit(__doc__)
        keys = [k for k in open(sys.argv[4]).read().splitlines() if k]
        out_dir = sys.argv[5]

        def one(key):
            path = os.path.join(out_dir, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(request(endpoint, bucket, credentials, "GET", key))
    else:
        src = sys.argv[4]
        keys = sorted(os.path.relpath(os.path.join(d, f), src)
                      for d, _, files in os.walk(src) for f in files)

        def one(key):
            with open(os.path.join(src, key), "rb") as f:
                request(endpoint, bucket, credentials, "PUT", key, f.read())
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, keys))  # (raises the first failure)
    print(f"{verb}: {len(keys)} objects")


if __name__ == "__main__":
    main()
