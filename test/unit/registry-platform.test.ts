import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  selectPlatform,
  type Platform,
} from '../../src/images/platform.ts';

describe('parsePlatform', () => {
  it('reads os/arch[/variant] and normalises aliases', () => {
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parsePlatform('linux/x86_64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(parsePlatform('linux/aarch64'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parsePlatform('linux/arm'), {
      os: 'linux',
      architecture: 'arm',
      variant: 'v7',
    });
    assert.deepEqual(parsePlatform('linux/armhf'), {
      os: 'linux',
      architecture: 'arm',
      variant: 'v7',
    });
    assert.deepEqual(parsePlatform('Linux/ARM/v6'), {
      os: 'linux',
      architecture: 'arm',
      variant: 'v6',
    });
    assert.deepEqual(parsePlatform('linux/i386'), { os: 'linux', architecture: '386' });
  });

  it('reads a lone architecture on the host os and a lone os on the host architecture', () => {
    assert.deepEqual(parsePlatform('arm64'), { os: 'linux', architecture: 'arm64' });
    assert.deepEqual(parsePlatform('linux'), hostPlatform());
  });

  it('refuses what is not a platform', () => {
    for (const s of [
      '',
      'linux/',
      'linux/amd64/v2/x',
      'plan10/amd64',
      'linux/z80',
      'nonsense',
      'linux amd64',
    ]) {
      assert.throws(() => parsePlatform(s), /Invalid platform/, s);
    }
  });

  it('knows this host as linux/amd64 (the test machines are x86-64)', () => {
    if (process.arch === 'x64')
      assert.deepEqual(hostPlatform(), { os: 'linux', architecture: 'amd64' });
    assert.equal(formatPlatform(hostPlatform()).startsWith('linux/'), true);
  });

  it('formats with the variant when there is one', () => {
    assert.equal(
      formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }),
      'linux/arm/v7',
    );
    assert.equal(
      formatPlatform(normalizePlatform({ os: 'linux', architecture: 'aarch64', variant: 'v8' })),
      'linux/arm64',
    );
  });
});

describe('selectPlatform', () => {
  const e = (name: string, platform?: Platform) => ({ name, ...(platform ? { platform } : {}) });
  const index = [
    e('no-platform'),
    e('attestation', { os: 'unknown', architecture: 'unknown' }),
    e('amd64', { os: 'linux', architecture: 'amd64' }),
    e('amd64v3', { os: 'linux', architecture: 'amd64', variant: 'v3' }),
    e('arm64', { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    e('armv6', { os: 'linux', architecture: 'arm', variant: 'v6' }),
    e('armv7', { os: 'linux', architecture: 'arm', variant: 'v7' }),
    e('win', { os: 'windows', architecture: 'amd64' }),
  ];
  const pick = (p: string) => selectPlatform(index, parsePlatform(p))?.name;

  it('picks the exact match', () => {
    assert.equal(pick('linux/amd64'), 'amd64');
    assert.equal(pick('linux/arm64'), 'arm64');
    assert.equal(pick('linux/arm64/v8'), 'arm64');
    assert.equal(pick('linux/arm/v7'), 'armv7');
    assert.equal(pick('windows/amd64'), 'win');
    assert.equal(pick('linux/amd64/v3'), 'amd64v3');
  });

  it('falls back to a variant the platform can run, never one it cannot', () => {
    assert.equal(pick('linux/arm/v8'), 'armv7');
    assert.equal(pick('linux/arm/v5'), undefined);
    assert.equal(pick('linux/amd64/v2'), 'amd64');
    assert.equal(
      selectPlatform(
        [e('v3', { os: 'linux', architecture: 'amd64', variant: 'v3' })],
        parsePlatform('linux/amd64'),
      ),
      undefined,
    );
  });

  it('finds nothing for another architecture', () => {
    assert.equal(pick('linux/s390x'), undefined);
    assert.equal(pick('linux/riscv64'), undefined);
  });

  it('takes the first of equal entries, in index order', () => {
    const dup = [
      e('one', { os: 'linux', architecture: 'arm64' }),
      e('two', { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    ];
    assert.equal(selectPlatform(dup, parsePlatform('linux/arm64'))?.name, 'one');
  });
});
