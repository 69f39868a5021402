'use strict';
// `npm pack` / `npm publish`: ship a copy of the repository's proto with the
// package (lib/proto.js finds it in protos/). Not committed: the repository's
// protos/ is the one source.
const fs = require('node:fs');
const path = require('node:path');

const from = path.join(__dirname, '..', '..', '..', 'protos', 'sbx', 'v1', 'sandbox.proto');
const to = path.join(__dirname, '..', 'protos', 'sbx', 'v1', 'sandbox.proto');
fs.mkdirSync(path.dirname(to), { recursive: true });
fs.copyFileSync(from, to);
console.log(`copied ${from} -> ${to}`);
