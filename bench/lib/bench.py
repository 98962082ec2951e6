#!/usr/bin/env python3
"""The measuring half of bench/run.sh: starts the origin and the three proxies, drives each
scenario with a load generator, reads the proxy's CPU time from /proc around every run, and
writes the raw figures as JSON and a table of ratios (Edgeward / peer, same pass) to stdout.

run.sh installs the tools, builds edgeward and makes the PKI; it calls

    bench.py --work DIR --edgeward BIN --pki DIR --policies DIR --out FILE [--duration S]

Every process started here is recorded in DIR/pids (one process group per line) so that
run.sh's trap can end them even when this script is killed; this script also ends them itself.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROXY_CORE = "0"
LOAD_CORE = "1"
PEERS = ["edgeward", "nginx", "haproxy"]
# The fixed-rate loads under failover (the site's origin killed at 1.5 s, back at 3.5 s) and
# under reload (changes at RELOAD_AT), in seconds: each leaves time to see the outcome.
FAILOVER_S = 6
RELOAD_S = 4
RELOAD_AT = (1.0, 2.5)
NOISE = 0.15


def log(msg):
    print(f"   {msg}", file=sys.stderr, flush=True)


# --- processes ----------------------------------------------------------------------------


class Procs:
    def __init__(self, work):
        self.work = work
        self.live = {}  # name -> Popen
        self.pidfile = os.path.join(work, "pids")

    def start(self, name, argv, core, env=None):
        logf = open(os.path.join(self.work, f"{name}.log"), "ab")
        p = subprocess.Popen(
            ["taskset", "-c", core] + argv,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: the trap ends the whole tree
        )
        logf.close()
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        self.live[name] = p
        return p

    def stop(self, name):
        p = self.live.pop(name, None)
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # stragglers of the group (nginx workers)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self):
        for name in list(self.live):
            self.stop(name)


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """utime + stime of the process tree (all threads), in seconds."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def rollup_kib(pid, *fields):
    """Sums the given smaps_rollup fields (e.g. "Pss") over the process tree, in KiB."""
    totals = dict.fromkeys(fields, 0)
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    if name in totals:
                        totals[name] += int(rest.split()[0])
        except OSError:
            pass
    return [totals[f] for f in fields]


def pss_kib(pid):
    return rollup_kib(pid, "Pss")[0]


def pss_split_kib(pid):
    """(anonymous, file-backed) PSS of the process tree: private heap and stacks against mapped
    code and data of the binary and its libraries (smaps_rollup's Pss_Anon and Pss_File)."""
    return tuple(rollup_kib(pid, "Pss_Anon", "Pss_File"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_ok(port, timeout=0.5):
    """One plain HTTP/1.1 GET; True on a 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_first_200(proc, port, limit):
    """Seconds from now until the first 200 on port (polled every 2 ms)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before answering")
        if http_ok(port, timeout=0.2):
            return time.monotonic() - t0
        time.sleep(0.002)
    raise RuntimeError(f"no 200 on port {port} within {limit} s")


# --- configs ------------------------------------------------------------------------------


def origin_conf(w, port, name="origin", access_log=False):
    d = os.path.join(w, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(f"""# The origin: a small fixed answer, keep-alive without limit.
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  {f"log_format t '$msec $uri'; access_log {d}/access.log t;" if access_log else "access_log off;"}
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
""")
    return ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", path]


def nginx_conf(w, ports, origin, pki, backup=None, name="nginx"):
    d = os.path.join(w, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(f"""# nginx as the peer: one worker, TLS 1.3 only, no tickets or session cache,
# client certificate required on the mtls port, keep-alive pool to the origin.
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream origin {{
    server 127.0.0.1:{origin} max_fails=1 fail_timeout=2s;
    {f"server 127.0.0.1:{backup} backup;" if backup else ""}
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header X-Forwarded-For $remote_addr;
  proxy_connect_timeout 2s;
  ssl_protocols TLSv1.3;
  ssl_certificate {pki}/proxy.crt;
  ssl_certificate_key {pki}/proxy.key;
  ssl_session_tickets off;
  ssl_session_cache off;
  server {{
    listen 127.0.0.1:{ports['plain']} backlog=4096;
    location / {{ proxy_pass http://origin; }}
  }}
  server {{
    listen 127.0.0.1:{ports['tls']} ssl http2 backlog=4096;
    location / {{ proxy_pass http://origin; }}
  }}
  server {{
    listen 127.0.0.1:{ports['mtls']} ssl http2 backlog=4096;
    ssl_client_certificate {pki}/root/ca.crt;
    ssl_verify_client on;
    ssl_verify_depth 3;
    location / {{ proxy_pass http://origin; }}
  }}
}}
""")
    return ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", path]


def haproxy_conf(w, ports, origin, pki, backup=None, name="haproxy"):
    d = os.path.join(w, name)
    os.makedirs(d, exist_ok=True)
    combined = os.path.join(d, "proxy.pem")
    with open(combined, "w") as out:
        for part in ("proxy.crt", "proxy.key"):
            with open(os.path.join(pki, part)) as f:
                out.write(f.read())
    path = os.path.join(d, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(f"""# HAProxy as the peer: one thread, TLS 1.3 only, no tickets or session cache,
# client certificate required on the mtls port, keep-alive pool to the origin, no logs.
global
  nbthread 1
  maxconn 8000
  tune.ssl.cachesize 0
  ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets
defaults
  mode http
  timeout connect 2s
  timeout client 300s
  timeout server 30s
  timeout http-keep-alive 300s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend plain
  bind 127.0.0.1:{ports['plain']}
  default_backend origin
frontend tls
  bind 127.0.0.1:{ports['tls']} ssl crt {combined} alpn h2,http/1.1
  default_backend origin
frontend mtls
  bind 127.0.0.1:{ports['mtls']} ssl crt {combined} ca-file {pki}/root/ca.crt verify required alpn h2,http/1.1
  default_backend origin
backend origin
  option httpchk GET /healthz
  server origin 127.0.0.1:{origin} check inter 2s fall 1 rise 1
""")
        if backup:
            # The regional fallback; a failed connect is retried on it (redispatch).
            f.write(f"""  option redispatch 1
  retries 2
  server cloud 127.0.0.1:{backup} check inter 2s fall 1 rise 1 backup
""")
    return ["haproxy", "-db", "-f", path]


def edgeward_conf(w, name, ports, origin, pki, policies, binary, memo=None, cloud=None):
    d = os.path.join(w, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "proxy.toml")
    with open(path, "w") as f:
        f.write(f"""# Edgeward under test: plaintext, tls and mtls listeners, one route to the origin.
[node]
id = "bench-1"
site = "berlin"
zone = "berlin-a"
region = "eu-central"

[identity]
cert = "{pki}/proxy.crt"
key = "{pki}/proxy.key"

[[trust_domains]]
name = "acme.example"
bundle = "{pki}/root/ca.crt"

[[listeners]]
name = "plain"
kind = "plaintext"
address = "127.0.0.1:{ports['plain']}"

[[listeners]]
name = "tls"
kind = "tls"
address = "127.0.0.1:{ports['tls']}"

[[listeners]]
name = "mtls"
kind = "mtls"
address = "127.0.0.1:{ports['mtls']}"

[admin]
address = "127.0.0.1:{ports['admin']}"

[authz]
policies = "{policies}"
schema = "{policies}/schema.cedarschema"
entities = "{policies}/entities.json"
{"" if memo is None else f"decision_memo = {memo}"}

[[routes]]
name = "bench"
path_prefix = "/"
cluster = "origin"

[[clusters]]
name = "origin"
[clusters.health]
path = "/healthz"
interval = "2s"
timeout = "1s"
healthy_threshold = 1
unhealthy_threshold = 1
# Passive ejection for 2 s, as nginx's fail_timeout=2s (the default is 5 s).
[clusters.outlier]
base_ejection = "2s"

[[clusters.endpoints]]
address = "127.0.0.1:{origin}"
site = "berlin"
zone = "berlin-a"
region = "eu-central"
""")
        if cloud:
            f.write(f"""
# The regional fallback: served only while the site's own endpoint is unusable.
[[clusters.endpoints]]
address = "127.0.0.1:{cloud}"
site = "cloud"
zone = "eu-central-1"
region = "eu-central"
""")
    # RUST_LOG=warn: no access events (nginx and HAProxy log none either).
    return [binary, "proxy", "--config", path, "--threads", "1"]


# --- generators ---------------------------------------------------------------------------


def percentiles(values):
    if not values:
        return {}
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]
    return {"p50_ms": pick(0.50) / 1000, "p90_ms": pick(0.90) / 1000, "p99_ms": pick(0.99) / 1000,
            "max_ms": v[-1] / 1000}


def run_gen(argv, duration):
    """Runs a generator; (stdout, stderr, wall seconds); a hung one is killed after duration + 30 s."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
        return p.stdout, p.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return out, "timed out", time.monotonic() - t0


def run_h2load(w, url, duration, conns, streams=1, h1=True, rps=None):
    logf = os.path.join(w, "h2load-requests.log")
    argv = ["taskset", "-c", LOAD_CORE, "h2load", "-t", "1", "-c", str(conns), "-m", str(streams),
            "-D", str(duration), "--log-file", logf]
    if h1:
        argv.append("--h1")
    if rps:
        argv += ["--rps", str(rps)]
    argv.append(url)
    out, err, wall = run_gen(argv, duration)
    r = {"generator": "h2load", "argv": " ".join(argv[3:]), "wall_s": wall}
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    if m:
        r["rps"] = float(m.group(2))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    m2 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not m or not m2:
        r["error"] = "could not parse h2load output: " + (out + err)[-400:]
        return r
    r["ok"] = int(m2.group(1))
    r["errors"] = int(m.group(5)) + int(m.group(6)) + int(m.group(7)) + sum(int(m2.group(i)) for i in (2, 3, 4))
    r.update(percentiles([round(d * 1e6) for _, _, d in request_log(logf)]))
    return r


def run_oha(w, url, duration, conns, pki, http2=False, rps=None, new_conn=False):
    argv = ["taskset", "-c", LOAD_CORE, OHA, "--no-tui", "--output-format", "json", "-z", f"{duration}s", "-w",
            "-c", str(conns), "--insecure", "--cert", f"{pki}/client.crt", "--key", f"{pki}/client.key"]
    if http2:
        argv += ["--http2", "-p", "16"]
    if rps:
        argv += ["-q", str(rps), "--latency-correction"]
    if new_conn:
        argv.append("--disable-keepalive")
    argv.append(url)
    out, err, wall = run_gen(argv, duration)
    r = {"generator": "oha", "argv": " ".join(argv[3:]), "wall_s": wall}
    try:
        j = json.loads(out)
    except ValueError:
        r["error"] = "could not parse oha output: " + (out + err)[-400:]
        return r
    codes = j.get("statusCodeDistribution", {})
    r["ok"] = sum(v for k, v in codes.items() if k.startswith("2"))
    r["error_kinds"] = j.get("errorDistribution", {})
    r["errors"] = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(
        v for k, v in r["error_kinds"].items() if k != "aborted due to deadline")
    s = j.get("summary", {})
    r["rps"] = s.get("requestsPerSec")
    pct = j.get("latencyPercentiles", {})
    for k, name in (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms")):
        if pct.get(k) is not None:
            r[name] = pct[k] * 1000
    if s.get("slowest") is not None:
        r["max_ms"] = s["slowest"] * 1000
    return r


def run_s_time(w, port, duration, pki):
    """New mTLS handshakes, one after another, from openssl s_time (no resumption), each with
    one HTTP/1.0 request. s_time sends only the leaf, hence the root-issued client-direct cert;
    it reports no status codes, so one request with the same certificate checks the answer."""
    cert, key = f"{pki}/client-direct.crt", f"{pki}/client-direct.key"
    # s_time sends "GET <www> HTTP/1.0\r\n\r\n"; Edgeward answers 400 without a Host, so the
    # path carries a whole HTTP/1.1 request with Host and Connection: close (the server closes
    # after answering it, and never reads the rest).
    www = "/ HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    status = None
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(f"{pki}/root/ca.crt")
        ctx.load_cert_chain(cert, key)
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="localhost") as s:
            s.sendall(f"GET {www} HTTP/1.0\r\n\r\n".encode())
            status = s.recv(64).split(b" ")[1].decode()
    except (OSError, IndexError):
        pass
    argv = ["taskset", "-c", LOAD_CORE, "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
            "-time", str(duration), "-www", www, "-cert", cert, "-key", key,
            "-CAfile", f"{pki}/root/ca.crt"]
    out, err, wall = run_gen(argv, duration)
    r = {"generator": "openssl s_time", "argv": " ".join(argv[3:]), "wall_s": wall, "check_status": status}
    m = re.search(r"(\d+) connections in ([\d.]+)s", out)
    if not m:
        r["error"] = "could not parse s_time output: " + (out + err)[-400:]
        return r
    n = int(m.group(1))
    r["ok"], r["errors"] = (n, 0) if status == "200" else (0, n)
    r["rps"] = n / wall
    m2 = re.search(r"(\d+) bytes read per connection", out)
    r["bytes_per_conn"] = int(m2.group(1)) if m2 else None
    return r


# --- the run ------------------------------------------------------------------------------

OHA = os.environ.get("BENCH_OHA_BIN", "")
HAVE_OHA = bool(OHA) and os.access(OHA, os.X_OK)
POLICY_SETS = os.environ.get("BENCH_POLICY_SETS", "10 1000 10000").split()


def scenarios(d, have_oha=None):
    """(name, listener, description, runner(port) -> result). d = duration in seconds."""
    if have_oha is None:
        have_oha = HAVE_OHA
    s = [
        ("plain-sat", "plain", "HTTP/1.1 keep-alive, plaintext, saturation (16 conns)",
         lambda w, p, k: run_h2load(w, f"http://127.0.0.1:{p}/", d, 16)),
        ("plain-rate", "plain", "HTTP/1.1 keep-alive, plaintext, fixed 2000 req/s (10 conns x 200)",
         lambda w, p, k: run_h2load(w, f"http://127.0.0.1:{p}/", d, 10, rps=200)),
        ("tls-ka", "tls", "HTTP/1.1 keep-alive over TLS 1.3, no client cert, saturation",
         lambda w, p, k: run_h2load(w, f"https://127.0.0.1:{p}/", d, 16)),
        ("h2-tls", "tls", "HTTP/2 over TLS 1.3, no client cert, 4 conns x 16 streams",
         lambda w, p, k: run_h2load(w, f"https://127.0.0.1:{p}/", d, 4, streams=16, h1=False)),
    ]
    if have_oha:
        s += [
            ("mtls-ka", "mtls", "HTTP/1.1 keep-alive over mTLS, saturation (oha, 16 conns)",
             lambda w, p, k: run_oha(w, f"https://127.0.0.1:{p}/", d, 16, k)),
            ("mtls-rate", "mtls", "HTTP/1.1 keep-alive over mTLS, fixed 1000 req/s (oha -q)",
             lambda w, p, k: run_oha(w, f"https://127.0.0.1:{p}/", d, 10, k, rps=1000)),
            ("h2-mtls", "mtls", "HTTP/2 over mTLS (oha, 4 conns x 16 streams)",
             lambda w, p, k: run_oha(w, f"https://127.0.0.1:{p}/", d, 4, k, http2=True)),
        ]
    if have_oha:
        s.append(("mtls-handshake", "mtls", "a new mTLS connection per request, no resumption (oha --disable-keepalive)",
                  lambda w, p, k: run_oha(w, f"https://127.0.0.1:{p}/", d, 4, k, new_conn=True)))
    else:
        s.append(("mtls-handshake", "mtls", "a new mTLS connection per request, no resumption (openssl s_time -new -www /)",
                  lambda w, p, k: run_s_time(w, p, d, k)))
    return s


IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "1000"))


def idle_connections(pid, port, pki, tls):
    """Opens IDLE_CONNS keep-alive connections (each sends one request), holds them, closes them.
    Returns PSS per idle connection and what is returned after they close."""
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(f"{pki}/root/ca.crt")
        ctx.load_cert_chain(f"{pki}/client.crt", f"{pki}/client.key")
    before = pss_kib(pid)
    socks, failed = [], 0
    for _ in range(IDLE_CONNS):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if ctx:
                s = ctx.wrap_socket(s, server_hostname="localhost")
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                failed += 1
            socks.append(s)
        except OSError:
            failed += 1
    time.sleep(0.5)
    held = pss_kib(pid)
    for s in socks:
        s.close()
    # Allocators return freed memory with some delay (Edgeward's mimalloc: freed pages are
    # handed back a second after they were freed, checked every 2 s: within 3 s).
    time.sleep(3.0)
    after = pss_kib(pid)
    n = max(1, len(socks))
    return {"conns": len(socks), "failed": failed, "pss_before_kib": before, "pss_held_kib": held,
            "pss_after_close_kib": after, "kib_per_conn": (held - before) / n,
            "returned_fraction": (held - after) / (held - before) if held > before else None}


def request_log(logf):
    """h2load --log-file rows: (start in s since the epoch, status, duration in s)."""
    rows = []
    try:
        with open(logf) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    rows.append((int(parts[0]) / 1e6, int(parts[1]), int(parts[2]) / 1e6))
        os.unlink(logf)
    except OSError:
        pass
    return rows


def timed_load(w, port, duration, actions):
    """A fixed-rate plaintext load (h2load, 10 conns x 200 req/s) while `actions`, a list of
    (seconds after the load started, function), run on time. Returns the per-request rows."""
    logf = os.path.join(w, "h2load-timed.log")
    argv = ["taskset", "-c", LOAD_CORE, "h2load", "--h1", "-t", "1", "-c", "10", "--rps", "200",
            "-D", str(duration), "--log-file", logf, f"http://127.0.0.1:{port}/"]
    gen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    for at, action in actions:
        time.sleep(max(0.0, t0 + at - time.time()))
        action()
    try:
        gen.wait(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        gen.kill()
    return request_log(logf), t0


def failover(procs, w, pki, policies, binary, env, peer="edgeward"):
    """One proxy with a second origin as its regional endpoint: the site's origin is killed
    under load and started again. Errors, the longest request (the stall), when the regional
    endpoint took over, and how long after the restart the site's origin served again (from
    the origins' access logs)."""
    local_port, cloud_port = free_port(), free_port()
    local, cloud, name = f"failover-{peer}-local", f"failover-{peer}-cloud", f"{peer}-failover"
    local_argv = origin_conf(w, local_port, name=local, access_log=True)
    procs.start(local, local_argv, LOAD_CORE)
    procs.start(cloud, origin_conf(w, cloud_port, name=cloud, access_log=True), LOAD_CORE)
    wait_first_200(procs.live[local], local_port, 20)
    wait_first_200(procs.live[cloud], cloud_port, 20)
    pp = {k: free_port() for k in ("plain", "tls", "mtls", "admin")}
    if peer == "edgeward":
        argv, penv = edgeward_conf(w, name, pp, local_port, pki, policies, binary, cloud=cloud_port), env
    elif peer == "nginx":
        argv, penv = nginx_conf(w, pp, local_port, pki, backup=cloud_port, name=name), None
    else:
        argv, penv = haproxy_conf(w, pp, local_port, pki, backup=cloud_port, name=name), None
    start_proxy(procs, name, argv, pp["plain"], penv)
    marks = {}

    def kill():
        marks["killed"] = time.time()
        procs.stop(local)

    def restart():
        marks["restarted"] = time.time()
        procs.start(local, local_argv, LOAD_CORE)

    rows, t0 = timed_load(w, pp["plain"], FAILOVER_S, [(1.5, kill), (3.5, restart)])
    for p in (name, local, cloud):
        procs.stop(p)

    def served(origin):
        """When the origin answered proxied requests (its health checks left out)."""
        try:
            with open(os.path.join(w, origin, "access.log")) as f:
                rows = [line.split() for line in f]
            return [float(r[0]) for r in rows if len(r) == 2 and r[1] != "/healthz"]
        except (OSError, ValueError):
            return []
    back = [t for t in served(local) if t > marks.get("restarted", 1e18)]
    cloud_times = [t for t in served(cloud) if t > marks.get("killed", 0)]
    return {
        "requests": len(rows),
        "errors": sum(1 for _, status, _ in rows if not 200 <= status < 300),
        "error_statuses": sorted({status for _, status, _ in rows if not 200 <= status < 300}),
        "longest_request_ms": max((d for _, _, d in rows), default=0) * 1000,
        "cloud_served": len(cloud_times),
        "first_cloud_after_kill_ms": (min(cloud_times) - marks["killed"]) * 1000 if cloud_times else None,
        "local_back_after_restart_ms": (min(back) - marks["restarted"]) * 1000 if back else None,
    }


def reload_under_load(procs, w, pki, policies, binary, env):
    """Edgeward alone: a policy added and the config changed, each applied with SIGHUP, under a
    fixed-rate load. Counts the requests that did not get a 2xx."""
    pdir = os.path.join(w, "reload-policies")
    shutil.rmtree(pdir, ignore_errors=True)
    shutil.copytree(policies, pdir)
    pp = {k: free_port() for k in ("plain", "tls", "mtls", "admin")}
    origin_port = free_port()
    procs.start("reload-origin", origin_conf(w, origin_port, name="reload-origin"), LOAD_CORE)
    wait_first_200(procs.live["reload-origin"], origin_port, 20)
    argv = edgeward_conf(w, "edgeward-reload", pp, origin_port, pki, pdir, binary)
    start_proxy(procs, "edgeward-reload", argv, pp["plain"], env)
    conf = argv[argv.index("--config") + 1]
    pid = procs.live["edgeward-reload"].pid

    def add_policy():
        with open(os.path.join(pdir, "zz-reload.cedar"), "w") as f:
            f.write('@id("reload-added")\npermit (principal, action == Edgeward::Action::"GET", '
                    'resource == Edgeward::Route::"bench");\n')
        os.kill(pid, signal.SIGHUP)

    def change_config():
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write(text.replace('path_prefix = "/"', 'path_prefix = "/"\nrequest_timeout = "20s"'))
        os.kill(pid, signal.SIGHUP)

    rows, t0 = timed_load(w, pp["plain"], RELOAD_S, list(zip(RELOAD_AT, (add_policy, change_config))))
    generations = {}
    try:
        with socket.create_connection(("127.0.0.1", pp["admin"]), timeout=2) as sk:
            sk.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := sk.recv(65536):
                body += chunk
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(("edgeward_config_generation", "edgeward_policy_generation",
                                "edgeward_reload_failures_total")):
                name, _, value = line.rpartition(" ")
                generations[name] = float(value)
    except OSError:
        pass
    procs.stop("edgeward-reload")
    procs.stop("reload-origin")
    return {
        **reload_outcome(rows, t0),
        "metrics_after": generations,
    }


def reload_peer_under_load(procs, w, pki, peer):
    """nginx or HAProxy under the same fixed-rate load as Edgeward's reload: its config is
    changed twice, at the same times, each applied the peer's own way (nginx: SIGHUP to the
    master; HAProxy, run as master and worker for this: SIGUSR2 to the master). Each change
    adds a response header, so a request afterwards shows whether both were applied."""
    pp = {k: free_port() for k in ("plain", "tls", "mtls", "admin")}
    origin_port = free_port()
    origin, name = f"reload-{peer}-origin", f"{peer}-reload"
    procs.start(origin, origin_conf(w, origin_port, name=origin), LOAD_CORE)
    wait_first_200(procs.live[origin], origin_port, 20)
    if peer == "nginx":
        argv = nginx_conf(w, pp, origin_port, pki, name=name)
        conf, sig = argv[argv.index("-c") + 1], signal.SIGHUP
        anchor, added = "location / {", "location / {{ add_header X-Reload-{n} 1 always;"
    else:
        argv = haproxy_conf(w, pp, origin_port, pki, name=name)
        argv.insert(1, "-W")  # master and worker: the master reloads on SIGUSR2
        conf, sig = argv[argv.index("-f") + 1], signal.SIGUSR2
        anchor, added = "frontend plain\n", "frontend plain\n  http-response set-header X-Reload-{n} 1\n"
    start_proxy(procs, name, argv, pp["plain"])
    pid = procs.live[name].pid

    def change(n):
        def apply():
            with open(conf) as f:
                text = f.read()
            with open(conf, "w") as f:
                f.write(text.replace(anchor, added.format(n=n), 1))
            os.kill(pid, sig)
        return apply

    rows, t0 = timed_load(w, pp["plain"], RELOAD_S, list(zip(RELOAD_AT, (change(1), change(2)))))
    applied = []
    try:
        with socket.create_connection(("127.0.0.1", pp["plain"]), timeout=2) as sk:
            sk.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sk.recv(65536)
                if not chunk:
                    break
                head += chunk
        text = head.decode(errors="replace").lower()
        applied = [n for n in (1, 2) if f"x-reload-{n}: 1" in text]
    except OSError:
        pass
    procs.stop(name)
    procs.stop(origin)
    return {
        **reload_outcome(rows, t0),
        "changes_applied": len(applied),
    }


def reload_outcome(rows, t0):
    """What a reload run's requests show: how many, the failed ones, the longest, and how many
    were sent after the last change."""
    return {
        "requests": len(rows),
        "errors": sum(1 for _, status, _ in rows if not 200 <= status < 300),
        "longest_request_ms": max((d for _, _, d in rows), default=0) * 1000,
        "after_last_change": sum(1 for start, _, _ in rows if start >= t0 + RELOAD_AT[-1]),
    }


def measure(procs, name, work, runner, port, pki):
    pid = procs.live[name].pid
    c0 = cpu_seconds(pid)
    r = runner(work, port, pki)
    c1 = cpu_seconds(pid)
    r["proxy_cpu_s"] = c1 - c0
    if r.get("ok"):
        r["cpu_us_per_req"] = (c1 - c0) / r["ok"] * 1e6
    return r


def start_proxy(procs, name, argv, port, env=None):
    p = procs.start(name, argv, PROXY_CORE, env=env)
    try:
        return wait_first_200(p, port, 120)
    except RuntimeError as e:
        with open(os.path.join(procs.work, f"{name}.log"), errors="replace") as f:
            tail = f.read()[-1500:]
        raise RuntimeError(f"{name}: {e}; its output:\n{tail}") from None


def run_pass(args, procs, n, order):
    w, pki = args.work, args.pki
    res = {"order": order, "proxies": {}, "authz": {}}
    origin_port = free_port()
    procs.start("origin", origin_conf(w, origin_port), LOAD_CORE)
    wait_first_200(procs.live["origin"], origin_port, 20)
    res["direct"] = {}
    ew_env = dict(os.environ, RUST_LOG="warn")
    ports = {}
    for peer in order:
        ports[peer] = {k: free_port() for k in ("plain", "tls", "mtls", "admin")}
    # Start each proxy alone (its start-up time is measured), then let them idle.
    for peer in order:
        pp = ports[peer]
        if peer == "edgeward":
            argv = edgeward_conf(w, "edgeward", pp, origin_port, pki, args.policies, args.edgeward)
            env = ew_env
        elif peer == "nginx":
            argv, env = nginx_conf(w, pp, origin_port, pki), None
        else:
            argv, env = haproxy_conf(w, pp, origin_port, pki), None
        t = start_proxy(procs, peer, argv, pp["plain"], env)
        res["proxies"][peer] = {"start_to_first_200_ms": t * 1000, "scenarios": {}}
        log(f"pass {n}: {peer} up, first proxied 200 after {t * 1000:.0f} ms")
    time.sleep(1.0)
    for peer in order:
        res["proxies"][peer]["idle_pss_kib"] = pss_kib(procs.live[peer].pid)
        res["proxies"][peer]["idle_pss_anon_file_kib"] = pss_split_kib(procs.live[peer].pid)
    # Direct to the origin: what the generator and origin alone reach.
    for sname, runner in (
        ("plain-sat", lambda w_, p, k: run_h2load(w_, f"http://127.0.0.1:{p}/", args.duration, 16)),
        ("plain-rate", lambda w_, p, k: run_h2load(w_, f"http://127.0.0.1:{p}/", args.duration, 10, rps=200)),
    ):
        r = measure(procs, "origin", w, runner, origin_port, pki)
        r["origin_cpu_us_per_req"] = r.pop("cpu_us_per_req", None)
        res["direct"][sname] = r
        log(f"pass {n}: direct {sname}: {fmt_run(r)}")
    plan = scenarios(args.duration)
    if order[0] != "edgeward":
        plan.reverse()
    for sname, listener, _, runner in plan:
        for peer in order:
            r = measure(procs, peer, w, runner, ports[peer][listener], pki)
            res["proxies"][peer]["scenarios"][sname] = r
            log(f"pass {n}: {peer:8} {sname}: {fmt_run(r)}")
    # Memory once every scenario has run (a node that has served every kind of request), after
    # a second of rest.
    time.sleep(1.0)
    for peer in order:
        res["proxies"][peer]["after_load_pss_kib"] = pss_kib(procs.live[peer].pid)
        res["proxies"][peer]["after_load_pss_anon_file_kib"] = pss_split_kib(procs.live[peer].pid)
    for peer in order:
        # mTLS first, into a process that has not had idle connections yet: the figure the
        # target is about. The plaintext ones after it may reuse memory the first ones freed.
        for kind, listener in (("mtls", "mtls"), ("plain", "plain")):
            r = idle_connections(procs.live[peer].pid, ports[peer][listener], pki, kind == "mtls")
            res["proxies"][peer][f"idle_{kind}_conns"] = r
            log(f"pass {n}: {peer:8} {r['conns']} idle {kind} connections: {r['kib_per_conn']:.1f} KiB each, "
                f"{r['pss_held_kib'] - r['pss_after_close_kib']} KiB returned after close ({r['failed']} failed)")
    for peer in order:
        procs.stop(peer)
    # Authorization cost: Edgeward alone, the same plaintext saturation run per policy set.
    sets = [("default", args.policies)] + [(str(k), os.path.join(args.policy_sets, str(k)))
                                           for k in POLICY_SETS]
    if order[0] != "edgeward":
        sets.reverse()
    for label, pdir in sets:
        pp = {k: free_port() for k in ("plain", "tls", "mtls", "admin")}
        name = f"edgeward-authz-{label}"
        # The decision memo off: every request is evaluated, which is what this row measures
        # (with it on, the bench's one repeated request would be decided once).
        argv = edgeward_conf(w, name, pp, origin_port, pki, pdir, args.edgeward, memo=0)
        t = start_proxy(procs, name, argv, pp["plain"], ew_env)
        r = measure(procs, name, w, lambda w_, p, k: run_h2load(w_, f"http://127.0.0.1:{p}/", args.duration, 16),
                    pp["plain"], pki)
        r["start_to_first_200_ms"] = t * 1000
        r["idle_pss_kib"] = pss_kib(procs.live[name].pid)
        res["authz"][label] = r
        log(f"pass {n}: authz {label:>7} policies: {fmt_run(r)} (start {t * 1000:.0f} ms)")
        procs.stop(name)
    procs.stop("origin")
    # Failover under load for all three; reload under load for Edgeward.
    res["failover"] = failover(procs, w, pki, args.policies, args.edgeward, ew_env)
    log(f"pass {n}: failover: {res['failover']}")
    res["failover_peers"] = {}
    # The peers once (pass 1), to keep the whole run under five minutes.
    for peer in (("nginx", "haproxy") if n == 1 else ()):
        res["failover_peers"][peer] = failover(procs, w, pki, args.policies, args.edgeward, ew_env, peer)
        log(f"pass {n}: failover {peer}: {res['failover_peers'][peer]}")
    res["reload"] = reload_under_load(procs, w, pki, args.policies, args.edgeward, ew_env)
    log(f"pass {n}: reload: {res['reload']}")
    res["reload_peers"] = {}
    for peer in (("nginx", "haproxy") if n == 1 else ()):
        res["reload_peers"][peer] = reload_peer_under_load(procs, w, pki, peer)
        log(f"pass {n}: reload {peer}: {res['reload_peers'][peer]}")
    return res


def fmt_run(r):
    if r.get("error"):
        return "ERROR " + r["error"][:200]
    parts = [f"{r.get('rps', 0):9.0f} req/s"]
    if r.get("cpu_us_per_req") is not None:
        parts.append(f"{r['cpu_us_per_req']:7.1f} us CPU/req")
    if r.get("p50_ms") is not None:
        parts.append(f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms")
    parts.append(f"{r.get('errors', 0)} errors")
    return ", ".join(parts)


# --- the table ----------------------------------------------------------------------------


def ratio(a, b, floor=0.0):
    """a / b; None when either is missing or b is at or below floor (a ratio to ~0 means nothing)."""
    if a is None or b is None or b <= floor:
        return None
    return a / b


def cell(x):
    if x is None:
        return "n/a"
    mark = "~" if abs(x - 1) < NOISE else " "
    return f"{x:5.2f}{mark}"


def table(results):
    passes = results["passes"]
    lines = []
    hdr = f"{'metric':42} {'generator':15} " + " ".join(
        f"{'p' + str(i + 1) + ' ÷nginx':>10} {'p' + str(i + 1) + ' ÷haproxy':>11}" for i in range(len(passes)))
    lines.append(hdr)
    lines.append("-" * len(hdr))

    def row(label, gen, get, floor=0.0):
        cells = []
        for p in passes:
            e = get(p, "edgeward")
            cells.append(f"{cell(ratio(e, get(p, 'nginx'), floor)):>10} {cell(ratio(e, get(p, 'haproxy'), floor)):>11}")
        lines.append(f"{label:42} {gen:15} " + " ".join(cells))

    for sname, _, desc, _ in scenarios(results["duration_s"], results["oha"]):
        gen = passes[0]["proxies"]["edgeward"]["scenarios"].get(sname, {}).get("generator", "?")
        sc = lambda p, peer, k: p["proxies"][peer]["scenarios"].get(sname, {}).get(k)
        row(f"{sname}: CPU per request", gen, lambda p, peer: sc(p, peer, "cpu_us_per_req"))
        row(f"{sname}: requests/s", gen, lambda p, peer: sc(p, peer, "rps"))
        if sname.endswith("-rate"):
            row(f"{sname}: p50 latency", gen, lambda p, peer: sc(p, peer, "p50_ms"))
            row(f"{sname}: p99 latency", gen, lambda p, peer: sc(p, peer, "p99_ms"))
    row("memory per idle plain connection", "python sockets",
        lambda p, peer: p["proxies"][peer].get("idle_plain_conns", {}).get("kib_per_conn"), floor=1.0)
    row("memory per idle mTLS connection", "python ssl",
        lambda p, peer: p["proxies"][peer].get("idle_mtls_conns", {}).get("kib_per_conn"), floor=1.0)
    row("idle memory (PSS)", "/proc smaps", lambda p, peer: p["proxies"][peer]["idle_pss_kib"])
    row("memory after the load runs (PSS)", "/proc smaps",
        lambda p, peer: p["proxies"][peer].get("after_load_pss_kib"))
    row("start to first proxied 200", "python poll", lambda p, peer: p["proxies"][peer]["start_to_first_200_ms"])
    b = results["binary_bytes"]
    lines.append(f"{'binary size (stripped)':42} {'stat':15} "
                 f"{cell(ratio(b['edgeward'], b['nginx'])):>10} {cell(ratio(b['edgeward'], b['haproxy'])):>11}")
    bl = results.get("binary_with_libs_bytes")
    if bl:
        lines.append(f"{'binary + its own shared libs (not libc)':42} {'stat, ldd':15} "
                     f"{cell(ratio(bl['edgeward'], bl['nginx'])):>10} {cell(ratio(bl['edgeward'], bl['haproxy'])):>11}")
    lines.append("")
    lines.append("'~' = within 15% of 1.0 (noise on this machine). Below 1.0 Edgeward is better for CPU,")
    lines.append("latency, memory, start time and size; above 1.0 is better for requests/s.")
    lines.append("n/a for memory per idle connection: the peer grew by under 1 KiB per connection (its")
    lines.append("connection slots are preallocated), so a ratio means nothing; see the raw figures.")
    lines.append("")
    lines.append("Edgeward authorization, decision memo off (every request evaluated): CPU per request on")
    lines.append("plain-sat, against the default policy set with the memo off (÷default: what more policies")
    lines.append("cost) and against plain-sat with the memo on (÷memo: the bench's one repeated request is")
    lines.append("looked up, not evaluated, which is as close to authorization off as Edgeward goes)")
    lines.append(f"{'policies':>10} " + " ".join(
        f"{'p' + str(i + 1) + ' us/req':>12} {'p' + str(i + 1) + ' ÷default':>12} {'p' + str(i + 1) + ' ÷memo':>10}"
        for i in range(len(passes))))
    for label in ["default"] + POLICY_SETS:
        cells = []
        for p in passes:
            a = p["authz"].get(label, {}).get("cpu_us_per_req")
            base = p["authz"].get("default", {}).get("cpu_us_per_req")
            memo = p["proxies"]["edgeward"]["scenarios"].get("plain-sat", {}).get("cpu_us_per_req")
            cells.append(f"{(f'{a:.1f}' if a else 'n/a'):>12} {cell(ratio(a, base)):>12} {cell(ratio(a, memo)):>10}")
        lines.append(f"{label:>10} " + " ".join(cells))
    lines.append("")
    lines.append("Under a fixed load of 2000 req/s (pass 1 / pass 2)")

    def ms(x):
        return "n/a" if x is None else f"{x:.0f} ms"
    lines.append("  failover (site origin killed, restarted 2 s later):")
    for peer in PEERS:
        vals = []
        for p in passes:
            f = p.get("failover") if peer == "edgeward" else (p.get("failover_peers") or {}).get(peer)
            if not f:
                vals.append("not run in this pass")
                continue
            vals.append(f"{f.get('errors', 'n/a')} errors of {f.get('requests', 0)}, longest request "
                        f"{ms(f.get('longest_request_ms'))}, regional endpoint serving "
                        f"{ms(f.get('first_cloud_after_kill_ms'))} after the kill, site endpoint back "
                        f"{ms(f.get('local_back_after_restart_ms'))} after its restart")
        lines.append(f"    {peer:9} " + " | ".join(vals))
    vals = []
    for p in passes:
        r = p.get("reload") or {}
        g = r.get("metrics_after", {})
        vals.append(f"{r.get('errors', 'n/a')} errors of {r.get('requests', 0)} "
                    f"({r.get('after_last_change', 'n/a')} after the last change), longest request "
                    f"{ms(r.get('longest_request_ms'))}, generations config "
                    f"{g.get('edgeward_config_generation', 'n/a')} policy {g.get('edgeward_policy_generation', 'n/a')}")
    lines.append("  reload (Edgeward: a policy added, then the config changed, SIGHUP each; nginx: the")
    lines.append("  config changed twice, SIGHUP each; HAProxy as master and worker: the config changed")
    lines.append(f"  twice, SIGUSR2 each; the peers in pass 1; {RELOAD_S * 2000} requests were due, "
                 f"{int((RELOAD_S - RELOAD_AT[-1]) * 2000)} of them after the last change;")
    lines.append("  h2load's fixed-rate mode does not reopen a connection the proxy closed):")
    lines.append(f"    {'edgeward':9} " + " | ".join(vals))
    for peer in PEERS[1:]:
        vals = []
        for p in passes:
            r = (p.get("reload_peers") or {}).get(peer)
            if not r:
                vals.append("not run in this pass")
                continue
            vals.append(f"{r.get('errors', 'n/a')} errors of {r.get('requests', 0)} "
                        f"({r.get('after_last_change', 'n/a')} after the last change), longest request "
                        f"{ms(r.get('longest_request_ms'))}, {r.get('changes_applied', 0)} of 2 changes applied")
        lines.append(f"    {peer:9} " + " | ".join(vals))
    lines.append("")
    lines.append("Raw figures (pass 1 / pass 2)")
    for sname, _, _, _ in scenarios(results["duration_s"], results["oha"]):
        for peer in PEERS:
            vals = [fmt_run(p["proxies"][peer]["scenarios"].get(sname, {})) for p in passes]
            lines.append(f"  {sname:15} {peer:9} " + " | ".join(vals))
    for sname in ("plain-sat", "plain-rate"):
        vals = []
        for p in passes:
            r = p["direct"][sname]
            o = r.get("origin_cpu_us_per_req")
            vals.append(fmt_run(r) + (f", origin {o:.1f} us CPU/req" if o else ""))
        lines.append(f"  {sname:15} {'direct':9} " + " | ".join(vals))
    def split(pp, key):
        v = pp.get(key)
        return f" (anon {v[0] / 1024:.1f} + file {v[1] / 1024:.1f})" if v else ""
    for peer in PEERS:
        vals = []
        for p in passes:
            pp = p["proxies"][peer]
            after = pp.get("after_load_pss_kib")
            vals.append(f"idle PSS {pp['idle_pss_kib'] / 1024:.1f} MiB{split(pp, 'idle_pss_anon_file_kib')}, after load "
                        + (f"{after / 1024:.1f} MiB{split(pp, 'after_load_pss_anon_file_kib')}" if after else "n/a")
                        + f", first 200 after {pp['start_to_first_200_ms']:.0f} ms")
        lines.append(f"  {'memory/start':15} {peer:9} " + " | ".join(vals))
    for peer in PEERS:
        for kind in ("plain", "mtls"):
            vals = []
            for p in passes:
                r = p["proxies"][peer].get(f"idle_{kind}_conns")
                vals.append("n/a" if not r else
                            f"{r['conns']} conns {r['kib_per_conn']:.1f} KiB each, PSS {r['pss_before_kib'] / 1024:.1f} -> "
                            f"{r['pss_held_kib'] / 1024:.1f} -> {r['pss_after_close_kib'] / 1024:.1f} MiB after close")
            lines.append(f"  {'idle ' + kind:15} {peer:9} " + " | ".join(vals))
    for label in ["default"] + POLICY_SETS:
        vals = [fmt_run(p["authz"].get(label, {})) + f", start {p['authz'].get(label, {}).get('start_to_first_200_ms', 0):.0f} ms"
                for p in passes]
        lines.append(f"  {'authz ' + label:15} {'edgeward':9} " + " | ".join(vals))
    lines.append("  binary size: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in b.items()))
    if bl:
        lines.append("  with own shared libs: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in bl.items()))
    return "\n".join(lines)


def header(results):
    m = results["machine"]
    return (f"Edgeward ÷ peer, same pass ({results['date_utc']}, {m['nproc']} cores, {m['cpu_model']}, "
            f"{results['duration_s']} s per run, measured in {results['measure_wall_s']:.0f} s)")


def binary_sizes(args):
    w = args.work
    out = {}
    stripped = os.path.join(w, "edgeward.stripped")
    shutil.copy(args.edgeward, stripped)
    subprocess.run(["strip", stripped], check=False)
    out["edgeward"] = os.path.getsize(stripped)
    out["nginx"] = os.path.getsize(shutil.which("nginx"))
    out["haproxy"] = os.path.getsize(shutil.which("haproxy"))
    return out


COMMON_LIBS = ("linux-vdso", "libc.so", "libm.so", "libgcc_s", "ld-linux", "libpthread", "libdl", "librt")


def with_libs(path, size=None):
    """The binary (`size`, or the file's) plus the shared libraries it loads, except libc and
    friends that all three use."""
    total = os.path.getsize(path) if size is None else size
    ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
    for line in ldd.splitlines():
        m = re.search(r"=> (/\S+)", line)
        if m and not any(c in line for c in COMMON_LIBS):
            total += os.path.getsize(os.path.realpath(m.group(1)))
    return total


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ver = lambda argv: subprocess.run(argv, capture_output=True, text=True).stderr.strip().splitlines()[:1]
    hv = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "nginx": ver(["nginx", "-v"]), "haproxy": hv,
            "h2load": subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip(),
            "oha": subprocess.run([OHA, "--version"], capture_output=True, text=True).stdout.strip() if HAVE_OHA else None,
            "openssl": subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--report":
        # Prints the table of an earlier run: bench.py --report bench/results/latest.json
        with open(sys.argv[2]) as f:
            results = json.load(f)
        print(header(results))
        print()
        print(table(results))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--edgeward", required=True)
    ap.add_argument("--pki", required=True)
    ap.add_argument("--policies", required=True)
    ap.add_argument("--policy-sets", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--passes", type=int, default=2)
    args = ap.parse_args()

    procs = Procs(args.work)
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # this script's own work stays off the proxy's core

    def on_signal(sig, _frame):
        procs.stop_all()
        sys.exit(128 + sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    results = {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
               "duration_s": args.duration, "oha": HAVE_OHA, "passes": []}
    if not HAVE_OHA:
        log("oha not found: mTLS keep-alive and HTTP/2 over mTLS are not measured (h2load cannot "
            "present a client certificate); TLS without client certificates stands in")
    try:
        results["binary_bytes"] = binary_sizes(args)
        results["binary_with_libs_bytes"] = {"edgeward": with_libs(args.edgeward, results["binary_bytes"]["edgeward"]),
                                             "nginx": with_libs(shutil.which("nginx")),
                                             "haproxy": with_libs(shutil.which("haproxy"))}
        for n in range(1, args.passes + 1):
            order = PEERS if n % 2 == 1 else list(reversed(PEERS))
            results["passes"].append(run_pass(args, procs, n, order))
    finally:
        procs.stop_all()
    results["measure_wall_s"] = time.monotonic() - t0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print()
    print(header(results))
    print()
    print(table(results))
    print()
    print(f"raw figures: {args.out}")


if __name__ == "__main__":
    main()
