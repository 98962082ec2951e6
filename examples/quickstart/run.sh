#!/usr/bin/env bash
# The Edgeward quickstart: one command brings up a whole site on loopback and walks through
# what the proxy does, with curl.
#
#   ./examples/quickstart/run.sh                  walk, then stay up until Ctrl-C
#   ./examples/quickstart/run.sh --check          walk without pauses; exit 1 if a step misbehaves
#   ./examples/quickstart/run.sh --up             bring the site up, write site.env, stay up
#   ./examples/quickstart/run.sh --state-dir DIR  keep everything in DIR (default: a temp folder)
#
# It builds `edgeward` (debug; set EDGEWARD_BIN to use an existing binary), creates the trust
# domain acme.example with the CLI (a root, a site CA for berlin, a regional CA for the cloud),
# issues certificates for the proxy, a device, an operator, the cloud service and the control
# plane, starts the local plaintext service and the cloud HTTPS service
# (examples/quickstart/upstream.py), the control plane on a Git repository of the fleet's
# desired state ($STATE/fleet, SQLite store) and the proxy, which takes its bundle from the
# control plane; then walks: mTLS + Cedar decisions, HTTP/1.1 and HTTP/2, failover to the cloud
# and back, and the node's telemetry on the fleet page. Every process it starts is stopped on exit, Ctrl-C or SIGTERM, and a temporary state
# folder it created is removed (a --state-dir you gave is kept).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() {
  cat <<'EOF'
Usage: examples/quickstart/run.sh [--check | --up] [--state-dir DIR]

  (no mode)        bring the site up, walk through it, then stay up until Ctrl-C
  --check          walk without pausing; exit 1 naming every step that misbehaved
  --up             bring the site up, write DIR/site.env once ready, skip the walk,
                   stay up until Ctrl-C or SIGTERM
  --state-dir DIR  hold certificates, config, policies, logs and site.env in DIR
                   (created if missing, kept at the end; default: a temporary folder,
                   removed at the end)

Environment: EDGEWARD_BIN=path uses that binary instead of `cargo build --bin edgeward`.
EOF
}

die() {
  printf 'run.sh: error: %s\n' "$*" >&2
  exit 2
}

# --- arguments ------------------------------------------------------------------------------

mode=walk
state_arg=
while [ $# -gt 0 ]; do
  case "$1" in
    --check | --up)
      [ "$mode" = walk ] || die "--check and --up cannot be combined"
      mode=${1#--}
      ;;
    --state-dir)
      if [ $# -lt 2 ] || [ -z "$2" ]; then die "--state-dir needs a folder"; fi
      state_arg=$2
      shift
      ;;
    --state-dir=*)
      state_arg=${1#--state-dir=}
      [ -n "$state_arg" ] || die "--state-dir needs a folder"
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown argument: $1"
      ;;
  esac
  shift
done

for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (Debian: apt-get install $tool)"
done

# --- processes and cleanup ------------------------------------------------------------------

# Every process this script started, by name (local, cloud, proxy, control-plane).
declare -A pids=()
created_tmp=
state=
lock_fd=

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  # The proxy stops within its 2 s graceful timeout; upstream.py at once.
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  # A second Ctrl-C or SIGTERM while stopping must not cut the cleanup short (it would leave
  # processes and the temporary folder behind); each stop is bounded by stop_pid's KILL.
  trap - EXIT
  trap '' INT TERM
  # The proxy first, so it does not log the services it fronts going away.
  local name
  for name in proxy control-plane "${!pids[@]}"; do
    [ -n "${pids[$name]:-}" ] || continue
    stop_pid "${pids[$name]}"
    unset "pids[$name]"
  done
  if [ -n "$created_tmp" ]; then
    rm -rf "$created_tmp"
  elif [ -n "$state" ] && [ -f "$state/site.env" ]; then
    # The PIDs in it are gone; a script that sources it must not signal reused PIDs.
    rm -f "$state/site.env"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "stopping (interrupted)"; exit 130' INT
trap 'echo "stopping (terminated)"; exit 143' TERM

# Polls `cmd...` every 0.1 s until it succeeds; fails after $1 seconds.
# A check that returns 2 means "will never succeed" (its process died): stop at once.
poll() {
  local limit=$1 start=$SECONDS rc
  shift
  while true; do
    rc=0
    "$@" || rc=$?
    case $rc in
      0) return 0 ;;
      2) return 2 ;;
    esac
    ((SECONDS - start < limit)) || return 1
    sleep 0.1
  done
}

# A free loopback TCP port (bound and released: the proxy binds fixed addresses).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- state folder ---------------------------------------------------------------------------

if [ -n "$state_arg" ]; then
  if [ -e "$state_arg" ] && [ ! -d "$state_arg" ]; then
    die "--state-dir $state_arg: exists and is not a folder"
  fi
  if [ ! -d "$state_arg" ]; then
    err=$(mkdir -p -- "$state_arg" 2>&1) || die "--state-dir $state_arg: cannot create this folder (${err##*: })"
  fi
  state=$(cd -- "$state_arg" && pwd)
  probe="$state/.write-test.$$"
  if ! (: >"$probe") 2>/dev/null; then
    die "--state-dir $state: not writable (pick a folder you can write to, or leave --state-dir out)"
  fi
  rm -f -- "$probe"
  # Refuse to scatter files into an unrelated folder: it must be empty or a previous run's.
  if [ -n "$(ls -A -- "$state")" ] && [ ! -e "$state/.edgeward-quickstart" ]; then
    die "--state-dir $state: not empty and not from a previous run (no .edgeward-quickstart); use an empty or new folder"
  fi
else
  created_tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgeward-quickstart.XXXXXX")
  state=$created_tmp
fi
: >"$state/.edgeward-quickstart"

# One run per state folder at a time.
exec {lock_fd}>"$state/.lock"
flock -n "$lock_fd" || die "--state-dir $state is in use by another run.sh (see $state/site.env)"

# --- output helpers -------------------------------------------------------------------------

if [ -t 1 ]; then
  b=$'\e[1m' g=$'\e[32m' r=$'\e[31m' d=$'\e[2m' n=$'\e[0m'
else
  b='' g='' r='' d='' n=''
fi
section() { printf '\n%s== %s%s\n' "$b" "$*" "$n"; }
info() { printf '   %s\n' "$*"; }
indent() { sed 's/^/      /'; }

failures=()
# ok DESCRIPTION | bad DESCRIPTION: the verdict of a walk step.
ok() { printf '   %sok%s   %s\n' "$g" "$n" "$*"; }
bad() {
  printf '   %sFAIL%s %s\n' "$r" "$n" "$*"
  failures+=("$*")
}

pause() {
  if [ "$mode" = walk ] && [ -t 0 ] && [ -t 1 ]; then
    read -r -p "   ${d}(Enter: next step)${n} " _ || true
  fi
}

# Runs a setup command quietly; on failure shows its output and stops.
quiet() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    die "failed: $*"
  fi
  printf '%s\n' "$out" >>"$state/setup.log"
}

# --- build ----------------------------------------------------------------------------------

section "build"
if [ -n "${EDGEWARD_BIN:-}" ]; then
  [ -x "$EDGEWARD_BIN" ] || die "EDGEWARD_BIN=$EDGEWARD_BIN is not an executable file"
  ew=$(cd "$(dirname "$EDGEWARD_BIN")" && pwd)/$(basename "$EDGEWARD_BIN")
  info "using EDGEWARD_BIN=$ew"
else
  command -v cargo >/dev/null 2>&1 || die "cargo is needed to build edgeward (https://rustup.rs), or set EDGEWARD_BIN"
  info "cargo build --bin edgeward (the first build takes several minutes)"
  cargo build --manifest-path "$repo/Cargo.toml" --bin edgeward
  ew="${CARGO_TARGET_DIR:-$repo/target}/debug/edgeward"
  case "$ew" in /*) ;; *) ew="$repo/$ew" ;; esac
  [ -x "$ew" ] || die "the build did not produce $ew"
fi
info "state folder: $state"

# --- identities -----------------------------------------------------------------------------

td=acme.example
proxy_id=spiffe://$td/site/berlin/service/gateway
device_id=spiffe://$td/site/berlin/device/sensor-1
operator_id=spiffe://$td/site/berlin/operator/alice
cloud_id=spiffe://$td/region/eu-central/service/api
cp_id=spiffe://$td/control-plane

pki=$state/pki
bundle=$pki/root/ca.crt

section "certificates (edgeward ca / edgeward cert)"
quiet "$ew" ca init --trust-domain "$td" --out "$pki/root" --force
info "trust domain $td: root CA in pki/root"
quiet "$ew" ca intermediate --ca "$pki/root" --name berlin --out "$pki/berlin" \
  --path-prefix /site/berlin --force
quiet "$ew" ca intermediate --ca "$pki/root" --name eu-central --out "$pki/eu-central" \
  --path-prefix /region/eu-central --force
info "site CA berlin (only /site/berlin/...), regional CA eu-central (only /region/eu-central/...)"
quiet "$ew" cert issue "$proxy_id" --ca "$pki/berlin" --out "$pki/proxy" \
  --dns localhost --ip 127.0.0.1 --force
quiet "$ew" cert issue "$device_id" --ca "$pki/berlin" --out "$pki/device" --force
quiet "$ew" cert issue "$operator_id" --ca "$pki/berlin" --out "$pki/operator" --force
quiet "$ew" cert issue "$cloud_id" --ca "$pki/eu-central" --out "$pki/cloud" \
  --dns localhost --ip 127.0.0.1 --force
quiet "$ew" cert issue "$cp_id" --ca "$pki/root" --out "$pki/control-plane" \
  --dns localhost --ip 127.0.0.1 --force
quiet "$ew" ca crl --ca "$pki/berlin" --out "$pki/berlin.crl" --force
info "proxy   $proxy_id"
info "device  $device_id"
info "operator $operator_id"
info "cloud   $cloud_id"
info "control plane $cp_id"

# A previous run's node state and fleet were made for the PKI just replaced: start them anew
# (a node would otherwise hold a last-known-good bundle that trusts the old root).
rm -rf "$state/node" "$state/fleet" "$state/control-plane.db" "$state/policies"

# The policies of the repository, copied so that edits here do not touch the repository.
mkdir -p "$state/policies"
cp "$repo"/policies/*.cedar "$repo/policies/schema.cedarschema" "$repo/policies/entities.json" \
  "$state/policies/"

# --- processes ------------------------------------------------------------------------------

# Starts upstream.py as NAME (listen address, extra args); waits for its port file.
start_upstream() {
  local name=$1 listen=$2 pid
  shift 2
  rm -f "$state/$name.port"
  python3 "$here/upstream.py" --name "$name" --listen "$listen" \
    --port-file "$state/$name.port" --access-log "$@" \
    >>"$state/$name.out" 2>>"$state/$name.log" {lock_fd}>&- &
  pid=$!
  pids[$name]=$pid
  if ! poll 15 port_file_ready "$name" "$pid"; then
    tail -n 20 "$state/$name.log" >&2 || true
    die "the $name service did not start (log: $state/$name.log)"
  fi
}

port_file_ready() {
  kill -0 "$2" 2>/dev/null || return 2
  [ -s "$state/$1.port" ]
}

start_local() {
  start_upstream local "127.0.0.1:${local_port:-0}"
  local_port=$(<"$state/local.port")
}

start_cloud() {
  start_upstream cloud "127.0.0.1:0" \
    --tls-cert "$pki/cloud.crt" --tls-key "$pki/cloud.key" --client-ca "$bundle"
  cloud_port=$(<"$state/cloud.port")
}

# The proxy config in parts: the node's own file has them all; the fleet repository's
# node.toml (what the control plane ships back as a bundle) has all but the parts the control
# plane fills in (authz, trust) or the node keeps (data_dir, control_plane).
config_node() {
  cat <<EOF
[node]
id = "berlin-gw-1"
site = "berlin"
zone = "berlin-a"
region = "eu-central"
EOF
}

config_serving() {
  cat <<EOF

[identity]
cert = "$pki/proxy.crt"
key = "$pki/proxy.key"

# Clients must present a certificate of the trust domain.
[[listeners]]
name = "mtls"
kind = "mtls"
address = "127.0.0.1:$proxy_port"

[admin]
address = "127.0.0.1:$admin_port"

[[routes]]
name = "app"
path_prefix = "/"
cluster = "app"

[[routes]]
name = "admin"
path_prefix = "/admin"
cluster = "app"

# One service, two places: the site's own endpoint first, the regional cloud when it is down.
[[clusters]]
name = "app"
[clusters.health]
path = "/healthz"
interval = "500ms"
timeout = "400ms"
healthy_threshold = 1
unhealthy_threshold = 1
[clusters.outlier]
consecutive_failures = 1
base_ejection = "1s"
max_ejection = "5s"

[[clusters.endpoints]]
address = "127.0.0.1:$local_port"
site = "berlin"
zone = "berlin-a"
region = "eu-central"

[[clusters.endpoints]]
address = "127.0.0.1:$cloud_port"
site = "cloud"
zone = "eu-central-1"
region = "eu-central"
tls = true
spiffe_id = "$cloud_id"
EOF
}

write_config() {
  {
    echo "# The quickstart's gateway for site berlin, written by examples/quickstart/run.sh."
    echo "# Reference: README.md. Reload with SIGHUP; check with \`edgeward check --config\`."
    echo
    config_node
    echo "data_dir = \"$state/node\""
    config_serving
    cat <<EOF

[[trust_domains]]
name = "$td"
bundle = "$bundle"
crls = ["$pki/berlin.crl"]

[authz]
policies = "$state/policies"
schema = "$state/policies/schema.cedarschema"
entities = "$state/policies/entities.json"

# The control plane ships this node's config and policies from Git ($state/fleet) and
# receives its aggregated telemetry; the node serves on without it.
[control_plane]
address = "127.0.0.1:$cp_quic_port"
spiffe_id = "$cp_id"
telemetry_interval = "2s"
EOF
  } >"$state/proxy.toml"
}

# Writes the node's desired config (its ports as chosen now) and commits it.
commit_node() {
  local fleet=$state/fleet
  {
    config_node
    config_serving
    printf '\n[fleet]\nspiffe_id = "%s"\n' "$proxy_id"
  } >"$fleet/nodes/berlin-gw-1/node.toml"
  git -C "$fleet" add -A
  git -C "$fleet" -c user.name=quickstart -c user.email=quickstart@example.invalid \
    commit -q -m "$1"
}

# The fleet's desired state, a Git repository: this node's config, the repository's policies
# and the trust domain's root; and the control plane's config.
write_fleet() {
  local fleet=$state/fleet
  rm -rf "$fleet"
  mkdir -p "$fleet/shared/policies" "$fleet/shared/trust" "$fleet/sites/berlin" \
    "$fleet/nodes/berlin-gw-1"
  cp "$repo"/policies/*.cedar "$fleet/shared/policies/"
  cp "$repo/policies/schema.cedarschema" "$repo/policies/entities.json" "$fleet/shared/"
  cp "$bundle" "$fleet/shared/trust/$td.pem"
  echo "# Site berlin: everything is in its node's file." >"$fleet/sites/berlin/site.toml"
  git -C "$fleet" init -q -b main
  commit_node "the quickstart fleet"
  cat >"$state/control-plane.toml" <<EOF
# The quickstart's control plane, written by examples/quickstart/run.sh.
[source]
git = "$fleet"
ref = "main"
poll_interval = "1s"

[listen]
quic = "127.0.0.1:$cp_quic_port"
api = "127.0.0.1:$cp_api_port"

[identity]
cert = "$pki/control-plane.crt"
key = "$pki/control-plane.key"
bundle = "$bundle"

[store]
sqlite = "$state/control-plane.db"
EOF
}

admin_ready() {
  kill -0 "${pids[proxy]}" 2>/dev/null || return 2
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$admin_url/readyz")" = 200 ]
}

# Both endpoints pass their health checks (the cloud one over mTLS with its SPIFFE ID pinned).
endpoints_healthy() {
  kill -0 "${pids[proxy]}" 2>/dev/null || return 2
  local m
  m=$(curl -s --max-time 1 "$admin_url/metrics") || return 1
  [ "$(grep -c '^edgeward_endpoint_healthy{.*cluster="app".*} 1$' <<<"$m")" -ge 2 ]
}

pick_proxy_ports() {
  proxy_port=$(free_port)
  admin_port=$(free_port)
  proxy_url=https://127.0.0.1:$proxy_port
  admin_url=http://127.0.0.1:$admin_port
}

start_proxy() {
  local attempt
  for attempt in 1 2 3; do
    if [ "$attempt" -gt 1 ]; then
      pick_proxy_ports
      commit_node "the gateway moved to free ports"
    fi
    write_config
    quiet "$ew" check --config "$state/proxy.toml"
    RUST_LOG=${RUST_LOG:-info} "$ew" proxy --config "$state/proxy.toml" --log-format human \
      >>"$state/proxy.out" 2>>"$state/proxy.log" {lock_fd}>&- &
    pids[proxy]=$!
    if poll 30 admin_ready; then
      return 0
    fi
    if kill -0 "${pids[proxy]}" 2>/dev/null || ! grep -q 'cannot listen' "$state/proxy.log"; then
      tail -n 20 "$state/proxy.log" >&2 || true
      die "the proxy did not become ready (log: $state/proxy.log)"
    fi
    # Another program took a port between free_port and the bind: try new ones.
    wait "${pids[proxy]}" 2>/dev/null || true
    unset 'pids[proxy]'
    info "a port was taken meanwhile (attempt $attempt), trying others"
  done
  die "the proxy could not bind free ports (log: $state/proxy.log)"
}

# The node is online at the control plane and serves the bundle it was given.
node_applied() {
  kill -0 "${pids[proxy]}" 2>/dev/null || return 2
  local j
  j=$(curl -s --max-time 1 "$cp_url/api/nodes/berlin-gw-1") || return 1
  python3 -c 'import json, sys
n = json.load(sys.stdin)
n = n.get("node", n)
ok = n.get("online") and n.get("applied_hash") and n.get("applied_hash") == n.get("desired_hash")
sys.exit(0 if ok else 1)' <<<"$j"
}

cp_ready() {
  kill -0 "${pids[control-plane]}" 2>/dev/null || return 2
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$cp_url/healthz")" = 200 ]
}

# The control plane (SQLite store) on the fleet repository, with its fleet page.
start_control_plane() {
  cp_quic_port=$(free_port)
  cp_api_port=$(free_port)
  cp_url=http://127.0.0.1:$cp_api_port
  write_fleet
  RUST_LOG=${RUST_LOG:-info} "$ew" control-plane --config "$state/control-plane.toml" \
    >>"$state/control-plane.out" 2>>"$state/control-plane.log" {lock_fd}>&- &
  pids[control-plane]=$!
  if ! poll 30 cp_ready; then
    tail -n 20 "$state/control-plane.log" >&2 || true
    die "the control plane did not start (log: $state/control-plane.log)"
  fi
}

cp_pid() { printf '%s' "${pids[control-plane]:-}"; }

write_site_env() {
  local tmp="$state/site.env.tmp"
  {
    echo "# The running quickstart site, written by examples/quickstart/run.sh ($(date -u +%FT%TZ))."
    echo "# Source it: . $state/site.env"
    local kv
    for kv in \
      "EDGEWARD_PROXY_URL=$proxy_url" \
      "EDGEWARD_ADMIN_URL=$admin_url" \
      "EDGEWARD_CP_URL=$cp_url" \
      "EDGEWARD_LOCAL_URL=http://127.0.0.1:$local_port" \
      "EDGEWARD_CLOUD_URL=https://127.0.0.1:$cloud_port" \
      "EDGEWARD_CA_BUNDLE=$bundle" \
      "EDGEWARD_DEVICE_ID=$device_id" \
      "EDGEWARD_DEVICE_CERT=$pki/device.crt" \
      "EDGEWARD_DEVICE_KEY=$pki/device.key" \
      "EDGEWARD_OPERATOR_ID=$operator_id" \
      "EDGEWARD_OPERATOR_CERT=$pki/operator.crt" \
      "EDGEWARD_OPERATOR_KEY=$pki/operator.key" \
      "EDGEWARD_PROXY_CONFIG=$state/proxy.toml" \
      "EDGEWARD_PROXY_PID=${pids[proxy]}" \
      "EDGEWARD_CP_PID=$(cp_pid)" \
      "EDGEWARD_LOCAL_PID=${pids[local]}" \
      "EDGEWARD_CLOUD_PID=${pids[cloud]}"; do
      printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
  } >"$tmp"
  mv -f "$tmp" "$state/site.env"
}

section "start the site"
local_port=
start_local
info "local service (plaintext, x-served-by: local)  http://127.0.0.1:$local_port  pid ${pids[local]}"
start_cloud
info "cloud service (HTTPS, requires client certs)     https://127.0.0.1:$cloud_port  pid ${pids[cloud]}"
pick_proxy_ports
start_control_plane
info "control plane (SQLite, Git in $state/fleet)"
info "                                                $cp_url  pid ${pids[control-plane]}"
start_proxy
info "proxy (mTLS listener)                           $proxy_url  pid ${pids[proxy]}"
info "proxy admin                                     $admin_url"
if ! poll 20 endpoints_healthy; then
  curl -s --max-time 2 "$admin_url/metrics" | grep '^edgeward_endpoint_healthy' >&2 || true
  die "the proxy does not see both endpoints healthy (log: $state/proxy.log)"
fi
info "the proxy's health checks pass for both endpoints (cloud: mTLS, SPIFFE ID pinned)"
if ! poll 30 node_applied; then
  tail -n 20 "$state/control-plane.log" >&2 || true
  die "the node did not apply its bundle from the control plane (logs: $state/proxy.log, $state/control-plane.log)"
fi
info "the node registered with the control plane and applied its bundle from Git"
write_site_env
info "site.env: $state/site.env"

# --- staying up -----------------------------------------------------------------------------

stay_up() {
  section "the site is up"
  info "proxy $proxy_url   admin $admin_url/metrics"
  info "site.env: . $state/site.env"
  info "try: curl --cacert $bundle --cert $pki/device.crt --key $pki/device.key $proxy_url/"
  info "Ctrl-C (or SIGTERM to pid $$) stops everything"
  while true; do
    local pid_list=() name
    for name in "${!pids[@]}"; do pid_list+=("${pids[$name]}"); done
    # Returns when a child exits, or at once when a signal arrives (the trap runs).
    wait -n "${pid_list[@]}" || true
    for name in "${!pids[@]}"; do
      if ! kill -0 "${pids[$name]}" 2>/dev/null; then
        unset "pids[$name]"
        if [ "$name" = control-plane ]; then
          # The node does not need it to serve: that is the point. Watch the rest.
          printf 'run.sh: the control plane exited; the proxy serves on without it (logs in %s)\n' "$state" >&2
          continue
        fi
        printf 'run.sh: the %s process exited; stopping the site (logs in %s)\n' "$name" "$state" >&2
        exit 1
      fi
    done
  done
}

if [ "$mode" = up ]; then
  stay_up
fi

# --- the walk -------------------------------------------------------------------------------

# call WHO PATH [curl args...]: a request through the proxy as device, operator or none.
# Sets code (000 when curl failed), http_version, served_by, body, curl_rc, curl_err.
call() {
  local who=$1 path=$2 creds=()
  shift 2
  case "$who" in
    device) creds=(--cert "$pki/device.crt" --key "$pki/device.key") ;;
    operator) creds=(--cert "$pki/operator.crt" --key "$pki/operator.key") ;;
    none) ;;
  esac
  local out err
  out=$(mktemp "$state/.curl.XXXXXX")
  err=$(mktemp "$state/.curl.XXXXXX")
  curl_rc=0
  code=$(curl -sS --max-time 5 --cacert "$bundle" "${creds[@]}" -D "$out.h" -o "$out" \
    -w '%{http_code} %{http_version}' "$@" "$proxy_url$path" 2>"$err") || curl_rc=$?
  http_version=${code#* }
  code=${code%% *}
  [ -n "$code" ] || code=000
  served_by=$(tr -d '\r' <"$out.h" 2>/dev/null | awk -F': *' 'tolower($1) == "x-served-by" { v = $2 } END { print v }')
  body=$(<"$out")
  curl_err=$(head -n 1 "$err")
  rm -f "$out" "$out.h" "$err"
}

# The proxy's access-log line for the last request of PEER to PATH (polled: it is written
# once the response is done).
access_line() {
  local peer=$1 path=$2 since=$3
  tail -c +"$since" "$state/proxy.log" | grep 'edgeward::access' | grep -F "peer.id=$peer" |
    grep -F "path=\"$path\"" | tail -n 1
}

log_size() { stat -c %s "$state/proxy.log"; }

wait_access_line() {
  line=$(access_line "$@")
  [ -n "$line" ]
}

# The value of KEY=value in an access-log line (values in quotes or bare).
field() {
  sed -nE "s/.* $1=(\"[^\"]*\"|[^ ]*).*/\\1/p" <<<"$2" | tr -d '"'
}

step=0
steps=9
heading() {
  step=$((step + 1))
  section "[$step/$steps] $*"
}

heading "the device, HTTP/1.1"
since=$(($(log_size) + 1))
call device /hello --http1.1
if [ "$code" = 200 ] && [ "$served_by" = local ] && [ "$http_version" = 1.1 ]; then
  poll 3 wait_access_line "$device_id" /hello "$since" || line=
  ok "sensor-1 GET /hello -> $code from x-served-by: $served_by (HTTP/$http_version)"
  info "its certificate proved who it is; Cedar permitted it (policy $(field policies "$line")); the site's own service answered"
else
  bad "the device over HTTP/1.1: expected 200 from local, got $code from '${served_by}' (HTTP/$http_version) $curl_err"
fi
pause

heading "the device, HTTP/2"
call device /hello --http2
if [ "$code" = 200 ] && [ "$served_by" = local ] && [ "$http_version" = 2 ]; then
  ok "sensor-1 GET /hello -> $code from x-served-by: $served_by (HTTP/$http_version, ALPN h2)"
  info "the same decision over HTTP/2; the proxy speaks HTTP/1.1 to the service behind it"
else
  bad "the device over HTTP/2: expected 200 from local over HTTP/2, got $code from '${served_by}' (HTTP/$http_version) $curl_err"
fi
pause

heading "what the service receives: /echo"
# The device also claims to be alice in a header: the proxy must not pass that on.
call device /echo -H "x-edgeward-peer-id: $operator_id"
if [ "$code" = 200 ] && [ "$(grep -c '"x-edgeward-peer-id"' <<<"$body")" = 1 ] &&
  grep -qF "\"x-edgeward-peer-id\", \"$device_id\"" <<<"$body"; then
  ok "sensor-1 sent 'x-edgeward-peer-id: ...alice'; the service got only the verified identity:"
  indent <<<"$body"
else
  bad "/echo: expected 200 with exactly one x-edgeward-peer-id, $device_id; got $code:"
  indent <<<"$body"
fi
pause

heading "the device asks for /admin"
since=$(($(log_size) + 1))
call device /admin/config
if [ "$code" = 403 ]; then
  line=
  poll 3 wait_access_line "$device_id" /admin/config "$since" || true
  decided=$(field policies "$line")
  if [ -n "$line" ] && [ "$decided" = baseline-no-device-admin ]; then
    ok "sensor-1 GET /admin/config -> 403; the proxy's access log names the deciding policy:"
    printf '      %s\n' "$line"
  else
    bad "the device on /admin: 403, but no access-log line naming baseline-no-device-admin (found: ${line:-none})"
  fi
else
  bad "the device on /admin: expected 403, got $code from '${served_by}' $curl_err"
fi
pause

heading "the operator asks for /admin"
since=$(($(log_size) + 1))
call operator /admin/config
if [ "$code" = 200 ]; then
  poll 3 wait_access_line "$operator_id" /admin/config "$since" || line=
  ok "alice GET /admin/config -> 200 from x-served-by: $served_by"
  info "alice is in group operators (entities.json); permitted by $(field policies "$line") (site network or loopback, with a client certificate)"
else
  bad "the operator on /admin: expected 200, got $code $curl_err"
fi
pause

heading "no client certificate"
call none /hello
if [ "$code" = 000 ] && [ "$curl_rc" -ne 0 ]; then
  # With TLS 1.3 the refusal arrives after curl's side of the handshake: curl reports either
  # the proxy's alert or the closed connection, depending on timing.
  case "$curl_err" in
    *"certificate required"*) reason="the proxy's alert: certificate required" ;;
    *) reason="the proxy closed the connection" ;;
  esac
  ok "curl without --cert is refused in the TLS handshake (curl exit $curl_rc, $reason)"
  info "the mtls listener requires a certificate of trust domain $td: no identity, no request"
else
  bad "no client certificate: expected the handshake to be refused, got HTTP $code"
fi
pause

# Requests until the answer comes from SERVED; counts non-200 answers on the way.
wait_served_by() {
  call device /hello
  [ "$code" = 200 ] || errors=$((errors + 1))
  [ "$code" = 200 ] && [ "$served_by" = "$1" ]
}

heading "the local service stops"
stop_pid "${pids[local]}"
unset 'pids[local]'
info "stopped the local service (pid gone); asking again as sensor-1..."
errors=0
t0=$(date +%s%N)
if poll 15 wait_served_by cloud; then
  ms=$((($(date +%s%N) - t0) / 1000000))
  ok "sensor-1 GET /hello -> 200 from x-served-by: cloud (after ${ms} ms, $errors error answers on the way)"
  info "the proxy failed over to the regional cloud endpoint, over mTLS to its pinned SPIFFE ID $cloud_id"
  call device /echo
  seen=$(sed -nE 's/.*"peer_cert_uri": "([^"]*)".*/\1/p' <<<"$body")
  if [ "$seen" = "$proxy_id" ]; then
    info "the cloud service saw the proxy's own certificate: $seen"
  else
    bad "failover: the cloud service should see the proxy's certificate $proxy_id, saw '${seen}' ($code from '${served_by}')"
  fi
else
  bad "failover: no 200 from the cloud within 15 s after stopping local (last: $code from '${served_by}', $errors errors)"
fi
pause

heading "the local service comes back"
start_local
write_site_env
info "restarted the local service on port $local_port (pid ${pids[local]}); asking again..."
errors=0
t0=$(date +%s%N)
if poll 15 wait_served_by local; then
  ms=$((($(date +%s%N) - t0) / 1000000))
  ok "sensor-1 GET /hello -> 200 from x-served-by: local (after ${ms} ms, $errors error answers on the way)"
  info "traffic returned to the site once its health check passed: it stays local while it can"
else
  bad "failback: no 200 from local within 15 s after restarting it (last: $code from '${served_by}', $errors errors)"
fi
pause

heading "where to look"
# Captured first: `curl | grep -q` fails under pipefail when grep stops reading early.
metrics=$(curl -s --max-time 2 "$admin_url/metrics" || true)
if grep -q '^edgeward_requests_total' <<<"$metrics"; then
  ok "admin: $admin_url  (/metrics, /readyz, /healthz, /config)"
else
  bad "admin: $admin_url/metrics did not answer with metrics"
fi
# The control plane's view: the node's telemetry arrives every 2 s, aggregates only.
fleet_counts() {
  fleet_line=$(curl -s --max-time 1 "$cp_url/api/nodes/berlin-gw-1" | python3 -c 'import json, sys
n = json.load(sys.stdin)["node"]
s = n["summary"]
if not (n["online"] and n["in_sync"] and s["requests_1h"] > 0):
    sys.exit(1)
print("berlin-gw-1 online, bundle %s applied (= desired), %d requests, %d denied, %d failovers reported" % (
    (n["applied_hash"] or "")[:12], s["requests_1h"], s["denies_1h"], s["failovers_1h"]))') || return 1
}
if poll 10 fleet_counts; then
  ok "fleet page: $cp_url  (JSON: $cp_url/api/fleet)"
  info "the control plane sees $fleet_line"
else
  bad "fleet page: $cp_url does not show berlin-gw-1 online, in sync, with its requests"
fi
info "logs: $state/proxy.log (access events), local.log, cloud.log; config: $state/proxy.toml"
if [ -n "${created_tmp:-}" ]; then
  info "(a temporary folder, removed when the site stops: --state-dir DIR keeps them)"
fi

section "summary"
if [ "${#failures[@]}" -gt 0 ]; then
  printf '   %s%d step(s) misbehaved:%s\n' "$r" "${#failures[@]}" "$n"
  printf '   - %s\n' "${failures[@]}"
  [ "$mode" = check ] && exit 1
else
  ok "every step behaved as described"
  [ "$mode" = check ] && exit 0
fi

stay_up
