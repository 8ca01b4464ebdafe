#!/bin/bash
# A private CA and one certificate for every dask process of one deployment (scheduler,
# workers, clients). Whoever holds a certificate signed by this CA can run code on the cluster:
# keep ca-key.pem offline and the folder readable by the deployment's user only.
#   ./deploy/docker/make-certs.sh deploy/docker/certs [scheduler-hostname]
set -euo pipefail
DIR=${1:?folder}
HOST=${2:-scheduler}
DAYS=${DAYS:-365}
mkdir -p "$DIR" && chmod 700 "$DIR" && cd "$DIR"
openssl req -x509 -newkey rsa:4096 -sha256 -nodes -days "$DAYS" \
  -keyout ca-key.pem -out ca.pem -subj "/CN=pathosam-dask-ca"
openssl req -newkey rsa:4096 -sha256 -nodes -keyout node-key.pem -out node.csr \
  -subj "/CN=$HOST"
printf "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n" \
  "$HOST" > node.ext
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$DAYS" \
  -sha256 -extfile node.ext -out node.pem
rm -f node.csr node.ext ca.srl
chmod 600 ./*-key.pem
echo "wrote $DIR/{ca.pem,node.pem,node-key.pem}; move ca-key.pem somewhere safe"
