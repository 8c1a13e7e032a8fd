"""A tiny Lambda Runtime API loop, as the AWS Python runtime interface client runs it: import
the handler (init), then GET the next event, call the handler, POST its answer. Standard
library only, so the baseline measures Python + boto3 and nothing else."""

import json
import os
import sys
import traceback
import urllib.request

API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"


def post(path, payload):
    data = json.dumps(payload).encode()
    request = urllib.request.Request(API + path, data=data, method="POST")
    request.add_header("content-type", "application/json")
    urllib.request.urlopen(request).read()


def error_of(exc):
    return {"errorMessage": str(exc), "errorType": type(exc).__name__,
            "stackTrace": traceback.format_exc().splitlines()}


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import handler
    except Exception as exc:  # the init error is reported, as the real runtime does
        post("/init/error", error_of(exc))
        sys.exit(1)
    while True:
        with urllib.request.urlopen(API + "/invocation/next") as resp:
            request_id = resp.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(resp.read())
        try:
            result = handler.handler(event, None)
        except Exception as exc:
            post(f"/invocation/{request_id}/error", error_of(exc))
            continue
        post(f"/invocation/{request_id}/response", result)


if __name__ == "__main__":
    main()
