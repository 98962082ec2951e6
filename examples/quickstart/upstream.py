#!/usr/bin/env python3
"""A small upstream HTTP(S) service for the quickstart and the end-to-end tests.

Not part of Edgeward: it stands in for the "real service" behind the proxy. It answers any
path and method with 200 and `x-served-by: NAME`, and a few paths that tests use:

    /echo          JSON: the request line, the headers in the order received (duplicates
                   kept), the body length and the client certificate's URI SAN (mTLS)
    /healthz       200 "ok"
    /status/NNN    answers with status NNN (for passive outlier detection)
    /slow?ms=N     waits N milliseconds, then 200
    /ws            a WebSocket (RFC 6455) upgrade: answers 101, then echoes each text or
                   binary message, prefixed with `NAME:`, until the client closes

HTTP/1.1 with keep-alive; every response carries a Content-Length. A request body is read
(per Content-Length or chunked) and discarded, so a connection stays usable.

With --tls-cert/--tls-key it serves HTTPS; with --client-ca it also requires a client
certificate that chains to that bundle (the "cloud" service, reached by the proxy over mTLS).

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Waits longer than this are cut, so a bad `/slow` cannot pin a thread for long.
MAX_SLOW_MS = 60_000

# Longest chunk-size or trailer line read; a longer one is a bad request, so a runaway client
# cannot make a line buffer grow without bound (bodies themselves are read in pieces, dropped).
MAX_CHUNK_LINE = 4096


class BadRequest(Exception):
    """The request body framing could not be read; the connection is closed."""


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as real upstreams behind a proxy; every response sets Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = "edgeward-example-upstream"

    # Set on the subclass by `make_handler`.
    served_by = "upstream"
    access_log = False

    # A client that stops talking must not hold a thread forever.
    timeout = 60

    # Headers and body go out in two writes; without TCP_NODELAY the second waits for the
    # peer's delayed ACK (about 40 ms) on every kept-alive request after the first.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (name from the base)
        if self.access_log:
            sys.stderr.write(
                "%s %s - %s\n" % (self.served_by, self.address_string(), format % args)
            )

    # --- one handler for every method -------------------------------------------------------

    def do_GET(self) -> None:
        self.handle_any()

    do_HEAD = do_GET
    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET
    do_OPTIONS = do_GET

    def handle_any(self) -> None:
        # Read the body first, whatever the path, so the next request on this connection
        # starts where it should.
        try:
            body_length = self.discard_body()
        except BadRequest as e:
            self.close_connection = True
            self.reply(400, f"bad request body: {e}\n".encode())
            return

        path = urlsplit(self.path).path
        if path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.websocket()
        elif path == "/echo":
            self.reply(200, self.echo_json(body_length), "application/json")
        elif path == "/healthz":
            self.reply(200, b"ok\n")
        elif path.startswith("/status/"):
            self.reply_status(path[len("/status/") :])
        elif path == "/slow":
            self.reply_slow()
        else:
            self.reply(200, f"{self.served_by}\n".encode())

    # --- WebSocket -----------------------------------------------------------------------------

    def websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("x-served-by", self.served_by)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            frame = self.read_ws_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x8:  # close: answer it and stop
                self.write_ws_frame(0x8, payload[:2])
                return
            if opcode in (0x1, 0x2):
                self.write_ws_frame(opcode, self.served_by.encode() + b":" + payload)

    def read_ws_frame(self) -> tuple[int, bytes] | None:
        head = self.rfile.read(2)
        if len(head) < 2:
            return None
        opcode, masked, length = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(self.rfile.read(2), "big")
        elif length == 127:
            length = int.from_bytes(self.rfile.read(8), "big")
        if length > 1 << 20:
            return None
        mask = self.rfile.read(4) if masked else b"\0\0\0\0"
        data = self.rfile.read(length)
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def write_ws_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, n])
        elif n < 1 << 16:
            head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
        self.wfile.write(head + payload)
        self.wfile.flush()

    # --- request body ------------------------------------------------------------------------

    def discard_body(self) -> int:
        """Reads and drops the request body; returns its length in bytes."""
        te = self.headers.get_all("Transfer-Encoding") or []
        if te:
            codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
            if not codings or codings[-1] != "chunked":
                raise BadRequest("transfer coding does not end in chunked")
            return self.discard_chunked()
        cl = self.headers.get_all("Content-Length") or []
        if not cl:
            return 0
        if len(set(v.strip() for v in cl)) != 1 or not cl[0].strip().isdigit():
            raise BadRequest("invalid Content-Length")
        remaining = int(cl[0].strip())
        total = remaining
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                raise BadRequest("body ended early")
            remaining -= len(chunk)
        return total

    def discard_chunked(self) -> int:
        total = 0
        while True:
            line = self.rfile.readline(MAX_CHUNK_LINE)
            if not line.endswith(b"\n"):
                raise BadRequest("chunk size line too long or missing")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("invalid chunk size") from None
            if size == 0:
                # Trailer fields, up to the empty line.
                while True:
                    trailer = self.rfile.readline(MAX_CHUNK_LINE)
                    if not trailer:
                        raise BadRequest("trailers ended early")
                    if trailer in (b"\r\n", b"\n"):
                        return total
            remaining = size
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    raise BadRequest("chunk ended early")
                remaining -= len(chunk)
            total += size
            if self.rfile.readline(MAX_CHUNK_LINE) not in (b"\r\n", b"\n"):
                raise BadRequest("chunk not followed by CRLF")

    # --- special paths -----------------------------------------------------------------------

    def echo_json(self, body_length: int) -> bytes:
        # `self.path` is not the raw target: http.server turns a leading `//` into `/`
        # (gh-87389), and that is exactly what path-normalization tests need to see.
        words = self.requestline.split()
        raw_target = words[1] if len(words) >= 2 else self.path
        doc = {
            "served_by": self.served_by,
            "method": self.command,
            "path": raw_target,
            "request_line": self.requestline,
            "headers": [[name, value] for name, value in self.headers.raw_items()],
            "body_length": body_length,
            "peer_cert_uri": self.peer_cert_uri(),
        }
        # One key per line and one header per line: readable in a terminal, still JSON.
        lines = [
            f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "headers"
        ]
        headers = ",\n".join(f"    {json.dumps(h)}" for h in doc["headers"])
        lines.insert(4, f'  "headers": [\n{headers}\n  ]' if headers else '  "headers": []')
        return ("{\n" + ",\n".join(lines) + "\n}\n").encode()

    def peer_cert_uri(self) -> str | None:
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        cert = self.connection.getpeercert()
        if not cert:
            return None
        uris = [v for (k, v) in cert.get("subjectAltName", ()) if k == "URI"]
        return uris[0] if uris else None

    def reply_status(self, code_text: str) -> None:
        if not (code_text.isdigit() and len(code_text) == 3 and 200 <= int(code_text) <= 599):
            self.reply(400, b"status must be 200..599\n")
            return
        code = int(code_text)
        self.reply(code, f"{self.served_by} {code}\n".encode())

    def reply_slow(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            ms = int(query.get("ms", ["0"])[0])
        except ValueError:
            self.reply(400, b"ms must be an integer\n")
            return
        time.sleep(max(0, min(ms, MAX_SLOW_MS)) / 1000)
        self.reply(200, f"{self.served_by}\n".encode())

    def reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("x-served-by", self.served_by)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)


def make_handler(name: str, access_log: bool) -> type[Handler]:
    return type("NamedHandler", (Handler,), {"served_by": name, "access_log": access_log})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many keep-alive connections from load tests.
    request_queue_size = 1024

    def __init__(self, addr, handler, tls: ssl.SSLContext | None):
        self.tls = tls
        super().__init__(addr, handler)

    def get_request(self):
        # The TLS handshake happens in the handler's thread (do_handshake_on_connect in
        # `finish_request`), so one slow or failing client does not block the accept loop.
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request, client_address):
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(Handler.timeout)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                if self.RequestHandlerClass.access_log:
                    sys.stderr.write(f"tls handshake with {client_address[0]} failed: {e}\n")
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        # Peers that reset or drop connections are normal in failover tests; stay quiet
        # unless asked.
        if self.RequestHandlerClass.access_log:
            super().handle_error(request, client_address)


def tls_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # `cert` is the chain file from `edgeward cert issue`: leaf, then the site CA.
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    return ctx


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"`{text}`: expected HOST:PORT, e.g. 127.0.0.1:0")
    host = host.strip("[]")
    return host, int(port)


def write_port_file(path: str, port: int) -> None:
    # Write then rename, so a reader never sees an empty or partial file.
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="value of the x-served-by header")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 0), help="HOST:PORT")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--tls-cert", help="certificate chain (PEM): serve HTTPS")
    p.add_argument("--tls-key", help="private key (PEM) of --tls-cert")
    p.add_argument("--client-ca", help="require client certificates chaining to this bundle")
    p.add_argument("--access-log", action="store_true", help="log each request to stderr")
    args = p.parse_args()

    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        p.error("--client-ca needs --tls-cert and --tls-key")

    # Stop on SIGTERM/SIGINT, also when one arrives before the server exists. shutdown() must
    # run on another thread than serve_forever().
    stopping = threading.Event()
    servers: list[Server] = []

    def stop(signum, frame):
        stopping.set()
        for server in servers:
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    tls = None
    if args.tls_cert:
        try:
            tls = tls_context(args.tls_cert, args.tls_key, args.client_ca)
        except (OSError, ssl.SSLError) as e:
            print(f"upstream: cannot load TLS material: {e}", file=sys.stderr)
            return 2

    host, port = args.listen
    if ":" in host:
        Server.address_family = socket.AF_INET6
    try:
        server = Server((host, port), make_handler(args.name, args.access_log), tls)
    except OSError as e:
        print(f"upstream: cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 2
    servers.append(server)
    if stopping.is_set():
        server.server_close()
        return 0
    bound = server.server_address[1]

    if args.port_file:
        write_port_file(args.port_file, bound)
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    # Exactly this line: tests and scripts read it.
    print(f"listening on {shown}:{bound}", flush=True)
    if args.access_log:
        print(f"{args.name}: serving {scheme}", file=sys.stderr, flush=True)

    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
