#!/bin/sh
# gen_certs.sh DIR - test certificates for sharemig's TLS tests.
#
#   ca.pem ca.key                    the good CA
#   a.pem a.key, b.pem b.key         hosts signed by it
#                                    (SAN IP:127.0.0.1, IP:::1, DNS:localhost)
#   evil-ca.pem evil-ca.key          an unrelated CA
#   evil.pem evil.key                a host signed by the unrelated CA
#   wrongname.pem wrongname.key      signed by the good CA, SAN
#                                    DNS:example.invalid only
#
# EC P-256 keys, no prompts.  Does nothing if every file is already there.
set -eu

dir=${1:?usage: gen_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"

all="ca.pem ca.key a.pem a.key b.pem b.key evil-ca.pem evil-ca.key \
evil.pem evil.key wrongname.pem wrongname.key"
missing=0
for f in $all; do
	[ -s "$f" ] || missing=1
done
[ "$missing" = 0 ] && exit 0

umask 077
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gen_certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# ca NAME CN
ca() {
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
	    -nodes -keyout "$1.key" -out "$1.pem" -days 3650 -subj "/CN=$2" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# host NAME CN CA SAN
host() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	    -keyout "$1.key" -out "$tmp/$1.csr" -subj "/CN=$2" 2>/dev/null
	cat > "$tmp/$1.ext" <<END
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$4
END
	openssl x509 -req -in "$tmp/$1.csr" -CA "$3.pem" -CAkey "$3.key" \
	    -CAcreateserial -CAserial "$tmp/$3.srl" -days 3650 \
	    -extfile "$tmp/$1.ext" -out "$1.pem" 2>/dev/null
}

san="IP:127.0.0.1,IP:::1,DNS:localhost"
ca ca "sharemig test CA"
host a "host-a" ca "$san"
host b "host-b" ca "$san"
host wrongname "wrongname" ca "DNS:example.invalid"
ca evil-ca "evil CA"
host evil "evil" evil-ca "$san"
chmod 644 ./*.pem
