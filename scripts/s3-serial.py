"""moto's S3 server, answering one request at a time: `python s3-serial.py HOST PORT`.

moto checks a conditional write (If-None-Match: *) and then writes, in two steps; its threaded
server lets two concurrent writes of one key both pass the check, which real S3 never does (the
history check in scripts/test-loadtest.sh caught it: two writes acknowledged as one version).
One request at a time makes each conditional write atomic, as on S3."""

import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=MotoRequestHandler,
    )
