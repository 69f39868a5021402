'use strict';
// Sizes and durations as people write them, the same rules as the CLI.
//
// Sizes: a number (bytes) or a string '64M', '1.5G', '512k', '64MiB' (binary
// multiples, case-insensitive). Durations: a number of milliseconds (as
// setTimeout takes), or a string '500ms', '2s', '1h30m' (units ns, us, ms, s,
// m, h on every component; a bare '0' is zero).

const { invalidArgument } = require('./errors');

const SIZE_RE = /^(\d+(?:\.\d*)?|\.\d+)(?:([kmgtp])(i?)(b?)|(b?))$/i;
const SHIFT = { k: 10, m: 20, g: 30, t: 40, p: 50 };
const PART_RE = /(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|s|m|h)/y;
const NANOS = { ns: 1, us: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Bytes from a number or a string such as '64M'. */
function parseSize(value, what = 'size') {
  if (typeof value === 'number' || typeof value === 'bigint') {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 0) throw invalidArgument(`${what}: ${value} is not a byte count`);
    return n;
  }
  if (typeof value !== 'string') {
    throw invalidArgument(`${what}: expected bytes or a size like '64M', got ${typeof value}`);
  }
  const m = SIZE_RE.exec(value);
  if (!m) throw invalidArgument(`${what}: invalid size '${value}' (expected e.g. 512k, 64M, 1.5G)`);
  const shift = m[2] ? SHIFT[m[2].toLowerCase()] : 0;
  const bytes = Math.floor(Number(m[1]) * 2 ** shift);
  if (!Number.isSafeInteger(bytes)) throw invalidArgument(`${what}: size '${value}' is too large`);
  return bytes;
}

/** Nanoseconds (a Number) from milliseconds or a string such as '1.5s'. */
function parseDurationNs(value, what = 'duration') {
  let ns;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalidArgument(`${what}: ${value} is not a finite duration`);
    ns = Math.round(value * 1e6);
  } else if (typeof value === 'string') {
    ns = parseDurationText(value, what);
  } else {
    throw invalidArgument(`${what}: expected milliseconds or a duration like '2s', got ${typeof value}`);
  }
  if (ns < 0) throw invalidArgument(`${what}: ${value} is negative`);
  return ns;
}

function parseDurationText(text, what) {
  if (text === '0') return 0;
  if (text === '') throw invalidArgument(`${what}: empty duration`);
  let total = 0;
  PART_RE.lastIndex = 0;
  while (PART_RE.lastIndex < text.length) {
    const m = PART_RE.exec(text);
    if (!m) throw invalidArgument(`${what}: invalid duration '${text}' (expected e.g. 500ms, 2s, 5m, 1h30m)`);
    total += Number(m[1]) * NANOS[m[2]];
  }
  return Math.round(total);
}

/** A google.protobuf.Duration object for the wire. */
function toDuration(value, what) {
  const ns = parseDurationNs(value, what);
  return { seconds: Math.floor(ns / 1e9), nanos: ns % 1e9 };
}

/** Milliseconds (a float) from a google.protobuf.Duration object. */
function durationMs(d) {
  if (!d) return 0;
  return Number(d.seconds || 0) * 1e3 + (d.nanos || 0) / 1e6;
}

/** '64M' for 67108864, '1.5G', '100B': the shortest binary unit. */
function formatSize(bytes) {
  for (const [suffix, shift] of [['P', 50], ['T', 40], ['G', 30], ['M', 20], ['K', 10]]) {
    if (bytes >= 2 ** shift) {
      return `${(bytes / 2 ** shift).toFixed(1).replace(/\.0$/, '')}${suffix}`;
    }
  }
  return `${bytes}B`;
}

module.exports = { parseSize, parseDurationNs, toDuration, durationMs, formatSize };
