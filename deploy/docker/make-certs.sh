#!/bin/bash
# A private CA and one certificate for every dask process of one deployment (scheduler,
# workers, clients). Whoever holds a certificate signed by this CA can run code on the cluster.
#   sudo ./deploy/docker/make-certs.sh deploy/docker/certs [scheduler-hostname]
# Writes DIR/{ca.pem,node.pem,node-key.pem}: the folder compose mounts at /certs (read-only).
# node-key.pem is mode 0400 and owned by the image's user (uid 10001, WORKER_UID to change):
# the containers run as that user and must read it, nobody else may. Root is needed for that
# chown; without root the script stops before writing anything.
# The CA key goes to DIR.ca/ca-key.pem (mode 0400, this user), outside the mounted folder:
# move it offline; it is only needed to issue the next certificates.
set -euo pipefail
DIR=${1:?folder}
HOST=${2:-scheduler}
DAYS=${DAYS:-365}
BITS=${BITS:-4096}
WORKER_UID=${WORKER_UID:-10001}
if [[ $(id -u) -ne 0 ]]; then
  echo "make-certs.sh: run as root (sudo) so that node-key.pem can be owned by uid" \
    "$WORKER_UID, the user the containers run as; got uid $(id -u)" >&2
  exit 2
fi
CA_DIR="$DIR.ca"
mkdir -p "$DIR" "$CA_DIR"
chmod 755 "$DIR"
chmod 700 "$CA_DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
openssl req -x509 -newkey "rsa:$BITS" -sha256 -nodes -days "$DAYS" \
  -keyout "$CA_DIR/ca-key.pem" -out "$DIR/ca.pem" -subj "/CN=pathosam-dask-ca" 2>/dev/null
openssl req -newkey "rsa:$BITS" -sha256 -nodes -keyout "$DIR/node-key.pem" -out "$TMP/node.csr" \
  -subj "/CN=$HOST" 2>/dev/null
printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n" \
  "$HOST" > "$TMP/node.ext"
openssl x509 -req -in "$TMP/node.csr" -CA "$DIR/ca.pem" -CAkey "$CA_DIR/ca-key.pem" \
  -CAcreateserial -CAserial "$TMP/ca.srl" -days "$DAYS" -sha256 -extfile "$TMP/node.ext" \
  -out "$DIR/node.pem" 2>/dev/null
chmod 644 "$DIR/ca.pem" "$DIR/node.pem"
chown "$WORKER_UID:$WORKER_UID" "$DIR/node-key.pem"
chmod 400 "$DIR/node-key.pem" "$CA_DIR/ca-key.pem"
echo "wrote $DIR/{ca.pem,node.pem,node-key.pem} (key: uid $WORKER_UID, 0400);" \
  "CA key in $CA_DIR/ca-key.pem: move it offline"
