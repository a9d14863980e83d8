import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseDurationMs } from '../../src/util/time.ts';
import { parseSignal, signalName } from '../../src/util/signals.ts';

describe('parseDurationMs', () => {
  it('reads a bare number as seconds', () => {
    assert.equal(parseDurationMs('10'), 10_000);
    assert.equal(parseDurationMs('0'), 0);
    assert.equal(parseDurationMs('1.5'), 1500);
    assert.equal(parseDurationMs(' 3 '), 3000);
  });

  it('reads single Go-style units', () => {
    assert.equal(parseDurationMs('500ms'), 500);
    assert.equal(parseDurationMs('10s'), 10_000);
    assert.equal(parseDurationMs('2m'), 120_000);
    assert.equal(parseDurationMs('1h'), 3_600_000);
    assert.equal(parseDurationMs('0.5s'), 500);
  });

  it('adds up compound durations', () => {
    assert.equal(parseDurationMs('1m30s'), 90_000);
    assert.equal(parseDurationMs('1h2m3s4ms'), 3_723_004);
    assert.equal(parseDurationMs('1s500ms'), 1500);
  });

  it('rejects malformed input', () => {
    for (const s of ['', ' ', 'abc', '10x', 's', '1m30', '1 m', '-1s', '-5', '1.s', 'ms10', '1d'])
      assert.equal(parseDurationMs(s), undefined, JSON.stringify(s));
  });
});

describe('parseSignal', () => {
  it('accepts names with and without SIG, in any case', () => {
    assert.equal(parseSignal('TERM'), 15);
    assert.equal(parseSignal('SIGTERM'), 15);
    assert.equal(parseSignal('sigkill'), 9);
    assert.equal(parseSignal('hup'), 1);
    assert.equal(parseSignal(' INT '), 2);
    assert.equal(parseSignal('USR1'), 10);
  });

  it('accepts numbers from 1 to 64', () => {
    assert.equal(parseSignal('15'), 15);
    assert.equal(parseSignal('1'), 1);
    assert.equal(parseSignal('64'), 64);
  });

  it('rejects 0, out-of-range numbers and unknown names', () => {
    for (const s of ['0', '65', '-9', '9.0', 'SIGNOPE', 'NOPE', '', 'SIG'])
      assert.equal(parseSignal(s), undefined, JSON.stringify(s));
  });
});

describe('signalName', () => {
  it('maps numbers to SIG names', () => {
    assert.equal(signalName(9), 'SIGKILL');
    assert.equal(signalName(15), 'SIGTERM');
    assert.equal(signalName(2), 'SIGINT');
  });

  it('round-trips with parseSignal', () => {
    for (const n of [1, 2, 3, 9, 10, 12, 15, 17, 19])
      assert.equal(parseSignal(signalName(n)), n, `signal ${n}`);
  });

  it('falls back to the number for unknown signals', () => {
    assert.equal(signalName(99), '99');
    assert.equal(signalName(0), '0');
  });
});
