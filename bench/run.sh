#!/usr/bin/env bash
# Edgeward against nginx and HAProxy, side by side, on one machine (see bench/README.md).
#
#   bench/run.sh                  install what is missing, build edgeward (release), run 2 passes
#   bench/run.sh --duration 5     seconds per load run (default 3)
#   bench/run.sh --passes 1       one pass instead of two (no noise check between passes)
#   bench/run.sh --no-install     fail instead of installing missing tools
#   bench/run.sh --out FILE       raw figures (default bench/results/latest.json)
#   bench/run.sh --code-order     instead of measuring: write layout/code-order.txt from the
#                                 release build under callgrind (see layout/README.md)
#
# Environment: EDGEWARD_BIN=path uses that binary instead of `cargo build --release`.
# BENCH_POLICY_SETS="10 1000 10000" (default) sizes of the authorization policy sets.
# BENCH_OHA=0 skips oha (no mTLS keep-alive / HTTP/2-over-mTLS rows); BENCH_OHA=1 (default)
# installs it with `cargo install oha --locked` when it is missing (a one-time build).
#
# Placement: each proxy under test runs pinned to core 0 (`taskset -c 0`, one worker
# thread/process); the origin (nginx) and every load generator run on core 1.
# Every process it starts is ended on exit, Ctrl-C or SIGTERM; its temporary folder is removed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() {
  printf 'bench/run.sh: error: %s\n' "$*" >&2
  exit 2
}
info() { printf '== %s\n' "$*" >&2; }

duration=3
passes=2
install=1
code_order=0
out=$here/results/latest.json
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=${2:?--duration needs seconds}; shift ;;
    --passes) passes=${2:?--passes needs a number}; shift ;;
    --no-install) install=0 ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --code-order) code_order=1 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
case "$duration$passes" in *[!0-9]*) die "--duration and --passes take whole numbers" ;; esac

t_start=$SECONDS

# --- cleanup --------------------------------------------------------------------------------

work=
bench_pid=
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ]; then
    # bench.py ends what it started on SIGTERM; give it a moment, then end it.
    kill -TERM "$bench_pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$bench_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$bench_pid" 2>/dev/null || true
  fi
  if [ -n "$work" ] && [ -f "$work/pids" ]; then
    # Each line is the leader of a process group bench.py started (start_new_session).
    while read -r pid; do
      [ -n "$pid" ] || continue
      kill -TERM -- "-$pid" 2>/dev/null || true
    done <"$work/pids"
    sleep 0.3
    while read -r pid; do
      [ -n "$pid" ] || continue
      kill -KILL -- "-$pid" 2>/dev/null || true
    done <"$work/pids"
  fi
  [ -n "$work" ] && rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools ----------------------------------------------------------------------------------

[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores (proxy on core 0, load on core 1)"
for t in python3 taskset openssl; do
  command -v "$t" >/dev/null 2>&1 || die "$t is needed"
done

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$install" = 1 ] || die "missing: ${missing[*]} (apt-get install ${missing[*]})"
  info "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
  fi
fi
# The Debian packages start their own nginx/haproxy where an init system runs; this bench
# starts private instances on free ports and leaves those alone.

oha_bin=$(command -v oha 2>/dev/null || true)
[ -n "$oha_bin" ] || { [ -x "$HOME/.cargo/bin/oha" ] && oha_bin=$HOME/.cargo/bin/oha; } || true
if [ -z "$oha_bin" ] && [ "${BENCH_OHA:-1}" = 1 ]; then
  if [ "$install" = 1 ] && command -v cargo >/dev/null 2>&1; then
    info "installing oha (cargo install oha --locked; one time, a few minutes) for the mTLS rows"
    if cargo install oha --locked >"${TMPDIR:-/tmp}/bench-oha-install.log" 2>&1; then
      oha_bin=$HOME/.cargo/bin/oha
    else
      info "cargo install oha failed (see ${TMPDIR:-/tmp}/bench-oha-install.log): mTLS keep-alive rows skipped"
    fi
  fi
fi
if [ "${BENCH_OHA:-1}" = 0 ]; then oha_bin=; fi
# h2load cannot present a client certificate: mTLS keep-alive needs oha.
if [ -n "$oha_bin" ]; then
  "$oha_bin" --help 2>/dev/null | grep -q -- '--cert' || {
    info "$oha_bin has no --cert option (too old): mTLS keep-alive rows skipped"
    oha_bin=
  }
fi
export BENCH_OHA_BIN=$oha_bin

# --- build ----------------------------------------------------------------------------------

if [ -n "${EDGEWARD_BIN:-}" ]; then
  [ -x "$EDGEWARD_BIN" ] || die "EDGEWARD_BIN=$EDGEWARD_BIN is not an executable file"
  ew=$(cd "$(dirname "$EDGEWARD_BIN")" && pwd)/$(basename "$EDGEWARD_BIN")
else
  command -v cargo >/dev/null 2>&1 || die "cargo is needed to build edgeward, or set EDGEWARD_BIN"
  info "cargo build --release --bin edgeward"
  cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --bin edgeward
  ew="${CARGO_TARGET_DIR:-$repo/target}/release/edgeward"
  case "$ew" in /*) ;; *) ew="$repo/$ew" ;; esac
fi
[ -x "$ew" ] || die "no edgeward binary at $ew"
t_measure=$SECONDS

# --- PKI and policies -----------------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/edgeward-bench.XXXXXX")
: >"$work/pids"
pki=$work/pki
quiet() {
  local o
  o=$("$@" 2>&1) || { printf '%s\n' "$o" >&2; die "failed: $*"; }
}
info "PKI (edgeward ca / cert), the same certificates for all three proxies"
quiet "$ew" ca init --trust-domain acme.example --out "$pki/root"
quiet "$ew" ca intermediate --ca "$pki/root" --name berlin --out "$pki/berlin" --path-prefix /site/berlin
quiet "$ew" cert issue spiffe://acme.example/site/berlin/service/gateway --ca "$pki/berlin" \
  --out "$pki/proxy" --dns localhost --ip 127.0.0.1
quiet "$ew" cert issue spiffe://acme.example/site/berlin/device/bench-client --ca "$pki/berlin" \
  --out "$pki/client"
# The same identity kind issued by the root itself: `openssl s_time` (the handshake generator
# when oha is missing) sends only the first certificate of its file, so it needs a client
# certificate that verifies against the root without an intermediate.
quiet "$ew" cert issue spiffe://acme.example/site/berlin/device/bench-direct --ca "$pki/root" \
  --out "$pki/client-direct"

# The default policy set: the repository's starter policies plus one permit for the bench
# route (any principal, read actions), so plaintext (anonymous) and mTLS requests pass.
pol=$work/policies
mkdir -p "$pol"
cp "$repo"/policies/*.cedar "$repo/policies/schema.cedarschema" "$repo/policies/entities.json" "$pol/"
cat >"$pol/zz-bench.cedar" <<'EOF'
// The benchmark's route: anyone may read it (the bench measures cost, not who is allowed).
@id("bench-read")
@lint_allow("over-broad")
permit (principal, action in Edgeward::Action::"read", resource == Edgeward::Route::"bench");
EOF
sets=$work/policy-sets
for k in ${BENCH_POLICY_SETS:-10 1000 10000}; do
  mkdir -p "$sets/$k"
  cp "$pol"/* "$sets/$k/"
  python3 "$here/lib/gen_policies.py" "$k" "$sets/$k/zz-gen.cedar"
done

# Runs bench/lib/SCRIPT with its arguments in the background and waits for it, so that a
# SIGTERM to this script runs the trap at once; dies when it fails.
waited() {
  local script=$1 rc=0
  shift
  python3 "$here/lib/$script" "$@" &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=
  [ "$rc" = 0 ] || die "$script failed (exit $rc)"
}

# --- code order (instead of measuring) -------------------------------------------------------

if [ "$code_order" = 1 ]; then
  command -v valgrind >/dev/null 2>&1 || die "--code-order needs valgrind (apt-get install valgrind)"
  info "code order: the release build under callgrind (a few minutes)"
  waited code_order.py --work "$work" --edgeward "$ew" --pki "$pki" --policies "$pol" \
    --out "$repo/layout/code-order.txt"
  info "wrote layout/code-order.txt: rebuild (cargo build --release) to link in that order"
  exit 0
fi

# --- measure --------------------------------------------------------------------------------

info "measuring: $passes pass(es), ${duration}s per run (proxy on core 0, origin and generators on core 1)"
waited bench.py --work "$work" --edgeward "$ew" --pki "$pki" --policies "$pol" \
  --policy-sets "$sets" --out "$out" --duration "$duration" --passes "$passes"
info "done: measuring took $((SECONDS - t_measure)) s (whole run $((SECONDS - t_start)) s)"
