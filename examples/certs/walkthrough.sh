#!/usr/bin/env bash
# The certificate walkthrough of the README, in a temporary folder: a trust domain, a site CA,
# a service certificate, a device certificate through a CSR, inspect, verify, revoke.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --quiet --manifest-path "$root/Cargo.toml" --bin edgeward
ew="$root/target/debug/edgeward"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

step() { printf '\n== %s\n' "$*"; }

step "create the trust domain acme.example and the berlin site CA"
"$ew" ca init --trust-domain acme.example --out pki/root
"$ew" ca intermediate --ca pki/root --name berlin --out pki/berlin --path-prefix /site/berlin

step "issue a service certificate"
"$ew" cert issue spiffe://acme.example/site/berlin/service/api --ca pki/berlin --out pki/api --dns api.berlin.local

step "issue a device certificate through a CSR (the key stays on the device)"
"$ew" cert csr spiffe://acme.example/site/berlin/device/cam-7 --out cam
"$ew" cert sign cam.csr --ca pki/berlin --out cam.crt

step "inspect the device certificate"
"$ew" cert inspect cam.crt

step "verify both against the root"
"$ew" cert verify pki/api.crt --bundle pki/root/ca.crt
"$ew" cert verify cam.crt --bundle pki/root/ca.crt

step "an ID outside the site's prefix is refused"
if "$ew" cert issue spiffe://acme.example/site/paris/service/api --ca pki/berlin --out pki/paris; then
  echo "unexpected: the berlin CA issued a paris ID" >&2; exit 1
fi

step "revoke the device, publish a CRL, verify again"
"$ew" cert revoke cam.crt --ca pki/berlin --reason key-compromise
"$ew" ca crl --ca pki/berlin --out pki/berlin.crl
if "$ew" cert verify cam.crt --bundle pki/root/ca.crt --crl pki/berlin.crl; then
  echo "unexpected: a revoked certificate verified" >&2; exit 1
fi
"$ew" cert verify pki/api.crt --bundle pki/root/ca.crt --crl pki/berlin.crl

step "done: the device is revoked, the service is still valid"
