'use strict';
// Loads sbx/v1/sandbox.proto at run time with @grpc/proto-loader: no
// generated code. The proto is looked up in $SBX_PROTO_DIR, then in this
// package's protos/ (filled by `npm pack`), then in the repository's protos/.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_FILE = path.join('sbx', 'v1', 'sandbox.proto');

function protoDirs() {
  const dirs = [];
  if (process.env.SBX_PROTO_DIR) dirs.push(process.env.SBX_PROTO_DIR);
  dirs.push(path.join(__dirname, '..', 'protos'));
  dirs.push(path.join(__dirname, '..', '..', '..', 'protos'));
  return dirs;
}

let cached = null;

/** The sbx.v1 package object (service constructor and message types). */
function load(protoDir) {
  if (!protoDir && cached) return cached;
  const candidates = protoDir ? [protoDir] : protoDirs();
  const dir = candidates.find((d) => fs.existsSync(path.join(d, PROTO_FILE)));
  if (!dir) {
    throw new Error(`sbx: ${PROTO_FILE} not found in ${candidates.join(', ')}; ` +
                    'set SBX_PROTO_DIR to the directory that holds sbx/v1/sandbox.proto');
  }
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [dir],
    keepCase: false,  // camelCase fields: sandboxId, memoryBytes, ...
    longs: Number,    // every int64 of the API fits in a double
    enums: String,    // 'VERDICT_OK', 'SANDBOX_STATE_RUNNING'
    bytes: Buffer,
    defaults: true,
    oneofs: true,     // msg: 'stdout' | 'stderr' | ... names the field set
  });
  const v1 = grpc.loadPackageDefinition(definition).sbx.v1;
  if (!protoDir) cached = v1;
  return v1;
}

module.exports = { load, protoDirs };
