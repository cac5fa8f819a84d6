"""The agent's HTTP surfaces spoken the way clients speak them: plain HTTP/1.1 calls, IMDSv2 (token PUT, role
GET, credentials GET) and the container endpoint (the Authorization token)."""

import http.client
import json
import re

HTTP_TIMEOUT = 10


def http_call(port, method, path, headers=None, body=None):
    """One HTTP/1.1 request to 127.0.0.1:port; returns (status, headers dict with lowercase names, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def imds_token(port, ttl=21600):
    status, _, body = http_call(port, "PUT", "/latest/api/token",
                                {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
    assert status == 200, (status, body)
    return body.decode()


def imds_credentials(port, token=None):
    """IMDSv2 as an SDK does it: token, role name, credentials. Returns (status, parsed JSON or raw body)."""
    token = token or imds_token(port)
    headers = {"X-aws-ec2-metadata-token": token}
    status, _, body = http_call(port, "GET", "/latest/meta-data/iam/security-credentials/", headers)
    assert status == 200, (status, body)
    role = body.decode().strip()
    status, _, body = http_call(port, "GET", f"/latest/meta-data/iam/security-credentials/{role}", headers)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def ecs_credentials(url, token):
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", url)
    status, _, body = http_call(int(match[1]), "GET", match[2], {"Authorization": token})
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def same_credentials(issued, access_key_id, secret_access_key, session_token):
    return (issued["accessKeyId"], issued["secretAccessKey"], issued["sessionToken"]) == (
        access_key_id, secret_access_key, session_token)
