'use strict';
// sbx-client: a Node.js client for sbxd, the sbx sandbox daemon (gRPC API sbx.v1).
//
//   const sbx = require('sbx-client');
//   const client = sbx.connect();  // $SBX_SERVER or /run/sbx/sbxd.sock
//   await client.withSandbox({ memory: '256M' }, async (box) => {
//     const r = await box.exec(['sh', '-c', 'read x; echo $x; exit 3'], { stdin: 'hi\n' });
//     // r.stdout.toString() === 'hi\n', r.exitCode === 3, r.verdict === 'RUNTIME_ERROR'
//   });
//   client.close();
//
// Every failed call rejects with an SbxError: err.code (the numeric gRPC
// status, compare with sbx.status.NOT_FOUND), err.codeName ('NOT_FOUND') and
// err.details (the daemon's message).

const { Client, Sandbox, connect, defaultAddress, normalizeAddress, DEFAULT_ADDRESS } = require('./client');
const { ExecProcess } = require('./exec');
const { SbxError, status } = require('./errors');
const { parseSize, parseDurationNs, formatSize } = require('./units');

module.exports = {
  connect,
  Client,
  Sandbox,
  ExecProcess,
  SbxError,
  status,
  defaultAddress,
  normalizeAddress,
  DEFAULT_ADDRESS,
  parseSize,
  parseDurationNs,
  formatSize,
};
