#!/bin/sh
# The router image's entrypoint. With SBX_NODES ("NODE=HOST:PORT ...") it
# renders the configuration now, waiting up to SBX_RESOLVE_WAIT seconds
# (default 60) for the node names to resolve; without it, it serves the
# configuration mounted at SBX_ROUTER_CONF (default
# /etc/sbx-router/nginx.conf, e.g. from a Kubernetes ConfigMap).
# SBX_ROUTER_LISTEN (default 0.0.0.0:8080), SBX_ROUTER_ACCESS_LOG (default
# /dev/stdout) and SBX_ROUTER_RUNTIME_DIR (default /tmp/sbx-router, which a
# mounted configuration must use too) apply when rendering.
#
# TLS, when rendering: each of these that is set and not empty becomes the
# render.sh option of the same name (deploy/router/render.sh says what each
# does); the files must be mounted into the container, readable by www-data.
#   SBX_ROUTER_TLS_CERT, SBX_ROUTER_TLS_KEY    --tls-cert, --tls-key
#   SBX_ROUTER_TLS_CLIENT_CA                   --tls-client-ca
#   SBX_ROUTER_NODE_TLS_CA                     --node-tls-ca
#   SBX_ROUTER_NODE_TLS_NAME                   --node-tls-name
#   SBX_ROUTER_NODE_TLS_CERT, _KEY             --node-tls-cert, --node-tls-key
# Without SBX_NODES they are an error: a mounted configuration has its own.
set -eu
here=$(dirname "$0")
runtime_dir=${SBX_ROUTER_RUNTIME_DIR:-/tmp/sbx-router}
tls_options="tls-cert tls-key tls-client-ca node-tls-ca node-tls-name node-tls-cert node-tls-key"
set --
for option in $tls_options; do
  var=SBX_ROUTER_$(echo "$option" | tr 'a-z-' 'A-Z_')
  eval "value=\${$var:-}"
  [ -z "$value" ] || set -- "$@" "--$option" "$value"
done
if [ -z "${SBX_NODES:-}" ] && [ $# -gt 0 ]; then
  echo "entrypoint.sh: the SBX_ROUTER_*TLS* variables apply only with SBX_NODES" >&2
  exit 2
fi
mkdir -p "$runtime_dir"
conf=${SBX_ROUTER_CONF:-/etc/sbx-router/nginx.conf}
if [ -n "${SBX_NODES:-}" ]; then
  conf=$runtime_dir/nginx.conf
  waited=0
  # shellcheck disable=SC2086 # SBX_NODES is a list of words
  while :; do
    rc=0
    "$here/render.sh" --listen "${SBX_ROUTER_LISTEN:-0.0.0.0:8080}" \
      --runtime-dir "$runtime_dir" --access-log "${SBX_ROUTER_ACCESS_LOG:-/dev/stdout}" \
      "$@" $SBX_NODES >"$conf.new" || rc=$?
    [ "$rc" -eq 0 ] && break
    # 3: a node name does not resolve (yet); anything else is final.
    [ "$rc" -eq 3 ] && [ "$waited" -lt "${SBX_RESOLVE_WAIT:-60}" ] || exit "$rc"
    waited=$((waited + 1))
    sleep 1
  done
  mv "$conf.new" "$conf"
fi
exec nginx -e stderr -c "$conf" -g 'daemon off;'
