#!/usr/bin/env bash
# Brings up the example fleet's control plane: a trust domain and the control plane's SVID
# (made with the certificate CLI), the root as the fleet's trust material, then
# `edgeward control-plane` on `control-plane.toml`. Generated files (pki/, state/,
# desired/shared/trust/) stay in this folder and are ignored by Git.
#
#   examples/fleet/up.sh            # then open http://127.0.0.1:7080/
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ew="${EDGEWARD:-$here/../../target/debug/edgeward}"
cd "$here"

if [[ ! -f pki/root/ca.crt ]]; then
  "$ew" ca init --trust-domain acme.example --out pki/root
  "$ew" ca intermediate --ca pki/root --name berlin --out pki/berlin --path-prefix /site/berlin
  "$ew" ca intermediate --ca pki/root --name paris --out pki/paris --path-prefix /site/paris
  "$ew" cert issue spiffe://acme.example/control-plane --ca pki/root --out pki/control-plane --dns localhost
  "$ew" cert issue spiffe://acme.example/site/berlin/node/berlin-gw-1 --ca pki/berlin --out pki/berlin-gw-1
  "$ew" cert issue spiffe://acme.example/site/paris/node/paris-gw-1 --ca pki/paris --out pki/paris-gw-1
fi
mkdir -p desired/shared/trust state
cp pki/root/ca.crt desired/shared/trust/acme.example.pem

exec "$ew" control-plane --config control-plane.toml
