"""The application of the test pod, run by the client container with this host's /usr (Debian's python3 and
python3-botocore). Usage: client.py RESULTS_DIRECTORY.

1. botocore resolves credentials through its default chain, as an application would: the container provider,
   from AWS_CONTAINER_CREDENTIALS_FULL_URI and, in botocore 1.29, the token in AWS_CONTAINER_AUTHORIZATION_TOKEN
   (which the manifest's command sets from the file). What it got goes to botocore.json.
2. Then the endpoint is fetched as newer SDKs fetch it, the token read from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
   at every request, about 20 times a second until RESULTS/stop appears (or SIGTERM): one line per request in
   polls.jsonl: {"start": time, "end": time, "status": HTTP status or 0, "key": AccessKeyId, "error": text}.
"""

import http.client
import json
import os
import signal
import sys
import time
import urllib.parse
from pathlib import Path


def fetch(url, token_file):
    started = time.time()
    record = {"start": started, "status": 0, "key": None, "error": None}
    try:
        with open(token_file) as f:
            token = f.read()
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        try:
            connection.request("GET", url.path, headers={"Authorization": token})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        record["status"] = response.status
        if response.status == 200:
            record["key"] = json.loads(body)["AccessKeyId"]
        else:
            record["error"] = body.decode(errors="replace")[:200]
    except Exception as error:  # what an SDK would see: refused, reset, timeout, no token file
        record["error"] = f"{type(error).__name__}: {error}"
    record["end"] = time.time()
    return record


def main():
    results = Path(sys.argv[1])
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    import botocore.session

    credentials = botocore.session.get_session().get_credentials()
    frozen = credentials.get_frozen_credentials()
    document = {"method": credentials.method, "access_key": frozen.access_key, "secret_key": frozen.secret_key,
                "token": frozen.token}
    (results / "botocore.json.tmp").write_text(json.dumps(document))
    os.replace(results / "botocore.json.tmp", results / "botocore.json")

    url = urllib.parse.urlsplit(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"])
    token_file = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]
    with open(results / "polls.jsonl", "a", buffering=1) as polls:
        while not stopping and not (results / "stop").exists():
            polls.write(json.dumps(fetch(url, token_file)) + "\n")
            time.sleep(0.05)


if __name__ == "__main__":
    main()
