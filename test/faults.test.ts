// The process-level fault handlers (src/daemon/faults.ts) in child processes: an uncaught error
// contained to one socket or file is logged and the process goes on; a bug (TypeError...) or a
// stream of contained errors ends it with status 70 and a clear message; what is logged of an
// error is its name, message, code and stack, never its other properties. Also the throttled
// error log that control-record faults go through (src/log.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { pino } from 'pino';
import { FAULT_BUDGET, FAULT_EXIT_CODE, isContained } from '../src/daemon/faults.js';
import { errorFields, throttledErrors } from '../src/log.js';

const faults = new URL('../src/daemon/faults.js', import.meta.url).href;
const log = new URL('../src/log.js', import.meta.url).href;

/** Runs `fault` (module code) in a child with the handlers installed; it exits 0 after 300 ms if still up. */
function run(fault: string): { status: number | null; stdout: string; stderr: string; lines: Record<string, unknown>[] } {
  const script = `
    import { installFaultHandlers } from '${faults}';
    import { createLogger } from '${log}';
    installFaultHandlers(createLogger('wgt0'));
    setTimeout(() => { console.log('still up'); process.exit(0); }, 300);
    ${fault}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, LOG_LEVEL: 'error' } });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines };
}

const KEY = 'Buffer.alloc(32, 7)';

test('an uncaught error of one socket (EPIPE) is logged without its other properties, and the process goes on', () => {
  const r = run(`setTimeout(() => { throw Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write', key: ${KEY} }); }, 10);`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /still up/);
  assert.equal(r.lines.length, 1);
  const line = r.lines[0]!;
  assert.match(String(line.msg), /contained/);
  assert.deepEqual(Object.keys(line.err as object).sort(), ['code', 'message', 'stack', 'type']);
  assert.equal((line.err as { code: string }).code, 'EPIPE');
  assert.doesNotMatch(r.stdout, /BwcHBwcH|0707070707|"key"/, 'the key property is not logged');
});

test('an unhandled rejection of one connection (ECONNRESET) is logged and the process goes on', () => {
  const r = run(`Promise.reject(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' }));`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines[0]!.origin, 'unhandledRejection');
});

test(`a bug (TypeError) thrown from a timer ends the process with status ${FAULT_EXIT_CODE} and says why`, () => {
  const r = run(`setTimeout(() => { null.peer; }, 10);`);
  assert.equal(r.status, FAULT_EXIT_CODE);
  assert.doesNotMatch(r.stdout, /still up/);
  assert.match(r.stderr, /^wireguard-ts: uncaught error \(uncaughtException\): TypeError: .*; exiting\n$/);
  assert.equal(r.lines.length, 1, 'the fatal line is written before the exit');
  assert.equal(r.lines[0]!.level, 60);
  assert.match(String((r.lines[0]!.err as { stack: string }).stack), /TypeError/);
});

test('a bug in a promise nobody awaited ends the process too', () => {
  const r = run(`(async () => { throw new RangeError('slot out of range'); })();`);
  assert.equal(r.status, FAULT_EXIT_CODE);
  assert.match(r.stderr, /\(unhandledRejection\): RangeError: slot out of range; exiting/);
});

test(`more than ${FAULT_BUDGET} contained errors in a minute end the process: something loops`, () => {
  const r = run(`for (let i = 0; i <= ${FAULT_BUDGET}; i++) setTimeout(() => { throw Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' }); }, 10 + i);`);
  assert.equal(r.status, FAULT_EXIT_CODE);
  assert.match(r.stderr, new RegExp(`more than ${FAULT_BUDGET} uncaught errors in a minute`));
  assert.equal(r.lines.length, FAULT_BUDGET + 1);
});

test('contained: errors with a system call or a stream code; not: anything else', () => {
  assert.ok(isContained(Object.assign(new Error('x'), { code: 'ENOSPC', syscall: 'write' })));
  assert.ok(isContained(Object.assign(new Error('x'), { code: 'ERR_STREAM_DESTROYED' })));
  assert.equal(isContained(Object.assign(new Error('x'), { code: 'ERR_INVALID_ARG_TYPE' })), false);
  assert.equal(isContained(new TypeError('x')), false);
  assert.equal(isContained('EPIPE'), false);
  assert.equal(isContained(undefined), false);
});

test('errorFields keeps name, message, code and stack only; a throttled log holds back repeats and counts them', () => {
  const e = Object.assign(new TypeError('boom'), { key: new Uint8Array(32) });
  assert.deepEqual(Object.keys(errorFields(e)).sort(), ['message', 'stack', 'type']);
  assert.deepEqual(errorFields('text'), { type: 'string', message: 'text' });
  const lines: { heldBack: number }[] = [];
  const report = throttledErrors(pino({ level: 'error' }, { write: (l: string) => void lines.push(JSON.parse(l) as { heldBack: number }) }), 'control record failed', 60_000);
  for (let i = 0; i < 1000; i++) report(e);
  assert.equal(lines.length, 1, 'one line for a thousand faults in a row');
  assert.equal(lines[0]!.heldBack, 0);
});
