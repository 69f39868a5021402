// Validates Kubernetes manifests offline.
//
//   node validate.mjs [--kustomization FILE] MANIFEST.yaml...
//
// 1. Every YAML document parses (duplicate keys are errors).
// 2. Each object is an instance of its kubernetes-models class (chosen by
//    apiVersion and kind) and passes that class's validate(): types, enums,
//    required fields, from the Kubernetes OpenAPI schema.
// 3. Strict fields: the schema allows unknown fields, and the API server
//    would reject them (kubectl's default strict field validation), so each
//    object is also type-checked by TypeScript against the package's
//    interface for its kind, whose excess-property check names any field
//    the schema does not have (a typo, a misplaced block).
// 4. References between the objects: selectors match pod labels, Service and
//    probe ports name container ports, volumes name ConfigMaps that exist,
//    everything is in the one Namespace defined.
// 5. With --kustomization: its resources are exactly the manifests given,
//    its namespace is theirs, and each image it sets is used.
// Prints one line per problem and exits 1 if there is any.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import ts from "typescript";

const here = path.dirname(fileURLToPath(import.meta.url));
const problems = [];
const fail = (where, msg) => problems.push(`${where}: ${msg}`);

let kustomization = null;
const files = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === "--kustomization") kustomization = process.argv[++i];
  else files.push(process.argv[i]);
}
if (files.length === 0) {
  console.error("usage: node validate.mjs [--kustomization FILE] MANIFEST.yaml...");
  process.exit(2);
}

function parseFile(file) {
  const out = [];
  parseAllDocuments(fs.readFileSync(file, "utf8"), { uniqueKeys: true }).forEach((doc, i) => {
    const where = `${file}#${i + 1}`;
    for (const e of [...doc.errors, ...doc.warnings]) fail(where, `YAML: ${e.message}`);
    if (doc.errors.length === 0) {
      const obj = doc.toJS();
      if (obj !== null && obj !== undefined) out.push({ where, file, obj });
    }
  });
  return out;
}

// ---- 1 and 2: parse, then each kind's model and validate() -----------------
const objects = files.flatMap(parseFile);
for (const o of objects) {
  const { apiVersion, kind } = o.obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    fail(o.where, "no apiVersion/kind");
    continue;
  }
  o.module = `kubernetes-models/${apiVersion}`;
  o.label = `${kind} ${o.obj.metadata?.name ?? "(no name)"}`;
  let mod;
  try {
    mod = await import(o.module);
  } catch {
    fail(o.where, `unknown apiVersion ${apiVersion}`);
    continue;
  }
  if (typeof mod[kind] !== "function") {
    fail(o.where, `unknown kind ${kind} in ${apiVersion}`);
    continue;
  }
  o.model = mod[kind];
  try {
    new mod[kind](o.obj).validate();
  } catch (e) {
    fail(o.where, `${o.label}: ${e.message}`);
  }
}

// ---- 3: no field the schema lacks (TypeScript excess-property check) -------
function strictFields(list) {
  const dir = fs.mkdtempSync(path.join(here, ".strict-"));
  try {
    const byFile = new Map();
    list.forEach((o, i) => {
      const file = path.join(dir, `doc${i}.ts`);
      const iface = `I${o.obj.kind}`;
      fs.writeFileSync(file, `import type { ${iface} } from "${o.module}/${o.obj.kind}";\n` +
        `export const doc: ${iface} = ${JSON.stringify(o.obj, null, 2)};\n`);
      byFile.set(file, o);
    });
    const program = ts.createProgram([...byFile.keys()], {
      strict: true, noEmit: true, skipLibCheck: true, types: [],
      module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const o = d.file && byFile.get(path.resolve(d.file.fileName));
      const text = ts.flattenDiagnosticMessageText(d.messageText, " ");
      if (!o) {
        fail("typescript", text);
        continue;
      }
      // The line in the generated JSON names the field.
      const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
      const at = d.file.text.split("\n")[line].trim();
      fail(o.where, `${o.label}: ${text} (at ${at})`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
strictFields(objects.filter((o) => o.model));

// ---- 4: references between the objects -----------------------------------
const valid = objects.filter((o) => o.model).map((o) => ({ ...o, ...o.obj }));
const namespaces = valid.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name);
const workloadKinds = new Set(["Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"]);
const workloads = valid.filter((o) => workloadKinds.has(o.kind));
const configMaps = new Set(valid.filter((o) => o.kind === "ConfigMap").map((o) => o.metadata.name));
const matches = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => (labels ?? {})[k] === v);
const podLabels = (w) => w.spec?.template?.metadata?.labels ?? {};
const containersOf = (w) => [
  ...(w.spec?.template?.spec?.containers ?? []),
  ...(w.spec?.template?.spec?.initContainers ?? []),
];
const portKnown = (containers, port) =>
  containers.some((c) => (c.ports ?? []).some((p) =>
    typeof port === "string" ? p.name === port : p.containerPort === port));

const seen = new Set();
for (const o of valid) {
  const key = `${o.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name}`;
  if (seen.has(key)) fail(o.where, `${o.label} defined twice`);
  seen.add(key);
  if (!o.metadata?.name) fail(o.where, `${o.kind} without metadata.name`);
  if (o.kind !== "Namespace" && namespaces.length > 0 &&
      !namespaces.includes(o.metadata?.namespace)) {
    fail(o.where, `${o.label} is in namespace ${o.metadata?.namespace}, not one defined here ` +
      `(${namespaces.join(", ")})`);
  }
}

for (const w of workloads) {
  if (!matches(w.spec?.selector?.matchLabels, podLabels(w))) {
    fail(w.where, `${w.label}: spec.selector does not match the pod template's labels`);
  }
  const containers = containersOf(w);
  for (const c of containers) {
    for (const kind of ["readinessProbe", "livenessProbe", "startupProbe"]) {
      const p = c[kind];
      const port = p?.grpc?.port ?? p?.tcpSocket?.port ?? p?.httpGet?.port;
      if (port !== undefined && !portKnown([c], port)) {
        fail(w.where, `${w.label}: ${c.name}.${kind} port ${port} is not a port of the container`);
      }
    }
  }
  for (const v of w.spec?.template?.spec?.volumes ?? []) {
    if (v.configMap && !v.configMap.optional && !configMaps.has(v.configMap.name)) {
      fail(w.where, `${w.label}: volume ${v.name} names ConfigMap ${v.configMap.name}, not defined`);
    }
  }
  const volumes = new Set((w.spec?.template?.spec?.volumes ?? []).map((v) => v.name));
  for (const c of containers) {
    for (const m of c.volumeMounts ?? []) {
      if (!volumes.has(m.name)) fail(w.where, `${w.label}: ${c.name} mounts unknown volume ${m.name}`);
    }
  }
}

for (const s of valid.filter((o) => o.kind === "Service")) {
  const targets = workloads.filter((w) => s.spec?.selector && matches(s.spec.selector, podLabels(w)));
  if (s.spec?.selector && targets.length === 0) {
    fail(s.where, `${s.label}: selector matches no workload's pods`);
  }
  for (const p of s.spec?.ports ?? []) {
    const target = p.targetPort ?? p.port;
    for (const w of targets) {
      if (!portKnown(containersOf(w), target)) {
        fail(s.where, `${s.label}: port ${p.name ?? p.port} targets ${target}, not a port of ${w.label}`);
      }
    }
  }
}

for (const n of valid.filter((o) => o.kind === "NetworkPolicy")) {
  const selects = (sel) => workloads.some((w) => matches(sel?.matchLabels, podLabels(w)));
  if (!selects(n.spec?.podSelector)) fail(n.where, `${n.label}: podSelector matches no workload`);
  for (const rule of n.spec?.ingress ?? []) {
    for (const from of rule.from ?? []) {
      if (from.podSelector && !selects(from.podSelector)) {
        fail(n.where, `${n.label}: ingress from a podSelector that matches no workload`);
      }
    }
  }
}

// ---- 5: the kustomization -------------------------------------------------
if (kustomization) {
  const k = parseFile(kustomization)[0]?.obj ?? {};
  const dir = path.dirname(kustomization);
  const listed = (k.resources ?? []).map((r) => path.resolve(dir, r));
  const given = files.map((f) => path.resolve(f));
  for (const r of listed) {
    if (!fs.existsSync(r)) fail(kustomization, `resource ${path.relative(dir, r)} does not exist`);
    else if (!given.includes(r)) fail(kustomization, `resource ${path.relative(dir, r)} was not validated`);
  }
  for (const f of given) {
    if (!listed.includes(f)) fail(kustomization, `${path.relative(dir, f)} is not in resources`);
  }
  if (k.namespace !== undefined && namespaces.length > 0 && !namespaces.includes(k.namespace)) {
    fail(kustomization, `namespace ${k.namespace} is not the Namespace defined`);
  }
  const images = workloads.flatMap((w) => containersOf(w).map((c) => c.image.replace(/[:@].*$/, "")));
  for (const img of k.images ?? []) {
    if (!images.includes(img.name)) fail(kustomization, `image ${img.name} is used by no container`);
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`${problems.length} problem(s) in ${objects.length} object(s)`);
  process.exit(1);
}
console.log(`${objects.length} object(s) valid: ${objects.map((o) => o.label).join(", ")}`);
