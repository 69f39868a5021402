#!/usr/bin/env bash
# Renders the sbx router's nginx configuration for a list of sbxd nodes and
# prints it on stdout.
#
#   deploy/router/render.sh [--listen HOST:PORT] [--runtime-dir DIR]
#       [--access-log PATH|off]
#       [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
#       [--node-tls-ca FILE [--node-tls-name NAME]
#        [--node-tls-cert FILE --node-tls-key FILE]]
#       NODE=HOST:PORT...
#
#   --listen       where the router serves gRPC over HTTP/2 (default
#                  0.0.0.0:8080); cleartext unless --tls-cert is given
#   --runtime-dir  pid file and nginx's temp directories; must exist and be
#                  writable when nginx starts (default /tmp/sbx-router)
#   --access-log   a file (/dev/stdout in containers) or off (default off)
#   NODE=HOST:PORT one per sbxd: its node name and its --listen address.
#                  HOST may be an IPv4 address, [IPv6] or a name; names are
#                  resolved now (nginx would resolve them once at start-up
#                  anyway), so that the router can tell which node answered.
#
# TLS between clients and the router (TLSv1.2 and TLSv1.3 only):
#   --tls-cert, --tls-key
#                  the router's certificate chain and its unencrypted key
#                  (PEM); with them the router serves TLS only
#   --tls-client-ca
#                  also require a client certificate that chains to this CA
#                  bundle; a call without one, or with one that does not
#                  verify, gets UNAUTHENTICATED from the router itself
# TLS between the router and the nodes (sbxd --tls-cert/--tls-key):
#   --node-tls-ca  speak TLS to every node and verify its certificate
#                  against this CA bundle
#   --node-tls-name
#                  the DNS name every node certificate must carry; without
#                  it, each node's own HOST, which must then be a name
#                  (nginx 1.22 matches DNS names, never IP addresses)
#   --node-tls-cert, --node-tls-key
#                  a client certificate the router shows the nodes, for
#                  sbxd --tls-client-ca and tenants.*.client_names
# Every FILE must be an absolute path, readable now: render where nginx
# will run and as its user (the router image renders at start). Bearer
# tokens pass through to the nodes in the `authorization` header in every
# mode; each node authenticates each call (docs/security-model.md).
#
# Exit status: 0 rendered, 2 bad arguments, 3 a name did not resolve.
#
# The routing contract (docs/deploy.md):
#   * a call with the metadata header `sbx-node: NODE` goes to that node only;
#   * a call without it goes round-robin over all nodes, except the calls
#     about one existing sandbox (Get/Destroy/SetLimits/Exec/WriteFiles/
#     ReadFile), which are refused with INVALID_ARGUMENT;
#   * an unknown node name is refused with NOT_FOUND, never sent elsewhere;
#   * a node that cannot be reached, or whose certificate does not verify,
#     gives UNAVAILABLE;
#   * every answer that came from a node carries the response header
#     `sbx-node: NODE`, so a client learns where CreateSandbox put a sandbox.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}
die() { echo "render.sh: $*" >&2; exit 2; }

# Options and their defaults; "" = not given.
declare -A opt=([listen]=0.0.0.0:8080 [runtime-dir]=/tmp/sbx-router [access-log]=off
  [tls-cert]="" [tls-key]="" [tls-client-ca]=""
  [node-tls-ca]="" [node-tls-name]="" [node-tls-cert]="" [node-tls-key]="")
args=("$@")
nodes=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage ;;
    --?*) ;;
    -*) die "unknown option $1" ;;
    *=*) nodes+=("$1"); shift; continue ;;
    *) die "expected NODE=HOST:PORT, got '$1'" ;;
  esac
  key=${1%%=*} key=${key#--}
  [[ "$key" =~ ^[a-z-]+$ && -n "${opt[$key]+set}" ]] || die "unknown option ${1%%=*}"
  case "$1" in
    *=*) value=${1#*=}; shift ;;
    *) [ $# -ge 2 ] || usage; value=$2; shift 2 ;;
  esac
  [ -n "$value" ] || die "--$key: empty value"
  opt[$key]=$value
done
listen=${opt[listen]} runtime_dir=${opt[runtime-dir]} access_log=${opt[access-log]}
[ ${#nodes[@]} -gt 0 ] || die "no nodes given (NODE=HOST:PORT...)"
case "$runtime_dir" in /*) ;; *) die "--runtime-dir must be absolute" ;; esac
case "$runtime_dir" in *[!A-Za-z0-9._/-]*) die "--runtime-dir: unexpected characters" ;; esac
case "$access_log" in off|/*) ;; *) die "--access-log must be off or an absolute path" ;; esac
[[ "$listen" =~ ^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):[0-9]{1,5}$ ]] ||
  die "--listen must be HOST:PORT, got '$listen'"

# A PEM file nginx reads when it starts: absolute, plain characters (it is
# written into the configuration unquoted) and readable now.
check_file() {
  local name=$1 path=${opt[$1]}
  [ -n "$path" ] || return 0
  case "$path" in /*) ;; *) die "--$name must be an absolute path, got '$path'" ;; esac
  case "$path" in *[!A-Za-z0-9._/-]*) die "--$name: unexpected characters in '$path'" ;; esac
  [[ -f "$path" && -r "$path" ]] || die "--$name: cannot read $path"
}
# Options that only mean something together with another.
needs() {
  local name=$1 other=$2
  [ -z "${opt[$name]}" ] || [ -n "${opt[$other]}" ] || die "--$name needs --$other"
}
for name in tls-cert tls-key tls-client-ca node-tls-ca node-tls-cert node-tls-key; do
  check_file "$name"
done
needs tls-cert tls-key
needs tls-key tls-cert
needs tls-client-ca tls-cert
needs node-tls-cert node-tls-key
needs node-tls-key node-tls-cert
needs node-tls-cert node-tls-ca
needs node-tls-name node-tls-ca
node_tls_name=${opt[node-tls-name]}
# nginx 1.22 matches the name against a certificate's DNS names (and CN)
# only, never against its IP addresses.
if [ -n "$node_tls_name" ]; then
  [[ "$node_tls_name" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$ &&
    ! "$node_tls_name" =~ ^[0-9.]+$ ]] ||
    die "--node-tls-name must be a DNS name, got '$node_tls_name'"
fi

# HOST -> an address nginx will report in $upstream_addr.
resolve() {
  local host=$1 addr
  if [[ "$host" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then echo "$host"; return; fi
  if [[ "$host" =~ ^\[[0-9a-fA-F:.]+\]$ ]]; then echo "$host"; return; fi
  addr=$(getent ahostsv4 "$host" 2>/dev/null | awk 'NR==1 {print $1}')
  if [ -z "$addr" ]; then
    addr=$(getent ahostsv6 "$host" 2>/dev/null | awk 'NR==1 {print $1}')
    [ -n "$addr" ] && addr="[$addr]"
  fi
  [ -n "$addr" ] || { echo "render.sh: cannot resolve '$host'" >&2; exit 3; }
  echo "$addr"
}

names=() addrs=() tls_names=()
for n in "${nodes[@]}"; do
  name=${n%%=*} hostport=${n#*=}
  [[ "$name" =~ ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$ ]] ||
    die "node name '$name': use lower-case letters, digits, '-' and '.'"
  [[ "$hostport" =~ ^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$ ]] ||
    die "node $name: address must be HOST:PORT, got '$hostport'"
  host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
  if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then die "node $name: bad port $port"; fi
  if [ -n "${opt[node-tls-ca]}" ] && [ -z "$node_tls_name" ] &&
    [[ "$host" =~ ^([0-9.]+|\[.*\])$ ]]; then
    die "node $name: its certificate is checked by DNS name, not by address;" \
      "give the node by name, or --node-tls-name"
  fi
  addr="$(resolve "$host"):$port"
  for i in "${!names[@]}"; do
    [ "${names[$i]}" != "$name" ] || die "node $name given twice"
    [ "${addrs[$i]}" != "$addr" ] || die "nodes ${names[$i]} and $name share the address $addr"
  done
  names+=("$name") addrs+=("$addr") tls_names+=("${node_tls_name:-$host}")
done

# An exact-match regex for an address at the end of $upstream_addr (which
# lists every server tried, comma-separated, the one that answered last).
addr_regex() {
  local r=${1//./\\.}
  r=${r//[/\\[}
  printf '%s' "${r//]/\\]}"
}

# TLS between clients and the router, if any.
client_tls() {
  [ -n "${opt[tls-cert]}" ] || return 0
  cat <<EOF

    # TLS for clients: TLSv1.2 and 1.3, forward-secret AEAD suites only
    # (HTTP/2 forbids the others).
    ssl_certificate ${opt[tls-cert]};
    ssl_certificate_key ${opt[tls-key]};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:sbx_tls:10m;
    ssl_session_timeout 1h;
    ssl_session_tickets off;
EOF
  [ -n "${opt[tls-client-ca]}" ] || return 0
  cat <<EOF
    # Every client shows a certificate that chains to this CA bundle, through
    # at most two intermediate CAs. nginx answers a missing (496) or bad
    # (495) one after the handshake, here as a gRPC error.
    ssl_client_certificate ${opt[tls-client-ca]};
    ssl_verify_client on;
    ssl_verify_depth 2;
    error_page 495 496 = /.sbx-router/unauthenticated;
EOF
}

# TLS between the router and the nodes, if any.
node_tls() {
  [ -n "${opt[node-tls-ca]}" ] || return 0
  cat <<EOF

    # TLS to the nodes: each node's certificate must chain to this CA bundle,
    # through at most two intermediate CAs, and carry the name below.
    grpc_ssl_trusted_certificate ${opt[node-tls-ca]};
    grpc_ssl_verify on;
    grpc_ssl_verify_depth 2;
    grpc_ssl_protocols TLSv1.2 TLSv1.3;
EOF
  if [ -n "$node_tls_name" ]; then
    echo "    grpc_ssl_name $node_tls_name;"
  else
    echo "    grpc_ssl_name \$sbx_node_tls_name;"
  fi
  [ -n "${opt[node-tls-cert]}" ] || return 0
  cat <<EOF
    # The router's own certificate, for nodes that take client certificates.
    grpc_ssl_certificate ${opt[node-tls-cert]};
    grpc_ssl_certificate_key ${opt[node-tls-key]};
EOF
}

# The name each node's certificate must carry, by its address. Without it
# nginx would check the host of grpc_pass, i.e. an upstream's name. nginx
# evaluates grpc_ssl_name at each handshake, after it picked the node, and
# `volatile` keeps it from reusing the value of an earlier try, so the
# round-robin upstream checks the node it is actually connecting to.
node_tls_names() {
  [ -n "${opt[node-tls-ca]}" ] && [ -z "$node_tls_name" ] || return 0
  cat <<EOF

  # TLS to a node checks the HOST it was given by, looked up by the address
  # nginx is connecting to (evaluated at each handshake).
  map \$upstream_addr \$sbx_node_tls_name {
    volatile;
    default "";
EOF
  for i in "${!names[@]}"; do
    echo "    \"~(^|, )$(addr_regex "${addrs[$i]}")\$\" \"${tls_names[$i]}\";"
  done
  echo "  }"
}

# A location that answers a call itself, with a gRPC status and message
# ($3 goes into nginx's config as it is: it may name nginx variables).
answer_location() {
  cat <<EOF

    location = /.sbx-router/$1 {
      internal;
      add_header grpc-status $2 always;
      add_header grpc-message "sbx router: $3" always;
      return 200;
    }
EOF
}

if [ -n "${opt[tls-cert]}" ]; then listen_params="ssl http2"; else listen_params=http2; fi
if [ -n "${opt[node-tls-ca]}" ]; then node_scheme=grpcs; else node_scheme=grpc; fi

cat <<EOF
# sbx router -- generated by deploy/router/render.sh; do not edit, re-render:
#   deploy/router/render.sh ${args[*]}
# Run: nginx -e stderr -c THIS_FILE -g 'daemon off;'

worker_processes auto;
pid $runtime_dir/nginx.pid;
error_log stderr warn;

events {
  worker_connections 4096;
}

http {
  client_body_temp_path $runtime_dir/client_body;
  proxy_temp_path $runtime_dir/proxy;
  fastcgi_temp_path $runtime_dir/fastcgi;
  uwsgi_temp_path $runtime_dir/uwsgi;
  scgi_temp_path $runtime_dir/scgi;
  server_tokens off;

  log_format sbx '\$time_iso8601 \$remote_addr "\$request_uri" node="\$http_sbx_node" '
                 'upstream=\$upstream_addr served_by=\$sbx_served_by status=\$status '
                 'grpc_status=\$upstream_trailer_grpc_status\$sent_http_grpc_status '
                 'time=\$request_time';
  access_log $( [ "$access_log" = off ] && echo off || echo "$access_log sbx" );

  # One upstream per node: calls that name a node go there and nowhere else.
EOF
for i in "${!names[@]}"; do
  cat <<EOF
  upstream sbx_node_$((i + 1)) {  # ${names[$i]}
    server ${addrs[$i]};
    keepalive 16;
  }
EOF
done
cat <<EOF

  # Calls that name no node: round-robin over all of them. A node that
  # refuses the connection is skipped and the call tried on the next one
  # (gRPC calls are POSTs, so nginx never retries once a request was sent).
  upstream sbx_all {
EOF
for i in "${!names[@]}"; do
  echo "    server ${addrs[$i]} max_fails=1 fail_timeout=10s;  # ${names[$i]}"
done
cat <<EOF
    keepalive 32;
  }

  # sbx-node header -> upstream; "" when absent, "!unknown" for any other name.
  map \$http_sbx_node \$sbx_named_upstream {
    default "!unknown";
    "" "";
EOF
for i in "${!names[@]}"; do
  echo "    \"${names[$i]}\" sbx_node_$((i + 1));"
done
cat <<EOF
  }

  # Calls about one existing sandbox must name its node.
  map \$uri \$sbx_needs_node {
    default 0;
    "~^/sbx\.v1\.SandboxService/(GetSandbox|DestroySandbox|SetLimits|Exec|WriteFiles|ReadFile)\$" 1;
  }

  map "\$sbx_needs_node:\$sbx_named_upstream" \$sbx_upstream {
    "0:" sbx_all;
    "1:" "!missing";
    default \$sbx_named_upstream;
  }

  # Which node answered, from the address nginx last talked to.
  map \$upstream_addr \$sbx_served_by {
    default "";
EOF
for i in "${!names[@]}"; do
  echo "    \"~(^|, )$(addr_regex "${addrs[$i]}")\$\" \"${names[$i]}\";"
done
cat <<EOF
  }

  # The node name as it may appear in an error message.
  map \$http_sbx_node \$sbx_node_shown {
    default "(invalid name)";
    "~^[A-Za-z0-9._-]{1,253}\$" \$http_sbx_node;
  }
EOF
node_tls_names
cat <<EOF

  server {
    listen $listen $listen_params;
EOF
client_tls
node_tls
cat <<EOF

    # gRPC streams (Exec, WriteFiles, ReadFile) may be long, large and idle.
    client_max_body_size 0;
    client_body_timeout 1h;
    grpc_read_timeout 1h;
    grpc_send_timeout 1h;
    grpc_connect_timeout 5s;
    grpc_socket_keepalive on;

    # Answers nginx makes itself are gRPC answers too: HTTP 200,
    # application/grpc, and grpc-status/grpc-message with no body (a
    # "trailers-only" response).
    default_type application/grpc;

    location / {
      if (\$sbx_upstream = "!unknown") {
        rewrite ^ /.sbx-router/unknown-node last;
      }
      if (\$sbx_upstream = "!missing") {
        rewrite ^ /.sbx-router/missing-node last;
      }
      grpc_pass $node_scheme://\$sbx_upstream;
      add_header sbx-node \$sbx_served_by always;
      error_page 502 503 504 = /.sbx-router/unavailable;
    }
EOF
answer_location unknown-node 5 "unknown sbx-node '\$sbx_node_shown'"
answer_location missing-node 3 "calls about an existing sandbox need the sbx-node metadata header"
answer_location unavailable 14 "no sbx node could be reached"
if [ -n "${opt[tls-client-ca]}" ]; then
  answer_location unauthenticated 16 \
    "a client certificate signed by the router's client CA is required"
fi
cat <<EOF
  }
}
EOF
