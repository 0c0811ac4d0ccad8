'use strict';
// A Cairn worker in Node.js, written from proto/cairn/v1 alone: a small SDK
// (register, poll, replay the journal, record steps, heartbeat, suspend on
// durable waits, finish) and the conformance suite's tasks.
//
// Environment: CAIRN_ADDRESS (the frontend, host:port), CONFORMANCE_TASKS
// (comma-separated task ids to serve; all when empty), CONFORMANCE_WORKER_ID,
// CONFORMANCE_GATE_DIR (where the tests create gate files a task waits for),
// CONFORMANCE_HEARTBEAT ("off": send no heartbeats, so only a step write can
// learn that an attempt is gone).
// It prints one JSON object per line on stdout for every thing that happens
// (registered, attempt_started, step_ran, step_recorded, attempt_gone,
// attempt_finished, ...), which the tests read.

const fs = require('fs');
const path = require('path');
const cairn = require('./cairn');

const ADDRESS = process.env.CAIRN_ADDRESS;
const WORKER_ID = process.env.CONFORMANCE_WORKER_ID || `node-worker-${process.pid}`;
const GATE_DIR = process.env.CONFORMANCE_GATE_DIR || '';
const HEARTBEATS = process.env.CONFORMANCE_HEARTBEAT !== 'off';
const SLOTS = 8;
const POLL_WAIT_SECONDS = 5;
const MAX_TRY_ERRORS = 10;

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields, at: new Date().toISOString() }) + '\n');
}

// ---- errors a task meets ------------------------------------------------------------

class NonRetryableError extends Error {
  constructor(message, type) {
    super(message);
    this.type = type || 'NonRetryableError';
    this.nonRetryable = true;
  }
}

// A replay met a step whose name differs from the recorded one: the code changed
// under a running run. The attempt fails non-retryably, even if task code catches it.
class NonDeterminismError extends NonRetryableError {
  constructor(message) {
    super(message, 'NonDeterminismError');
  }
}

// A step that failed after its tries (now or when it was recorded).
class StepFailedError extends Error {
  constructor(stepName, error) {
    super(`step '${stepName}' failed: ${error.type}: ${error.message}`);
    this.stepName = stepName;
    this.error = error;
  }
}

// Thrown through task code when the attempt reaches a durable wait.
class Suspend {
  constructor(wait) {
    this.wait = wait;
  }
}

// Thrown through task code when history says the attempt is gone.
class AttemptAbandoned extends Error {
  constructor(reason) {
    super(`attempt gone: ${reason}`);
    this.reason = reason;
  }
}

function errorInfo(err, nonRetryable) {
  return {
    type: err.type || (err.constructor && err.constructor.name) || 'Error',
    message: String(err.message || err),
    stack_trace: String(err.stack || ''),
    non_retryable: Boolean(nonRetryable),
  };
}

// ---- one attempt ---------------------------------------------------------------------

class Attempt {
  constructor(worker, assignment) {
    this.worker = worker;
    this.runId = assignment.run_id;
    this.attempt = assignment.attempt;
    // The assignment's secret: every Heartbeat, RecordStep and FinishAttempt of
    // the attempt carries it, or history refuses the write (PERMISSION_DENIED).
    this.token = assignment.attempt_token;
    this.taskId = assignment.task_id;
    this.journal = new Map(assignment.steps.map((s) => [s.position, s]));
    this.leaseMs = cairn.durationMs(assignment.lease_duration) || 3000;
    this.nextPosition = 0;
    this.gone = null; // why history refused this attempt, once it did
    this.nondeterminism = null;
    this.goneSignal = new Promise((resolve) => {
      this.markGone = (reason, via) => {
        if (this.gone) return;
        this.gone = reason;
        emit('attempt_gone', { run_id: this.runId, attempt: this.attempt, reason, via });
        resolve(reason);
      };
    });
  }

  ids() {
    return { run_id: this.runId, attempt: this.attempt };
  }

  // What names the attempt in each of its writes (ids() is what the events print).
  ref() {
    return { ...this.ids(), attempt_token: this.token };
  }

  checkGone() {
    if (this.gone) throw new AttemptAbandoned(this.gone);
  }

  // The record at the next position, or null when the code must run it live.
  replayed(position, name) {
    const recorded = this.journal.get(position);
    if (!recorded) return null;
    if (recorded.name !== name) {
      const err = new NonDeterminismError(
        `non-determinism in run ${this.runId}: position ${position} was recorded as ` +
          `'${recorded.name}' but the code now calls '${name}'`,
      );
      this.nondeterminism = this.nondeterminism || err;
      throw err;
    }
    emit('step_replayed', { ...this.ids(), position, name });
    return recorded;
  }

  static valueOf(recorded) {
    if (recorded.status === 'STEP_STATUS_COMPLETED') return cairn.decodePayload(recorded.output);
    if (recorded.status === 'STEP_STATUS_FAILED') throw new StepFailedError(recorded.name, recorded.error);
    throw new Error(`step '${recorded.name}' has an unknown status ${recorded.status}`);
  }

  // Runs fn(tryNumber, position) up to `tries` times, records its result once.
  async step(name, fn, { tries = 1 } = {}) {
    const position = this.nextPosition++;
    const recorded = this.replayed(position, name);
    if (recorded) return Attempt.valueOf(recorded);
    const errors = [];
    for (let t = 1; ; t++) {
      this.checkGone();
      emit('step_ran', { ...this.ids(), position, name, try: t });
      let value;
      try {
        value = await fn(t, position);
      } catch (err) {
        if (err instanceof AttemptAbandoned) throw err;
        errors.push(err);
        if (t < tries && !err.nonRetryable) continue;
        const error = errorInfo(err, err.nonRetryable);
        await this.record({
          position,
          name,
          status: 'STEP_STATUS_FAILED',
          error,
          tries: t,
          try_errors: errors.slice(0, -1).slice(-MAX_TRY_ERRORS).map((e) => errorInfo(e, false)),
        });
        throw new StepFailedError(name, error);
      }
      await this.record({
        position,
        name,
        status: 'STEP_STATUS_COMPLETED',
        output: cairn.jsonPayload(value),
        tries: t,
        try_errors: errors.slice(-MAX_TRY_ERRORS).map((e) => errorInfo(e, false)),
      });
      return value;
    }
  }

  async record(step) {
    this.checkGone();
    const request = { ...this.ref(), ...step };
    try {
      await cairn.call(this.worker.stubs.workers, 'RecordStep', request);
    } catch (err) {
      const reason = cairn.attemptGone(err);
      if (reason) {
        this.markGone(reason, 'record_step');
        throw new AttemptAbandoned(reason);
      }
      emit('record_error', { ...this.ids(), position: step.position, error: cairn.describeError(err) });
      throw err;
    }
    emit('step_recorded', { ...this.ids(), position: step.position, name: step.name, status: step.status });
  }

  // A durable wait at the next position: its recorded result on replay, or the
  // attempt suspends on it.
  async wait(name, spec) {
    const position = this.nextPosition++;
    const recorded = this.replayed(position, name);
    if (recorded) return Attempt.valueOf(recorded);
    throw new Suspend({ position, name, ...spec });
  }

  async sleep(ms) {
    return this.wait('wait.sleep', { sleep: { until: cairn.timestamp(new Date(Date.now() + ms)) } });
  }

  async waitForEvent(name, key) {
    return this.wait('wait.for_event', { event: { name, key: key || '' } });
  }

  // A token of this run, its id recorded as a step so a replay waits on the same one.
  async createToken() {
    return this.step('wait.create_token', async (_try, position) => {
      const response = await cairn.call(this.worker.stubs.waits, 'CreateWaitToken', {
        run_id: this.runId,
        idempotency_key: `${this.runId}:${position}`,
      });
      return response.token.id;
    });
  }

  async waitForToken(tokenId) {
    return this.wait('wait.for_token', { token: { token_id: tokenId } });
  }

  async triggerAndWait(children) {
    const runs = children.map((c) => ({ task_id: c.task_id, payload: cairn.jsonPayload(c.payload) }));
    return this.wait('wait.children', { children: { runs } });
  }

  // Resolves when the test creates GATE_DIR/<run id>.<name>, or the attempt is gone.
  gate(name) {
    const file = path.join(GATE_DIR, `${this.runId}.${name}`);
    emit('gate_waiting', { ...this.ids(), gate: name });
    return new Promise((resolve) => {
      const check = () => {
        if (fs.existsSync(file) || this.gone) {
          clearInterval(timer);
          resolve(Boolean(this.gone));
        }
      };
      const timer = setInterval(check, 25);
      check();
    });
  }

  async heartbeat() {
    if (this.gone) return;
    try {
      await cairn.call(this.worker.stubs.workers, 'Heartbeat', this.ref(), 10000);
    } catch (err) {
      const reason = cairn.attemptGone(err);
      if (reason) this.markGone(reason, 'heartbeat');
      else emit('heartbeat_error', { ...this.ids(), error: cairn.describeError(err) });
    }
  }
}

// ---- the worker ----------------------------------------------------------------------

class Worker {
  constructor(address, tasks) {
    this.stubs = cairn.clients(address);
    this.tasks = tasks;
    this.running = 0;
  }

  async register() {
    const definitions = Object.entries(this.tasks).map(([id, t]) => ({ task_id: id, retry: t.retry || null }));
    await cairn.call(this.stubs.workers, 'RegisterWorker', {
      worker_id: WORKER_ID,
      version: 'node-conformance-1',
      tasks: definitions,
      slots: SLOTS,
    });
    emit('registered', { worker_id: WORKER_ID, tasks: Object.keys(this.tasks) });
  }

  async run() {
    await this.register();
    for (;;) {
      const free = SLOTS - this.running;
      if (free <= 0) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      let response;
      try {
        response = await cairn.call(
          this.stubs.workers,
          'PollAttempt',
          { worker_id: WORKER_ID, wait: cairn.duration(POLL_WAIT_SECONDS), max_attempts: free },
          (POLL_WAIT_SECONDS + 10) * 1000,
        );
      } catch (err) {
        emit('poll_error', { error: cairn.describeError(err) });
        if (err.code === cairn.status.FAILED_PRECONDITION) await this.register().catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      for (const assignment of response.assignments) {
        this.running++;
        this.runAttempt(assignment)
          .catch((err) => emit('worker_error', { run_id: assignment.run_id, error: String(err.stack || err) }))
          .finally(() => this.running--);
      }
    }
  }

  async runAttempt(assignment) {
    const ctx = new Attempt(this, assignment);
    emit('attempt_started', {
      ...ctx.ids(),
      task_id: ctx.taskId,
      journal: assignment.steps.map((s) => ({ position: s.position, name: s.name })),
    });
    const task = this.tasks[ctx.taskId];
    const beat = HEARTBEATS ? setInterval(() => ctx.heartbeat(), Math.max(100, ctx.leaseMs / 3)) : null;
    const request = ctx.ref();
    try {
      const output = await task.fn(ctx, cairn.decodePayload(assignment.payload));
      request.outcome = 'ATTEMPT_OUTCOME_COMPLETED';
      request.output = cairn.jsonPayload(output);
    } catch (err) {
      if (err instanceof Suspend) {
        request.outcome = 'ATTEMPT_OUTCOME_SUSPENDED';
        request.wait = err.wait;
      } else if (err instanceof StepFailedError) {
        request.outcome = 'ATTEMPT_OUTCOME_FAILED';
        request.error = { ...err.error, stack_trace: String(err.stack) };
      } else if (!(err instanceof AttemptAbandoned)) {
        request.outcome = 'ATTEMPT_OUTCOME_FAILED';
        request.error = errorInfo(err, err.nonRetryable);
      }
    } finally {
      if (beat) clearInterval(beat);
    }
    if (ctx.nondeterminism) {
      // Whatever the task did after the mismatch cannot be trusted.
      request.outcome = 'ATTEMPT_OUTCOME_FAILED';
      request.error = errorInfo(ctx.nondeterminism, true);
      delete request.output;
      delete request.wait;
    }
    if (ctx.gone) {
      emit('attempt_abandoned', { ...ctx.ids(), reason: ctx.gone });
      return;
    }
    try {
      const response = await cairn.call(this.stubs.workers, 'FinishAttempt', request);
      emit('attempt_finished', {
        ...ctx.ids(),
        outcome: request.outcome,
        error: request.error || null,
        wait: request.wait ? { position: request.wait.position, name: request.wait.name } : null,
        run_status: response.run_status,
      });
    } catch (err) {
      const reason = cairn.attemptGone(err);
      if (reason) ctx.markGone(reason, 'finish_attempt');
      else emit('finish_error', { ...ctx.ids(), outcome: request.outcome, error: cairn.describeError(err) });
    }
  }
}

// ---- the conformance tasks -------------------------------------------------------------

const FAST_RETRY = { max_attempts: 3, factor: 1, min_timeout: cairn.duration(0.1), max_timeout: cairn.duration(0.1) };
const NO_RETRY = { max_attempts: 1 };

class QuotaError extends Error {
  constructor(message) {
    super(message);
    this.type = 'QuotaError';
  }
}

const never = new Promise(() => {});

const TASKS = {
  // Three steps and a step returning null, each recorded with its output.
  'node-steps': {
    retry: NO_RETRY,
    fn: async (ctx, input) => {
      const sum = await ctx.step('add', () => input.x + 10);
      const product = await ctx.step('multiply', () => sum * 2);
      const text = await ctx.step('describe', () => `sum=${sum} product=${product}`);
      const nothing = await ctx.step('nothing', () => null);
      return { sum, product, text, nothing };
    },
  },

  // In-place retries: one step succeeds on its third try, one fails both its tries.
  'node-retries': {
    retry: NO_RETRY,
    fn: async (ctx) => {
      const flaky = await ctx.step(
        'flaky',
        (t) => {
          if (t < 3) throw new Error(`try ${t} failed`);
          return `ok on try ${t}`;
        },
        { tries: 5 },
      );
      let hopeless = null;
      try {
        await ctx.step(
          'hopeless',
          (t) => {
            throw new QuotaError(`quota exceeded on try ${t}`);
          },
          { tries: 2 },
        );
      } catch (err) {
        if (!(err instanceof StepFailedError)) throw err;
        hopeless = { type: err.error.type, message: err.error.message };
      }
      return { flaky, hopeless };
    },
  },

  // The first attempt blocks in its second step until the worker is killed; a
  // new attempt replays the first step and runs the second.
  'node-crash': {
    retry: FAST_RETRY,
    fn: async (ctx) => {
      const first = await ctx.step('first', () => 'first done');
      const second = await ctx.step('second', async () => {
        if (ctx.attempt === 1) {
          emit('blocking', ctx.ids());
          await never;
        }
        return 'second done';
      });
      return { first, second };
    },
  },

  // A durable sleep between two steps.
  'node-sleep': {
    retry: NO_RETRY,
    fn: async (ctx, input) => {
      const before = await ctx.step('before', () => 'before');
      const woke = await ctx.sleep(input.ms);
      const after = await ctx.step('after', () => 'after');
      return { before, woke, after };
    },
  },

  // An event wait; with input.gate the run waits for the test before waiting,
  // so an event sent to it meanwhile is buffered.
  'node-event': {
    retry: NO_RETRY,
    fn: async (ctx, input) => {
      const prepared = await ctx.step('prepare', () => `prepared ${input.key}`);
      if (input.gate) await ctx.gate('wait');
      const event = await ctx.waitForEvent('approval', input.key);
      const after = await ctx.step('after', () => 'after');
      return { prepared, event, after };
    },
  },

  // A token the run creates, then waits on.
  'node-token': {
    retry: NO_RETRY,
    fn: async (ctx) => {
      const tokenId = await ctx.createToken();
      const value = await ctx.waitForToken(tokenId);
      return { token_id: tokenId, value };
    },
  },

  // Children that complete and one that fails, waited for together.
  'node-parent': {
    retry: NO_RETRY,
    fn: async (ctx) => {
      const results = await ctx.triggerAndWait([
        { task_id: 'node-double', payload: { n: 1 } },
        { task_id: 'node-double', payload: { n: 21 } },
        { task_id: 'node-boom', payload: {} },
      ]);
      const summary = await ctx.step('summarize', () =>
        results.map((r) => ({
          run_id: r.run_id,
          status: r.status,
          output: r.output,
          output_encoding: r.output_encoding,
          error: r.error ? { type: r.error.type, message: r.error.message, non_retryable: r.error.non_retryable } : null,
        })),
      );
      return { results: summary };
    },
  },
  'node-double': {
    retry: NO_RETRY,
    fn: async (ctx, input) => ({ doubled: await ctx.step('double', () => input.n * 2) }),
  },
  'node-boom': {
    retry: NO_RETRY,
    fn: async () => {
      throw new NonRetryableError('the child went boom', 'ChildBoom');
    },
  },

  // Blocks in a step until history says the attempt is gone (or a gate opens).
  'node-cancel': {
    retry: NO_RETRY,
    fn: async (ctx) => {
      await ctx.step('started', () => 'started');
      await ctx.step('block', async () => {
        emit('blocking', ctx.ids());
        await Promise.race([ctx.goneSignal, ctx.gate('release')]);
        return 'released';
      });
      return 'not canceled';
    },
  },

  // Attempt 1 records 'v1-charge' and fails (retryably); attempt 2's code calls
  // 'v2-refund' at the same position: a non-deterministic replay.
  'node-nondet': {
    retry: FAST_RETRY,
    fn: async (ctx) => {
      if (ctx.attempt === 1) {
        await ctx.step('v1-charge', () => 'charged');
        throw new Error('deployed a new version');
      }
      await ctx.step('v2-refund', () => 'refunded');
      return 'must not complete';
    },
  },

  // One step, counting how often a run of it executes.
  'node-idempotent': {
    retry: NO_RETRY,
    fn: async (ctx, input) => ({ order: await ctx.step('charge', () => input.order) }),
  },
};

function selectedTasks() {
  const wanted = (process.env.CONFORMANCE_TASKS || '').split(',').filter(Boolean);
  if (!wanted.length) return TASKS;
  const tasks = {};
  for (const id of wanted) {
    if (!TASKS[id]) throw new Error(`unknown task ${id}; known: ${Object.keys(TASKS).join(', ')}`);
    tasks[id] = TASKS[id];
  }
  return tasks;
}

if (!ADDRESS) {
  process.stderr.write('CAIRN_ADDRESS (host:port of the frontend) is required\n');
  process.exit(2);
}
process.on('SIGTERM', () => process.exit(0));
new Worker(ADDRESS, selectedTasks()).run().catch((err) => {
  emit('fatal', { error: String(err.stack || err), ...(err.code !== undefined ? cairn.describeError(err) : {}) });
  process.exit(1);
});
