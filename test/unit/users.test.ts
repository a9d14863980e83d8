import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveUser } from '../../src/images/users.ts';
import { BerthError } from '../../src/util/errors.ts';

const PASSWD = `root:x:0:0:root:/root:/bin/sh
# a comment line
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
www:x:33:33:www:/var/www:/usr/sbin/nologin
`;

const GROUP = `root:x:0:
daemon:x:1:
wheel:x:10:root,app
app:x:1000:
audio:x:29:app,www
www:x:33:
docker:x:999:app
`;

let root: string;
let bare: string;

async function rejectsNotFound(p: Promise<unknown>, re: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof BerthError);
    assert.equal(e.code, 'USER_NOT_FOUND');
    assert.match(e.message, re);
    assert.deepEqual(e.details, { field: 'user' });
    return true;
  });
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-users-'));
  await mkdir(join(root, 'etc'));
  await writeFile(join(root, 'etc/passwd'), PASSWD);
  await writeFile(join(root, 'etc/group'), GROUP);
  bare = await mkdtemp(join(tmpdir(), 'berth-users-bare-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(bare, { recursive: true, force: true });
});

describe('resolveUser', () => {
  it('defaults to root with its supplementary groups', async () => {
    assert.deepEqual(await resolveUser(root, ''), {
      uid: 0,
      gid: 0,
      additionalGids: [10],
      home: '/root',
    });
  });

  it('resolves a user name to uid, primary gid, home and supplementary groups', async () => {
    assert.deepEqual(await resolveUser(root, 'app'), {
      uid: 1000,
      gid: 1000,
      additionalGids: [10, 29, 999],
      home: '/home/app',
    });
  });

  it('resolves a numeric uid through passwd', async () => {
    assert.deepEqual(await resolveUser(root, '33'), {
      uid: 33,
      gid: 33,
      additionalGids: [29],
      home: '/var/www',
    });
  });

  it('keeps an unknown numeric uid with gid 0 and home /', async () => {
    assert.deepEqual(await resolveUser(root, '4242'), {
      uid: 4242,
      gid: 0,
      additionalGids: [],
      home: '/',
    });
  });

  it('resolves user:group by names', async () => {
    const u = await resolveUser(root, 'app:audio');
    assert.equal(u.uid, 1000);
    assert.equal(u.gid, 29);
    // The primary group is not repeated among the supplementary ones.
    assert.deepEqual(u.additionalGids, [10, 999]);
  });

  it('resolves user:group by numbers, including ids not in the files', async () => {
    assert.deepEqual(await resolveUser(root, '1000:33'), {
      uid: 1000,
      gid: 33,
      additionalGids: [10, 29, 999],
      home: '/home/app',
    });
    const u = await resolveUser(root, '5000:6000');
    assert.equal(u.uid, 5000);
    assert.equal(u.gid, 6000);
    assert.deepEqual(u.additionalGids, []);
  });

  it('resolves mixed forms', async () => {
    const byNameNum = await resolveUser(root, 'www:1');
    assert.equal(byNameNum.uid, 33);
    assert.equal(byNameNum.gid, 1);
    const byNumName = await resolveUser(root, '1:docker');
    assert.equal(byNumName.uid, 1);
    assert.equal(byNumName.gid, 999);
  });

  it('treats an empty group part as the user’s primary group', async () => {
    assert.equal((await resolveUser(root, 'app:')).gid, 1000);
  });

  it('rejects an unknown user name', async () => {
    await rejectsNotFound(resolveUser(root, 'nobody'), /no user "nobody"/);
  });

  it('rejects an unknown group name', async () => {
    await rejectsNotFound(resolveUser(root, 'app:nogroup'), /no group "nogroup"/);
    await rejectsNotFound(resolveUser(root, '1000:nogroup'), /no group "nogroup"/);
  });

  it('does not match a name against a commented-out line', async () => {
    await rejectsNotFound(resolveUser(root, '# a comment line'), /no user/);
  });

  it('works with numeric ids when the image has no passwd or group file', async () => {
    assert.deepEqual(await resolveUser(bare, '1234'), {
      uid: 1234,
      gid: 0,
      additionalGids: [],
      home: '/',
    });
    assert.deepEqual(await resolveUser(bare, '1234:5678'), {
      uid: 1234,
      gid: 5678,
      additionalGids: [],
      home: '/',
    });
    assert.equal((await resolveUser(bare, '')).uid, 0);
  });

  it('rejects names when the image has no passwd or group file', async () => {
    await rejectsNotFound(resolveUser(bare, 'app'), /no user "app"/);
    await rejectsNotFound(resolveUser(bare, '0:staff'), /no group "staff"/);
  });
});
