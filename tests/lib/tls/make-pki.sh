#!/bin/sh
# Makes the test PKI of this folder (tests only: the private keys here protect nothing). Run from
# anywhere: `sh tests/lib/tls/make-pki.sh`; it rewrites every .pem here with new keys and a new
# test CA (whose key is then thrown away: rerun this script to add a certificate). P-256 keys,
# valid for 100 years; every leaf has subjectAltName DNS:deltasync (the default cluster name) and
# extended key usage serverAuth + clientAuth, as lib/tls.h requires. Needs openssl.
set -eu
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ca() {  # name: a self-signed CA certificate, its key kept in $work
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/$1.key"
  openssl req -new -x509 -key "$work/$1.key" -subj "/CN=$1" -days 36500 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
}

leaf() {  # file name, subject CN, CA name
  openssl ecparam -name prime256v1 -genkey -noout -out "$work/$1.ec"
  openssl pkcs8 -topk8 -nocrypt -in "$work/$1.ec" -out "$1-key.pem"
  openssl req -new -key "$1-key.pem" -subj "/CN=$2" -out "$work/$1.csr"
  printf 'subjectAltName=DNS:deltasync\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$3.pem" -CAkey "$work/$3.key" -CAcreateserial -CAserial "$work/$3.srl" -days 36500 -sha256 \
    -extfile "$work/$1.ext" -out "$1.pem" 2>/dev/null
}

ca cluster-ca
ca rogue-ca
for i in 1 2 3; do leaf "replica-$i" "replica-$i" cluster-ca; done
leaf admin client-admin cluster-ca
leaf rogue-9 replica-9 rogue-ca
leaf not-a-replica someone cluster-ca
echo "test PKI written to $(pwd)"
