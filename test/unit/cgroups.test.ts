import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cgroups } from '../../src/cgroups/index.ts';

const V1_HIERARCHIES = ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset', 'systemd', 'unified'];

let tmp: string;

function v1Tree(): string {
  const root = join(tmp, 'v1');
  for (const h of V1_HIERARCHIES) {
    mkdirSync(join(root, h), { recursive: true });
    writeFileSync(join(root, h, 'cgroup.procs'), '');
  }
  // Not a hierarchy: no cgroup.procs, or not a directory.
  mkdirSync(join(root, 'net_cls'));
  writeFileSync(join(root, 'stray-file'), '');
  return root;
}

function v2Tree(): string {
  const root = join(tmp, 'v2');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  writeFileSync(join(root, 'cgroup.procs'), '');
  return root;
}

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'berth-cgroups-'));
});

afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('Cgroups version detection', () => {
  it('detects v2 by cgroup.controllers at the root', () => {
    const root = v2Tree();
    const cg = new Cgroups(root);
    assert.equal(cg.version, 2);
    assert.equal(cg.root, root);
  });

  it('detects v1 when cgroup.controllers is absent', () => {
    assert.equal(new Cgroups(v1Tree()).version, 1);
  });
});

describe('Cgroups.ensureMonitorGroup', () => {
  it('v1: creates the group in each monitor hierarchy, not cpuset or unified', () => {
    const root = v1Tree();
    const files = new Cgroups(root).ensureMonitorGroup('berth.monitors');
    const want = ['cpu', 'cpuacct', 'memory', 'pids', 'systemd'].map((h) =>
      join(root, h, 'berth.monitors', 'cgroup.procs'),
    );
    assert.deepEqual([...files].sort(), want);
    for (const h of ['cpu', 'cpuacct', 'memory', 'pids', 'systemd'])
      assert.ok(existsSync(join(root, h, 'berth.monitors')), `${h} group created`);
    for (const h of ['cpuset', 'unified', 'net_cls'])
      assert.ok(!existsSync(join(root, h, 'berth.monitors')), `${h} group not created`);
  });

  it('v2: creates one group under the root', () => {
    const root = v2Tree();
    const files = new Cgroups(root).ensureMonitorGroup('berth.monitors');
    assert.deepEqual(files, [join(root, 'berth.monitors', 'cgroup.procs')]);
    assert.ok(existsSync(join(root, 'berth.monitors')));
  });

  it('is idempotent', () => {
    const cg = new Cgroups(v2Tree());
    const a = cg.ensureMonitorGroup('m');
    assert.deepEqual(cg.ensureMonitorGroup('m'), a);
  });
});

describe('Cgroups.oomFile and readOomKills', () => {
  it('v1: reads memory.oom_control in the memory hierarchy', () => {
    const root = v1Tree();
    const cg = new Cgroups(root);
    const f = cg.oomFile('/berth/abc');
    assert.equal(f, join(root, 'memory', 'berth', 'abc', 'memory.oom_control'));
    mkdirSync(join(root, 'memory', 'berth', 'abc'), { recursive: true });
    writeFileSync(f, 'oom_kill_disable 0\nunder_oom 0\noom_kill 3\n');
    assert.equal(cg.readOomKills('/berth/abc'), 3);
  });

  it('v2: reads memory.events in the container group', () => {
    const root = v2Tree();
    const cg = new Cgroups(root);
    const f = cg.oomFile('/berth/abc');
    assert.equal(f, join(root, 'berth', 'abc', 'memory.events'));
    mkdirSync(join(root, 'berth', 'abc'), { recursive: true });
    writeFileSync(f, 'low 0\nhigh 0\nmax 12\noom 2\noom_kill 17\noom_group_kill 0\n');
    assert.equal(cg.readOomKills('/berth/abc'), 17);
  });

  it('does not confuse oom_group_kill or oom with oom_kill', () => {
    const root = v2Tree();
    const cg = new Cgroups(root);
    mkdirSync(join(root, 'c'), { recursive: true });
    writeFileSync(cg.oomFile('c'), 'oom 4\noom_group_kill 9\n');
    assert.equal(cg.readOomKills('c'), 0);
  });

  it('returns 0 when the file is missing', () => {
    assert.equal(new Cgroups(v2Tree()).readOomKills('/nope'), 0);
    assert.equal(new Cgroups(v1Tree()).readOomKills('/nope'), 0);
  });
});

describe('Cgroups.removeContainer', () => {
  it('v1: removes the empty group in every hierarchy except unified', () => {
    const root = v1Tree();
    const cg = new Cgroups(root);
    const hs = ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset', 'systemd'];
    assert.deepEqual(
      [...cg.containerDirs('/berth/abc')].sort(),
      [...hs].sort().map((h) => join(root, h, 'berth', 'abc')),
    );
    for (const h of hs) mkdirSync(join(root, h, 'berth', 'abc'), { recursive: true });
    mkdirSync(join(root, 'unified', 'berth', 'abc'), { recursive: true });
    assert.deepEqual(cg.removeContainer('/berth/abc'), []);
    for (const h of hs) {
      assert.ok(!existsSync(join(root, h, 'berth', 'abc')), `${h} removed`);
      assert.ok(existsSync(join(root, h, 'berth')), `${h} parent kept`);
    }
    assert.ok(existsSync(join(root, 'unified', 'berth', 'abc')));
  });

  it('v1: reports groups it cannot remove and skips missing ones', () => {
    const root = v1Tree();
    const cg = new Cgroups(root);
    mkdirSync(join(root, 'memory', 'berth', 'abc', 'child'), { recursive: true });
    mkdirSync(join(root, 'pids', 'berth', 'abc'), { recursive: true });
    assert.deepEqual(cg.removeContainer('/berth/abc'), [join(root, 'memory', 'berth', 'abc')]);
    assert.ok(existsSync(join(root, 'memory', 'berth', 'abc', 'child')));
    assert.ok(!existsSync(join(root, 'pids', 'berth', 'abc')));
  });

  it('v2: removes an empty group and reports a non-empty one', () => {
    const root = v2Tree();
    const cg = new Cgroups(root);
    mkdirSync(join(root, 'berth', 'a'), { recursive: true });
    mkdirSync(join(root, 'berth', 'b', 'sub'), { recursive: true });
    assert.deepEqual(cg.removeContainer('/berth/a'), []);
    assert.ok(!existsSync(join(root, 'berth', 'a')));
    assert.deepEqual(cg.removeContainer('/berth/b'), [join(root, 'berth', 'b')]);
    assert.ok(existsSync(join(root, 'berth', 'b')));
  });

  it('returns nothing for a container that has no groups', () => {
    assert.deepEqual(new Cgroups(v2Tree()).removeContainer('/berth/gone'), []);
    assert.deepEqual(new Cgroups(v1Tree()).removeContainer('/berth/gone'), []);
  });
});
