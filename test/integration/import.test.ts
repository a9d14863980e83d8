import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, copyFile, writeFile } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCommand, TestDaemon } from '../helpers/daemon.ts';

describe('berth import', () => {
  let d: TestDaemon;
  let work: string;
  before(async () => {
    d = await TestDaemon.start();
    work = await mkdtemp('/tmp/bt-imp-');
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
    await d.destroy();
  });

  it('imports a root filesystem tarball as an image and runs it', async () => {
    const root = join(work, 'root');
    await mkdir(join(root, 'bin'), { recursive: true });
    await copyFile('/bin/busybox', join(root, 'bin/busybox'));
    for (const a of ['sh', 'cat', 'echo']) await symlink('busybox', join(root, 'bin', a));
    await writeFile(join(root, 'hello.txt'), 'imported\n');
    const tar = join(work, 'root.tar');
    const t = await runCommand('tar', ['-C', root, '-cf', tar, '.']);
    assert.equal(t.code, 0, t.stderr);

    const out = await d.berthOk(['import', tar, 'myimage:1.0']);
    assert.match(out.trim(), /^sha256:[0-9a-f]{64}$/);
    assert.match(await d.berthOk(['images']), /myimage\s+1\.0/);
    const r = await d.berth(['run', '--rm', 'myimage:1.0', '/bin/cat', '/hello.txt']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'imported\n');
    // Importing the same bytes again gives the same image.
    assert.equal((await d.berthOk(['import', tar, 'myimage:again'])).trim(), out.trim());
  });

  it('refuses a file that is not a tar archive and keeps nothing', async () => {
    const junk = join(work, 'junk.tar');
    await writeFile(junk, 'this is not a tar archive at all'.repeat(40));
    const before = readdirSync(join(d.root, 'images')).sort();
    const r = await d.berth(['import', junk, 'broken']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /Cannot import/);
    assert.deepEqual(readdirSync(join(d.root, 'images')).sort(), before);
    assert.doesNotMatch(await d.berthOk(['images']), /broken/);
  });

  it('reports a missing file without contacting the daemon', async () => {
    const r = await d.berth(['import', join(work, 'nope.tar'), 'x']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /Invalid file: .*nope\.tar: ENOENT/);
  });
});
