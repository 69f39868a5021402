'use strict';
// Authentication to sbxd: TLS channel credentials and the bearer token.
//
// The rules are the C++ SDK's (sbx::ClientOptions): the token goes with every
// call as `authorization: Bearer <token>`, on any channel; TLS uses the given
// CA or the default roots, and a client certificate needs its key.

const grpc = require('@grpc/grpc-js');
const { invalidArgument } = require('./errors');

function checkToken(token) {
  if (typeof token !== 'string') throw invalidArgument(`token: expected a string, got ${typeof token}`);
  // Values of ASCII metadata: visible characters and spaces. Anything else
  // fails every call, so say so now.
  if (!/^[\x20-\x7e]*$/.test(token)) throw invalidArgument('token: only printable ASCII may be sent as metadata');
}

/** PEM text as a Buffer; null when unset or empty. */
function pem(value, what) {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
    throw invalidArgument(`${what}: expected PEM text (a string or Buffer)`);
  }
  return value.length === 0 ? null : Buffer.from(value);
}

/**
 * The channel credentials (insecure unless `tls`) and the channel options
 * that go with them.
 */
function channelCredentials({ tls = false, tlsCaPem, tlsCertPem, tlsKeyPem, tlsServerName = '' }) {
  const ca = pem(tlsCaPem, 'tlsCaPem');
  const cert = pem(tlsCertPem, 'tlsCertPem');
  const key = pem(tlsKeyPem, 'tlsKeyPem');
  if (typeof tlsServerName !== 'string') throw invalidArgument('tlsServerName: expected a string');
  if (!tls) {
    // The C++ SDK ignores these without tls; a caller who set them expects
    // TLS, and would otherwise send the token in clear text.
    if (ca || cert || key || tlsServerName) {
      throw invalidArgument('tlsCaPem, tlsCertPem, tlsKeyPem and tlsServerName need tls: true');
    }
    return { credentials: grpc.credentials.createInsecure(), options: {} };
  }
  if ((cert === null) !== (key === null)) throw invalidArgument('tlsCertPem and tlsKeyPem go together');
  return {
    credentials: grpc.credentials.createSsl(ca, key, cert),
    options: tlsServerName ? { 'grpc.ssl_target_name_override': tlsServerName } : {},
  };
}

/**
 * An interceptor that adds the token to the metadata of every call. Not
 * call credentials (createFromMetadataGenerator): grpc-js refuses to combine
 * them with an insecure channel, and sbxd takes tokens on its Unix socket
 * and on an insecure_tcp listener too.
 */
function bearerToken(token) {
  const value = `Bearer ${token}`;
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', value);
      next(metadata, listener);
    },
  });
}

module.exports = { checkToken, channelCredentials, bearerToken };
