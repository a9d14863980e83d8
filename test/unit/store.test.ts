import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../src/store/index.ts';
import { MIGRATIONS } from '../../src/store/migrations.ts';
import type { ContainerRecord, NewEvent } from '../../src/types/domain.ts';
import { newContainerRecord } from '../../src/engine/records.ts';

let dir: string;
let path: string;
let store: Store;

function rec(id: string, name: string, over: Partial<ContainerRecord> = {}): ContainerRecord {
  const config = {
    image: 'alpine:latest',
    imageId: 'f00d',
    cmd: ['sh', '-c', 'echo hi'],
    entrypoint: [],
    env: ['A=1'],
    workdir: '/',
    user: '',
    hostname: name,
    labels: { tier: 'db' },
    tty: false,
    openStdin: false,
    autoRemove: false,
    networkMode: 'none',
    stopSignal: 'SIGTERM',
    stopTimeout: 10,
    log: { maxSize: 10485760, maxFiles: 5, compress: false },
  } as const;
  return {
    ...newContainerRecord(
      id,
      name,
      { ...config, cmd: [...config.cmd], env: [...config.env] },
      '2024-01-01T00:00:00.000Z',
    ),
    ...over,
  };
}

const ev = (action: string): NewEvent => ({
  type: 'container',
  action,
  actorId: 'abc',
  attributes: { name: 'web' },
});

const userVersion = (s: Store) =>
  (s.db.db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
const eventCount = (s: Store) =>
  Number((s.db.db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-store-'));
  path = join(dir, 'berth.db');
  store = new Store(path);
});

afterEach(() => {
  try {
    store.close();
  } catch {
    // already closed by the test
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('Store migrations', () => {
  it('sets PRAGMA user_version to the number of migrations', () => {
    assert.ok(MIGRATIONS.length >= 1);
    assert.equal(userVersion(store), MIGRATIONS.length);
  });

  it('does not re-run migrations when reopened', () => {
    store.close();
    store = new Store(path); // would fail with "table already exists" if re-run
    assert.equal(userVersion(store), MIGRATIONS.length);
  });

  it('uses WAL journaling', () => {
    const row = store.db.db.prepare('PRAGMA journal_mode').get() as { journal_mode: string };
    assert.equal(row.journal_mode, 'wal');
  });
});

describe('Store containers', () => {
  it('inserts and gets a container with its config', () => {
    const c = rec('aaaa1111', 'web');
    store.containers.insert(c);
    assert.deepEqual(store.containers.get('aaaa1111'), c);
    assert.equal(store.containers.get('nope'), undefined);
  });

  it('finds by name', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    assert.equal(store.containers.byName('web')?.id, 'aaaa1111');
    assert.equal(store.containers.byName('we'), undefined);
  });

  it('finds by id prefix, returning at most 2 on ambiguity', () => {
    store.containers.insert(rec('abc111', 'a'));
    store.containers.insert(rec('abc222', 'b'));
    store.containers.insert(rec('abc333', 'c'));
    store.containers.insert(rec('abd444', 'd'));
    assert.deepEqual(
      store.containers.byIdPrefix('abc1').map((c) => c.id),
      ['abc111'],
    );
    assert.equal(store.containers.byIdPrefix('abc').length, 2);
    assert.equal(store.containers.byIdPrefix('ab').length, 2);
    assert.deepEqual(
      store.containers.byIdPrefix('abd').map((c) => c.id),
      ['abd444'],
    );
    assert.deepEqual(store.containers.byIdPrefix('abe'), []);
    assert.deepEqual(
      store.containers.byIdPrefix('abc333').map((c) => c.id),
      ['abc333'],
    );
  });

  it('rejects a second container with the same name', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    assert.throws(() => store.containers.insert(rec('bbbb2222', 'web')), /UNIQUE/);
    assert.equal(store.containers.get('bbbb2222'), undefined);
  });

  it('rejects a second container with the same id', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    assert.throws(() => store.containers.insert(rec('aaaa1111', 'db')), /UNIQUE|PRIMARY/);
  });

  it('updates only the given fields, mapping booleans', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    const u = store.containers.update('aaaa1111', {
      state: 'exited',
      pid: 0,
      exitCode: 137,
      signal: 9,
      oomKilled: true,
      stoppedByUser: true,
      finishedAt: '2024-01-02T00:00:00.000Z',
    });
    const want = rec('aaaa1111', 'web', {
      state: 'exited',
      exitCode: 137,
      signal: 9,
      oomKilled: true,
      stoppedByUser: true,
      finishedAt: '2024-01-02T00:00:00.000Z',
    });
    assert.deepEqual(u, want);
    assert.deepEqual(store.containers.get('aaaa1111'), want);
    assert.equal(store.containers.update('aaaa1111', { oomKilled: false }).oomKilled, false);
  });

  it('renames through update', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    store.containers.update('aaaa1111', { name: 'web2' });
    assert.equal(store.containers.byName('web'), undefined);
    assert.equal(store.containers.byName('web2')?.id, 'aaaa1111');
  });

  it('throws when updating a container that is not there', () => {
    assert.throws(() => store.containers.update('nope', { pid: 1 }), /vanished/);
  });

  it('deletes, freeing the name', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    store.containers.delete('aaaa1111');
    assert.equal(store.containers.get('aaaa1111'), undefined);
    assert.deepEqual(store.containers.list(), []);
    store.containers.insert(rec('bbbb2222', 'web'));
    assert.equal(store.containers.byName('web')?.id, 'bbbb2222');
  });

  it('lists newest first', () => {
    store.containers.insert(rec('a1', 'old', { createdAt: '2024-01-01T00:00:00.000Z' }));
    store.containers.insert(rec('b2', 'new', { createdAt: '2024-06-01T00:00:00.000Z' }));
    assert.deepEqual(
      store.containers.list().map((c) => c.name),
      ['new', 'old'],
    );
  });

  it('keeps data when the file is reopened', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    store.containers.update('aaaa1111', { state: 'running', pid: 1234 });
    store.events.append(ev('create'));
    store.close();
    store = new Store(path);
    const c = store.containers.get('aaaa1111');
    assert.equal(c?.state, 'running');
    assert.equal(c?.pid, 1234);
    assert.deepEqual(c?.config, rec('aaaa1111', 'web').config);
    assert.deepEqual(
      store.events.after(0, 10).map((e) => e.action),
      ['create'],
    );
  });
});

describe('Store events', () => {
  it('numbers events 1, 2, 3… and reads them back in order', () => {
    const at = new Date('2024-03-04T05:06:07.089Z');
    const a = store.events.append(ev('create'), at);
    const b = store.events.append(ev('start'));
    const c = store.events.append(ev('die'));
    assert.deepEqual([a.seq, b.seq, c.seq], [1, 2, 3]);
    assert.equal(a.time, '2024-03-04T05:06:07.089Z');
    assert.equal(a.timeNano, BigInt(at.getTime()) * 1_000_000n);
    assert.deepEqual(a.attributes, { name: 'web' });
    assert.deepEqual(
      store.events.after(1, 10).map((e) => [e.seq, e.action]),
      [
        [2, 'start'],
        [3, 'die'],
      ],
    );
    assert.deepEqual(
      store.events.after(0, 2).map((e) => e.seq),
      [1, 2],
    );
    assert.deepEqual(store.events.after(3, 10), []);
  });

  it('leaves no row and no gap after a rolled-back transaction', () => {
    store.events.append(ev('create'));
    assert.throws(
      () =>
        store.tx(() => {
          store.containers.insert(rec('aaaa1111', 'web'));
          const e = store.events.append(ev('start'));
          assert.equal(e.seq, 2);
          throw new Error('abort');
        }),
      /abort/,
    );
    assert.equal(store.containers.get('aaaa1111'), undefined);
    assert.equal(eventCount(store), 1);
    assert.equal(store.events.append(ev('die')).seq, 2);
    assert.deepEqual(
      store.events.after(0, 10).map((e) => [e.seq, e.action]),
      [
        [1, 'create'],
        [2, 'die'],
      ],
    );
  });

  it('stays gapless across a rollback when the store is reopened', () => {
    store.events.append(ev('a'));
    assert.throws(() =>
      store.tx(() => {
        store.events.append(ev('b'));
        store.events.append(ev('c'));
        throw new Error('abort');
      }),
    );
    store.close();
    store = new Store(path);
    assert.equal(store.events.append(ev('d')).seq, 2);
  });

  it('commits a transaction’s writes together', () => {
    const r = store.tx(() => {
      store.containers.insert(rec('aaaa1111', 'web'));
      return store.events.append(ev('create')).seq;
    });
    assert.equal(r, 1);
    assert.ok(store.containers.get('aaaa1111'));
    assert.equal(eventCount(store), 1);
  });

  it('joins nested transactions into the outer one', () => {
    assert.throws(() =>
      store.tx(() => {
        store.tx(() => store.containers.insert(rec('aaaa1111', 'web')));
        store.events.append(ev('create'));
        throw new Error('abort');
      }),
    );
    assert.equal(store.containers.get('aaaa1111'), undefined);
    assert.equal(eventCount(store), 0);
    // The store is usable after the rollback (no transaction left open).
    store.tx(() => store.containers.insert(rec('bbbb2222', 'db')));
    assert.ok(store.containers.get('bbbb2222'));
  });

  it('rolls back a UNIQUE violation inside a transaction with its event', () => {
    store.containers.insert(rec('aaaa1111', 'web'));
    assert.throws(() =>
      store.tx(() => {
        store.events.append(ev('create'));
        store.containers.insert(rec('bbbb2222', 'web'));
      }),
    );
    assert.equal(eventCount(store), 0);
    assert.equal(store.events.append(ev('create')).seq, 1);
  });
});
