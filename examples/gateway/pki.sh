#!/usr/bin/env bash
# Creates the certificates examples/gateway/proxy.toml names, with the Edgeward CLI:
# the trust domain acme.example, a site CA for berlin and a regional CA for eu-central, the
# gateway's SVID, a device (sensor-1), the cloud service's SVID and the site's CRL.
#
#   examples/gateway/pki.sh [DIR]     (default: examples/gateway/pki; EDGEWARD_BIN=path/to/edgeward)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/pki}
ew=${EDGEWARD_BIN:-edgeward}
command -v "$ew" >/dev/null 2>&1 || {
  echo "pki.sh: $ew not found: build it (cargo build --release) and put target/release on PATH, or set EDGEWARD_BIN" >&2
  exit 2
}
td=acme.example

"$ew" ca init --trust-domain $td --out "$out/root"
"$ew" ca intermediate --ca "$out/root" --name berlin --out "$out/berlin" --path-prefix /site/berlin
"$ew" ca intermediate --ca "$out/root" --name eu-central --out "$out/eu-central" --path-prefix /region/eu-central
"$ew" cert issue spiffe://$td/site/berlin/service/gateway --ca "$out/berlin" --out "$out/gateway" \
  --dns localhost --ip 127.0.0.1
"$ew" cert issue spiffe://$td/site/berlin/device/sensor-1 --ca "$out/berlin" --out "$out/sensor-1"
"$ew" cert issue spiffe://$td/region/eu-central/service/api --ca "$out/eu-central" --out "$out/cloud" \
  --dns localhost --ip 127.0.0.1
"$ew" ca crl --ca "$out/berlin" --out "$out/berlin.crl"
echo "certificates in $out"
