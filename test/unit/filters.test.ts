import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  matchFilters,
  parseFilterArgs,
  validateFilters,
  type Filters,
} from '../../src/engine/filters.ts';
import { BerthError } from '../../src/util/errors.ts';
import { newContainerRecord } from '../../src/engine/records.ts';
import type { ContainerConfig, ContainerRecord } from '../../src/types/domain.ts';

const baseConfig: ContainerConfig = {
  image: 'alpine:latest',
  imageId: 'f00dfeed1234',
  cmd: ['sh'],
  entrypoint: [],
  env: [],
  workdir: '/',
  user: '',
  hostname: 'h',
  labels: {},
  tty: false,
  openStdin: false,
  autoRemove: false,
  networkMode: 'none',
  stopSignal: 'SIGTERM',
  stopTimeout: 10,
  log: { maxSize: 10485760, maxFiles: 5, compress: false },
};

function rec(over: Partial<ContainerRecord> & { labels?: Record<string, string> } = {}) {
  const { labels, ...rest } = over;
  const c: ContainerRecord = {
    ...newContainerRecord(
      'aaaa1111',
      'web',
      { ...baseConfig, labels: labels ?? {} },
      '2024-01-01T00:00:00Z',
    ),
    state: 'running',
    pid: 100,
    monitorPid: 99,
    ...rest,
  };
  return c;
}

function assertInvalid(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof BerthError);
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.match(e.message, re);
    return true;
  });
}

const web = rec({ id: 'aaaa1111', name: 'web', labels: { tier: 'front', env: 'prod' } });
const db = rec({ id: 'bbbb2222', name: 'db', labels: { tier: 'back' } });
const job = rec({ id: 'cccc3333', name: 'job', state: 'exited', exitCode: 3 });
const all = [web, db, job];
const names = (f: Filters) => all.filter((c) => matchFilters(c, f)).map((c) => c.name);

describe('parseFilterArgs', () => {
  it('groups repeated keys and keeps everything after the first =', () => {
    assert.deepEqual(parseFilterArgs(['name=web', 'name=db', 'label=a=b=c']), {
      name: ['web', 'db'],
      label: ['a=b=c'],
    });
  });

  it('accepts an empty value', () => {
    assert.deepEqual(parseFilterArgs(['name=']), { name: [''] });
  });

  it('returns no filters for no args', () => {
    assert.deepEqual(parseFilterArgs([]), {});
  });

  it('rejects args that are not KEY=VALUE', () => {
    assertInvalid(() => parseFilterArgs(['name']), /not KEY=VALUE/);
    assertInvalid(() => parseFilterArgs(['=web']), /not KEY=VALUE/);
  });

  it('validates what it parsed', () => {
    assertInvalid(() => parseFilterArgs(['colour=red']), /unknown key "colour"/);
  });
});

describe('validateFilters', () => {
  it('accepts every supported key', () => {
    validateFilters({
      id: ['a'],
      name: ['b'],
      status: ['running'],
      label: ['k'],
      exited: ['0'],
      ancestor: ['alpine'],
    });
  });

  it('rejects unknown keys', () => {
    assertInvalid(() => validateFilters({ health: ['healthy'] }), /unknown key "health"/);
  });

  it('accepts all Docker statuses and rejects others', () => {
    for (const s of ['created', 'running', 'exited', 'removing', 'restarting', 'paused', 'dead'])
      validateFilters({ status: [s] });
    assertInvalid(() => validateFilters({ status: ['running', 'up'] }), /unknown status "up"/);
    assertInvalid(() => validateFilters({ status: ['starting'] }), /unknown status/);
  });

  it('requires exited values to be integers', () => {
    validateFilters({ exited: ['0', '137', '-1'] });
    assertInvalid(() => validateFilters({ exited: ['x'] }), /exited=x is not a number/);
    assertInvalid(() => validateFilters({ exited: ['1.5'] }), /not a number/);
    assertInvalid(() => validateFilters({ exited: [''] }), /not a number/);
  });
});

describe('matchFilters', () => {
  it('matches everything with no filters or an empty value list', () => {
    assert.deepEqual(names({}), ['web', 'db', 'job']);
    assert.deepEqual(names({ name: [] }), ['web', 'db', 'job']);
  });

  it('ORs values within one key', () => {
    assert.deepEqual(names({ name: ['web', 'job'] }), ['web', 'job']);
    assert.deepEqual(names({ status: ['running', 'exited'] }), ['web', 'db', 'job']);
  });

  it('ANDs different keys', () => {
    assert.deepEqual(names({ status: ['running'], label: ['tier=back'] }), ['db']);
    assert.deepEqual(names({ status: ['exited'], label: ['tier'] }), []);
    assert.deepEqual(names({ name: ['web', 'db'], label: ['env'] }), ['web']);
  });

  it('matches id by prefix', () => {
    assert.deepEqual(names({ id: ['bbbb'] }), ['db']);
    assert.deepEqual(names({ id: ['2222'] }), []);
  });

  it('matches name by substring, ignoring a leading slash', () => {
    assert.deepEqual(names({ name: ['/db'] }), ['db']);
    assert.deepEqual(names({ name: ['o'] }), ['job']);
  });

  it('matches label by key alone or by key=value', () => {
    assert.deepEqual(names({ label: ['tier'] }), ['web', 'db']);
    assert.deepEqual(names({ label: ['tier=front'] }), ['web']);
    assert.deepEqual(names({ label: ['tier=fro'] }), []);
    assert.deepEqual(names({ label: ['nosuch'] }), []);
  });

  it('matches a label with an empty value only by key or key=', () => {
    const c = rec({ labels: { flag: '' } });
    assert.equal(matchFilters(c, { label: ['flag'] }), true);
    assert.equal(matchFilters(c, { label: ['flag='] }), true);
    assert.equal(matchFilters(c, { label: ['flag=x'] }), false);
  });

  it('maps transitional states to Docker statuses', () => {
    const starting = rec({ state: 'starting' });
    const stopping = rec({ state: 'stopping' });
    assert.equal(matchFilters(starting, { status: ['created'] }), true);
    assert.equal(matchFilters(starting, { status: ['running'] }), false);
    assert.equal(matchFilters(stopping, { status: ['running'] }), true);
    assert.equal(matchFilters(rec({ state: 'removing' }), { status: ['removing'] }), true);
    assert.equal(matchFilters(rec({ state: 'created' }), { status: ['created'] }), true);
  });

  it('matches exited=N only on exited containers with that code', () => {
    assert.deepEqual(names({ exited: ['3'] }), ['job']);
    assert.deepEqual(names({ exited: ['0'] }), []);
    assert.equal(matchFilters(rec({ state: 'exited', exitCode: 0 }), { exited: ['0'] }), true);
  });

  it('matches ancestor by image name or image id prefix', () => {
    assert.equal(matchFilters(web, { ancestor: ['alpine:latest'] }), true);
    assert.equal(matchFilters(web, { ancestor: ['f00d'] }), true);
    assert.equal(matchFilters(web, { ancestor: ['sha256:f00dfeed'] }), true);
    assert.equal(matchFilters(web, { ancestor: ['busybox'] }), false);
  });

  it('matches nothing on an unknown key', () => {
    assert.equal(matchFilters(web, { bogus: ['x'] }), false);
  });
});
