// Layers built to escape their directory. Each must be refused with IMAGE_INVALID, leave
// its directory empty, and change nothing next to it: a sentinel tree beside the layer
// directory is fingerprinted before and after. Where a layer names a host path (/etc), the
// host file is fingerprinted too.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { unpackLayer } from '../../src/images/unpack.ts';
import type { UnpackOptions } from '../../src/images/unpack.ts';
import { BerthError } from '../../src/util/errors.ts';
import { entryBlocks, tarball } from '../fixtures/layers/tar-writer.ts';
import type { Entry } from '../fixtures/layers/tar-writer.ts';
import { fingerprint, xattrs } from '../fixtures/layers/tree.ts';

const isRoot = process.getuid?.() === 0;

let base: string;
let sentinel: string;
let n = 0;

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-malicious-'));
  sentinel = join(base, 'sentinel');
  await mkdir(join(sentinel, 'dir'), { recursive: true });
  await writeFile(join(sentinel, 'secret'), 'secret');
  await writeFile(join(sentinel, 'dir/file'), 'file');
  await symlink('secret', join(sentinel, 'link'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

// The host's view around the layer: the sentinel and /etc/passwd, which layers below aim at.
function outside(): unknown {
  const passwd = statSync('/etc/passwd');
  return {
    sentinel: fingerprint(sentinel),
    siblings: readdirSync(base).filter((d) => !d.startsWith('layer-')),
    passwd: [passwd.ino, passwd.nlink, passwd.mtimeMs, passwd.mode, readFileSync('/etc/passwd')],
  };
}

async function attempt(blob: Buffer, opts: UnpackOptions = {}): Promise<string> {
  const dir = join(base, `layer-${n++}`);
  await mkdir(dir);
  const before = outside();
  try {
    await unpackLayer(Readable.from([blob]), dir, opts);
  } finally {
    assert.deepEqual(outside(), before, 'something outside the layer changed');
  }
  return dir;
}

async function refused(blob: Buffer, why: RegExp, opts: UnpackOptions = {}): Promise<void> {
  let dir = '';
  await assert.rejects(
    attempt(blob, opts).then((d) => (dir = d)),
    (e: unknown) => {
      assert.ok(e instanceof BerthError, `not a BerthError: ${String(e)}`);
      assert.equal(e.code, 'IMAGE_INVALID', e.message);
      assert.match(e.message, why);
      return true;
    },
  );
  assert.equal(dir, '');
  const last = join(base, `layer-${n - 1}`);
  assert.deepEqual(readdirSync(last), [], 'the layer directory was not emptied');
}

const S = (): string => sentinel;

describe('malicious layers', { skip: !isRoot && 'needs root (chown, mknod)' }, () => {
  const cases: [string, () => Entry[], RegExp][] = [
    ['../escape', () => [{ name: '../escape', body: 'x' }], /"\.\.\/escape": path leaves/],
    ['a/../../escape', () => [{ name: 'a/../../escape', body: 'x' }], /leaves the layer/],
    ['/../escape', () => [{ name: '/../escape', body: 'x' }], /leaves the layer/],
    [
      'sentinel by relative path',
      () => [{ name: '../sentinel/secret', body: 'pwned' }],
      /leaves the layer/,
    ],
    [
      'symlink to an absolute dir, then a file through it',
      () => [
        { name: 'link', type: 'symlink', linkname: S() },
        { name: 'link/secret', body: 'pwned' },
      ],
      /"link\/secret": parent "link" is a symlink/,
    ],
    [
      'symlink to ../.., then a file through it',
      () => [
        { name: 'link', type: 'symlink', linkname: '../..' },
        { name: 'link/file', body: 'pwned' },
      ],
      /parent "link" is a symlink/,
    ],
    [
      'symlink to ../sentinel, deeper, then a file through it',
      () => [
        { name: 'a/b/', type: 'dir' },
        { name: 'a/b/link', type: 'symlink', linkname: '../../../sentinel' },
        { name: 'a/b/link/dir/file', body: 'pwned' },
      ],
      /parent "a\/b\/link" is a symlink/,
    ],
    [
      'a directory replaced by a symlink, then written through',
      () => [
        { name: 'dir/', type: 'dir' },
        { name: 'dir/x', body: 'fine' },
        { name: 'dir', type: 'symlink', linkname: S() },
        { name: 'dir/secret', body: 'pwned' },
      ],
      /parent "dir" is a symlink/,
    ],
    [
      'a directory replaced by a symlink, then a directory made through it',
      () => [
        { name: 'dir/', type: 'dir' },
        { name: 'dir', type: 'symlink', linkname: S() },
        { name: 'dir/newdir/', type: 'dir' },
      ],
      /parent "dir" is a symlink/,
    ],
    [
      'hard link to ../outside',
      () => [{ name: 'h', type: 'link', linkname: '../sentinel/secret' }],
      /hard link target leaves the layer/,
    ],
    [
      'hard link to an absolute path outside',
      () => [{ name: 'h', type: 'link', linkname: '/etc/passwd' }],
      /hard link target "\/etc\/passwd" is not in the layer/,
    ],
    [
      'hard link to the sentinel by absolute path',
      () => [{ name: 'h', type: 'link', linkname: `${S()}/secret` }],
      /is not in the layer/,
    ],
    [
      'hard link through a symlinked dir',
      () => [
        { name: 'd', type: 'symlink', linkname: S() },
        { name: 'h', type: 'link', linkname: 'd/secret' },
      ],
      /hard link target passes through "d", a symlink/,
    ],
    [
      'hard link through a dir replaced by a symlink',
      () => [
        { name: 'd/', type: 'dir' },
        { name: 'd/secret', body: 'mine' },
        { name: 'd', type: 'symlink', linkname: S() },
        { name: 'h', type: 'link', linkname: 'd/secret' },
      ],
      /passes through "d", a symlink/,
    ],
    [
      'hard link created through a symlink',
      () => [
        { name: 'f', body: 'mine' },
        { name: 'l', type: 'symlink', linkname: S() },
        { name: 'l/secret', type: 'link', linkname: 'f' },
      ],
      /parent "l" is a symlink/,
    ],
    [
      'hard link to a directory',
      () => [
        { name: 'd/', type: 'dir' },
        { name: 'h', type: 'link', linkname: 'd' },
      ],
      /hard link to a directory/,
    ],
    [
      'hard link that replaces its own target',
      () => [
        { name: 'd/f', body: 'x' },
        { name: 'd', type: 'link', linkname: 'd/f' },
      ],
      /replaces its own target/,
    ],
    ['whiteout .wh...', () => [{ name: '.wh...', body: '' }], /whiteout names no file/],
    ['whiteout .wh..', () => [{ name: 'a/.wh..', body: '' }], /whiteout names no file/],
    ['whiteout .wh.', () => [{ name: '.wh.', body: '' }], /whiteout names no file/],
    ['whiteout ../.wh.x', () => [{ name: '../.wh.x', body: '' }], /leaves the layer/],
    [
      'whiteout through a symlink',
      () => [
        { name: 'l', type: 'symlink', linkname: S() },
        { name: 'l/.wh.secret', body: '' },
      ],
      /parent "l" is a symlink/,
    ],
    [
      'opaque marker through a symlink',
      () => [
        { name: 'l', type: 'symlink', linkname: S() },
        { name: 'l/.wh..wh..opq', body: '' },
      ],
      /parent "l" is a symlink/,
    ],
    [
      'whiteout used as a directory',
      () => [{ name: '.wh.x/y', body: '' }],
      /whiteout name is used as a directory/,
    ],
    [
      'device through a symlink',
      () => [
        { name: 'l', type: 'symlink', linkname: S() },
        { name: 'l/null', type: 'char', devmajor: 1, devminor: 3 },
      ],
      /parent "l" is a symlink/,
    ],
    [
      'fifo through a symlink',
      () => [
        { name: 'l', type: 'symlink', linkname: S() },
        { name: 'l/fifo', type: 'fifo' },
      ],
      /parent "l" is a symlink/,
    ],
    [
      'symlink made through a symlink',
      () => [
        { name: 'l', type: 'symlink', linkname: S() },
        { name: 'l/new', type: 'symlink', linkname: '/' },
      ],
      /parent "l" is a symlink/,
    ],
    [
      'file under a file',
      () => [
        { name: 'f', body: 'x' },
        { name: 'f/g', body: 'y' },
      ],
      /parent "f" is a file/,
    ],
    [
      'the root as a symlink',
      () => [{ name: './', type: 'symlink', linkname: S() }],
      /root must be a directory/,
    ],
    [
      'a name with a NUL byte',
      () => [{ name: 'a', pax: { path: 'ok\0../../escape' }, body: 'x' }],
      /NUL byte/,
    ],
    [
      'a link target with a NUL byte',
      () => [{ name: 'l', type: 'symlink', pax: { linkpath: 'a\0b' } }],
      /NUL byte/,
    ],
    ['an empty name', () => [{ name: '', body: 'x' }], /empty path/],
    ['a symlink with an empty target', () => [{ name: 'l', type: 'symlink' }], /empty target/],
    [
      'a GNU sparse file',
      () => [{ name: 's', type: { flag: 'S' }, body: 'x' }],
      /unsupported entry GNU sparse/,
    ],
    [
      'an unknown entry type',
      () => [{ name: 'v', type: { flag: 'V' }, body: 'x' }],
      /unsupported entry type "V"/,
    ],
    [
      'a corrupt header checksum',
      () => [{ name: 'a', body: 'x', corruptChecksum: true }],
      /checksum/,
    ],
    [
      'a name over the path length limit',
      () => [{ name: `${'a/'.repeat(2100)}x`, body: 'x' }],
      /longer than 4096 bytes/,
    ],
    [
      'a component over NAME_MAX',
      () => [{ name: 'x'.repeat(256), body: 'x' }],
      /component longer than 255/,
    ],
    ['a uid out of range', () => [{ name: 'f', body: 'x', pax: { uid: '4294967295' } }], /bad uid/],
  ];

  for (const [title, entries, why] of cases) {
    it(`refuses ${title}`, async () => {
      // A good entry first, so that refusing also has something to clean up.
      await refused(tarball([{ name: 'good', body: 'good' }, ...entries()]), why);
    });
  }

  it('refuses a layer with too many entries', async () => {
    const entries = Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, body: 'x' }));
    await refused(tarball(entries), /more than 10 entries/, { maxEntries: 10 });
  });

  it('refuses a layer over the size limit, by its headers and by its stream', async () => {
    await refused(tarball([{ name: 'big', body: Buffer.alloc(1 << 20) }]), /over the limit/, {
      maxBytes: 1 << 19,
    });
    // A header that claims 4 GiB is refused before anything is read.
    const liar = Buffer.concat(entryBlocks({ name: 'huge', size: 2 ** 32 }));
    await refused(liar, /"huge": size 4294967296 is over the limit/, { maxBytes: 2 ** 30 });
    // A zip bomb: 64 MiB of zeros, in entries each under the limit, is a small gzip; the
    // limit stops it as it inflates.
    const zeros = Buffer.alloc(1 << 20);
    const bomb = gzipSync(
      tarball(Array.from({ length: 64 }, (_, i) => ({ name: `z${i}`, body: zeros }))),
    );
    assert.ok(bomb.length < 1 << 20);
    await refused(bomb, /over the limit of 8388608 bytes uncompressed/, { maxBytes: 8 << 20 });
  });

  it('refuses a path over a configured length limit', async () => {
    await refused(tarball([{ name: 'a'.repeat(20), body: 'x' }]), /longer than 16 bytes/, {
      maxPathLength: 16,
    });
  });

  it('refuses a truncated gzip stream', async () => {
    const gz = gzipSync(tarball([{ name: 'a', body: Buffer.alloc(100_000, 1) }]));
    await refused(gz.subarray(0, gz.length - 100), /compressed stream is corrupt or truncated/);
  });

  it('refuses a corrupt gzip stream', async () => {
    const gz = gzipSync(tarball([{ name: 'a', body: Buffer.alloc(100_000, 1) }]));
    gz.fill(0x55, 30, 60);
    await refused(gz, /compressed stream is corrupt/);
  });

  it('refuses a tar cut off in the middle of a body or header', async () => {
    const t = tarball([{ name: 'a', body: Buffer.alloc(5000, 1) }], { end: false });
    await refused(t.subarray(0, 3000), /archive is truncated/);
    await refused(t.subarray(0, 300), /archive is truncated/);
  });

  it('refuses entries hidden after a lone end-of-archive block', async () => {
    const t = Buffer.concat([
      ...entryBlocks({ name: 'a', body: 'a' }),
      Buffer.alloc(512),
      ...entryBlocks({ name: 'hidden', body: 'b' }),
    ]);
    await refused(t, /header after a zero block/);
  });

  it('refuses random bytes', async () => {
    await refused(Buffer.alloc(4096, 0x41), /checksum/);
  });

  it('refuses xz and bzip2 by name rather than as garbage', async () => {
    await refused(Buffer.from('fd377a585a000004e6d6b446', 'hex'), /xz-compressed/);
    await refused(Buffer.from('425a683931415926535900000000', 'hex'), /bzip2-compressed/);
  });

  // What is not refused, and why it is still safe.

  it('makes an absolute path relative: /etc/passwd lands inside the layer', async () => {
    const dir = await attempt(tarball([{ name: '/etc/passwd', body: 'root:x:0:0::/:/bin/sh\n' }]));
    assert.equal(readFileSync(join(dir, 'etc/passwd'), 'utf8'), 'root:x:0:0::/:/bin/sh\n');
  });

  it('resolves a .. that stays inside lexically, never through a symlink', async () => {
    const dir = await attempt(
      tarball([
        { name: 'l', type: 'symlink', linkname: S() },
        { name: 'l/../inside', body: 'in' },
      ]),
    );
    assert.equal(readFileSync(join(dir, 'inside'), 'utf8'), 'in');
    assert.ok(lstatSync(join(dir, 'l')).isSymbolicLink());
  });

  it('creates a symlink that points outside without following it', async () => {
    const dir = await attempt(
      tarball([
        { name: 'abs', type: 'symlink', linkname: `${S()}/secret` },
        { name: 'rel', type: 'symlink', linkname: '../sentinel/secret' },
        { name: 'root', type: 'symlink', linkname: '/' },
        // The same names again as files and a device: the links are replaced, not followed.
        { name: 'abs', body: 'pwned' },
        { name: 'rel', type: 'char', devmajor: 1, devminor: 3 },
        { name: 'root/', type: 'dir' },
      ]),
    );
    assert.equal(readFileSync(join(dir, 'abs'), 'utf8'), 'pwned');
    assert.ok(lstatSync(join(dir, 'rel')).isCharacterDevice());
    assert.ok(lstatSync(join(dir, 'root')).isDirectory());
    const kept = await attempt(
      tarball([{ name: 'abs', type: 'symlink', linkname: `${S()}/secret` }]),
    );
    assert.equal(readlinkSync(join(kept, 'abs')), `${S()}/secret`);
  });

  it('removes a replaced directory without following the symlinks in it', async () => {
    const dir = await attempt(
      tarball([
        { name: 'd/', type: 'dir' },
        { name: 'd/out', type: 'symlink', linkname: S() },
        { name: 'd/up', type: 'symlink', linkname: '../../sentinel' },
        { name: 'd', body: 'a file now' },
      ]),
    );
    assert.equal(readFileSync(join(dir, 'd'), 'utf8'), 'a file now');
  });

  it('empties a refused layer without following the symlinks in it', async () => {
    await refused(
      tarball([
        { name: 'd/out', type: 'symlink', linkname: S() },
        { name: 'up', type: 'symlink', linkname: '..' },
        { name: 'h', type: 'link', linkname: 'd/out' },
        { name: 'up/x', body: 'pwned' },
      ]),
      /parent "up" is a symlink/,
    );
  });

  it('links a hard link to a symlink to the symlink itself, not what it points to', async () => {
    const dir = await attempt(
      tarball([
        { name: 's', type: 'symlink', linkname: `${S()}/secret` },
        { name: 'h', type: 'link', linkname: 's' },
        { name: 'p', type: 'symlink', linkname: '/etc/passwd' },
        { name: 'q', type: 'link', linkname: 'p' },
      ]),
    );
    assert.ok(lstatSync(join(dir, 'h')).isSymbolicLink());
    assert.equal(lstatSync(join(dir, 'h')).ino, lstatSync(join(dir, 's')).ino);
    assert.ok(lstatSync(join(dir, 'q')).isSymbolicLink());
  });

  it('never writes overlay xattrs a layer carries', async () => {
    const dir = await attempt(
      tarball([
        {
          name: 'd/',
          type: 'dir',
          xattrs: {
            'trusted.overlay.opaque': 'y',
            'trusted.overlay.redirect': '/etc',
            'user.overlay.opaque': 'y',
            'security.selinux': 'unconfined_u:object_r:shadow_t:s0',
          },
        },
      ]),
    );
    assert.deepEqual(xattrs(join(dir, 'd')), {});
  });

  it('skips AUFS bookkeeping, as Docker does', async () => {
    const dir = await attempt(
      tarball([
        { name: '.wh..wh.plnk/', type: 'dir' },
        { name: '.wh..wh.plnk/1.2', body: 'x' },
        { name: 'a/.wh..wh.aufs', body: '' },
      ]),
    );
    assert.deepEqual(readdirSync(dir), []);
  });
});
