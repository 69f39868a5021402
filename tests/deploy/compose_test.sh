#!/usr/bin/env bash
# docker-compose.yml: valid for Compose v1 (Debian's docker-compose; no
# engine needed), and wired as docs/deploy.md says: privileged sbxd nodes
# that publish no port, disjoint uid ranges, one state volume each, a
# router built from deploy/docker/Dockerfile that knows every node and
# publishes only on loopback.
# Run from the repository root (ctest does).
set -euo pipefail
command -v docker-compose >/dev/null ||
  { echo "docker-compose is missing (scripts/deps/deploy.list)"; exit 1; }

docker-compose -f docker-compose.yml config -q
config=$(docker-compose -f docker-compose.yml config)

/usr/bin/python3 - "$config" <<'EOF'
import re
import sys

import yaml

c = yaml.safe_load(sys.argv[1])
services = c["services"]
problems = []
def check(ok, msg):
    if not ok:
        problems.append(msg)

stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", open("deploy/docker/Dockerfile").read(),
                        re.M | re.I))
nodes = {n: s for n, s in services.items() if s.get("build", {}).get("target") == "sbxd"}
check(len(nodes) >= 2, f"expected at least two sbxd nodes, got {sorted(nodes)}")
check("router" in services, "no router service")

uid_bases = []
volumes = []
for name, s in nodes.items():
    check(s.get("privileged") is True, f"{name}: sbxd needs privileged: true")
    check(not s.get("init"), f"{name}: no init in front of sbxd (it must be alone in its cgroup)")
    check(not s.get("ports"), f"{name}: sbxd's insecure port must not be published")
    cmd = s.get("command", [])
    check("--listen" in cmd and cmd[cmd.index("--listen") + 1].endswith(":50051"),
          f"{name}: sbxd must --listen on :50051 for the router")
    if "--uid-base" in cmd:
        uid_bases.append(int(cmd[cmd.index("--uid-base") + 1]))
    else:
        uid_bases.append(1000000000)
    state = [v for v in s.get("volumes", []) if str(v).split(":")[1:2] == ["/var/lib/sbx"]]
    check(len(state) == 1, f"{name}: needs one volume at /var/lib/sbx, got {s.get('volumes')}")
    volumes += [str(v).split(":")[0] for v in state]

# Each sandbox takes 65536 host uids from its node's base, up to 1024 of them.
span = 65536 * 1024
bases = sorted(uid_bases)
check(all(b - a >= span for a, b in zip(bases, bases[1:])),
      f"nodes on one host need disjoint uid ranges ({span} ids apart): {bases}")
check(len(set(volumes)) == len(volumes), f"nodes share a state volume: {volumes}")

router = services.get("router", {})
for name, s in services.items():
    target = s.get("build", {}).get("target")
    check(target in stages, f"{name}: build target {target} is not a stage of the Dockerfile {sorted(stages)}")
    check(s.get("build", {}).get("dockerfile") == "deploy/docker/Dockerfile",
          f"{name}: must build deploy/docker/Dockerfile")
check(router.get("build", {}).get("target") == "router", "router: build target must be router")
routes = dict(e.split("=", 1) for e in router.get("environment", {}).get("SBX_NODES", "").split())
check({a.split(":")[0] for a in routes.values()} == set(nodes),
      f"router: SBX_NODES {routes} must name every sbxd service {sorted(nodes)}")
check(all(a.endswith(":50051") for a in routes.values()), f"router: nodes listen on 50051: {routes}")
check(set((router.get("depends_on") or {}).keys()) == set(nodes), "router: depends_on every node")
for p in router.get("ports", []):
    check(str(p).startswith("127.0.0.1:"), f"router: publish on loopback only, got {p}")
check(not router.get("privileged"), "router: must not be privileged")

for p in problems:
    print("docker-compose.yml:", p)
if problems:
    sys.exit(1)
print(f"docker-compose.yml: ok ({len(nodes)} nodes, router)")
EOF
