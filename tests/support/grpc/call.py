#!/usr/bin/env python3
"""A gRPC test client for the end-to-end tests: one unary call (default `/echo.Echo/Say`) over TLS
with a client certificate, printed as JSON: the status code name, the reply and the trailing
metadata."""

import argparse
import json
import sys

import grpc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True, help="host:port of the proxy")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--authority", default=None, help=":authority to send")
    ap.add_argument("--message", default="hello")
    ap.add_argument("--method", default="/echo.Echo/Say")
    args = ap.parse_args()

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(read(args.ca), read(args.key), read(args.cert))
    options = [("grpc.ssl_target_name_override", "localhost")]
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    with grpc.secure_channel(args.target, creds, options=options) as channel:
        say = channel.unary_unary(args.method)
        out = {"code": "OK", "reply": None, "trailers": {}, "details": None}
        try:
            reply, call = say.with_call(args.message.encode(), timeout=10)
            out["reply"] = reply.decode(errors="replace")
            out["trailers"] = {k: v for k, v in call.trailing_metadata()}
        except grpc.RpcError as e:
            out["code"] = e.code().name
            out["details"] = e.details()
            out["trailers"] = {k: v for k, v in (e.trailing_metadata() or ())}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
