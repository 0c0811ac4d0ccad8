'use strict';
// The protocol as a Node.js program sees it, loaded at run time from
// proto/cairn/v1/*.proto (no generated code): the gRPC clients of the services,
// payloads, timestamps, and why a call failed.

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', 'proto');
const PROTO_FILES = fs
  .readdirSync(path.join(PROTO_ROOT, 'cairn', 'v1'))
  .filter((f) => f.endsWith('.proto'))
  .sort()
  .map((f) => `cairn/v1/${f}`);

// Enums as their names, 64-bit integers as strings, bytes as Buffers, every
// field present (null for an unset message), the set member of a oneof named.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

const definition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
const v1 = grpc.loadPackageDefinition(definition).cairn.v1;

// The same files through protobufjs, for the one message that travels inside a
// Payload rather than as an RPC message: ChildResults.
const root = new protobuf.Root();
root.resolvePath = (origin, target) => {
  if (target.startsWith('google/protobuf/')) return target; // bundled with protobufjs
  return path.join(PROTO_ROOT, target);
};
root.loadSync(PROTO_FILES, { keepCase: true });
root.resolveAll();
const ChildResults = root.lookupType('cairn.v1.ChildResults');

const JSON_ENCODING = 'json/plain';
const BINARY_ENCODING = 'binary/plain';
const CHILD_RESULTS_ENCODING = 'proto/cairn.v1.ChildResults';

function clients(address) {
  const creds = grpc.credentials.createInsecure();
  return {
    runs: new v1.RunService(address, creds),
    waits: new v1.WaitService(address, creds),
    workers: new v1.WorkerService(address, creds),
  };
}

// The API key of every call: CAIRN_API_KEY, sent as `authorization: Bearer <key>`.
function keyMetadata() {
  const metadata = new grpc.Metadata();
  if (process.env.CAIRN_API_KEY) metadata.set('authorization', `Bearer ${process.env.CAIRN_API_KEY}`);
  return metadata;
}

// One unary call as a promise, with a deadline; resolves to the response.
function call(client, method, request, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    client[method](request, keyMetadata(), { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function jsonPayload(value) {
  return { encoding: JSON_ENCODING, data: Buffer.from(JSON.stringify(value === undefined ? null : value)) };
}

// A Payload as a value: JSON decoded, binary as a Buffer, ChildResults as
// [{run_id, status, output (decoded), error}].
function decodePayload(payload) {
  if (!payload) return null;
  const encoding = payload.encoding || JSON_ENCODING;
  const data = Buffer.from(payload.data || []);
  if (encoding === JSON_ENCODING) return data.length ? JSON.parse(data.toString('utf8')) : null;
  if (encoding === BINARY_ENCODING) return data;
  if (encoding === CHILD_RESULTS_ENCODING) {
    const message = ChildResults.toObject(ChildResults.decode(data), {
      enums: String,
      longs: String,
      defaults: true,
    });
    return message.results.map((r) => ({
      run_id: r.run_id,
      status: r.status,
      output: r.output ? decodePayload(r.output) : null,
      output_encoding: r.output ? r.output.encoding || JSON_ENCODING : null,
      error: r.error || null,
    }));
  }
  throw new Error(`unknown payload encoding ${JSON.stringify(encoding)}`);
}

function timestamp(date) {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function duration(seconds) {
  const whole = Math.floor(seconds);
  return { seconds: whole, nanos: Math.round((seconds - whole) * 1e9) };
}

function durationMs(d) {
  return d ? Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6) : 0;
}

// Why a call failed: code, its name, message and trailing metadata.
function describeError(err) {
  const metadata = {};
  if (err.metadata && typeof err.metadata.getMap === 'function') {
    for (const [k, v] of Object.entries(err.metadata.getMap())) metadata[k] = Buffer.isBuffer(v) ? v.toString('base64') : v;
  }
  const codeName = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) || String(err.code);
  return { code: err.code, code_name: codeName, details: err.details || err.message, metadata };
}

// The trailing metadata "cairn-attempt-gone" of a refused write or heartbeat:
// "canceled", "timed_out", "superseded", "ended", or null for another refusal.
function attemptGone(err) {
  if (!err || err.code !== grpc.status.FAILED_PRECONDITION || !err.metadata) return null;
  const values = err.metadata.get('cairn-attempt-gone');
  return values.length ? String(values[0]) : null;
}

module.exports = {
  grpc,
  status: grpc.status,
  clients,
  call,
  jsonPayload,
  decodePayload,
  timestamp,
  duration,
  durationMs,
  describeError,
  attemptGone,
  JSON_ENCODING,
  BINARY_ENCODING,
  CHILD_RESULTS_ENCODING,
};
