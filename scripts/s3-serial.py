"""moto's S3 server answering one request at a time, optionally checking signatures.

    python s3-serial.py HOST PORT                          # serial moto
    python s3-serial.py HOST PORT --verify-signatures BUCKET

moto checks a conditional write (If-None-Match: *) and then writes, in two steps; its threaded
server lets two concurrent writes of one key both pass the check, which real S3 never does (the
history check in scripts/test-loadtest.sh caught it: two writes acknowledged as one version).
One request at a time makes each conditional write atomic, as on S3.

With --verify-signatures every request must carry a valid AWS Signature V4 of an IAM user's key:
the script creates a user allowed everything, its access key and BUCKET, then prints
`credentials ACCESS_KEY_ID SECRET_ACCESS_KEY` on stdout."""

import os
import socket
import sys
import threading
import time

VERIFY = "--verify-signatures" in sys.argv
if VERIFY:
    # moto reads this when it is imported: the first 3 requests (the user, its policy, its key)
    # are let through, every later one is authenticated.
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple  # noqa: E402


def set_up(endpoint: str, bucket: str) -> None:
    import boto3

    boot = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    iam = boto3.client("iam", aws_access_key_id="boot", aws_secret_access_key="boot", **boot)
    iam.create_user(UserName="polarway")
    iam.put_user_policy(
        UserName="polarway",
        PolicyName="all",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName="polarway")["AccessKey"]
    s3 = boto3.client("s3", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], **boot)
    s3.create_bucket(Bucket=bucket)
    print(f"credentials {key['AccessKeyId']} {key['SecretAccessKey']}", flush=True)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    if VERIFY:
        bucket = sys.argv[sys.argv.index("--verify-signatures") + 1]

        def when_listening() -> None:
            for _ in range(300):
                try:
                    socket.create_connection((host, port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            set_up(f"http://{host}:{port}", bucket)

        threading.Thread(target=when_listening, daemon=True).start()
    run_simple(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
