#!/usr/bin/env bash
# deploy/k8s: every manifest against the Kubernetes schema (kubernetes-models,
# strict fields through TypeScript), the references between them, and the
# kustomization (tests/deploy/k8s/validate.mjs says what exactly). The npm
# packages are installed with `npm ci` from the committed lock file into
# WORK_DIR (the build tree), once per lock file. When a kubectl with
# kustomize is on PATH, `kubectl kustomize deploy/k8s` is built and its
# output validated too.
#   k8s_test.sh WORK_DIR      (from the repository root)
set -euo pipefail
work=${1:?usage: k8s_test.sh WORK_DIR}
src=tests/deploy/k8s
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/deps/deploy.list)"; exit 1; }
done

mkdir -p "$work"
cp "$src/package.json" "$src/package-lock.json" "$src/validate.mjs" "$work/"
stamp=$(sha256sum "$src/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$work/node_modules/.sbx-lock-sha256" 2>/dev/null)" != "$stamp" ]; then
  (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$stamp" > "$work/node_modules/.sbx-lock-sha256"
fi

manifests=()
for f in deploy/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
node "$work/validate.mjs" --kustomization deploy/k8s/kustomization.yaml "${manifests[@]}"

if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  kubectl kustomize deploy/k8s > "$work/kustomized.yaml"
  node "$work/validate.mjs" "$work/kustomized.yaml"
else
  echo "note: no kubectl with kustomize on PATH; the kustomize build was not checked"
fi
