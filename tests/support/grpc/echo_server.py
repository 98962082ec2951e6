#!/usr/bin/env python3
"""A gRPC test service for the end-to-end tests (not part of Edgeward).

Serves `/echo.Echo/Say` (unary, raw bytes, no protobuf): answers `served-by:NAME:` followed by
the request bytes, and sets the trailing metadata `x-served-by: NAME` plus, as
`x-peer-id`, the identity header the proxy added. Plaintext HTTP/2 (h2c, prior knowledge) on
the given address. Prints `listening on HOST:PORT` once it serves and writes the port to
`--port-file`.
"""

import argparse
import signal
import sys
import threading
from concurrent import futures

import grpc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file")
    args = ap.parse_args()

    def say(request: bytes, context: grpc.ServicerContext) -> bytes:
        meta = dict(context.invocation_metadata())
        context.set_trailing_metadata(
            (("x-served-by", args.name), ("x-peer-id", meta.get("x-edgeward-peer-id", "")))
        )
        return b"served-by:" + args.name.encode() + b":" + request

    handler = grpc.method_handlers_generic_handler(
        "echo.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print(f"cannot listen on {args.listen}", file=sys.stderr)
        return 2
    server.start()
    host = args.listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{port}", flush=True)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(port))
        import os

        os.replace(args.port_file + ".tmp", args.port_file)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
