#!/usr/bin/python3
"""Signs requests with Debian's python3-botocore, the independent SigV4 signer the tests compare
against. Input (stdin), one request per line, fields tab-separated and hex-encoded:
  method host path_key query(k=v&k=v, each hex) headers(k=v&..., each hex) access secret token date region
  [service]
service "s3express": an S3 Express session request, the token in x-amz-s3session-token
(botocore's S3ExpressAuth where it has one, else the header set by hand before signing).
Output: one Authorization header per line."""
import datetime
import sys
from unittest import mock

import botocore.auth
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode


def unhex(s):
    return bytes.fromhex(s).decode("utf-8")


def pairs(s):
    out = []
    if s:
        for item in s.split("&"):
            k, v = item.split("=")
            out.append((unhex(k), unhex(v)))
    return out


for line in sys.stdin:
    f = line.rstrip("\n").split("\t")
    method, host, key = f[0], unhex(f[1]), unhex(f[2])
    query, headers = pairs(f[3]), pairs(f[4])
    access, secret, token, date, region = (unhex(x) for x in f[5:10])
    service = unhex(f[10]) if len(f) > 10 else "s3"
    # botocore's own S3 key encoding (keeps '/').
    path = "/" + percent_encode(key, safe="/~")
    req = AWSRequest(method=method, url="http://" + host + path, params=dict(query),
                     headers=dict(headers))
    req.headers["Host"] = host
    fixed = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ")
    # botocore reads the clock with datetime.datetime.utcnow(), or (newer ones)
    # get_current_datetime().
    with mock.patch("botocore.auth.datetime") as dt, \
            mock.patch.object(botocore.auth, "get_current_datetime", return_value=fixed, create=True):
        dt.datetime.utcnow.return_value = fixed
        if service == "s3express" and hasattr(botocore.auth, "S3ExpressAuth"):
            botocore.auth.S3ExpressAuth(Credentials(access, secret, token), service, region,
                                        identity_cache=None).add_auth(req)
        elif service == "s3express":
            req.headers["x-amz-s3session-token"] = token
            S3SigV4Auth(Credentials(access, secret, None), service, region).add_auth(req)
        else:
            S3SigV4Auth(Credentials(access, secret, token or None), service, region).add_auth(req)
    print(req.headers["Authorization"])
