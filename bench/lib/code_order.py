#!/usr/bin/env python3
"""Writes layout/code-order.txt: the functions a node runs, hottest first (`bench/run.sh
--code-order` calls this; see layout/README.md).

It runs the release binary under callgrind with the bench's config: start-up, then a workload
of every kind of request the bench makes (plaintext, TLS and mTLS HTTP/1.1, HTTP/2, a refused
path, the admin port) and a few seconds of background work (health checks, reload checks).
Callgrind reports each function by its linker symbol (`--demangle=no`) with the instructions
it ran. The list is: the functions that ran while serving, most instructions first, then those
that ran only at start-up, most instructions first. The linker lays them out in that order.

    code_order.py --work DIR --edgeward BIN --pki DIR --policies DIR --out FILE
"""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (the bench's configs, processes and generators)


def functions(path, binary):
    """Self instructions per function symbol of `binary` in a callgrind dump."""
    costs, obj, fn = {}, None, None
    names = {}  # callgrind's "(id) name" compression, should it be on
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("ob=", "fn=")):
                value = line[3:].strip()
                if value.startswith("("):
                    ident, _, name = value.partition(")")
                    name = name.strip()
                    if name:
                        names[ident] = name
                    value = names.get(ident, name)
                if line.startswith("ob="):
                    obj = value
                else:
                    fn = value
            elif line.startswith(("cob=", "cfn=", "calls=", "cfi=", "cfl=")):
                if line.startswith("calls="):
                    # The next cost line is the call's inclusive cost, not self cost.
                    next(f, None)
            elif fn and obj and os.path.basename(obj) == os.path.basename(binary) and line[:1].isdigit():
                parts = line.split()
                # Callgrind names a recursive call `name'2`; an address stands for code without
                # a symbol. The linker wants symbol names.
                name = re.sub(r"'\d+$", "", fn)
                if len(parts) >= 2 and not name.startswith("0x"):
                    costs[name] = costs.get(name, 0) + int(parts[1])
    return costs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--edgeward", required=True)
    ap.add_argument("--pki", required=True)
    ap.add_argument("--policies", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    w, pki = args.work, args.pki
    procs = B.Procs(w)
    try:
        origin = B.free_port()
        procs.start("origin", B.origin_conf(w, origin), B.LOAD_CORE)
        B.wait_first_200(procs.live["origin"], origin, 20)
        ports = {k: B.free_port() for k in ("plain", "tls", "mtls", "admin")}
        argv = B.edgeward_conf(w, "edgeward", ports, origin, pki, args.policies, args.edgeward)
        out = os.path.join(w, "callgrind.out")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--demangle=no",
                "--compress-strings=no", "--compress-pos=no"] + argv
        B.start_proxy(procs, "edgeward", argv, ports["plain"], dict(os.environ, RUST_LOG="warn"))
        pid = procs.live["edgeward"].pid
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "-d", "start", str(pid)], capture_output=True)
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True)
        B.log("code order: start-up recorded; serving every kind of request")
        plain, tls, mtls = (f"http://127.0.0.1:{ports['plain']}/", f"https://127.0.0.1:{ports['tls']}/",
                            f"https://127.0.0.1:{ports['mtls']}/")
        for gen in (["--h1", "-c", "4", "-n", "600", plain],
                    ["--h1", "-c", "2", "-n", "300", tls],
                    ["-c", "2", "-m", "8", "-n", "300", tls],
                    ["--h1", "-c", "2", "-n", "50", f"http://127.0.0.1:{ports['plain']}/a/%2F/b"]):
            subprocess.run(["h2load"] + gen, capture_output=True, timeout=300)
        if B.HAVE_OHA:
            for extra in ([], ["--http2", "-p", "8"], ["--disable-keepalive"]):
                subprocess.run([B.OHA, "--no-tui", "-n", "200", "-c", "2", "--insecure", "--cert",
                                f"{pki}/client.crt", "--key", f"{pki}/client.key"] + extra + [mtls],
                               capture_output=True, timeout=300)
        for path in ("metrics", "readyz", "healthz", "config"):
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{ports['admin']}/{path}"],
                           timeout=60)
        time.sleep(5.0)  # health checks, reload checks, the memory thread
        subprocess.run(["callgrind_control", "-d", "serve", str(pid)], capture_output=True)
        time.sleep(1.0)
    finally:
        procs.stop_all()
    dumps = sorted((os.path.join(w, f) for f in os.listdir(w) if f.startswith("callgrind.out.")),
                   key=os.path.getmtime)
    if len(dumps) < 2:
        raise SystemExit(f"code order: expected two callgrind dumps in {w}, found {dumps}")
    start, serve = functions(dumps[0], args.edgeward), functions(dumps[1], args.edgeward)
    hot = sorted(serve, key=lambda n: -serve[n])
    cold = sorted((n for n in start if n not in serve), key=lambda n: -start[n])
    with open(args.out, "w") as f:
        f.write("# The functions a node runs, hottest first: serving, then start-up only.\n")
        f.write("# Made by `bench/run.sh --code-order` (bench/lib/code_order.py) from the release build\n")
        f.write(f"# of {time.strftime('%Y-%m-%d')}; see layout/README.md. The linker skips names that no\n")
        f.write("# longer exist, so an old list only orders fewer functions.\n")
        for name in hot + cold:
            f.write(name + "\n")
    B.log(f"code order: {len(hot)} serving and {len(cold)} start-up functions written to {args.out}")


if __name__ == "__main__":
    main()
