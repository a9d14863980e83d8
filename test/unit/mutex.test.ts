import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedMutex } from '../../src/engine/mutex.ts';

interface Gate {
  promise: Promise<void>;
  open: () => void;
}

function gate(): Gate {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, open: () => resolve() };
}

// Lets every queued microtask and the next macrotask run.
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('KeyedMutex', () => {
  it('returns the task’s value', async () => {
    const m = new KeyedMutex();
    assert.equal(await m.run('a', async () => 42), 42);
  });

  it('runs tasks on one key one at a time, in order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let active = 0;
    let maxActive = 0;
    const gates = [gate(), gate(), gate()];
    const runs = gates.map((g, i) =>
      m.run('c1', async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        log.push(`start ${i}`);
        await g.promise;
        log.push(`end ${i}`);
        active--;
        return i;
      }),
    );
    await settle();
    assert.deepEqual(log, ['start 0']);
    // Opening a later gate first must not let its task jump the queue.
    gates[2]?.open();
    gates[1]?.open();
    await settle();
    assert.deepEqual(log, ['start 0']);
    gates[0]?.open();
    assert.deepEqual(await Promise.all(runs), [0, 1, 2]);
    assert.deepEqual(log, ['start 0', 'end 0', 'start 1', 'end 1', 'start 2', 'end 2']);
    assert.equal(maxActive, 1);
  });

  it('runs tasks on different keys concurrently', async () => {
    const m = new KeyedMutex();
    const started: string[] = [];
    const g = gate();
    const a = m.run('a', async () => {
      started.push('a');
      await g.promise;
    });
    const b = m.run('b', async () => {
      started.push('b');
      await g.promise;
    });
    await settle();
    assert.deepEqual(started.sort(), ['a', 'b']);
    g.open();
    await Promise.all([a, b]);
  });

  it('rejects the failing task’s caller and still runs the next task on the key', async () => {
    const m = new KeyedMutex();
    const g = gate();
    const order: string[] = [];
    const failing = m.run('k', async () => {
      await g.promise;
      order.push('fail');
      throw new Error('boom');
    });
    const next = m.run('k', async () => {
      order.push('next');
      return 'ok';
    });
    await settle();
    assert.deepEqual(order, []);
    g.open();
    await assert.rejects(failing, /boom/);
    assert.equal(await next, 'ok');
    assert.deepEqual(order, ['fail', 'next']);
    // And the key keeps working afterwards.
    assert.equal(await m.run('k', async () => 'later'), 'later');
  });

  it('survives a task that throws synchronously', async () => {
    const m = new KeyedMutex();
    await assert.rejects(
      m.run('k', () => {
        throw new Error('sync');
      }),
      /sync/,
    );
    assert.equal(await m.run('k', async () => 1), 1);
  });

  it('forgets a key once its queue is empty', async () => {
    const m = new KeyedMutex();
    await m.run('k', async () => undefined);
    await m
      .run('j', async () => {
        throw new Error('x');
      })
      .catch(() => undefined);
    const tails = (m as unknown as { tails: Map<string, unknown> }).tails;
    assert.equal(tails.size, 0);
  });
});
