import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
  linkSync,
  chownSync,
  chmodSync,
  utimesSync,
  lutimesSync,
} from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { unpackLayer } from '../../src/images/unpack.ts';
import type { LayerStats, UnpackOptions } from '../../src/images/unpack.ts';
import { BerthError } from '../../src/util/errors.ts';
import { tarball } from '../fixtures/layers/tar-writer.ts';
import type { Entry } from '../fixtures/layers/tar-writer.ts';
import { fingerprint, xattrs } from '../fixtures/layers/tree.ts';

const isRoot = process.getuid?.() === 0;
const T0 = 1_600_000_000;

let base: string;
let n = 0;

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'berth-unpack-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const d = join(base, `layer-${n++}`);
  await mkdir(d);
  return d;
}

// Feeds blob in chunks of `chunk` bytes, so that headers and bodies straddle reads.
function stream(blob: Buffer, chunk = 65536): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < blob.length; i += chunk) parts.push(blob.subarray(i, i + chunk));
  return Readable.from(parts);
}

async function unpack(
  blob: Buffer,
  opts: UnpackOptions & { chunk?: number } = {},
): Promise<{ dir: string; stats: LayerStats }> {
  const dir = await freshDir();
  const stats = await unpackLayer(stream(blob, opts.chunk), dir, opts);
  return { dir, stats };
}

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

// CAP_NET_RAW, effective and permitted (VFS_CAP_REVISION_2): binary, with NULs.
const CAP_NET_RAW = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const BIG = randomBytes(300_000);
// A name that is not UTF-8 must still reach the disk byte for byte.
const LATIN1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in latin1
const LONG = `deep/${'d'.repeat(120)}/${'f'.repeat(150)}`;

const everything: Entry[] = [
  { name: './', type: 'dir', mode: 0o755, mtime: T0 },
  { name: 'etc/', type: 'dir', mode: 0o751, uid: 3, gid: 4, mtime: T0 + 1 },
  { name: 'etc/hello.txt', body: 'hello\n', mode: 0o640, uid: 1000, gid: 1001, mtime: T0 + 2 },
  { name: 'etc/hard', type: 'link', linkname: 'etc/hello.txt' },
  { name: 'bin/', type: 'dir', mtime: T0 + 3 },
  { name: 'bin/su', body: '#!su', mode: 0o4755, mtime: T0 },
  { name: 'bin/sg', body: '#!sg', mode: 0o2711, gid: 42, mtime: T0 },
  {
    name: 'bin/ping',
    body: 'ping',
    mode: 0o755,
    xattrs: {
      'security.capability': CAP_NET_RAW,
      'user.note': 'hi',
      'security.selinux': 'system_u:object_r:bin_t:s0',
      'trusted.overlay.opaque': 'y',
      'user.overlay.redirect': '/etc',
    },
  },
  { name: 'bin/sh', type: 'symlink', linkname: 'busybox', uid: 5, gid: 6, mtime: T0 + 4 },
  { name: 'abs', type: 'symlink', linkname: '/etc/hello.txt', mtime: T0 + 5 },
  { name: 'tmp/', type: 'dir', mode: 0o1777, mtime: T0 + 6 },
  { name: 'dev/', type: 'dir', mtime: T0 + 7 },
  { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666, mtime: T0 + 8 },
  { name: 'dev/loop0', type: 'block', devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
  { name: 'run/initctl', type: 'fifo', mode: 0o600, uid: 7 },
  { name: 'data/', type: 'dir', xattrs: { 'user.dir': '1' }, mtime: T0 + 9 },
  { name: 'data/big.bin', body: BIG, mode: 0o600, mtime: T0 + 10 },
  { name: Buffer.concat([Buffer.from('data/'), LATIN1]), body: 'latin1' },
  { name: LONG, body: 'long', mtime: T0 + 11 },
  { name: `${LONG}-gnu`, body: 'gnu long', gnuLong: true },
  { name: 'data/empty', body: '' },
  { name: 'var/lib/implied/file', body: 'parents not listed' },
];

// Parents the layer does not list are made at unpack time, with that time as mtime.
const IMPLIED = ['deep', `deep/${'d'.repeat(120)}`, 'run', 'var', 'var/lib', 'var/lib/implied'];
function tree(dir: string): ReturnType<typeof fingerprint> {
  const fp = fingerprint(dir);
  for (const p of IMPLIED) {
    const node = fp[p];
    if (node) fp[p] = { ...node, mtimeMs: 0 };
  }
  return fp;
}

function stat(dir: string, rel: string) {
  return lstatSync(join(dir, rel));
}

describe('unpackLayer', { skip: !isRoot && 'needs root (chown, mknod, trusted xattrs)' }, () => {
  it('unpacks every entry type with mode, owner, times and xattrs', async () => {
    const blob = tarball(everything);
    const { dir, stats } = await unpack(blob);

    const hello = stat(dir, 'etc/hello.txt');
    assert.ok(hello.isFile());
    assert.equal(readFileSync(join(dir, 'etc/hello.txt'), 'utf8'), 'hello\n');
    assert.equal(hello.mode & 0o7777, 0o640);
    assert.equal(hello.uid, 1000);
    assert.equal(hello.gid, 1001);
    assert.equal(hello.mtimeMs, (T0 + 2) * 1000);
    assert.equal(stat(dir, 'etc/hard').ino, hello.ino);
    assert.equal(hello.nlink, 2);

    const etc = stat(dir, 'etc');
    assert.ok(etc.isDirectory());
    assert.equal(etc.mode & 0o7777, 0o751);
    assert.equal(etc.uid, 3);
    assert.equal(etc.gid, 4);
    // Set after its entries were created, which moved it.
    assert.equal(etc.mtimeMs, (T0 + 1) * 1000);
    assert.equal(stat(dir, '.').mtimeMs, T0 * 1000);
    assert.equal(stat(dir, '.').mode & 0o7777, 0o755);

    assert.equal(stat(dir, 'bin/su').mode & 0o7777, 0o4755);
    assert.equal(stat(dir, 'bin/sg').mode & 0o7777, 0o2711);
    assert.equal(stat(dir, 'bin/sg').gid, 42);
    assert.equal(stat(dir, 'tmp').mode & 0o7777, 0o1777);

    const sh = stat(dir, 'bin/sh');
    assert.ok(sh.isSymbolicLink());
    assert.equal(readlinkSync(join(dir, 'bin/sh')), 'busybox');
    assert.equal(sh.uid, 5);
    assert.equal(sh.gid, 6);
    assert.equal(sh.mtimeMs, (T0 + 4) * 1000);
    assert.equal(readlinkSync(join(dir, 'abs')), '/etc/hello.txt');

    const devNull = stat(dir, 'dev/null');
    assert.ok(devNull.isCharacterDevice());
    assert.equal(devNull.rdev, (1 << 8) | 3);
    assert.equal(devNull.mode & 0o7777, 0o666);
    assert.equal(devNull.mtimeMs, (T0 + 8) * 1000);
    const loop = stat(dir, 'dev/loop0');
    assert.ok(loop.isBlockDevice());
    assert.equal(loop.rdev, 7 << 8);
    assert.equal(loop.gid, 6);
    assert.equal(loop.mode & 0o7777, 0o660);
    const fifo = stat(dir, 'run/initctl');
    assert.ok(fifo.isFIFO());
    assert.equal(fifo.uid, 7);
    assert.equal(fifo.mode & 0o7777, 0o600);

    assert.deepEqual(xattrs(join(dir, 'bin/ping')), {
      'security.capability': CAP_NET_RAW.toString('hex'),
      'user.note': Buffer.from('hi').toString('hex'),
    });
    assert.deepEqual(xattrs(join(dir, 'data')), { 'user.dir': Buffer.from('1').toString('hex') });
    assert.equal(stat(dir, 'data').mtimeMs, (T0 + 9) * 1000);

    assert.deepEqual(readFileSync(join(dir, 'data/big.bin')), BIG);
    assert.equal(stat(dir, 'data/big.bin').mode & 0o7777, 0o600);
    assert.equal(
      readFileSync(Buffer.concat([Buffer.from(`${dir}/data/`), LATIN1])).toString(),
      'latin1',
    );
    assert.equal(readFileSync(join(dir, LONG), 'utf8'), 'long');
    assert.equal(readFileSync(join(dir, `${LONG}-gnu`), 'utf8'), 'gnu long');
    assert.equal(stat(dir, 'data/empty').size, 0);
    const implied = stat(dir, 'var/lib/implied');
    assert.equal(implied.mode & 0o7777, 0o755);
    assert.equal(implied.uid, 0);

    // Nothing of ours is left behind at the root.
    assert.deepEqual(readdirSync(dir).sort(), [
      'abs',
      'bin',
      'data',
      'deep',
      'dev',
      'etc',
      'run',
      'tmp',
      'var',
    ]);

    assert.equal(stats.diffId, sha(blob));
    assert.equal(stats.compression, 'none');
    assert.equal(stats.tarBytes, blob.length);
    assert.equal(stats.compressedBytes, blob.length);
    assert.equal(stats.files, 10);
    assert.equal(stats.hardlinks, 1);
    assert.equal(stats.symlinks, 2);
    assert.equal(stats.devices, 3);
    assert.equal(stats.dirs, 5);
    assert.equal(stats.bytes, 6 + 4 + 4 + 4 + BIG.length + 6 + 4 + 8 + 18);
    assert.equal(stats.xattrs, 3);
    assert.equal(stats.skipped, 3);
    assert.equal(stats.entries, everything.length);
  });

  it('reads gzip, zstd and plain tar alike, and the diffID is the plain tar digest', async () => {
    const blob = tarball(everything);
    const plain = await unpack(blob);
    for (const [compression, compressed] of [
      ['gzip', gzipSync(blob)],
      ['zstd', zstdCompressSync(blob)],
    ] as const) {
      const { dir, stats } = await unpack(compressed, { chunk: 4099 });
      assert.equal(stats.compression, compression);
      assert.equal(stats.diffId, sha(blob));
      assert.equal(stats.compressedBytes, compressed.length);
      assert.equal(stats.tarBytes, blob.length);
      assert.deepEqual(tree(dir), tree(plain.dir));
    }
  });

  it('does not care how the stream is cut', async () => {
    const blob = tarball(everything.filter((e) => e.body !== BIG));
    const whole = await unpack(blob);
    for (const chunk of [1, 7, 511, 513]) {
      const { dir, stats } = await unpack(blob, { chunk });
      assert.equal(stats.diffId, whole.stats.diffId);
      assert.deepEqual(tree(dir), tree(whole.dir));
    }
  });

  it('counts trailing padding after the end marker in the diffID and ignores it', async () => {
    const blob = Buffer.concat([tarball([{ name: 'a', body: 'a' }]), Buffer.alloc(8192)]);
    const { dir, stats } = await unpack(gzipSync(blob));
    assert.equal(stats.diffId, sha(blob));
    assert.deepEqual(readdirSync(dir), ['a']);
  });

  it('turns OCI whiteouts into overlay whiteouts and opaque markers into the xattr', async () => {
    const { dir, stats } = await unpack(
      tarball([
        { name: '.wh.gone', body: '' },
        { name: 'etc/', type: 'dir' },
        { name: 'etc/.wh.passwd', body: '' },
        { name: 'srv/', type: 'dir', mode: 0o750 },
        { name: 'srv/.wh..wh..opq', body: '' },
        { name: 'srv/kept', body: 'new' },
        { name: 'var/cache/.wh..wh..opq', body: '' },
        { name: '.wh..wh.plnk/123.456', body: '' },
      ]),
    );
    for (const p of ['gone', 'etc/passwd']) {
      const st = stat(dir, p);
      assert.ok(st.isCharacterDevice(), p);
      assert.equal(st.rdev, 0);
    }
    assert.deepEqual(xattrs(join(dir, 'srv')), { 'trusted.overlay.opaque': '79' });
    assert.deepEqual(xattrs(join(dir, 'var/cache')), { 'trusted.overlay.opaque': '79' });
    assert.deepEqual(xattrs(join(dir, 'var')), {});
    assert.equal(stat(dir, 'srv').mode & 0o7777, 0o750);
    assert.equal(readFileSync(join(dir, 'srv/kept'), 'utf8'), 'new');
    assert.deepEqual(readdirSync(dir).sort(), ['etc', 'gone', 'srv', 'var']);
    assert.equal(stats.whiteouts, 2);
    assert.equal(stats.opaqueDirs, 2);
    assert.equal(stats.skipped, 1);
  });

  it("keeps what the layer itself made under a whiteout's name (whiteouts hide lower layers only)", async () => {
    const { dir } = await unpack(
      tarball([
        { name: 'f', body: 'mine' },
        { name: '.wh.f', body: '' },
        { name: 'd/', type: 'dir' },
        { name: 'd/x', body: 'x' },
        { name: '.wh.d', body: '' },
        { name: '.wh.e', body: '' },
        { name: 'e/', type: 'dir' },
        { name: '.wh.g', body: '' },
        { name: 'g/y', body: 'y' },
      ]),
    );
    assert.equal(readFileSync(join(dir, 'f'), 'utf8'), 'mine');
    assert.equal(readFileSync(join(dir, 'd/x'), 'utf8'), 'x');
    // Directories of this layer at a whited-out name still hide the lower one's contents.
    for (const d of ['d', 'e', 'g']) {
      assert.ok(stat(dir, d).isDirectory());
      assert.deepEqual(xattrs(join(dir, d)), { 'trusted.overlay.opaque': '79' }, d);
    }
  });

  it('replaces an entry of another type, last one wins, never through a symlink', async () => {
    const outside = join(base, 'replace-outside');
    writeFileSync(outside, 'outside');
    const { dir } = await unpack(
      tarball([
        { name: 'a', body: 'file' },
        { name: 'a/', type: 'dir' },
        { name: 'a/inner', body: 'inner' },
        { name: 'a', body: 'file again' },
        { name: 'l', type: 'symlink', linkname: outside },
        { name: 'l', body: 'not through' },
        { name: 'm', type: 'symlink', linkname: outside },
        { name: 'm', type: 'symlink', linkname: 'elsewhere' },
        { name: 'd/', type: 'dir', mode: 0o700 },
        { name: 'd/keep', body: 'k' },
        { name: 'd/', type: 'dir', mode: 0o755, uid: 9 },
        { name: 'h', body: 'one' },
        { name: 'h2', type: 'link', linkname: 'h' },
        { name: 'h', body: 'two' },
      ]),
    );
    assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'file again');
    assert.ok(stat(dir, 'l').isFile());
    assert.equal(readFileSync(join(dir, 'l'), 'utf8'), 'not through');
    assert.equal(readFileSync(outside, 'utf8'), 'outside');
    assert.equal(readlinkSync(join(dir, 'm')), 'elsewhere');
    // A directory listed twice is merged, the later metadata winning.
    assert.equal(readFileSync(join(dir, 'd/keep'), 'utf8'), 'k');
    assert.equal(stat(dir, 'd').mode & 0o7777, 0o755);
    assert.equal(stat(dir, 'd').uid, 9);
    // A file is replaced by a new inode, so its other hard link keeps the old content.
    assert.equal(readFileSync(join(dir, 'h'), 'utf8'), 'two');
    assert.equal(readFileSync(join(dir, 'h2'), 'utf8'), 'one');
  });

  it('refuses a diffID that does not match and leaves the directory empty', async () => {
    const blob = tarball([{ name: 'a', body: 'a' }]);
    const dir = await freshDir();
    await assert.rejects(
      unpackLayer(stream(gzipSync(blob)), dir, { diffId: `sha256:${'0'.repeat(64)}` }),
      (e: unknown) =>
        e instanceof BerthError && e.code === 'IMAGE_INVALID' && /diff_id/.test(e.message),
    );
    assert.deepEqual(readdirSync(dir), []);
    const ok = await unpack(gzipSync(blob), { diffId: sha(blob) });
    assert.equal(ok.stats.diffId, sha(blob));
  });

  it('stops reading a refused layer at once, not at the end of the download', async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      yield tarball([{ name: '../escape', body: 'x' }], { end: false });
      const filler = tarball([{ name: 'filler', body: Buffer.alloc(1 << 20) }], { end: false });
      for (;;) {
        pulled += filler.length;
        yield filler;
      }
    }
    const dir = await freshDir();
    await assert.rejects(
      unpackLayer(Readable.from(endless()), dir),
      (e: unknown) => e instanceof BerthError && e.code === 'IMAGE_INVALID',
    );
    assert.ok(pulled < 64 << 20, `read ${pulled} bytes after the refusal`);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('passes an error of the input stream through as it came and empties the directory', async () => {
    const blob = gzipSync(tarball([{ name: 'a', body: Buffer.alloc(1 << 20, 7) }]));
    async function* dropped(): AsyncGenerator<Buffer> {
      yield blob.subarray(0, blob.length >> 1);
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    }
    const dir = await freshDir();
    await assert.rejects(unpackLayer(Readable.from(dropped()), dir), { code: 'ECONNRESET' });
    assert.deepEqual(readdirSync(dir), []);
  });

  it('stops on abort and empties the directory', async () => {
    const ac = new AbortController();
    async function* slow(): AsyncGenerator<Buffer> {
      yield tarball([{ name: 'a', body: 'a' }], { end: false });
      ac.abort();
      await new Promise((r) => setTimeout(r, 50));
      yield tarball([{ name: 'b', body: 'b' }]);
    }
    const dir = await freshDir();
    await assert.rejects(unpackLayer(Readable.from(slow()), dir, { signal: ac.signal }), {
      name: 'AbortError',
    });
    assert.deepEqual(readdirSync(dir), []);
  });

  it('wants an empty directory', async () => {
    const dir = await freshDir();
    writeFileSync(join(dir, 'x'), '');
    await assert.rejects(
      unpackLayer(stream(tarball([])), dir),
      (e: unknown) => e instanceof BerthError && e.code === 'INTERNAL',
    );
    assert.deepEqual(readdirSync(dir), ['x']);
  });

  it('reads what GNU tar writes (pax and gnu formats) to the same tree', async () => {
    const src = await freshDir();
    mkdirSync(join(src, 'etc'));
    writeFileSync(join(src, 'etc/conf'), 'conf');
    chownSync(join(src, 'etc/conf'), 123, 456);
    chmodSync(join(src, 'etc/conf'), 0o640);
    writeFileSync(join(src, 'suid'), 'x');
    chmodSync(join(src, 'suid'), 0o4755);
    // Over the 7 octal digits of a ustar field: base-256 in gnu format, a record in pax.
    writeFileSync(join(src, 'bigid'), 'x');
    chownSync(join(src, 'bigid'), 3_000_000, 4_000_000);
    linkSync(join(src, 'etc/conf'), join(src, 'hard'));
    symlinkSync('/etc/conf', join(src, 'sym'));
    lutimesSync(join(src, 'sym'), T0, T0);
    mkdirSync(join(src, `${'n'.repeat(90)}/${'m'.repeat(90)}`), { recursive: true });
    writeFileSync(join(src, `${'n'.repeat(90)}/${'m'.repeat(90)}/${'o'.repeat(90)}`), 'long');
    writeFileSync(join(src, 'big'), BIG);
    execFileSync('python3', [
      '-c',
      'import os,sys; os.setxattr(sys.argv[1], "user.k", b"\\x00v\\xff")',
      join(src, 'big'),
    ]);
    execFileSync('mknod', [join(src, 'null'), 'c', '1', '3']);
    // Whole seconds: the gnu format has no more.
    for (const f of [
      'etc/conf',
      'suid',
      'bigid',
      'big',
      'null',
      `${'n'.repeat(90)}/${'m'.repeat(90)}/${'o'.repeat(90)}`,
    ]) {
      utimesSync(join(src, f), T0 + 2, T0 + 2);
    }
    for (const d of ['etc', `${'n'.repeat(90)}/${'m'.repeat(90)}`, `${'n'.repeat(90)}`, '.']) {
      utimesSync(join(src, d), T0 + 1, T0 + 1);
    }
    for (const format of ['pax', 'gnu']) {
      const blob = execFileSync(
        'tar',
        [`--format=${format}`, '--xattrs', '--xattrs-include=*', '-cf', '-', '-C', src, '.'],
        { maxBuffer: 64 << 20 },
      );
      const { dir, stats } = await unpack(blob);
      assert.equal(stats.diffId, sha(blob));
      const want = fingerprint(src);
      const got = fingerprint(dir);
      assert.deepEqual(got, want, format);
      assert.equal(stat(dir, 'hard').ino, stat(dir, 'etc/conf').ino);
      assert.equal(stat(dir, 'bigid').uid, 3_000_000);
      assert.equal(stat(dir, 'bigid').gid, 4_000_000);
      if (format === 'pax') assert.deepEqual(xattrs(join(dir, 'big')), { 'user.k': '0076ff' });
    }
  });
});

// The point of it all: layers unpacked each into its own directory stack as overlay lower
// dirs, and the whiteouts and opaque dirs hide what they should.
describe('unpacked layers under a real overlay mount', { skip: !isRoot && 'needs root' }, () => {
  it('hides a whited-out file and the contents of an opaque dir', async () => {
    const lower = await unpack(
      gzipSync(
        tarball([
          { name: 'file', body: 'lower file' },
          { name: 'keep', body: 'kept' },
          { name: 'dir/', type: 'dir' },
          { name: 'dir/old', body: 'lower dir content' },
          { name: 'plain/', type: 'dir' },
          { name: 'plain/lower', body: 'visible' },
        ]),
      ),
    );
    const upper = await unpack(
      zstdCompressSync(
        tarball([
          { name: '.wh.file', body: '' },
          { name: 'dir/', type: 'dir' },
          { name: 'dir/.wh..wh..opq', body: '' },
          { name: 'dir/new', body: 'upper dir content' },
          { name: 'plain/', type: 'dir' },
          { name: 'plain/upper', body: 'merged' },
        ]),
      ),
    );
    const mnt = await freshDir();
    execFileSync('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${upper.dir}:${lower.dir}`,
      mnt,
    ]);
    try {
      assert.deepEqual(readdirSync(mnt).sort(), ['dir', 'keep', 'plain']);
      assert.deepEqual(readdirSync(join(mnt, 'dir')), ['new']);
      assert.deepEqual(readdirSync(join(mnt, 'plain')).sort(), ['lower', 'upper']);
      assert.equal(readFileSync(join(mnt, 'keep'), 'utf8'), 'kept');
      assert.throws(() => lstatSync(join(mnt, 'file')), { code: 'ENOENT' });
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
