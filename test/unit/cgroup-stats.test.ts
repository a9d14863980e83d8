import { after, afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cgroups } from '../../src/cgroups/index.ts';
import type { CgroupStats } from '../../src/cgroups/index.ts';
import {
  parseBlkioV1,
  parseIoStatV2,
  parseKeyed,
  parseLimit,
  parsePressureSomeAvg10,
  parseSingle,
} from '../../src/cgroups/stats.ts';

const CG = '/berth/c1';
const V1_UNLIMITED = '9223372036854771712\n';

let tmp: string;

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'berth-cgstats-'));
});

afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

// Writes files under root: { 'memory/berth/c1/memory.failcnt': '3\n', ... }.
function tree(root: string, files: Record<string, string>): void {
  for (const [rel, text] of Object.entries(files)) {
    const p = join(root, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, text);
  }
}

function v1Root(): string {
  const root = join(tmp, 'v1');
  mkdirSync(root, { recursive: true });
  return root;
}

function v2Root(): string {
  const root = join(tmp, 'v2');
  tree(root, { 'cgroup.controllers': 'cpuset cpu io memory pids\n', 'cgroup.procs': '' });
  return root;
}

const EMPTY: CgroupStats = {
  cpuUsageNs: 0,
  cpuUserNs: 0,
  cpuSystemNs: 0,
  cpuPeriods: 0,
  cpuThrottledPeriods: 0,
  cpuThrottledNs: 0,
  memoryUsage: 0,
  memoryLimit: null,
  memoryRss: 0,
  memoryCache: 0,
  memoryFailcnt: 0,
  memoryHighEvents: 0,
  memoryPressureAvg10: null,
  oomKills: 0,
  pidsCurrent: 0,
  pidsLimit: null,
  blkioReadBytes: 0,
  blkioWriteBytes: 0,
};

// Files of a v1 container, with cpuacct.* and cpu.stat under the given hierarchy dirs.
function v1Files(cpuacctDir: string, cpuDir: string, g = CG): Record<string, string> {
  return {
    [`${cpuacctDir}${g}/cpuacct.usage`]: '123456789\n',
    [`${cpuacctDir}${g}/cpuacct.stat`]: 'user 70\nsystem 30\n',
    [`${cpuDir}${g}/cpu.stat`]:
      'nr_periods 40\nnr_throttled 7\nthrottled_time 5000000\nnr_bursts 0\nburst_time 0\n',
    [`memory${g}/memory.usage_in_bytes`]: '10485760\n',
    [`memory${g}/memory.limit_in_bytes`]: '67108864\n',
    [`memory${g}/memory.failcnt`]: '4\n',
    [`memory${g}/memory.oom_control`]: 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
    [`memory${g}/memory.stat`]:
      'cache 100\nrss 200\nrss_huge 0\nhierarchical_memory_limit 67108864\n' +
      'total_cache 4096000\ntotal_rss 2048000\ntotal_rss_huge 0\n',
    [`pids${g}/pids.current`]: '3\n',
    [`pids${g}/pids.max`]: '50\n',
    [`blkio${g}/blkio.throttle.io_service_bytes_recursive`]:
      '254:0 Read 1000\n254:0 Write 2000\n254:0 Sync 2500\n254:0 Async 500\n254:0 Discard 0\n' +
      '254:0 Total 3000\n8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 3030\n',
  };
}

const V1_WANT: CgroupStats = {
  cpuUsageNs: 123456789,
  cpuUserNs: 700_000_000,
  cpuSystemNs: 300_000_000,
  cpuPeriods: 40,
  cpuThrottledPeriods: 7,
  cpuThrottledNs: 5_000_000,
  memoryUsage: 10485760,
  memoryLimit: 67108864,
  memoryRss: 2048000,
  memoryCache: 4096000,
  memoryFailcnt: 4,
  memoryHighEvents: 0,
  memoryPressureAvg10: null,
  oomKills: 2,
  pidsCurrent: 3,
  pidsLimit: 50,
  blkioReadBytes: 1010,
  blkioWriteBytes: 2020,
};

function v2Files(g = CG): Record<string, string> {
  return {
    [`${g.slice(1)}/cgroup.procs`]: '',
    [`${g.slice(1)}/cpu.stat`]:
      'usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\ncore_sched.force_idle_usec 0\n' +
      'nr_periods 12\nnr_throttled 3\nthrottled_usec 750\nnr_bursts 0\nburst_usec 0\n',
    [`${g.slice(1)}/memory.current`]: '8388608\n',
    [`${g.slice(1)}/memory.max`]: '33554432\n',
    [`${g.slice(1)}/memory.stat`]:
      'anon 1048576\nfile 2097152\nkernel 4096\nanon_thp 0\nfile_mapped 0\n',
    [`${g.slice(1)}/memory.events`]: 'low 0\nhigh 9\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n',
    [`${g.slice(1)}/memory.pressure`]:
      'some avg10=1.25 avg60=0.50 avg300=0.10 total=12345\n' +
      'full avg10=0.75 avg60=0.20 avg300=0.05 total=6789\n',
    [`${g.slice(1)}/pids.current`]: '6\n',
    [`${g.slice(1)}/pids.max`]: '100\n',
    [`${g.slice(1)}/io.stat`]:
      '254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n' +
      '8:16 rbytes=100 wbytes=200 rios=1 wios=1 dbytes=0 dios=0\n',
  };
}

const V2_WANT: CgroupStats = {
  cpuUsageNs: 5_000_000,
  cpuUserNs: 3_000_000,
  cpuSystemNs: 2_000_000,
  cpuPeriods: 12,
  cpuThrottledPeriods: 3,
  cpuThrottledNs: 750_000,
  memoryUsage: 8388608,
  memoryLimit: 33554432,
  memoryRss: 1048576,
  memoryCache: 2097152,
  memoryFailcnt: 5,
  memoryHighEvents: 9,
  memoryPressureAvg10: 1.25,
  oomKills: 1,
  pidsCurrent: 6,
  pidsLimit: 100,
  blkioReadBytes: 4196,
  blkioWriteBytes: 8392,
};

describe('cgroup stats parsing helpers', () => {
  it('keyed files, single values and limits', () => {
    assert.deepEqual(
      [...parseKeyed('a 1\nb 22\n\nbad\nc notanumber\n')],
      [
        ['a', 1],
        ['b', 22],
        ['c', 0],
      ],
    );
    assert.equal(parseKeyed(undefined).size, 0);
    assert.equal(parseSingle('42\n'), 42);
    assert.equal(parseSingle(undefined), 0);
    assert.equal(parseSingle('max\n'), 0);
    assert.equal(parseLimit('max\n'), null);
    assert.equal(parseLimit(V1_UNLIMITED), null);
    assert.equal(parseLimit(String(2 ** 62)), null);
    assert.equal(parseLimit(String(2 ** 62 - 4096)), 2 ** 62 - 4096);
    assert.equal(parseLimit('67108864\n'), 67108864);
    assert.equal(parseLimit(undefined), null);
    assert.equal(parseLimit(''), null);
  });

  it('blkio, io.stat and pressure', () => {
    assert.deepEqual(parseBlkioV1('Total 0\n'), { read: 0, write: 0 });
    assert.deepEqual(parseBlkioV1('8:0 Read 5\n8:0 Write 6\n8:16 Read 1\nTotal 12\n'), {
      read: 6,
      write: 6,
    });
    assert.deepEqual(parseIoStatV2(''), { read: 0, write: 0 });
    assert.deepEqual(parseIoStatV2('8:0 rbytes=1 wbytes=2 rios=3\n8:1 rbytes=10 wbytes=20\n'), {
      read: 11,
      write: 22,
    });
    assert.equal(parsePressureSomeAvg10('some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n'), 0);
    assert.equal(parsePressureSomeAvg10('full avg10=3.00 avg60=0 avg300=0 total=0\n'), null);
    assert.equal(parsePressureSomeAvg10(undefined), null);
  });
});

describe('Cgroups.readStats v1', () => {
  it('separate cpu and cpuacct hierarchies: every field', () => {
    const root = v1Root();
    tree(root, v1Files('cpuacct', 'cpu'));
    const cg = new Cgroups(root);
    assert.equal(cg.version, 1);
    assert.deepEqual(cg.readStats(CG), V1_WANT);
  });

  it('combined cpu,cpuacct hierarchy', () => {
    const root = v1Root();
    tree(root, v1Files('cpu,cpuacct', 'cpu,cpuacct'));
    assert.deepEqual(new Cgroups(root).readStats(CG), V1_WANT);
  });

  it('prefers cpuacct/ when both it and cpu,cpuacct/ hold the group', () => {
    const root = v1Root();
    tree(root, v1Files('cpuacct', 'cpu'));
    tree(root, { [`cpu,cpuacct${CG}/cpuacct.usage`]: '1\n' });
    assert.equal(new Cgroups(root).readStats(CG)?.cpuUsageNs, 123456789);
  });

  it('converts cpuacct.stat ticks with an injected USER_HZ', () => {
    const root = v1Root();
    tree(root, v1Files('cpuacct', 'cpu'));
    const s = new Cgroups(root, { userHz: 250 }).readStats(CG);
    assert.equal(s?.cpuUserNs, 280_000_000);
    assert.equal(s?.cpuSystemNs, 120_000_000);
  });

  it('unlimited values, non-hierarchical memory.stat, non-recursive blkio file', () => {
    const root = v1Root();
    const files = v1Files('cpuacct', 'cpu');
    files[`memory${CG}/memory.limit_in_bytes`] = V1_UNLIMITED;
    files[`memory${CG}/memory.stat`] = 'cache 100\nrss 200\n';
    files[`pids${CG}/pids.max`] = 'max\n';
    delete files[`blkio${CG}/blkio.throttle.io_service_bytes_recursive`];
    files[`blkio${CG}/blkio.throttle.io_service_bytes`] = '8:0 Read 7\n8:0 Write 9\nTotal 16\n';
    tree(root, files);
    const s = new Cgroups(root).readStats(CG);
    assert.deepEqual(s, {
      ...V1_WANT,
      memoryLimit: null,
      memoryRss: 200,
      memoryCache: 100,
      pidsLimit: null,
      blkioReadBytes: 7,
      blkioWriteBytes: 9,
    });
  });

  it('missing and malformed files read as 0 / null, never throw', () => {
    const root = v1Root();
    mkdirSync(join(root, 'memory', CG), { recursive: true });
    assert.deepEqual(new Cgroups(root).readStats(CG), EMPTY);
    tree(root, {
      [`memory${CG}/memory.usage_in_bytes`]: 'garbage\n',
      [`memory${CG}/memory.limit_in_bytes`]: '-1\n',
      [`pids${CG}/pids.max`]: '',
      [`cpu${CG}/cpu.stat`]: 'nr_throttled\n',
    });
    assert.deepEqual(new Cgroups(root).readStats(CG), EMPTY);
  });

  it('a group present only in pids still counts as existing', () => {
    const root = v1Root();
    tree(root, { [`pids${CG}/pids.current`]: '1\n' });
    assert.deepEqual(new Cgroups(root).readStats(CG), { ...EMPTY, pidsCurrent: 1 });
  });

  it('undefined when the container has no group', () => {
    const root = v1Root();
    tree(root, v1Files('cpuacct', 'cpu'));
    assert.equal(new Cgroups(root).readStats('/berth/gone'), undefined);
  });
});

describe('Cgroups.readStats v2', () => {
  it('every field', () => {
    const root = v2Root();
    tree(root, v2Files());
    const cg = new Cgroups(root);
    assert.equal(cg.version, 2);
    assert.deepEqual(cg.readStats(CG), V2_WANT);
  });

  it('"max" limits are null', () => {
    const root = v2Root();
    const files = v2Files();
    files[`${CG.slice(1)}/memory.max`] = 'max\n';
    files[`${CG.slice(1)}/pids.max`] = 'max\n';
    tree(root, files);
    assert.deepEqual(new Cgroups(root).readStats(CG), {
      ...V2_WANT,
      memoryLimit: null,
      pidsLimit: null,
    });
  });

  it('missing files (controllers not enabled, no PSI) read as 0 / null', () => {
    const root = v2Root();
    mkdirSync(join(root, CG), { recursive: true });
    assert.deepEqual(new Cgroups(root).readStats(CG), EMPTY);
    tree(root, { [`${CG.slice(1)}/io.stat`]: '', [`${CG.slice(1)}/memory.pressure`]: 'x\n' });
    assert.deepEqual(new Cgroups(root).readStats(CG), EMPTY);
  });

  it('undefined when the container has no group', () => {
    const root = v2Root();
    tree(root, v2Files());
    assert.equal(new Cgroups(root).readStats('/berth/gone'), undefined);
  });
});

describe('Cgroups.readStatsMany', () => {
  it('v1: reads each present container once and skips a missing one', () => {
    const root = v1Root();
    tree(root, v1Files('cpuacct', 'cpu'));
    tree(root, v1Files('cpuacct', 'cpu', '/berth/c2'));
    const m = new Cgroups(root).readStatsMany([CG, '/berth/gone', '/berth/c2', CG]);
    assert.deepEqual([...m.keys()], [CG, '/berth/c2']);
    assert.deepEqual(m.get(CG), V1_WANT);
    assert.deepEqual(m.get('/berth/c2'), V1_WANT);
  });

  it('v2: skips a missing container', () => {
    const root = v2Root();
    tree(root, v2Files());
    const m = new Cgroups(root).readStatsMany(['/berth/gone', CG]);
    assert.deepEqual([...m.entries()], [[CG, V2_WANT]]);
  });

  it('empty input gives an empty map', () => {
    assert.equal(new Cgroups(v2Root()).readStatsMany([]).size, 0);
  });
});

// ---- the real kernel (cgroup v1 hybrid, as root) ----

const REAL = '/sys/fs/cgroup';
const realV1 =
  process.getuid?.() === 0 &&
  !existsSync(join(REAL, 'cgroup.controllers')) &&
  ['memory', 'cpuacct', 'pids'].every((h) => existsSync(join(REAL, h, 'cgroup.procs')));

describe(
  'Cgroups.readStats on the real kernel',
  { skip: !realV1 && 'needs root on cgroup v1' },
  () => {
    const name = `/berth-statstest-${process.pid}`;
    const hierarchies = ['memory', 'cpuacct', 'pids'];
    let child: ChildProcess | undefined;
    let exited: Promise<unknown> = Promise.resolve();

    after(async () => {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      for (const h of hierarchies) {
        const d = join(REAL, h, name);
        // A reaped task can keep a v1 group busy for a moment.
        for (let i = 0; i < 50 && existsSync(d); i++) {
          try {
            rmdirSync(d);
          } catch {
            await sleep(20);
          }
        }
      }
    });

    it(
      'sees the limits and the CPU time of a process in a fresh group',
      { timeout: 5000 },
      async () => {
        for (const h of hierarchies) mkdirSync(join(REAL, h, name));
        writeFileSync(
          join(REAL, 'memory', name, 'memory.limit_in_bytes'),
          String(64 * 1024 * 1024),
        );
        writeFileSync(join(REAL, 'pids', name, 'pids.max'), '50');

        // The child waits on stdin until it is in the groups, burns some CPU through a pipe,
        // says so, and lingers briefly so the sample sees it alive.
        const c = spawn(
          'sh',
          ['-c', 'read x; head -c 20000000 /dev/zero | tail -c 1 >/dev/null; echo done; sleep 0.2'],
          { stdio: ['pipe', 'pipe', 'inherit'] },
        );
        child = c;
        exited = new Promise((resolve) => c.once('close', resolve));
        assert.ok(c.pid !== undefined && c.stdin && c.stdout);
        for (const h of hierarchies)
          writeFileSync(join(REAL, h, name, 'cgroup.procs'), String(c.pid));
        const said = new Promise<void>((resolve) =>
          c.stdout?.on('data', (b: Buffer) => {
            if (b.toString().includes('done')) resolve();
          }),
        );
        c.stdin.end('go\n');
        await said;

        const cg = new Cgroups(REAL);
        const s = cg.readStats(name);
        assert.ok(s, 'group exists');
        assert.equal(s.memoryLimit, 64 * 1024 * 1024);
        assert.equal(s.pidsLimit, 50);
        assert.ok(s.cpuUsageNs > 0, `cpuUsageNs ${s.cpuUsageNs}`);
        assert.ok(s.pidsCurrent >= 1, `pidsCurrent ${s.pidsCurrent}`);
        assert.ok(s.memoryUsage > 0, `memoryUsage ${s.memoryUsage}`);
        assert.equal(s.oomKills, 0);
        assert.equal(s.memoryPressureAvg10, null);

        const many = cg.readStatsMany([name, `${name}-gone`]);
        assert.deepEqual([...many.keys()], [name]);

        await exited;
        const afterExit = cg.readStats(name);
        assert.ok(afterExit);
        assert.ok(afterExit.cpuUsageNs >= s.cpuUsageNs);
      },
    );
  },
);
