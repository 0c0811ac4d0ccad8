'use strict';
// A Cairn client in Node.js, written from proto/cairn/v1 alone. One call per
// invocation, printing its answer as one JSON object:
//
//   node client.js COMMAND '{"json": "arguments"}'
//
// Commands: trigger {task_id, payload, idempotency_key, request_id}, get {run_id},
// wait {run_id, timeout_seconds}, await {run_id, statuses, timeout_seconds}
// (GetRun until the run is in one of statuses), send-event {name, key, run_id,
// payload}, create-token {timeout_seconds}, complete-token {token_id, payload},
// get-token {token_id}, cancel {run_id, reason}.
// Payloads go out as json/plain; payloads in answers are printed as
// {encoding (as sent), value} (JSON and ChildResults decoded, other bytes as base64).
// A refused call prints {"error": {code, code_name, details, metadata}} and exits 3.
// CAIRN_ADDRESS is the frontend's host:port.

const cairn = require('./cairn');

const ADDRESS = process.env.CAIRN_ADDRESS;

// Payloads in an answer made readable: {encoding, value}.
function render(value) {
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (Array.isArray(value)) return value.map(render);
  if (value && typeof value === 'object') {
    if ('data' in value && 'encoding' in value && Object.keys(value).length === 2) {
      const decoded = cairn.decodePayload(value);
      return { encoding: value.encoding, value: Buffer.isBuffer(decoded) ? decoded.toString('base64') : decoded };
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = render(v);
    return out;
  }
  return value;
}

async function awaitStatus(stubs, args) {
  const deadline = Date.now() + (args.timeout_seconds || 20) * 1000;
  for (;;) {
    const response = await cairn.call(stubs.runs, 'GetRun', { run_id: args.run_id });
    if (args.statuses.includes(response.run.status)) return response;
    if (Date.now() >= deadline) {
      return { timed_out: true, run: response.run };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const COMMANDS = {
  trigger: (s, a) =>
    cairn.call(s.runs, 'TriggerRun', {
      task_id: a.task_id,
      payload: cairn.jsonPayload(a.payload),
      idempotency_key: a.idempotency_key || '',
      // This trigger's identity: the same one sent again answers the run it made.
      request_id: a.request_id || '',
    }),
  get: (s, a) => cairn.call(s.runs, 'GetRun', { run_id: a.run_id }),
  wait: (s, a) => {
    const seconds = a.timeout_seconds || 20;
    return cairn.call(s.runs, 'WaitRun', { run_id: a.run_id, timeout: cairn.duration(seconds) }, (seconds + 10) * 1000);
  },
  await: awaitStatus,
  'send-event': (s, a) =>
    cairn.call(s.waits, 'SendEvent', {
      run_id: a.run_id || '',
      name: a.name,
      key: a.key || '',
      payload: cairn.jsonPayload(a.payload),
    }),
  'create-token': (s, a) =>
    cairn.call(s.waits, 'CreateWaitToken', a.timeout_seconds ? { timeout: cairn.duration(a.timeout_seconds) } : {}),
  'complete-token': (s, a) =>
    cairn.call(s.waits, 'CompleteWaitToken', { token_id: a.token_id, payload: cairn.jsonPayload(a.payload) }),
  'get-token': (s, a) => cairn.call(s.waits, 'GetWaitToken', { token_id: a.token_id }),
  cancel: (s, a) => cairn.call(s.runs, 'CancelRun', { run_id: a.run_id, reason: a.reason || '' }),
};

async function main() {
  const [command, raw] = process.argv.slice(2);
  if (!ADDRESS || !COMMANDS[command]) {
    process.stderr.write(`usage: CAIRN_ADDRESS=host:port node client.js (${Object.keys(COMMANDS).join('|')}) JSON\n`);
    process.exit(2);
  }
  const stubs = cairn.clients(ADDRESS);
  try {
    const response = await COMMANDS[command](stubs, JSON.parse(raw || '{}'));
    process.stdout.write(JSON.stringify(render(response)) + '\n');
  } catch (err) {
    if (err.code === undefined) throw err;
    process.stdout.write(JSON.stringify({ error: cairn.describeError(err) }) + '\n');
    process.exitCode = 3;
  }
  for (const stub of Object.values(stubs)) stub.close();
}

main().catch((err) => {
  process.stderr.write(String(err.stack || err) + '\n');
  process.exit(1);
});
