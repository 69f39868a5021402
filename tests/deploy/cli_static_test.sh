#!/bin/bash
# The sbx CLI is linked against static gRPC, abseil, protobuf, OpenSSL and
# libstdc++ (sdk/CMakeLists.txt): none of their shared libraries may be
# loaded beside the copies inside it. Usage: cli_static_test.sh path/to/sbx
set -euo pipefail
needed=$(readelf -d "$1" | grep NEEDED)
echo "$needed"
if grep -E 'libgrpc|libgpr|libabsl|libprotobuf|libupb|libre2|libcares|libssl|libcrypto|libstdc|libgcc_s' <<<"$needed"; then
  echo "FAIL: $1 loads the shared libraries above as well" >&2
  exit 1
fi
echo "ok: $(wc -l <<<"$needed") shared libraries, none of those among them"
