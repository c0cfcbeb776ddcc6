// Hostile API input: every router method and event stream fed wrong types, huge
// strings, path traversal, NUL bytes, prototype keys and random JSON. Every call must end in a
// SpindleError with a sentence (or a normal answer), never another exception, a crash, or an
// "internal error"; files outside the test's own directories are never created.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { createBackend, type Backend } from '../../../electron/api/backend.js';
import { methods, topics } from '../../../electron/shared/api.js';
import { SpindleError } from '../../../electron/shared/errors.js';
import type { FuzzTarget } from '../target.js';
import { isolatedEnv } from '../../lib/api.js';

interface Ctx {
  dir: string;
  backend: Backend;
  img: string;
}

/** Top-level keys of a method's params schema (zod objects expose .shape). */
function keysOf(schema: unknown): string[] {
  const shape = (schema as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

const OUTSIDE = '/nonexistent-spindle-fuzz';
/** What the shell-injection strings below would create if any of them reached a shell. */
const PWNED = `/tmp/spindle-fuzz-pwned-${process.pid}`;
const hostileString = (dir: string) =>
  fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.constantFrom(
      '',
      ' ',
      '.',
      '..',
      '../../../../etc/passwd',
      `${dir}/../../../../etc/shadow`,
      `${dir}/a/../../..${OUTSIDE}/x.img`,
      `${dir}/x\0.img`,
      '/\0',
      'd0\0',
      'a'.repeat(5000),
      `/${'a/'.repeat(3000)}`,
      '/dev/null',
      '/proc/self/mem',
      '-rf',
      `$(touch ${PWNED})`,
      `\`touch ${PWNED}\``,
      `; touch ${PWNED}`,
      '`id`',
      'a;b|c&d',
      '\u202e\u0007\u001b[2J',
      '__proto__',
      'constructor',
      'd999',
      'vm-1',
      'toString',
    ),
    fc.constant('x'.repeat(1 << 20)),
  );
const hostileValue = (dir: string): fc.Arbitrary<unknown> =>
  fc.oneof(
    { arbitrary: hostileString(dir), weight: 4 },
    { arbitrary: fc.constantFrom(-1, 0, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 64, -0, Number.MIN_VALUE), weight: 2 },
    { arbitrary: fc.constantFrom(null, undefined, true, false, [], {}, { __proto__: { polluted: 1 } }), weight: 2 },
    { arbitrary: fc.anything({ maxDepth: 3, withBigInt: true, withNullPrototype: true, withObjectString: true }), weight: 2 },
  );

const callArb = (dir: string) => {
  const names = Object.keys(methods);
  return fc.record({
    method: fc.oneof({ arbitrary: fc.constantFrom(...names), weight: 10 }, { arbitrary: hostileString(dir), weight: 1 }),
    shape: fc.constantFrom('keys', 'keys', 'keys', 'anything'),
    picks: fc.array(fc.tuple(fc.nat(), hostileValue(dir)), { maxLength: 4 }),
    raw: fc.anything({ maxDepth: 2 }),
    topic: fc.option(fc.oneof(fc.constantFrom(...Object.keys(topics)), hostileString(dir)), { freq: 4 }),
  });
};

function paramsFor(method: string, c: { shape: string; picks: [number, unknown][]; raw: unknown }): unknown {
  if (c.shape === 'anything') return c.raw;
  const keys = Object.hasOwn(methods, method) ? keysOf((methods as Record<string, { params: unknown }>)[method]!.params) : [];
  const out: Record<string, unknown> = {};
  for (const [i, v] of c.picks) out[keys.length ? keys[i % keys.length]! : `k${i % 3}`] = v;
  return out;
}

const show = (v: unknown): string => {
  try {
    return String(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x))).slice(0, 200);
  } catch {
    return String(v).slice(0, 200);
  }
};

/** A refusal the user can read: a SpindleError whose message is a bounded sentence. */
function assertSentence(err: unknown, where: string): void {
  assert.ok(err instanceof SpindleError, `${where}: threw ${String(err)}`);
  assert.ok(err.message.length > 10 && err.message.length < 10_000, `${where}: message length ${err.message.length}`);
  assert.match(err.message, /^[A-Z$/'"`a-z0-9].*[.)!?]$/s, `${where}: not a sentence: ${err.message.slice(0, 200)}`);
  // Every layer is part of the backend under test: INTERNAL (a bug, or a missing layer) is a failure.
  assert.notEqual(err.code, 'INTERNAL', `${where}: internal error: ${err.message}`);
}

export const apiRouterTarget: FuzzTarget<Ctx> = {
  name: 'api-router',
  suite: 'unit',
  bounded: 400,
  seed: 6006,
  setup() {
    rmSync(PWNED, { force: true });
    const dir = mkdtempSync(join(tmpdir(), 'spindle-apifuzz-'));
    const env = isolatedEnv(dir);
    const img = join(dir, 'a.img');
    writeFileSync(img, '');
    truncateSync(img, 1 << 20);
    return { dir, img, backend: createBackend({ env }) };
  },
  property(ctx, stats) {
    return fc.asyncProperty(callArb(ctx.dir), async (c) => {
      const params = paramsFor(c.method, c);
      try {
        await ctx.backend.router.call(c.method, params);
        stats.answered = (stats.answered ?? 0) + 1;
      } catch (err) {
        assertSentence(err, `${c.method.slice(0, 40)}(${show(params)})`);
        stats[(err as SpindleError).code] = (stats[(err as SpindleError).code] ?? 0) + 1;
      }
      if (c.topic !== null) {
        try {
          ctx.backend.router.subscribe(c.topic, params, () => undefined)();
          stats.subscribed = (stats.subscribed ?? 0) + 1;
        } catch (err) {
          assertSentence(err, `subscribe ${c.topic.slice(0, 40)}`);
        }
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype polluted');
      assert.ok(!existsSync(OUTSIDE), `${OUTSIDE} was created`);
      assert.ok(!existsSync(PWNED), `${PWNED} exists: a hostile string reached a shell`);
      return true;
    });
  },
  async after(ctx, runs, stats) {
    // The router still answers, and the generator got past validation into the handlers.
    assert.ok(await ctx.backend.router.call('vm.list', {}));
    assert.ok((stats.INVALID_ARGUMENT ?? 0) > runs / 4, `validation refusals: ${JSON.stringify(stats)}`);
    assert.ok((stats.NOT_FOUND ?? 0) + (stats.answered ?? 0) > 0, `nothing got past validation: ${JSON.stringify(stats)}`);
  },
  async teardown(ctx) {
    await ctx.backend.close();
    rmSync(ctx.dir, { recursive: true, force: true });
  },
};
