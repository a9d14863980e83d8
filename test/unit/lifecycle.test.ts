import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assertCan, canDo, type Operation } from '../../src/engine/lifecycle.ts';
import { BerthError, type ErrorCode } from '../../src/util/errors.ts';
import type { ContainerState } from '../../src/types/domain.ts';

const STATES: ContainerState[] = [
  'created',
  'starting',
  'running',
  'stopping',
  'exited',
  'removing',
];

// The expected transition table, written out independently of the source.
const TABLE: Record<Operation, ContainerState[]> = {
  start: ['created', 'exited'],
  stop: ['running'],
  kill: ['running'],
  remove: ['created', 'exited', 'removing'],
  exec: ['running'],
  attach: ['created', 'starting', 'running', 'exited'],
  top: ['running'],
  resize: ['running'],
};

function refusal(op: Operation, state: ContainerState): BerthError {
  try {
    assertCan(op, state, 'web');
  } catch (e) {
    assert.ok(e instanceof BerthError);
    return e;
  }
  assert.fail(`${op} in ${state} was allowed`);
}

describe('canDo', () => {
  for (const [op, allowed] of Object.entries(TABLE) as [Operation, ContainerState[]][]) {
    it(`${op} is allowed exactly in ${allowed.join(', ')}`, () => {
      for (const s of STATES) assert.equal(canDo(op, s), allowed.includes(s), `${op} in ${s}`);
    });
  }
});

describe('assertCan', () => {
  it('returns quietly when the operation is allowed', () => {
    for (const [op, allowed] of Object.entries(TABLE) as [Operation, ContainerState[]][])
      for (const s of allowed) assert.equal(assertCan(op, s, 'web'), undefined);
  });

  it('names the operation, the container and its current state', () => {
    for (const [op, allowed] of Object.entries(TABLE) as [Operation, ContainerState[]][])
      for (const s of STATES.filter((x) => !allowed.includes(x))) {
        const e = refusal(op, s);
        assert.match(e.message, new RegExp(`^Cannot ${op} container web: it is ${s}\\b`));
        assert.deepEqual(e.details, { state: s });
      }
  });

  it('uses CONTAINER_RUNNING for a running container', () => {
    assert.equal(refusal('start', 'running').code, 'CONTAINER_RUNNING');
    assert.equal(refusal('remove', 'running').code, 'CONTAINER_RUNNING');
    assert.equal(refusal('start', 'running').class, 'Conflict');
  });

  it('uses CONTAINER_NOT_RUNNING for created and exited containers', () => {
    const cases: [Operation, ContainerState][] = [
      ['stop', 'created'],
      ['stop', 'exited'],
      ['kill', 'exited'],
      ['exec', 'created'],
      ['exec', 'exited'],
      ['top', 'exited'],
      ['resize', 'created'],
    ];
    for (const [op, s] of cases) assert.equal(refusal(op, s).code, 'CONTAINER_NOT_RUNNING');
  });

  it('uses CONTAINER_BUSY for transitional states', () => {
    const cases: [Operation, ContainerState, ErrorCode][] = [
      ['start', 'starting', 'CONTAINER_BUSY'],
      ['stop', 'starting', 'CONTAINER_BUSY'],
      ['stop', 'stopping', 'CONTAINER_BUSY'],
      ['exec', 'stopping', 'CONTAINER_BUSY'],
      ['remove', 'starting', 'CONTAINER_BUSY'],
      ['remove', 'stopping', 'CONTAINER_BUSY'],
      ['start', 'removing', 'CONTAINER_BUSY'],
      ['attach', 'removing', 'CONTAINER_BUSY'],
    ];
    for (const [op, s, code] of cases) assert.equal(refusal(op, s).code, code, `${op} in ${s}`);
  });

  it('hints at force only when removing a running container', () => {
    assert.match(refusal('remove', 'running').message, /stop it first, or use force/);
    assert.doesNotMatch(refusal('start', 'running').message, /force/);
    assert.doesNotMatch(refusal('remove', 'stopping').message, /force/);
  });
});
