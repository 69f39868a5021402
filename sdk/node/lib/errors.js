'use strict';
// Errors: every failed call rejects with an SbxError carrying the gRPC status
// code and message of the daemon, unchanged. Failures found on the client
// side (bad arguments, a closed exec stream) use the code the daemon would
// have used, so callers handle both the same way.

const { status } = require('@grpc/grpc-js');

const CODE_NAMES = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));

class SbxError extends Error {
  /**
   * @param {number} code  a grpc status code (status.NOT_FOUND, ...)
   * @param {string} details  the status message
   */
  constructor(code, details) {
    const codeName = CODE_NAMES[code] || 'UNKNOWN';
    super(`${codeName}: ${details}`);
    this.name = 'SbxError';
    /** The numeric gRPC status code, as in @grpc/grpc-js's `status`. */
    this.code = code;
    /** Its name: 'NOT_FOUND', 'INVALID_ARGUMENT', ... */
    this.codeName = codeName;
    /** The status message, as the daemon wrote it. */
    this.details = details;
  }
}

/** Converts what @grpc/grpc-js emits (a ServiceError) into an SbxError. */
function fromServiceError(error) {
  if (error instanceof SbxError) return error;
  const code = typeof error.code === 'number' && CODE_NAMES[error.code] ? error.code : status.UNKNOWN;
  const details = typeof error.details === 'string' ? error.details : String(error.message || error);
  return new SbxError(code, details);
}

function invalidArgument(details) {
  return new SbxError(status.INVALID_ARGUMENT, details);
}

function failedPrecondition(details) {
  return new SbxError(status.FAILED_PRECONDITION, details);
}

module.exports = { SbxError, fromServiceError, invalidArgument, failedPrecondition, status };
