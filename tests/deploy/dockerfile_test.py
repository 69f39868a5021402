#!/usr/bin/python3
"""deploy/docker/Dockerfile, checked without a container engine.

* Stages: build, router and sbxd (the default, last), all Debian 12.
* The build stage uses the project's own scripts: install-deps.sh --core,
  build.sh with tests off, then `cmake --install` of the server and cli
  components into a staging prefix that the sbxd stage copies.
* The runtime stages install only their package list, with no recommends,
  and nothing from the build list of install-deps.sh.
* Every COPY source exists; the entrypoints are the installed paths.
* Every package in runtime-packages.list and router-packages.list exists in
  Debian 12 and the lists install together (apt-get --simulate).
* The runtime list has the default `host` image tools of install-deps.sh,
  and every shared library the built binaries load (ldd, then dpkg -S)
  comes from a package in it.

Usage (from the repository root): dockerfile_test.py BINARY...
"""
import json
import os
import re
import shlex
import subprocess
import sys

DOCKERFILE = "deploy/docker/Dockerfile"
RUNTIME_LIST = "deploy/docker/runtime-packages.list"
ROUTER_LIST = "deploy/docker/router-packages.list"
INSTALL_DEPS = "scripts/install-deps.sh"

problems = []


def check(ok, msg):
    if not ok:
        problems.append(msg)
    return ok


def read_list(path):
    pkgs = []
    for line in open(path):
        pkgs += line.split("#", 1)[0].split()
    return pkgs


def parse_dockerfile(path):
    """[(stage, base, [(instruction, args)])], continuation lines joined."""
    lines, cur = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if not cur and (line.strip().startswith("#") or not line.strip()):
            continue
        if cur and line.strip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        lines.append(cur + line)
        cur = ""
    stages = []
    for line in lines:
        instr, _, args = line.strip().partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", args, re.I)
            stages.append((m.group(2), m.group(1), []))
        elif stages:
            stages[-1][2].append((instr, args.strip()))
        else:
            check(instr == "ARG", f"{path}: {instr} before the first FROM")
    return stages


def install_deps_section(title_re):
    """Packages on the lines of install-deps.sh's core list after a comment
    matching title_re, up to the next comment line or the list's end."""
    text = open(INSTALL_DEPS).read()
    m = re.search(r"^packages=\($(.*?)^\)", text, re.M | re.S)
    if not check(m, f"{INSTALL_DEPS}: no packages=( ... ) list; update this test"):
        return []
    pkgs, inside = [], False
    for line in m.group(1).splitlines():
        s = line.strip()
        if s.startswith("#"):
            inside = bool(re.search(title_re, s))
            continue
        if inside:
            pkgs += s.split("#", 1)[0].split()
    check(pkgs, f"{INSTALL_DEPS}: no section matching {title_re!r}; update this test")
    return pkgs


def check_dockerfile():
    stages = parse_dockerfile(DOCKERFILE)
    names = [s[0] for s in stages]
    check(names == ["build", "router", "sbxd"],
          f"{DOCKERFILE}: stages must be build, router, sbxd (the default last), got {names}")
    for name, base, _ in stages:
        check(base in ("debian:12", "debian:12-slim"), f"stage {name}: base {base} is not Debian 12")
    by_name = {s[0]: s[2] for s in stages}

    for name, _, instrs in stages:
        for instr, args in instrs:
            if instr != "COPY" or "--from=" in args:
                continue
            words = json.loads(args) if args.startswith("[") else shlex.split(args)
            for src in [w for w in words[:-1] if not w.startswith("--")]:
                check(os.path.exists(src.rstrip("/") or "."), f"stage {name}: COPY source {src} missing")

    runs = lambda stage: [a for i, a in by_name.get(stage, []) if i == "RUN"]  # noqa: E731
    build_runs = " ;; ".join(runs("build"))
    check(re.search(r"(^|[\s;&])\./scripts/install-deps\.sh --core\b", build_runs),
          "build stage: must install with ./scripts/install-deps.sh --core")
    check(re.search(r"\./scripts/build\.sh\b[^;&]*-DSBX_BUILD_TESTS=OFF", build_runs),
          "build stage: must build with ./scripts/build.sh -DSBX_BUILD_TESTS=OFF")
    check("-DCMAKE_INSTALL_PREFIX=/usr/local" in build_runs, "build stage: prefix /usr/local")
    for comp in ("server", "cli"):
        check(re.search(rf"DESTDIR=/staging cmake --install build --component {comp}\b", build_runs),
              f"build stage: must install the {comp} component into /staging")
    check("--core" in open(INSTALL_DEPS).read(), f"{INSTALL_DEPS} no longer takes --core")
    for script in ("scripts/install-deps.sh", "scripts/build.sh"):
        check(os.access(script, os.X_OK), f"{script} is not executable")

    for stage, lst in (("sbxd", RUNTIME_LIST), ("router", ROUTER_LIST)):
        instrs = by_name.get(stage, [])
        copies = [a for i, a in instrs if i == "COPY" and lst in a]
        check(copies, f"stage {stage}: must COPY {lst}")
        text = " ;; ".join(runs(stage))
        check(re.search(r"apt-get install\b[^;&]*--no-install-recommends", text),
              f"stage {stage}: apt-get install --no-install-recommends the list")
        check("packages.list" in text, f"stage {stage}: must install from the copied list")
        check(not re.search(r"install-deps\.sh|build\.sh|cmake ", text),
              f"stage {stage}: a runtime stage runs no build tooling")
        check(re.search(r"rm -rf /var/lib/apt/lists", text), f"stage {stage}: drop apt lists")

    sbxd = by_name.get("sbxd", [])
    check(('ENTRYPOINT', '["/usr/local/bin/sbxd"]') in sbxd, "stage sbxd: ENTRYPOINT [\"/usr/local/bin/sbxd\"]")
    check(("COPY", "--from=build /staging/usr/local/ /usr/local/") in sbxd,
          "stage sbxd: must copy the staged /usr/local from the build stage")
    router = by_name.get("router", [])
    check(('ENTRYPOINT', '["/usr/local/lib/sbx-router/entrypoint.sh"]') in router,
          "stage router: ENTRYPOINT the copied entrypoint.sh")
    check(os.access("deploy/router/entrypoint.sh", os.X_OK) and os.access("deploy/router/render.sh", os.X_OK),
          "deploy/router/*.sh must be executable (they are copied with their modes)")


def apt_policy(pkgs):
    """{package: (candidate or None, [source lines of the candidate])}, one apt-cache call."""
    out = subprocess.run(["apt-cache", "policy", *pkgs], capture_output=True, text=True).stdout
    result, pkg, cand, in_cand = {}, None, None, False
    for line in out.splitlines():
        if re.match(r"^\S.*:$", line):
            pkg, cand, in_cand = line[:-1], None, False
            result[pkg] = (None, [])
        elif pkg and line.strip().startswith("Candidate:"):
            cand = line.split(":", 1)[1].strip()
            result[pkg] = (None if cand == "(none)" else cand, [])
        elif pkg and re.match(r"^\s+(\*\*\* )?\S+ -?\d+$", line):  # a version
            in_cand = line.split()[-2] == cand
        elif pkg and in_cand and re.match(r"^\s+-?\d+ \S", line):  # where it comes from
            result[pkg][1].append(line.strip())
    return result


def check_packages(runtime, router):
    for lst, pkgs in ((RUNTIME_LIST, runtime), (ROUTER_LIST, router)):
        check(pkgs, f"{lst} is empty")
        check(len(set(pkgs)) == len(pkgs), f"{lst}: a package is listed twice")
        policy = apt_policy(pkgs)
        for p in pkgs:
            cand, sources = policy.get(p, (None, []))
            if check(cand, f"{lst}: {p} is not a Debian package with an install candidate here"):
                check(any(re.search(r"\bbookworm(-updates|-security)?/", s) for s in sources),
                      f"{lst}: {p} {cand} does not come from Debian 12 (bookworm): {sources}")
        sim = subprocess.run(["apt-get", "install", "--simulate", "-qq", "--no-install-recommends", *pkgs],
                             capture_output=True, text=True)
        check(sim.returncode == 0, f"{lst}: the packages do not install together:\n{sim.stdout}{sim.stderr}")

    build_only = set(install_deps_section(r"^# build\b"))
    check(not build_only & set(runtime),
          f"{RUNTIME_LIST}: build-only packages from {INSTALL_DEPS}: {sorted(build_only & set(runtime))}")
    host_tools = set(install_deps_section(r"default `host` image")) - {"bubblewrap"}  # bench baseline
    check(host_tools <= set(runtime),
          f"{RUNTIME_LIST}: misses `host` image tools of {INSTALL_DEPS}: {sorted(host_tools - set(runtime))}")


def owners(paths):
    """{path: package} for the paths dpkg knows, trying the /usr-merged twins."""
    variants = {}
    for p in paths:
        for v in (p, os.path.realpath(p), re.sub(r"^/usr", "", p), "/usr" + p):
            variants.setdefault(v, p)
    out = subprocess.run(["dpkg", "-S", *variants], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        pkgs, _, path = line.partition(": ")
        if path in variants:
            found.setdefault(variants[path], pkgs.split(",")[0].split(":")[0].strip())
    return found


def check_libraries(binaries, runtime):
    check(binaries, "no binaries given to check with ldd")
    needs = {}  # library path -> binaries
    for binary in binaries:
        if not check(os.path.exists(binary), f"{binary} is not built"):
            continue
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)(?: => (\S+))?", line)
            name, path = m.group(1), m.group(2)
            if path is None:
                path = name if name.startswith("/") else None
            if path is None or "vdso" in name:
                continue
            if check(path != "not", f"{binary}: {name} not found"):
                needs.setdefault(path, []).append(os.path.basename(binary))
    found = owners(list(needs))
    for path, users in sorted(needs.items()):
        pkg = found.get(path)
        if check(pkg, f"{path} (for {', '.join(users)}) comes from no Debian package"):
            check(pkg in runtime, f"{', '.join(users)} need {path} from {pkg}, not in {RUNTIME_LIST}")
    check(needs, "ldd found no libraries at all")


def main():
    check_dockerfile()
    runtime, router = read_list(RUNTIME_LIST), read_list(ROUTER_LIST)
    check_packages(runtime, router)
    check_libraries(sys.argv[1:], set(runtime))
    for p in problems:
        print("FAIL:", p)
    if problems:
        sys.exit(1)
    print(f"Dockerfile ok: {len(runtime)} runtime and {len(router)} router packages, "
          f"{len(sys.argv) - 1} binaries' libraries covered")


if __name__ == "__main__":
    main()
