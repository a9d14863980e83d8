import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestDaemon } from '../helpers/daemon.ts';

describe('concurrency', () => {
  let d: TestDaemon;
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    await d.destroy();
  });

  it('twenty parallel `run -d` all succeed with unique ids and names', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => d.berth(['run', '-d', 'busybox', 'sleep', '300'])),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const ids = results.map((r) => r.stdout.trim());
    assert.equal(new Set(ids).size, 20);
    const names = (await d.berthOk(['ps', '--format', '{{.Names}}'])).trim().split('\n');
    assert.equal(names.length, 20);
    assert.equal(new Set(names).size, 20);
    const states = (await d.berthOk(['ps', '-a', '--format', '{{.State}}'])).trim().split('\n');
    assert.deepEqual(new Set(states), new Set(['running']));
    const removed = await Promise.all(ids.map((id) => d.berth(['rm', '-f', id])));
    for (const r of removed) assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(d.leaks(ids), []);
  });

  it('a name raced by parallel creates is given to exactly one', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        d.berth(['create', '--name', 'contested', 'busybox', 'true']),
      ),
    );
    assert.equal(results.filter((r) => r.code === 0).length, 1);
    for (const r of results.filter((x) => x.code !== 0)) assert.match(r.stderr, /already in use/);
    await d.berthOk(['rm', 'contested']);
  });
});
