import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  matchEvent,
  parseEventFiltersJson,
  validateEventFilters,
  type EventFilters,
} from '../../src/engine/event-filters.ts';
import { BerthError } from '../../src/util/errors.ts';
import type { EventRecord } from '../../src/types/domain.ts';

let seq = 0;
function ev(over: Partial<EventRecord> & Pick<EventRecord, 'type' | 'action'>): EventRecord {
  seq++;
  return {
    seq,
    time: '2024-01-01T00:00:00.000Z',
    timeNano: 1704067200000000000n,
    actorId: 'abc123def456',
    attributes: {},
    ...over,
  };
}

const create = ev({
  type: 'container',
  action: 'create',
  actorId: 'abc123def456',
  attributes: { name: 'web', image: 'busybox', tier: 'front', team: 'pay' },
});
const oom = ev({
  type: 'container',
  action: 'oom',
  actorId: 'fed987',
  attributes: { name: 'db', image: 'postgres:16', tier: 'back' },
});
const execStart = ev({
  type: 'container',
  action: 'exec_start: sh -c ls',
  actorId: 'abc123def456',
  attributes: { name: 'web', image: 'busybox' },
});
const tag = ev({
  type: 'image',
  action: 'tag',
  actorId: 'sha0123456789',
  attributes: { name: 'busybox:latest' },
});
const daemonStart = ev({
  type: 'daemon',
  action: 'start',
  actorId: '4242',
  attributes: { socket: '/run/berth/berth.sock' },
});
const all = [create, oom, execStart, tag, daemonStart];

const pick = (f: EventFilters) => all.filter((e) => matchEvent(e, f)).map((e) => e.seq);
const seqs = (...es: EventRecord[]) => es.map((e) => e.seq);

describe('event filters', () => {
  it('matches everything without filters, and with an empty list for a key', () => {
    assert.deepEqual(pick({}), seqs(...all));
    assert.deepEqual(pick({ type: [] }), seqs(...all));
  });

  it('type', () => {
    assert.deepEqual(pick({ type: ['image'] }), seqs(tag));
    assert.deepEqual(pick({ type: ['daemon', 'image'] }), seqs(tag, daemonStart));
  });

  it('container: name whole, id by prefix, only container events', () => {
    assert.deepEqual(pick({ container: ['web'] }), seqs(create, execStart));
    assert.deepEqual(pick({ container: ['/web'] }), seqs(create, execStart));
    assert.deepEqual(pick({ container: ['we'] }), []);
    assert.deepEqual(pick({ container: ['abc1'] }), seqs(create, execStart));
    assert.deepEqual(pick({ container: ['fed987'] }), seqs(oom));
    // The daemon's pid is no container id.
    assert.deepEqual(pick({ container: ['42'] }), []);
  });

  it('event, and its alias action, with docker exec actions matched before the colon', () => {
    assert.deepEqual(pick({ event: ['oom'] }), seqs(oom));
    assert.deepEqual(pick({ action: ['create', 'start'] }), seqs(create, daemonStart));
    assert.deepEqual(pick({ event: ['exec_start'] }), seqs(execStart));
    assert.deepEqual(pick({ event: ['exec'] }), []);
  });

  it('image: the container image attribute or the image event, latest implied', () => {
    assert.deepEqual(pick({ image: ['busybox'] }), seqs(create, execStart, tag));
    assert.deepEqual(pick({ image: ['busybox:latest'] }), seqs(create, execStart, tag));
    assert.deepEqual(pick({ image: ['postgres'] }), []);
    assert.deepEqual(pick({ image: ['postgres:16'] }), seqs(oom));
    assert.deepEqual(pick({ image: ['sha0123'] }), seqs(tag));
  });

  it('label: key, or key=value, against the attributes', () => {
    assert.deepEqual(pick({ label: ['tier'] }), seqs(create, oom));
    assert.deepEqual(pick({ label: ['tier=back'] }), seqs(oom));
    assert.deepEqual(pick({ label: ['tier=back', 'team=pay'] }), seqs(create, oom));
    assert.deepEqual(pick({ label: ['tier=side'] }), []);
  });

  it('daemon: by its id', () => {
    assert.deepEqual(pick({ daemon: ['4242'] }), seqs(daemonStart));
    assert.deepEqual(pick({ daemon: ['1'] }), []);
  });

  it('ORs values of one key and ANDs different keys', () => {
    assert.deepEqual(pick({ type: ['container'], event: ['oom', 'create'] }), seqs(create, oom));
    assert.deepEqual(pick({ container: ['web', 'db'], label: ['tier=back'] }), seqs(oom));
    assert.deepEqual(pick({ type: ['image'], container: ['web'] }), []);
  });

  it('refuses unknown keys, unknown types and empty values, naming filters', () => {
    for (const f of [{ plugin: ['x'] }, { type: ['plugin'] }, { event: [''] }]) {
      assert.throws(
        () => validateEventFilters(f),
        (e: unknown) =>
          e instanceof BerthError &&
          e.code === 'INVALID_ARGUMENT' &&
          e.details?.['field'] === 'filters',
      );
    }
  });

  it('parses the API parameter in both of docker forms', () => {
    assert.deepEqual(parseEventFiltersJson(undefined), {});
    assert.deepEqual(parseEventFiltersJson('{"type":["container"],"label":["a=b"]}'), {
      type: ['container'],
      label: ['a=b'],
    });
    assert.deepEqual(parseEventFiltersJson('{"event":{"oom":true,"die":true}}'), {
      event: ['oom', 'die'],
    });
    for (const bad of ['{', '[]', '{"type":"container"}', '{"nope":["x"]}']) {
      assert.throws(() => parseEventFiltersJson(bad), /Invalid filters/);
    }
  });
});
