#!/bin/sh
# certs/mkcerts.sh OUTDIR — make throw-away TEST certificates for moat's tests and demo.
#
# Writes into OUTDIR (created if missing):
#   ca.pem / ca.key         a test CA (ECDSA P-256, 10 years)
#   ecdsa.pem / ecdsa.key   server cert, ECDSA P-256, signed by the CA
#   rsa.pem / rsa.key       server cert, RSA-2048, signed by the CA
#   other.pem / other.key   second ECDSA server cert for SNI tests (DNS:other.moat.test)
#   soon.pem / soon.key     ECDSA server cert that expires in 3 days (DNS:soon.moat.test),
#                           for the expiry warning and metric
# The two main server certs carry SAN DNS:localhost, DNS:mx.moat.test, IP:127.0.0.1.
#
# Idempotent: files that already exist are kept (delete OUTDIR to start over). Quiet unless
# something fails. These are NEVER real keys: keys are world-readable on purpose so that an
# unprivileged moat (and the tests) can read them.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"
cd "$out"

# openssl's stderr is noisy even on success; keep it and show it only on failure.
err=$(mktemp)
trap 'rm -f "$err" ./*.csr ./*.ext' EXIT
run() {
    if ! "$@" 2>"$err" >/dev/null; then
        cat "$err" >&2
        echo "mkcerts.sh: failed: $*" >&2
        exit 1
    fi
}

if [ ! -s ca.pem ] || [ ! -s ca.key ]; then
    run openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    run openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/O=moat test/CN=moat test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out ca.pem
fi

# leaf NAME KEYTYPE SAN [DAYS]: make NAME.key (if missing) and NAME.pem signed by the CA.
leaf() {
    name=$1 keytype=$2 san=$3 days=${4:-825}
    [ -s "$name.pem" ] && [ -s "$name.key" ] && return 0
    case $keytype in
    ec)  run openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" ;;
    rsa) run openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" ;;
    esac
    cn=${san#DNS:}; cn=${cn%%,*}
    run openssl req -new -key "$name.key" -subj "/O=moat test/CN=$cn" -out "$name.csr"
    cat >"$name.ext" <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
EOF
    run openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -sha256 -days "$days" \
        -set_serial "0x$(openssl rand -hex 8)" -extfile "$name.ext" -out "$name.pem"
}

main_san="DNS:mx.moat.test,DNS:localhost,IP:127.0.0.1"
leaf ecdsa ec "$main_san"
leaf rsa rsa "$main_san"
leaf other ec "DNS:other.moat.test"
leaf soon ec "DNS:soon.moat.test" 3

chmod 0644 ./*.pem ./*.key
