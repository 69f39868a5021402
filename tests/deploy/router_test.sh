#!/usr/bin/env bash
# The router configuration, offline:
# * render.sh refuses bad input with its documented exit codes;
# * its output for three loopback nodes passes `nginx -t`;
# * its TLS options (both legs) render configurations that pass `nginx -t`
#   with throw-away certificates (tests/router runs them for real);
# * the committed configurations (deploy/router/nginx.conf and the one in
#   deploy/k8s/router-configmap.yaml) are exactly what their generators make
#   from the arguments recorded in them, and pass `nginx -t`;
# * the router image's entrypoint renders from SBX_NODES and starts nginx
#   on that configuration.
# nginx only tests configurations here, in a temporary directory (runtime
# paths and listen addresses are moved there); router_grpc_test.py runs it.
# Run from the repository root.
set -euo pipefail
command -v nginx >/dev/null || { echo "nginx is missing (scripts/deps/deploy.list)"; exit 1; }
command -v openssl >/dev/null || { echo "openssl is missing (scripts/deps/deploy.list)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
render=deploy/router/render.sh

# nginx -t on FILE, with its runtime directory and listen address moved into
# the temporary directory (nginx -t creates the temp paths it names).
nginx_t() {
  local file=$1 copy="$tmp/t.$RANDOM.conf" rt="$tmp/rt.$RANDOM" dir
  dir=$(sed -n 's/^ *pid \(.*\)\/nginx.pid;$/\1/p' "$file")
  [ -n "$dir" ] || { fail "$file: no 'pid DIR/nginx.pid;' line"; return; }
  mkdir -p "$rt"
  sed -e "s#$dir/#$rt/#g" -e 's/^\( *listen \)[^ ]*\( http2;\)$/\1127.0.0.1:1\2/' "$file" >"$copy"
  nginx -e stderr -q -t -c "$copy" || fail "nginx -t rejects $file"
}

# ---- render.sh input checks -------------------------------------------------
expect_rc() {
  local want=$1 rc=0
  shift
  "$render" "$@" >/dev/null 2>"$tmp/err" || rc=$?
  [ "$rc" = "$want" ] || fail "render.sh $* exited $rc, want $want ($(cat "$tmp/err"))"
}
expect_rc 2
expect_rc 2 --listen
expect_rc 2 --bogus a=127.0.0.1:1
expect_rc 2 a
expect_rc 2 Upper=127.0.0.1:1
expect_rc 2 a=127.0.0.1
expect_rc 2 a=127.0.0.1:70000
expect_rc 2 a=127.0.0.1:1 a=127.0.0.1:2
expect_rc 2 a=127.0.0.1:1 b=127.0.0.1:1
expect_rc 2 --runtime-dir relative a=127.0.0.1:1
expect_rc 2 --access-log stdout a=127.0.0.1:1
expect_rc 3 a=no-such-host.invalid:1
expect_rc 0 a=127.0.0.1:1 "b=[::1]:2" c=localhost:3

# ---- three loopback nodes ---------------------------------------------------
mkdir -p "$tmp/three"
"$render" --listen 127.0.0.1:1 --runtime-dir "$tmp/three" \
  node-a=127.0.0.1:50051 node-b=127.0.0.1:50052 node-c=127.0.0.1:50053 >"$tmp/three.conf"
nginx -e stderr -q -t -c "$tmp/three.conf" || fail "nginx -t rejects the three-node config"
for n in 1 2 3; do
  grep -q "upstream sbx_node_$n {" "$tmp/three.conf" || fail "no upstream for node $n"
done
[ "$(grep -c 'max_fails=1' "$tmp/three.conf")" = 3 ] || fail "sbx_all must list the three nodes"

# ---- TLS ----------------------------------------------------------------------
# A certificate and key nginx can load, and one file it could not.
pem=$tmp/pem
mkdir -p "$pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -keyout "$pem/key.pem" -out "$pem/cert.pem" 2>/dev/null
crt=$pem/cert.pem key=$pem/key.pem
touch "$pem/semi;colon.pem"
one=a=localhost:1
expect_rc 2 --tls-cert "$crt" $one                                  # a certificate without its key
expect_rc 2 --tls-key "$key" $one
expect_rc 2 --tls-cert cert.pem --tls-key "$key" $one                # relative
expect_rc 2 --tls-cert "$pem/missing.pem" --tls-key "$key" $one      # unreadable
expect_rc 2 --tls-cert "$pem" --tls-key "$key" $one                  # a directory
expect_rc 2 --tls-cert "$pem/semi;colon.pem" --tls-key "$key" $one   # would break the config
expect_rc 2 --tls-cert= --tls-key "$key" $one                        # empty
expect_rc 2 --tls-client-ca "$crt" $one                              # client CA, no TLS
expect_rc 2 --node-tls-cert "$crt" --node-tls-key "$key" $one        # no --node-tls-ca
expect_rc 2 --node-tls-ca "$crt" --node-tls-cert "$crt" $one
expect_rc 2 --node-tls-ca "$crt" --node-tls-key "$key" $one
expect_rc 2 --node-tls-name sbxd.test $one
expect_rc 2 --node-tls-ca "$crt" a=127.0.0.1:1                       # an address: no name to check
expect_rc 2 --node-tls-ca "$crt" "a=[::1]:1"
expect_rc 2 --node-tls-ca "$crt" --node-tls-name 192.0.2.1 $one
expect_rc 2 --node-tls-ca "$crt" --node-tls-name -bad $one
expect_rc 0 --node-tls-ca "$crt" --node-tls-name sbxd.test a=127.0.0.1:1

# Both legs, every option: what nginx -t accepts, and what it must say.
mkdir -p "$tmp/tls"
"$render" --listen 127.0.0.1:1 --runtime-dir "$tmp/tls" --tls-cert "$crt" --tls-key "$key" \
  --tls-client-ca "$crt" --node-tls-ca "$crt" --node-tls-cert "$crt" --node-tls-key "$key" \
  a=localhost:50051 b=localhost:50052 >"$tmp/tls.conf"
nginx -e stderr -q -t -c "$tmp/tls.conf" || fail "nginx -t rejects the TLS config"
# shellcheck disable=SC2016 # nginx variables, literally
for want in '    listen 127.0.0.1:1 ssl http2;' "    ssl_certificate $crt;" \
  "    ssl_certificate_key $key;" '    ssl_protocols TLSv1.2 TLSv1.3;' \
  "    ssl_client_certificate $crt;" '    ssl_verify_client on;' \
  '    error_page 495 496 = /.sbx-router/unauthenticated;' \
  '      add_header grpc-status 16 always;' \
  '      grpc_pass grpcs://$sbx_upstream;' "    grpc_ssl_trusted_certificate $crt;" \
  '    grpc_ssl_verify on;' '    grpc_ssl_name $sbx_node_tls_name;' \
  "    grpc_ssl_certificate $crt;" "    grpc_ssl_certificate_key $key;" \
  '    "~(^|, )127\.0\.0\.1:50051$" "localhost";' '    "~(^|, )127\.0\.0\.1:50052$" "localhost";'; do
  grep -qxF -- "$want" "$tmp/tls.conf" || fail "the TLS config lacks: $want"
done
# shellcheck disable=SC2016
grep -A1 'map $upstream_addr $sbx_node_tls_name {' "$tmp/tls.conf" | grep -qx '    volatile;' ||
  fail "the node name map must be volatile (re-evaluated for each node tried)"
# One leg at a time; a fixed node name needs no map.
"$render" --listen 127.0.0.1:1 --runtime-dir "$tmp/tls" --tls-cert "$crt" --tls-key "$key" \
  $one >"$tmp/tls-client.conf"
nginx -e stderr -q -t -c "$tmp/tls-client.conf" || fail "nginx -t rejects the client-TLS config"
grep -q 'grpc_pass grpc://' "$tmp/tls-client.conf" || fail "client TLS alone must keep cleartext nodes"
! grep -q 'ssl_verify_client' "$tmp/tls-client.conf" || fail "client certificates without --tls-client-ca"
"$render" --listen 127.0.0.1:1 --runtime-dir "$tmp/tls" --node-tls-ca "$crt" \
  --node-tls-name sbxd.test a=127.0.0.1:50051 >"$tmp/tls-node.conf"
nginx -e stderr -q -t -c "$tmp/tls-node.conf" || fail "nginx -t rejects the node-TLS config"
grep -qx '    listen 127.0.0.1:1 http2;' "$tmp/tls-node.conf" || fail "node TLS alone must keep a cleartext listener"
grep -qx '    grpc_ssl_name sbxd.test;' "$tmp/tls-node.conf" || fail "--node-tls-name is not the name checked"
! grep -q 'sbx_node_tls_name' "$tmp/tls-node.conf" || fail "a fixed node name needs no map"
# The default stays cleartext on both legs.
! grep -Eq 'ssl|grpcs' "$tmp/three.conf" || fail "the default config must not mention TLS"

# ---- the committed configurations are their generators' output -------------
recorded_args() { sed -n "s#^ *\#   $1 ##p" "$2" | head -1; }

args=$(recorded_args deploy/router/render.sh deploy/router/nginx.conf)
[ -n "$args" ] || fail "deploy/router/nginx.conf does not record its render.sh arguments"
# shellcheck disable=SC2086 # recorded arguments are words
"$render" $args | diff -u deploy/router/nginx.conf - >"$tmp/diff" ||
  fail "deploy/router/nginx.conf is not render.sh's output; re-render it:$(printf '\n'; cat "$tmp/diff")"
nginx_t deploy/router/nginx.conf

cm=deploy/k8s/router-configmap.yaml
args=$(recorded_args deploy/k8s/render-router-configmap.sh "$cm")
[ -n "$args" ] || fail "$cm does not record its generator's arguments"
# shellcheck disable=SC2086
deploy/k8s/render-router-configmap.sh $args | diff -u "$cm" - >"$tmp/diff" ||
  fail "$cm is not render-router-configmap.sh's output; re-render it:$(printf '\n'; cat "$tmp/diff")"
/usr/bin/python3 -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open(sys.argv[1]))["data"]["nginx.conf"])' \
  "$cm" >"$tmp/k8s.conf"
nginx_t "$tmp/k8s.conf"
grep -q 'pid /tmp/sbx-router/nginx.pid;' "$tmp/k8s.conf" ||
  fail "$cm: the router pod's writable runtime directory is /tmp/sbx-router"
grep -Eq '^    listen 0\.0\.0\.0:8080 http2;' "$tmp/k8s.conf" ||
  fail "$cm: must listen on 0.0.0.0:8080, the router Deployment's port"

# ---- the router image's entrypoint ----------------------------------------------
# An nginx stand-in on PATH tests the configuration instead of serving it.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/nginx" <<EOF
#!/bin/sh
conf=\$SBX_ROUTER_RUNTIME_DIR/nginx.conf
[ "\$*" = "-e stderr -c \$conf -g daemon off;" ] || { echo "unexpected nginx \$*" >&2; exit 1; }
sed 's/^\( *listen \)[^ ]*\( .*http2;\)\$/\\1127.0.0.1:1\\2/' "\$conf" > "\$conf.t"
exec $(command -v nginx) -e stderr -q -t -c "\$conf.t"
EOF
chmod +x "$tmp/bin/nginx"
PATH="$tmp/bin:$PATH" SBX_ROUTER_RUNTIME_DIR="$tmp/entry" \
  SBX_NODES="node-a=127.0.0.1:50051 node-b=localhost:50052" sh deploy/router/entrypoint.sh ||
  fail "entrypoint.sh with SBX_NODES did not start nginx on a valid configuration"
grep -q '"node-b" sbx_node_2;' "$tmp/entry/nginx.conf" 2>/dev/null ||
  fail "entrypoint.sh did not render node-b"
rc=0
PATH="$tmp/bin:$PATH" SBX_ROUTER_RUNTIME_DIR="$tmp/entry2" SBX_NODES="Bad=127.0.0.1:1" \
  sh deploy/router/entrypoint.sh 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "entrypoint.sh with a bad node list exited $rc, want 2 at once"
PATH="$tmp/bin:$PATH" SBX_ROUTER_RUNTIME_DIR="$tmp/entry3" SBX_NODES="node-a=localhost:50051" \
  SBX_ROUTER_TLS_CERT="$crt" SBX_ROUTER_TLS_KEY="$key" SBX_ROUTER_TLS_CLIENT_CA="$crt" \
  SBX_ROUTER_NODE_TLS_CA="$crt" SBX_ROUTER_NODE_TLS_NAME=sbxd.test \
  SBX_ROUTER_NODE_TLS_CERT="$crt" SBX_ROUTER_NODE_TLS_KEY="$key" sh deploy/router/entrypoint.sh ||
  fail "entrypoint.sh with the TLS variables did not start nginx on a valid configuration"
for want in '    listen 0.0.0.0:8080 ssl http2;' '    ssl_verify_client on;' \
  '    grpc_ssl_name sbxd.test;' "    grpc_ssl_certificate_key $key;"; do
  grep -qxF -- "$want" "$tmp/entry3/nginx.conf" 2>/dev/null ||
    fail "entrypoint.sh with the TLS variables: the config lacks: $want"
done
rc=0
PATH="$tmp/bin:$PATH" SBX_ROUTER_RUNTIME_DIR="$tmp/entry4" SBX_ROUTER_TLS_CERT="$crt" \
  sh deploy/router/entrypoint.sh 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "entrypoint.sh with TLS variables but no SBX_NODES exited $rc, want 2"
rc=0
PATH="$tmp/bin:$PATH" SBX_ROUTER_RUNTIME_DIR="$tmp/entry5" SBX_NODES="node-a=localhost:50051" \
  SBX_ROUTER_TLS_CERT="$crt" sh deploy/router/entrypoint.sh 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "entrypoint.sh with a certificate but no key exited $rc, want 2"

if [ "$fails" -gt 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "router config ok"
