import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Store } from '../../src/store/index.ts';
import {
  PortAllocator,
  checkNetworkFields,
  hostListeningPorts,
  parsePortRange,
  parseProcNet,
  portsForMode,
  publishAllRequests,
  type PortBinding,
  type PortRequest,
} from '../../src/engine/ports.ts';
import { newContainerRecord } from '../../src/engine/records.ts';
import { isBerthError } from '../../src/util/errors.ts';

// Real tables, trimmed: one listener on 0.0.0.0:8080 (0x1F90) and one on 127.0.0.1:25
// (0x19), an established connection from local port 33000 (0x80E8).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 109 1 000000003736f25d 100 0 0 10 0
   1: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 110 1 000000003736f25e 100 0 0 10 0
   2: 0200000A:80E8 0300000A:01BB 01 00000000:00000000 02:000A2B2C 00000000  1000        0 111 2 000000003736f25f 20 4 30 10 -1
`;
// [::]:20005 (0x4E25) listening.
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:4E25 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 120 1 0000000000000000 100 0 0 10 0
`;
// 0.0.0.0:53 (0x35) unconnected and 10.0.0.2:20003 (0x4E23) connected: both hold their port.
const UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 130 2 0000000000000000 0
  101: 0200000A:4E23 0300000A:0035 01 00000000:00000000 00:00000000 00000000  1000        0 131 2 0000000000000000 0
`;

let dir: string;
let procNet: string;
let emptyProc: string;
let store: Store;

function addContainer(id: string, name: string): void {
  store.containers.insert(
    newContainerRecord(
      id,
      name,
      {
        image: 'busybox',
        imageId: 'f00d',
        cmd: ['true'],
        entrypoint: [],
        env: [],
        workdir: '/',
        user: '',
        hostname: name,
        labels: {},
        tty: false,
        openStdin: false,
        autoRemove: false,
        networkMode: 'none',
        stopSignal: 'SIGTERM',
        stopTimeout: 10,
        log: { maxSize: 1, maxFiles: 1, compress: false },
      },
      '2024-01-01T00:00:00.000Z',
    ),
  );
}

function rejects(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isBerthError(e), `a BerthError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message) assert.match(e.message, message);
    return true;
  });
}

const named = (name: string, over: Partial<PortRequest> = {}): PortRequest => ({
  name,
  protocol: 'tcp',
  hostIP: '',
  ...over,
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-ports-'));
  procNet = join(dir, 'proc-net');
  emptyProc = join(dir, 'empty-proc');
  mkdirSync(procNet);
  mkdirSync(emptyProc);
  writeFileSync(join(procNet, 'tcp'), TCP);
  writeFileSync(join(procNet, 'tcp6'), TCP6);
  writeFileSync(join(procNet, 'udp'), UDP);
  store = new Store(join(dir, 'berth.db'));
});

afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('/proc/net parsing', () => {
  it('counts listening TCP sockets only', () => {
    assert.deepEqual([...parseProcNet(TCP, 'tcp')].sort(), [25, 8080]);
    assert.deepEqual([...parseProcNet(TCP6, 'tcp')], [20005]);
  });

  it('counts every bound UDP socket', () => {
    assert.deepEqual([...parseProcNet(UDP, 'udp')].sort(), [20003, 53]);
  });

  it('ignores the header, blank and broken lines', () => {
    assert.deepEqual([...parseProcNet('header\n\n  0: garbage\n', 'tcp')], []);
  });

  it('reads the v4 and v6 tables, and a missing table is no error', () => {
    assert.deepEqual([...hostListeningPorts('tcp', procNet)].sort(), [20005, 25, 8080]);
    assert.deepEqual([...hostListeningPorts('udp', procNet)].sort(), [20003, 53]);
    assert.equal(hostListeningPorts('tcp', join(dir, 'nope')).size, 0);
  });
});

describe('PortAllocator', () => {
  it('gives a named port a host port from the range, and the same number inside', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet: emptyProc });
    const [b] = a.allocate('c1', [named('http')]);
    assert.ok(b);
    assert.ok(b.hostPort >= 20000 && b.hostPort <= 20009);
    assert.equal(b.containerPort, b.hostPort);
    assert.deepEqual(b, {
      name: 'http',
      containerPort: b.hostPort,
      protocol: 'tcp',
      hostIP: '',
      hostPort: b.hostPort,
    });
  });

  it('keeps a named port’s given container port', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet: emptyProc });
    const [b] = a.allocate('c1', [named('http', { containerPort: 8080 })]);
    assert.equal(b?.containerPort, 8080);
    assert.ok(b && b.hostPort >= 20000 && b.hostPort <= 20009);
  });

  it('returns bindings in request order, and keeps them in the store', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20099 }, { procNet: emptyProc });
    const reqs: PortRequest[] = [
      { containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1' },
      named('web'),
      { containerPort: 53, protocol: 'udp', hostIP: '', hostPort: 5353 },
      named('admin', { protocol: 'udp' }),
    ];
    const got = a.allocate('c1', reqs);
    assert.deepEqual(
      got.map((b) => [b.name, b.protocol]),
      [
        ['', 'tcp'],
        ['web', 'tcp'],
        ['', 'udp'],
        ['admin', 'udp'],
      ],
    );
    assert.equal(got[2]?.hostPort, 5353);
    assert.equal(got[0]?.hostIP, '127.0.0.1');
    assert.deepEqual(a.bindings('c1'), got);
    // A restart of berthd (a new store) sees the same bindings: ports are kept until removal.
    store.close();
    store = new Store(join(dir, 'berth.db'));
    assert.deepEqual(new PortAllocator(store, { from: 20000, to: 20099 }).bindings('c1'), got);
  });

  it('refuses a fixed port that another container holds, naming it; any host IP clashes', () => {
    addContainer('aaaa1111bbbb2222', 'web');
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet: emptyProc });
    a.allocate('aaaa1111bbbb2222', [
      { containerPort: 80, protocol: 'tcp', hostIP: '127.0.0.1', hostPort: 8081 },
    ]);
    rejects(
      () =>
        a.allocate('c2', [
          { containerPort: 80, protocol: 'tcp', hostIP: '10.0.0.1', hostPort: 8081 },
        ]),
      'PORT_IN_USE',
      /^Host port 8081\/tcp is already allocated to container "web" \(aaaa1111bbbb\)$/,
    );
    // The other protocol is another port.
    const [u] = a.allocate('c2', [
      { containerPort: 80, protocol: 'udp', hostIP: '', hostPort: 8081 },
    ]);
    assert.equal(u?.hostPort, 8081);
  });

  it('refuses a fixed port a host process listens on', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet });
    rejects(
      () => a.allocate('c1', [{ containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: 8080 }]),
      'PORT_IN_USE',
      /8080\/tcp is in use by a process on the host/,
    );
    rejects(
      () => a.allocate('c1', [{ containerPort: 53, protocol: 'udp', hostIP: '', hostPort: 53 }]),
      'PORT_IN_USE',
    );
  });

  it('skips ports in the table and ports the host listens on, wrapping round the range', () => {
    // 20003/udp and 20005/tcp are the host's (fixtures); start the search at the last port.
    const a = new PortAllocator(
      store,
      { from: 20000, to: 20005 },
      { procNet, random: () => 0.999 },
    );
    const tcp = a.allocate('c1', [named('a'), named('b'), named('c')]).map((b) => b.hostPort);
    assert.deepEqual(tcp, [20000, 20001, 20002]);
    const more = a.allocate('c2', [named('a'), named('b')]).map((b) => b.hostPort);
    assert.deepEqual(more, [20003, 20004]);
    rejects(() => a.allocate('c3', [named('a')]), 'PORTS_EXHAUSTED', /tcp port in 20000-20005/);
    const udp = a.allocate('c3', [named('a', { protocol: 'udp' })]);
    assert.equal(udp[0]?.hostPort, 20005);
  });

  it('starts at a random point of the range', () => {
    const a = new PortAllocator(
      store,
      { from: 20000, to: 20099 },
      { procNet: emptyProc, random: () => 0.5 },
    );
    assert.equal(a.allocate('c1', [named('a')])[0]?.hostPort, 20050);
  });

  it('allocates all or nothing', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20001 }, { procNet: emptyProc });
    rejects(() => a.allocate('c1', [named('a'), named('b'), named('c')]), 'PORTS_EXHAUSTED');
    assert.deepEqual(store.ports.list(), []);
    addContainer('holder', 'holder');
    a.allocate('holder', [{ containerPort: 1, protocol: 'tcp', hostIP: '', hostPort: 9000 }]);
    rejects(
      () =>
        a.allocate('c1', [
          named('a'),
          { containerPort: 1, protocol: 'tcp', hostIP: '', hostPort: 9000 },
        ]),
      'PORT_IN_USE',
    );
    assert.deepEqual(
      store.ports.list().map((p) => p.containerId),
      ['holder'],
    );
  });

  it('joins the caller’s transaction: a failed create takes its ports with it', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet: emptyProc });
    assert.throws(
      () =>
        store.tx(() => {
          a.allocate('c1', [named('http')]);
          throw new Error('insert failed');
        }),
      /insert failed/,
    );
    assert.deepEqual(a.bindings('c1'), []);
  });

  it('never picks a port that a later request of the same call fixes', () => {
    const a = new PortAllocator(
      store,
      { from: 20000, to: 20001 },
      { procNet: emptyProc, random: () => 0 },
    );
    const got = a.allocate('c1', [
      named('a'),
      { containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: 20000 },
    ]);
    assert.deepEqual(
      got.map((b) => b.hostPort),
      [20001, 20000],
    );
  });

  it('takes the first free port of a -p host range, outside berthd’s range too', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet });
    // 8080 is a host listener; 8081 is taken by c0.
    a.allocate('c0', [{ containerPort: 1, protocol: 'tcp', hostIP: '', hostPort: 8081 }]);
    const range = {
      containerPort: 80,
      protocol: 'tcp',
      hostIP: '',
      hostPort: 8080,
      hostPortEnd: 8083,
    } as const;
    assert.equal(a.allocate('c1', [range])[0]?.hostPort, 8082);
    assert.equal(a.allocate('c2', [range])[0]?.hostPort, 8083);
    rejects(() => a.allocate('c3', [range]), 'PORTS_EXHAUSTED', /8080-8083/);
  });

  it('rejects bad requests naming the field', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet: emptyProc });
    const bad: [PortRequest[], RegExp][] = [
      [[named('Http')], /ports\[0\]\.name/],
      [[named('9x')], /ports\[0\]\.name/],
      [[named('a'), named('a')], /ports\[1\]\.name.*more than one/],
      [[{ protocol: 'tcp', hostIP: '' }], /ports\[0\]\.containerPort/],
      [[{ containerPort: 70000, protocol: 'tcp', hostIP: '' }], /ports\[0\]\.containerPort/],
      [[{ containerPort: 80, protocol: 'sctp' as 'tcp', hostIP: '' }], /ports\[0\]\.protocol/],
      [[{ containerPort: 80, protocol: 'tcp', hostIP: 'localhost' }], /ports\[0\]\.hostIP/],
      [[{ containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: -1 }], /ports\[0\]\.hostPort/],
      [
        [{ containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: 90, hostPortEnd: 80 }],
        /ports\[0\]\.hostPortEnd/,
      ],
      [
        [
          { containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: 9000 },
          { containerPort: 81, protocol: 'tcp', hostIP: '127.0.0.1', hostPort: 9000 },
        ],
        /ports\[1\]\.hostPort.*requested twice/,
      ],
    ];
    for (const [reqs, msg] of bad) rejects(() => a.allocate('c1', reqs), 'INVALID_ARGUMENT', msg);
    assert.deepEqual(store.ports.list(), []);
  });

  it('keeps names unique per container across calls, not across containers', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet: emptyProc });
    a.allocate('c1', [named('http')]);
    a.allocate('c2', [named('http')]);
    rejects(() => a.allocate('c1', [named('http')]), 'INVALID_ARGUMENT', /already has a port/);
    // A later call continues the order.
    a.allocate('c1', [named('admin')]);
    assert.deepEqual(
      a.bindings('c1').map((b) => b.name),
      ['http', 'admin'],
    );
  });

  it('treats host port 0 as any', () => {
    const a = new PortAllocator(store, { from: 20000, to: 20000 }, { procNet: emptyProc });
    const [b] = a.allocate('c1', [{ containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: 0 }]);
    assert.equal(b?.hostPort, 20000);
    assert.equal(b?.containerPort, 80);
  });

  it('releases a container’s ports, and sweeps those of containers that are gone', () => {
    addContainer('live', 'live');
    const a = new PortAllocator(store, { from: 20000, to: 20009 }, { procNet: emptyProc });
    a.allocate('live', [named('a')]);
    a.allocate('gone', [named('a')]);
    a.allocate('c3', [named('a'), named('b')]);
    a.release('c3');
    assert.deepEqual(a.bindings('c3'), []);
    assert.equal(a.sweep(), 1);
    assert.deepEqual(
      store.ports.list().map((p) => p.containerId),
      ['live'],
    );
    a.release('nothing'); // no error
  });

  it('rejects a range outside 1-65535', () => {
    rejects(() => new PortAllocator(store, { from: 0, to: 10 }), 'INVALID_ARGUMENT');
    rejects(() => new PortAllocator(store, { from: 30, to: 10 }), 'INVALID_ARGUMENT');
  });

  it('hands out no port twice to 50 concurrent creators, and gets all back on removal', async () => {
    const a = new PortAllocator(store, { from: 20000, to: 20149 }, { procNet: emptyProc });
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        await new Promise((r) => setImmediate(r));
        const got = a.allocate(`c${i}`, [named('http'), named('metrics', { protocol: 'udp' })]);
        await new Promise((r) => setImmediate(r));
        return got;
      }),
    );
    const tcp = results.map((r) => r[0]?.hostPort);
    const udp = results.map((r) => r[1]?.hostPort);
    assert.equal(new Set(tcp).size, 50);
    assert.equal(new Set(udp).size, 50);
    assert.equal(store.ports.list().length, 100);
    await Promise.all(
      results.map(async (_, i) => {
        await new Promise((r) => setImmediate(r));
        a.release(`c${i}`);
      }),
    );
    assert.deepEqual(store.ports.list(), []);
  });

  it('hands out no port twice across separate connections in parallel threads', async () => {
    const db = join(dir, 'berth.db');
    const storeUrl = new URL('../../src/store/index.js', import.meta.url).href;
    const portsUrl = new URL('../../src/engine/ports.js', import.meta.url).href;
    // Workers race for the write lock on their own connections; the transaction and the
    // UNIQUE constraint are all that keeps them apart.
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      (async () => {
        const { Store } = await import(workerData.storeUrl);
        const { PortAllocator } = await import(workerData.portsUrl);
        const s = new Store(workerData.db);
        const a = new PortAllocator(s, { from: 20000, to: 20199 }, { procNet: workerData.procNet });
        const out = [];
        for (let i = 0; i < 25; i++) {
          out.push(...a.allocate('w' + workerData.n + '-' + i, [{ name: 'http', protocol: 'tcp', hostIP: '' }]));
        }
        s.close();
        parentPort.postMessage(out);
      })().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
    `;
    const runs = Array.from(
      { length: 4 },
      (_, n) =>
        new Promise<PortBinding[]>((resolve, reject) => {
          const w = new Worker(code, {
            eval: true,
            workerData: { db, storeUrl, portsUrl, procNet: emptyProc, n },
          });
          w.once('message', (m: PortBinding[] | { error: string }) =>
            'error' in m ? reject(new Error(m.error)) : resolve(m),
          );
          w.once('error', reject);
        }),
    );
    const all = (await Promise.all(runs)).flat();
    assert.equal(all.length, 100);
    assert.equal(new Set(all.map((b) => b.hostPort)).size, 100);
    assert.equal(store.ports.list().length, 100);
  });
});

describe('port helpers', () => {
  it('parses the daemon’s --port-range', () => {
    assert.deepEqual(parsePortRange('20000-32000'), { from: 20000, to: 32000 });
    for (const bad of ['20000', '0-10', '10-5', '1-70000', 'a-b'])
      rejects(() => parsePortRange(bad), 'INVALID_ARGUMENT', /port-range/);
  });

  it('makes both sides one number in host mode', () => {
    const got = portsForMode('host', [
      named('http'),
      { containerPort: 8080, protocol: 'tcp', hostIP: '' },
      { containerPort: 9090, protocol: 'tcp', hostIP: '', hostPort: 9090 },
    ]);
    assert.deepEqual(got, [
      named('http'),
      { containerPort: 8080, protocol: 'tcp', hostIP: '', hostPort: 8080 },
      { containerPort: 9090, protocol: 'tcp', hostIP: '', hostPort: 9090 },
    ]);
    rejects(
      () =>
        portsForMode('host', [{ containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: 8080 }]),
      'INVALID_ARGUMENT',
      /ports\[0\].*8080 and 80/,
    );
  });

  it('leaves bridge ports alone and refuses ports without a network of one’s own', () => {
    const reqs = [{ containerPort: 80, protocol: 'tcp', hostIP: '', hostPort: 8080 } as const];
    assert.deepEqual(portsForMode('bridge', reqs), reqs);
    rejects(() => portsForMode('none', reqs), 'INVALID_ARGUMENT', /none/);
    rejects(() => portsForMode('container', [named('a')]), 'INVALID_ARGUMENT');
    assert.deepEqual(portsForMode('none', []), []);
  });

  it('publishes every exposed port not published already (-P)', () => {
    assert.deepEqual(
      publishAllRequests(
        ['80/tcp', '53/udp', '443', '8080/sctp', 'junk', '80'],
        [{ containerPort: 443, protocol: 'tcp', hostIP: '', hostPort: 8443 }],
      ),
      [
        { containerPort: 80, protocol: 'tcp', hostIP: '' },
        { containerPort: 53, protocol: 'udp', hostIP: '' },
      ],
    );
  });

  it('checks the network fields of a create request', () => {
    checkNetworkFields({
      ports: [named('http')],
      extraHosts: ['db:10.0.0.5', 'gw:host-gateway', 'v6:[::1]'],
      dns: ['1.1.1.1', '2606:4700:4700::1111'],
      dnsSearch: ['corp.example', '.'],
    });
    rejects(
      () => checkNetworkFields({ extraHosts: ['db'] }),
      'INVALID_ARGUMENT',
      /extraHosts\[0\]/,
    );
    rejects(() => checkNetworkFields({ dns: ['x'] }), 'INVALID_ARGUMENT', /dns\[0\]/);
    rejects(
      () => checkNetworkFields({ dnsSearch: ['ok.example', 'bad_domain!'] }),
      'INVALID_ARGUMENT',
      /dnsSearch\[1\]/,
    );
    rejects(() => checkNetworkFields({ ports: [named('A')] }), 'INVALID_ARGUMENT', /ports\[0\]/);
  });
});
