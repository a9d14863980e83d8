// Malformed requests against a real berthd, over raw sockets: bad JSON, huge bodies and
// headers, wrong types, unknown fields, path tricks in names and mount sources, wrong
// methods, requests that never finish. Each must get a 4xx (never a 5xx, never silence),
// berthd must stay up, and nothing may be made: no container, volume, network, image,
// event, host directory or file under its roots.
//
// Seeded: BERTH_FUZZ_SEED=<n> replays a run (the seed is in every failure), and
// BERTH_FUZZ_CASES=<n> sets how many random cases follow the fixed ones.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, lstatSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ERROR_CODES } from '../../src/util/errors.ts';
import { TestDaemon, pidAlive } from '../helpers/daemon.ts';

const SEED = Number(process.env['BERTH_FUZZ_SEED'] ?? 0x5eed);
const RANDOM_CASES = Number(process.env['BERTH_FUZZ_CASES'] ?? 400);
const READ_TIMEOUT_S = 2;
const CONCURRENCY = 12;

// mulberry32: small, fast, and the same sequence everywhere for a seed.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// A request as bytes on the wire, sent in parts; `pause` waits before the next part, and a
// request whose last part is a pause never finishes (berthd must time it out).
type Part = Buffer | { pause: number };

interface Case {
  label: string;
  parts: Part[];
  // Allowed statuses; by default any 4xx.
  expect?: readonly number[];
  // How long the answer may take.
  deadlineMs?: number;
}

interface Reply {
  status?: number;
  head: string;
  body: string;
  ms: number;
  hung: boolean;
}

function exchange(socket: string, parts: readonly Part[], deadlineMs: number): Promise<Reply> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = connect(socket);
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (hung: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const text = buf.toString('latin1');
      const i = text.indexOf('\r\n\r\n');
      const head = i >= 0 ? text.slice(0, i) : text;
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve({
        ...(m ? { status: Number(m[1]) } : {}),
        head,
        body: i >= 0 ? buf.subarray(i + 4).toString() : '',
        ms: Date.now() - t0,
        hung,
      });
    };
    const timer = setTimeout(() => finish(true), deadlineMs);
    const complete = (): boolean => {
      const text = buf.toString('latin1');
      const i = text.indexOf('\r\n\r\n');
      if (i < 0) return false;
      const head = text.slice(0, i).toLowerCase();
      if (/^http\/1\.[01] 1\d\d/.test(head)) {
        buf = buf.subarray(i + 4); // 100 Continue: the answer follows
        return complete();
      }
      const len = /\r\ncontent-length: *(\d+)/.exec(head);
      if (len) return buf.length - (i + 4) >= Number(len[1]);
      if (/\r\ntransfer-encoding: *chunked/.test(head)) return text.endsWith('0\r\n\r\n');
      return false;
    };
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (complete()) finish(false);
    });
    s.on('error', () => undefined);
    s.on('close', () => finish(false));
    void (async () => {
      for (const p of parts) {
        if (done) return;
        if (Buffer.isBuffer(p)) s.write(p);
        // Unref'd: a pause outliving its answer holds nothing up.
        else await new Promise((r) => setTimeout(r, p.pause).unref());
      }
    })();
  });
}

const CRLF = '\r\n';

function http(
  method: string,
  path: string,
  o: { body?: string | Buffer; type?: string; headers?: string[]; length?: number } = {},
): Buffer {
  const body = o.body === undefined ? undefined : Buffer.from(o.body);
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: berth', 'Connection: close'];
  if (body !== undefined || o.length !== undefined) {
    lines.push(`Content-Type: ${o.type ?? 'application/json'}`);
    lines.push(`Content-Length: ${o.length ?? body?.length ?? 0}`);
  }
  lines.push(...(o.headers ?? []));
  const head = Buffer.from(lines.join(CRLF) + CRLF + CRLF, 'latin1');
  return body ? Buffer.concat([head, body]) : head;
}

const json = (method: string, path: string, v: unknown): Buffer =>
  http(method, path, { body: JSON.stringify(v) });

// ---- valid bodies, which the mutations break ----

const CANARY = 'fz-canary';

function baseCreate(): Record<string, unknown> {
  return {
    image: 'busybox',
    name: 'fz-base',
    cmd: ['true'],
    entrypoint: ['/bin/sh', '-c'],
    env: ['A=1'],
    workdir: '/',
    user: 'root',
    hostname: 'fz',
    labels: { a: 'b' },
    tty: false,
    openStdin: false,
    autoRemove: false,
    networkMode: 'none',
    stopSignal: 'SIGTERM',
    stopTimeout: 5,
    logOpts: { 'max-size': '1m' },
    resources: {
      memory: 64 * 1024 * 1024,
      pidsLimit: 100,
      ulimits: [{ name: 'nofile', soft: 1024, hard: 1024 }],
    },
    restartPolicy: { name: 'no' },
    mounts: [{ type: 'tmpfs', target: '/scratch', sizeBytes: 1024 * 1024 }],
    healthcheck: { test: ['CMD', 'true'], intervalMs: 1000, retries: 3 },
    shmSizeBytes: 64 * 1024 * 1024,
  };
}
const baseVolume = () => ({ name: 'fz-vol', sizeBytes: 0, labels: { a: 'b' } });
const baseNetwork = () => ({ name: 'fz-net', labels: { a: 'b' } });
const baseExec = () => ({
  cmd: ['true'],
  env: ['A=1'],
  workdir: '/',
  user: 'root',
  tty: false,
  stdin: false,
  consoleSize: [24, 80],
});
const baseResources = () => ({ memory: 64 * 1024 * 1024, cpuShares: 512, pidsLimit: 10 });

const BODY_ROUTES: { path: string; base: () => Record<string, unknown> }[] = [
  { path: '/v1/containers', base: baseCreate },
  { path: '/v1/volumes', base: baseVolume },
  { path: '/v1/networks', base: baseNetwork },
  { path: '/v1/containers/fz-none/exec', base: baseExec },
  { path: '/v1/containers/fz-none/update', base: baseResources },
  { path: '/v1/images/pull', base: () => ({ image: 'busybox:fz', platform: 'linux/amd64' }) },
  { path: '/v1/images/push', base: () => ({ image: 'busybox:fz' }) },
  { path: '/v1/auth', base: () => ({ username: 'u', password: 'p', serveraddress: 'x:1' }) },
];

// Objects whose keys are the client's own (any key is valid).
const FREE = new Set(['labels', 'logOpts']);

// Leaves of a body: [path, value], objects of free keys (labels, logOpts) as one leaf.
function leaves(v: unknown, path: (string | number)[] = []): [(string | number)[], unknown][] {
  if (Array.isArray(v)) {
    if (v.length === 0 || typeof v[0] !== 'object') return [[path, v]];
    return v.flatMap((c, i) => leaves(c, [...path, i]));
  }
  if (v !== null && typeof v === 'object' && !FREE.has(String(path.at(-1)))) {
    const own: [(string | number)[], unknown][] = [[path, v]];
    return [
      ...(path.length > 0 ? own : []),
      ...Object.entries(v).flatMap(([k, c]) => leaves(c, [...path, k])),
    ];
  }
  return [[path, v]];
}

// Objects of a body that take no other keys: all but those of free keys (labels).
function closedObjects(v: unknown): (string | number)[][] {
  return leaves(v)
    .filter(
      ([p, x]) =>
        x !== null && typeof x === 'object' && !Array.isArray(x) && !FREE.has(String(p.at(-1))),
    )
    .map(([p]) => p)
    .concat([[]]);
}

function setAt(root: Record<string, unknown>, path: (string | number)[], value: unknown): void {
  let o = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  o[path.at(-1) as string | number] = value;
}

function getAt(root: unknown, path: (string | number)[]): unknown {
  let o = root as Record<string | number, unknown>;
  for (const k of path) o = o[k] as Record<string | number, unknown>;
  return o;
}

function wrongTypeFor(v: unknown, pick: <T>(xs: readonly T[]) => T): unknown {
  if (typeof v === 'string') return pick([5, true, null, [], {}, 1.5, ['x']]);
  if (typeof v === 'number') return pick([String(v), 'abc', true, null, 1.5, [], {}, [v]]);
  if (typeof v === 'boolean') return pick(['true', 1, 0, null, 'yes', [], {}]);
  if (Array.isArray(v)) return pick(['x', {}, 5, null, true]);
  return pick(['x', [], 5, null, true]);
}

// ---- names and paths that must never become a name or a path ----

const BAD_NAMES = [
  '../evil',
  '../../etc/passwd',
  '/etc/passwd',
  'a/b',
  'a\\b',
  '.',
  '..',
  '.hidden',
  '-dash',
  '',
  ' ',
  'a b',
  'a\nb',
  'a\0b',
  '\0',
  'x'.repeat(257),
  'x'.repeat(5000),
  'ñame',
  '名前',
  '😀',
  'a\u202eb',
  'Ａ',
  'a%2fb',
  'a;rm -rf /',
  '$(id)',
];

// Names that are fine for images, tags or network modes (a/b is a repository; an empty
// tag is latest, an empty network mode the default) are no malformed request there.
const imageBad = (n: string) => n !== 'a/b';
const tagBad = (n: string) => n !== '';

const BAD_BIND_SOURCES = ['../../etc', 'etc/passwd', './x', '~/x', '', 'relative', '/tmp/a\0b'];
const BAD_VOLUME_SOURCES = ['../v', '/abs/path', 'a/b', 'ñ', '.', '..', 'v\0', '', 'x'.repeat(300)];
const BAD_TARGETS = ['relative', '', '/', '/..', '/a/../..', '/x\0y', '/' + 'a'.repeat(5000)];

function fixedCases(canaryDir: string): Case[] {
  const cases: Case[] = [];
  const add = (label: string, parts: Part[] | Buffer, extra: Partial<Case> = {}) =>
    cases.push({ label, parts: Buffer.isBuffer(parts) ? [parts] : parts, ...extra });

  // -- bad JSON --
  const badJson: string[] = [
    '',
    '{',
    '{"image":',
    '{"image":"busybox",}',
    '[',
    '"str"',
    '123',
    'true',
    'null',
    '[]',
    '{"image":"busybox"}garbage',
    '\ufeff{"image":"busybox","bogus":1}',
    '{"__proto__":{"polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}',
    'NaN',
    '{"image":NaN}',
    '{"image":"busybox","stopTimeout":1e400}',
    '{"image":"busybox","name":"ok","name":"../x"}',
    '{"image":"busybox","resources":{"memory":1e300}}',
    '{"image":"busybox","labels":' + '['.repeat(20000) + ']'.repeat(20000) + '}',
    '{"image":"busybox","labels":{"a":' + '{"b":'.repeat(100) + '1' + '}'.repeat(101) + '}',
    "{'image':'busybox'}",
    '{"image":"busy\\ud800box"}',
  ];
  for (const r of BODY_ROUTES)
    for (const b of badJson)
      add(
        `bad JSON ${r.path} ${JSON.stringify(b.slice(0, 40))}`,
        http('POST', r.path, { body: b }),
      );
  add(
    'bad JSON: invalid UTF-8',
    http('POST', '/v1/containers', { body: Buffer.from([0x7b, 0xff, 0xfe, 0x22, 0x7d]) }),
  );
  add(
    'bad JSON: wrong content type',
    http('POST', '/v1/containers', { body: '{"image":"busybox"}', type: 'text/plain' }),
  );
  add(
    'bad JSON: utf-16 charset',
    http('POST', '/v1/containers', {
      body: '{"image":"busybox","x":1}',
      type: 'application/json; charset=utf-16',
    }),
  );
  add(
    'bad JSON: form',
    http('POST', '/v1/volumes', {
      body: 'name=fz-form',
      type: 'application/x-www-form-urlencoded',
    }),
  );
  add(
    'bad JSON: gzip claimed',
    http('POST', '/v1/volumes', {
      body: '{"name":"fz-gz"}\x00garbage',
      headers: ['Content-Encoding: gzip'],
    }),
  );
  add(
    'a byte stream where JSON is taken',
    http('POST', '/v1/volumes', { body: 'x'.repeat(100), type: 'application/x-tar' }),
  );

  // -- bodies where none is taken --
  add('a body on start', json('POST', '/v1/containers/fz-none/start', { HostConfig: {} }));
  add('a body on prune', json('POST', '/v1/volumes/prune', []));
  add(
    'a text body on stop',
    http('POST', '/v1/containers/fz-none/stop', { body: 'now', type: 'text/plain' }),
  );
  add('a body on rm', json('DELETE', '/v1/volumes/fz-none', { force: true }));

  // -- huge bodies --
  add(
    'declared 2 MiB JSON body',
    [
      http('POST', '/v1/containers', { length: 2 * 1024 * 1024 }),
      Buffer.from('{"image":"busybox","env":["A='),
      { pause: 10_000 },
    ],
    { expect: [413] },
  );
  const mib = '{"image":"busybox","env":["A=' + 'x'.repeat(1024 * 1024) + '"]}';
  add('1 MiB + JSON body, all sent', http('POST', '/v1/containers', { body: mib }), {
    expect: [413],
  });
  const chunked = http('POST', '/v1/volumes', {
    headers: ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
  });
  const chunk = Buffer.from(`100000\r\n${'x'.repeat(0x100000)}\r\n`);
  add('chunked body past the limit', [chunked, chunk, chunk, chunk, Buffer.from('0\r\n\r\n')], {
    expect: [413],
  });
  add(
    'array past maxItems',
    json('POST', '/v1/containers', {
      ...baseCreate(),
      cmd: Array.from({ length: 5000 }, () => 'x'),
    }),
  );
  add(
    'exec start body past its limit',
    http('POST', '/v1/exec/fz-none/start', {
      length: 1024 * 1024,
      headers: ['Connection: Upgrade', 'Upgrade: tcp'],
    }),
    { expect: [413] },
  );
  add(
    'image load declared huge, nothing sent',
    [
      http('POST', '/v1/images/load', { type: 'application/x-tar', length: 10 * 1024 ** 3 }),
      { pause: 10_000 },
    ],
    { expect: [408] },
  );

  // -- path tricks: names --
  for (const n of BAD_NAMES) {
    add(
      `container name ${JSON.stringify(n.slice(0, 20))}`,
      json('POST', '/v1/containers', { ...baseCreate(), name: n }),
    );
    add(
      `volume name ${JSON.stringify(n.slice(0, 20))}`,
      json('POST', '/v1/volumes', { ...baseVolume(), name: n }),
    );
    add(
      `network name ${JSON.stringify(n.slice(0, 20))}`,
      json('POST', '/v1/networks', { ...baseNetwork(), name: n }),
    );
    add(
      `rename to ${JSON.stringify(n.slice(0, 20))}`,
      http('POST', `/v1/containers/fz-none/rename?name=${encodeURIComponent(n)}`),
    );
    if (imageBad(n))
      add(
        `image tag repo ${JSON.stringify(n.slice(0, 20))}`,
        http('POST', `/v1/images/busybox/tag?repo=${encodeURIComponent(n)}&tag=fz`),
      );
    if (tagBad(n))
      add(
        `image tag tag ${JSON.stringify(n.slice(0, 20))}`,
        http('POST', `/v1/images/busybox/tag?repo=fz&tag=${encodeURIComponent(n)}`),
      );
    if (imageBad(n))
      add(`pull ${JSON.stringify(n.slice(0, 20))}`, json('POST', '/v1/images/pull', { image: n }));
    add(
      `import repo ${JSON.stringify(n.slice(0, 20))}`,
      http('POST', `/v1/images/import?repo=${encodeURIComponent(n)}`, {
        body: 'x'.repeat(2048),
        type: 'application/x-tar',
      }),
    );
    add(
      `image in create ${JSON.stringify(n.slice(0, 20))}`,
      json('POST', '/v1/containers', { ...baseCreate(), image: n }),
    );
    if (tagBad(n))
      add(
        `network mode ${JSON.stringify(n.slice(0, 20))}`,
        json('POST', '/v1/containers', { ...baseCreate(), networkMode: n }),
      );
  }
  // -- path tricks: path parameters --
  for (const p of [
    '..%2F..%2Fetc',
    '%2e%2e',
    '%00',
    'a%00b',
    '%2Fetc%2Fpasswd',
    '..',
    '%E0%A4%A',
    '%',
    'x'.repeat(5000),
  ]) {
    add(`path param ${p.slice(0, 20)} start`, http('POST', `/v1/containers/${p}/start`));
    add(`path param ${p.slice(0, 20)} rm volume`, http('DELETE', `/v1/volumes/${p}`));
    add(`path param ${p.slice(0, 20)} rm network`, http('DELETE', `/v1/networks/${p}`));
    add(`path param ${p.slice(0, 20)} image json`, http('GET', `/v1/images/${p}/json`));
    add(`path param ${p.slice(0, 20)} tag`, http('POST', `/v1/images/${p}/tag?repo=fz`));
    add(
      `path param ${p.slice(0, 20)} attach`,
      http('POST', `/v1/containers/${p}/attach?stream=1`, {
        headers: ['Connection: Upgrade', 'Upgrade: tcp'],
      }),
    );
    add(
      `path param ${p.slice(0, 20)} exec start`,
      http('POST', `/v1/exec/${p}/start`, { headers: ['Connection: Upgrade', 'Upgrade: tcp'] }),
    );
  }
  add('raw dot segments', http('GET', '/v1/containers/../../etc/passwd'));
  add('absolute-form URL', http('GET', 'http://berth/../../etc/passwd'));

  // -- path tricks: mounts --
  const withMount = (m: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    json('POST', '/v1/containers', { ...baseCreate(), mounts: [m], ...extra });
  for (const s of BAD_BIND_SOURCES)
    add(
      `bind source ${JSON.stringify(s)}`,
      withMount({ type: 'bind', source: s, target: '/mnt', createHostPath: true }),
    );
  for (const s of BAD_VOLUME_SOURCES)
    add(
      `volume source ${JSON.stringify(s.slice(0, 20))}`,
      withMount({ type: 'volume', source: s, target: '/mnt' }),
    );
  for (const t of BAD_TARGETS)
    add(`mount target ${JSON.stringify(t.slice(0, 20))}`, withMount({ type: 'tmpfs', target: t }));
  for (const dev of [
    '../../dev/sda',
    'dev/null',
    '/dev/../etc/passwd',
    '/dev/nul\0l',
    '/nonexistent/dev',
    '',
  ])
    add(
      `device ${JSON.stringify(dev)}`,
      json('POST', '/v1/containers', { ...baseCreate(), devices: [{ pathOnHost: dev }] }),
    );
  add('tmpfs with a source', withMount({ type: 'tmpfs', source: '/etc', target: '/mnt' }));
  add('unknown mount type', withMount({ type: 'overlay', source: '/etc', target: '/mnt' }));
  // Sound mounts in a request that fails later: the host directory and the volume the
  // mounts would make must not be made.
  add(
    'createHostPath with a bad target',
    withMount({
      type: 'bind',
      source: join(canaryDir, 'a'),
      target: 'relative',
      createHostPath: true,
    }),
  );
  add(
    'createHostPath with a bad user',
    withMount(
      { type: 'bind', source: join(canaryDir, 'b'), target: '/mnt', createHostPath: true },
      { user: 'fz-nosuchuser' },
    ),
  );
  add(
    'createHostPath with a bad restart policy',
    withMount(
      { type: 'bind', source: join(canaryDir, 'c'), target: '/mnt', createHostPath: true },
      { restartPolicy: { name: 'sometimes' } },
    ),
  );
  add(
    'new volume with a bad user',
    withMount(
      { type: 'volume', source: 'fz-auto-vol', target: '/data' },
      { user: 'fz-nosuchuser' },
    ),
  );
  add(
    'new volume with a bad healthcheck',
    withMount(
      { type: 'volume', source: 'fz-auto-vol', target: '/data' },
      { healthcheck: { test: ['BOGUS'] } },
    ),
  );
  add(
    'new volume with a bad shm size',
    withMount({ type: 'volume', source: 'fz-auto-vol', target: '/data' }, { shmSizeBytes: 1 }),
  );
  add(
    'new volume with a bad writable size',
    withMount({ type: 'volume', source: 'fz-auto-vol', target: '/data' }, { writableSizeBytes: 1 }),
  );

  // -- wrong methods --
  for (const [m, p] of [
    ['PUT', '/v1/containers'],
    ['PATCH', '/v1/containers/fz-none'],
    ['GET', '/v1/containers/fz-none/start'],
    ['POST', '/v1/containers/fz-none'],
    ['PUT', '/v1/volumes/fz-none'],
    ['GET', '/v1/images/pull'],
    ['DELETE', '/v1/containers'],
    ['DELETE', '/v1/networks'],
    ['OPTIONS', '/v1/containers'],
    ['TRACE', '/v1/containers'],
    ['GET', '/v1/exec/fz-none/start'],
    ['POST', '/v1/version'],
    ['PROPFIND', '/'],
  ] as const)
    add(`method ${m} ${p}`, http(m, p));
  add(
    'GET on an upgrade route, with Upgrade',
    http('GET', '/v1/containers/fz-none/attach', {
      headers: ['Connection: Upgrade', 'Upgrade: tcp'],
    }),
  );
  add('POST on an upgrade route, without Upgrade', http('POST', '/v1/containers/fz-none/attach'));
  add('CONNECT', Buffer.from(`CONNECT berth:80 HTTP/1.1\r\nHost: berth\r\n\r\n`));
  add('lowercase method', Buffer.from(`get /_ping HTTP/1.1\r\nHost: berth\r\n\r\n`));
  add('unknown method', Buffer.from(`FOO /_ping HTTP/1.1\r\nHost: berth\r\n\r\n`));

  // -- headers --
  add(
    'one 20 KiB header',
    http('GET', '/_ping', { headers: [`X-Big: ${'a'.repeat(20 * 1024)}`] }),
    { expect: [431] },
  );
  add('a 20 KiB URL', http('GET', `/v1/containers?filters=${'a'.repeat(20 * 1024)}`), {
    expect: [431],
  });
  add(
    'many headers and a bad body',
    http('POST', '/v1/volumes', {
      body: '{"name":"../x"}',
      headers: Array.from({ length: 300 }, (_, i) => `X-H${i}: ${i}`),
    }),
  );
  add('no Host header', Buffer.from('GET /v1/containers HTTP/1.1\r\nConnection: close\r\n\r\n'));
  add(
    'header without colon',
    Buffer.from('GET /_ping HTTP/1.1\r\nHost: berth\r\nNoColonHere\r\n\r\n'),
  );
  add(
    'obs-fold header',
    Buffer.from('GET /_ping HTTP/1.1\r\nHost: berth\r\nX-A: 1\r\n folded\r\n\r\n'),
  );
  add(
    'control byte in a header',
    Buffer.from('GET /_ping HTTP/1.1\r\nHost: berth\r\nX-A: a\x01b\r\n\r\n'),
  );
  add(
    'two Content-Lengths',
    Buffer.from(
      'POST /v1/volumes HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: 5\r\nContent-Length: 16\r\n\r\n{"name":"fz-cl"}',
    ),
  );
  add(
    'Content-Length and chunked',
    Buffer.from(
      'POST /v1/volumes HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: 16\r\nTransfer-Encoding: chunked\r\n\r\n{"name":"fz-te"}',
    ),
  );
  add(
    'negative Content-Length',
    Buffer.from(
      'POST /v1/volumes HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n',
    ),
  );
  add(
    'bad chunk size',
    Buffer.from(
      'POST /v1/volumes HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
    ),
  );
  add(
    'NUL in the request line',
    Buffer.from('GET /v1/con\0tainers HTTP/1.1\r\nHost: berth\r\n\r\n'),
  );
  add('space in the path', Buffer.from('GET /v1/con tainers HTTP/1.1\r\nHost: berth\r\n\r\n'));
  add('HTTP/2 preface', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
  add(
    'a TLS hello on the socket',
    Buffer.from('160301020001000200fe0303' + '00'.repeat(40), 'hex'),
  );
  add('binary garbage', Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) % 256)));
  add('HTTP/9.9', Buffer.from('GET /_ping HTTP/9.9\r\nHost: berth\r\n\r\n'));

  // -- query strings --
  for (const q of [
    '/v1/containers?all=maybe',
    '/v1/containers?all=1&all=1',
    '/v1/containers?bogus=1',
    '/v1/containers?filters=%7Bbad',
    '/v1/containers?filters=%7B%22nope%22%3A%5B%22x%22%5D%7D',
    '/v1/containers?size=%00',
    '/v1/containers/fz-none?size=2',
    '/v1/images?all=1&bogus=2',
    '/v1/images/save',
    '/v1/images/save?names=',
    '/v1/images/save?names=..%2F..%2Fetc',
    '/v1/volumes?x=1',
    '/v1/networks?x=1',
    '/v1/events?since=-1',
    '/v1/events?since=abc',
    '/v1/events?filters=%7B%22bad%22%3A1%7D',
    '/v1/events?sinceTime=yesterday',
    '/v1/journal?since=garbage',
    '/v1/journal?stream=stdin',
    '/v1/containers/fz-none/logs?tail=-1',
    '/v1/stats?x=1',
    '/_ping?x=1',
  ])
    add(`query GET ${q}`, http('GET', q));
  for (const q of [
    '/v1/containers/fz-none/stop?t=abc',
    '/v1/containers/fz-none/stop?t=1e400',
    '/v1/containers/fz-none/stop?t=-5',
    '/v1/containers/fz-none/stop?t=99999999',
    '/v1/containers/fz-none/stop?t=1&t=2',
    '/v1/containers/fz-none/kill?signal=SIGBOGUS',
    '/v1/containers/fz-none/kill?signal=' + 'A'.repeat(100),
    '/v1/containers/fz-none/resize?h=0&w=0',
    '/v1/containers/fz-none/resize?h=x&w=1',
    '/v1/containers/fz-none/wait?condition=bogus',
    '/v1/containers/fz-none/start?detachKeys=ctrl-x',
    '/v1/images/prune?all=maybe',
    '/v1/volumes/prune?filters=x',
    '/v1/images/import',
    '/v1/images/load?quiet=maybe',
  ])
    add(`query POST ${q}`, http('POST', q));
  add('query DELETE force=yes', http('DELETE', '/v1/containers/fz-none?force=yes'));
  add(
    'upgrade with an unknown query',
    http('POST', '/v1/containers/fz-none/attach?bogus=1', {
      headers: ['Connection: Upgrade', 'Upgrade: tcp'],
    }),
  );
  add(
    'upgrade to no container',
    http('POST', '/v1/containers/fz-none/attach?stream=1&stdout=1', {
      headers: ['Connection: Upgrade', 'Upgrade: tcp'],
    }),
  );
  add(
    'upgrade with a bad Content-Length',
    Buffer.from(
      'POST /v1/exec/fz-none/start HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: abc\r\n\r\n',
    ),
  );

  // -- archives that are not --
  const garbageTar = (n: number) =>
    Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) % 256));
  add(
    'load: garbage',
    http('POST', '/v1/images/load', { body: garbageTar(4096), type: 'application/x-tar' }),
  );
  add('load: empty', http('POST', '/v1/images/load', { body: '', type: 'application/x-tar' }));
  add(
    'load: zeros',
    http('POST', '/v1/images/load', { body: Buffer.alloc(10240), type: 'application/x-tar' }),
  );
  add('load: JSON', http('POST', '/v1/images/load', { body: '{}' }));
  add(
    'import: garbage',
    http('POST', '/v1/images/import?repo=fz-import', {
      body: garbageTar(8192),
      type: 'application/x-tar',
    }),
  );
  add(
    'import: gzip magic then garbage',
    http('POST', '/v1/images/import?repo=fz-import', {
      body: Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0]), garbageTar(4096)]),
      type: 'application/octet-stream',
    }),
  );
  add('import: JSON', http('POST', '/v1/images/import?repo=fz-import', { body: '{}' }));

  // -- requests that never finish (slowloris) --
  const slow = { expect: [408], deadlineMs: (READ_TIMEOUT_S + 6) * 1000 };
  add('slow: half a request line', [Buffer.from('GET /v1/contai'), { pause: 30_000 }], slow);
  add(
    'slow: headers without their end',
    [Buffer.from('GET /v1/containers HTTP/1.1\r\nHost: berth\r\n'), { pause: 30_000 }],
    slow,
  );
  const drip: Part[] = [];
  for (const c of 'GET /v1/containers HTTP/1.1\r\nHost: berth\r\nX-Slow: yes')
    drip.push(Buffer.from(c), { pause: 400 });
  add('slow: headers a byte at a time', drip, slow);
  add(
    'slow: a JSON body cut short',
    [http('POST', '/v1/volumes', { length: 100 }), Buffer.from('{"name":'), { pause: 30_000 }],
    slow,
  );
  add(
    'slow: a chunked body cut short',
    [
      http('POST', '/v1/volumes', {
        headers: ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
      }),
      Buffer.from('5\r\n{"nam'),
      { pause: 30_000 },
    ],
    slow,
  );
  add(
    'slow: an image load cut short',
    [
      http('POST', '/v1/images/load', { type: 'application/x-tar', length: 1024 * 1024 }),
      garbageTar(512).fill(0),
      { pause: 30_000 },
    ],
    slow,
  );
  add(
    'slow: an import cut short',
    [
      http('POST', '/v1/images/import?repo=fz-slow', {
        type: 'application/x-tar',
        length: 1024 * 1024,
      }),
      Buffer.alloc(512),
      { pause: 30_000 },
    ],
    slow,
  );
  add(
    'slow: an exec start body cut short',
    [
      http('POST', '/v1/exec/fz-none/start', {
        length: 100,
        headers: ['Connection: Upgrade', 'Upgrade: tcp'],
      }),
      Buffer.from('{'),
      { pause: 30_000 },
    ],
    slow,
  );
  add('slow: nothing at all', [{ pause: 30_000 }], slow);
  return cases;
}

function randomCases(rand: () => number, n: number): Case[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const out: Case[] = [];
  for (let i = 0; i < n; i++) {
    const route = pick(BODY_ROUTES);
    const body = route.base();
    const kind = pick(['type', 'type', 'unknown', 'name', 'mount', 'number', 'truncate'] as const);
    let label = `#${i} ${route.path} `;
    if (kind === 'type') {
      const [path, v] = pick(leaves(body));
      const w = wrongTypeFor(v, pick);
      setAt(body, path, w);
      label += `${path.join('.')} = ${JSON.stringify(w)}`;
    } else if (kind === 'unknown') {
      const path = pick(closedObjects(body));
      const key = `fz_${Math.floor(rand() * 1e6)}`;
      (getAt(body, path) as Record<string, unknown>)[key] = pick([1, 'x', null, {}, []]);
      label += `unknown ${[...path, key].join('.')}`;
    } else if (kind === 'name' && 'name' in body) {
      body['name'] = pick(BAD_NAMES);
      label += `name ${JSON.stringify(String(body['name']).slice(0, 20))}`;
    } else if (kind === 'mount' && route.path === '/v1/containers') {
      const m = pick([
        { type: 'bind', source: pick(BAD_BIND_SOURCES), target: '/mnt' },
        { type: 'volume', source: pick(BAD_VOLUME_SOURCES), target: '/mnt' },
        { type: 'tmpfs', target: pick(BAD_TARGETS) },
      ]);
      body['mounts'] = [m];
      label += `mount ${JSON.stringify(m).slice(0, 60)}`;
    } else if (kind === 'number') {
      const nums = leaves(body).filter(([, v]) => typeof v === 'number');
      if (nums.length === 0) {
        body[`fz_${i}`] = 1;
        label += 'unknown numeric field';
      } else {
        const [path] = pick(nums);
        // Past 2^53: no field of berth's is that large, and JSON has already rounded it.
        const w = pick([2 ** 53 + 2, 2 ** 60, 1e300, -1e300]);
        setAt(body, path, w);
        label += `${path.join('.')} = ${w}`;
      }
    } else {
      const text = JSON.stringify(body);
      const cut = Math.floor(rand() * (text.length - 1));
      out.push({
        label: `${label}truncated at ${cut}`,
        parts: [http('POST', route.path, { body: text.slice(0, cut) })],
      });
      continue;
    }
    if (kind === 'name' && !('name' in body)) body[`fz_${i}`] = 'x';
    if (kind === 'mount' && route.path !== '/v1/containers') body['mounts'] = [];
    out.push({ label, parts: [json('POST', route.path, body)] });
  }
  return out;
}

// Every path under a directory, with its type: what was made, not what was written to.
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      const st = lstatSync(p);
      out.push(
        `${st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isSocket() ? 's' : 'f'} ${p}`,
      );
      if (st.isDirectory() && !st.isSymbolicLink()) {
        try {
          walk(p);
        } catch {
          /* a mount point berthd keeps private */
        }
      }
    }
  };
  walk(dir);
  return out.sort();
}

async function pool<T, R>(items: readonly T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T);
    }),
  );
  return out;
}

describe(`API fuzz (seed ${SEED})`, () => {
  let d: TestDaemon;
  let canaryDir: string;
  let before_: {
    root: string[];
    run: string[];
    containers: unknown;
    volumes: unknown;
    networks: unknown;
    images: unknown;
    events: number;
  };

  const state = async () => ({
    root: tree(d.root).filter((p) => !/\/berth\.db-(wal|shm)$/.test(p)),
    run: tree(d.runRoot),
    containers: await d.client.listContainers(true),
    volumes: (await d.client.listVolumes()).Volumes.map((v) => v.Name),
    networks: (await d.client.listNetworks()).map((n) => n.Name).sort(),
    images: (await d.client.listImages({ all: true }))
      .map((i) => `${i.Id} ${i.Repository}:${i.Tag}`)
      .sort(),
    events: (await d.journal()).length,
  });

  before(async () => {
    d = await TestDaemon.start(['--api-read-timeout', `${READ_TIMEOUT_S}s`]);
    canaryDir = join(d.dir, CANARY);
  });
  after(async () => {
    await d?.destroy();
  });

  // The cases break valid requests: unbroken, these are served (and undone). This also
  // makes what any create makes once and keeps (the image's shared root filesystem),
  // before the picture of what exists is taken.
  it('serves the unbroken requests the cases are made from', async () => {
    const c = await d.client.createContainer(baseCreate() as never);
    await d.client.removeContainer(c.Id, true);
    const v = await d.client.createVolume(baseVolume());
    await d.client.removeVolume(v.Name, false);
    const n = await d.client.createNetwork(baseNetwork());
    await d.client.removeNetwork(n.Name);
    before_ = await state();
  });

  it('answers every malformed request with a 4xx, in time', async () => {
    const rand = prng(SEED);
    const fixed = fixedCases(canaryDir);
    const cases = [...fixed, ...randomCases(rand, RANDOM_CASES)];
    const slow = cases.filter((c) => c.label.startsWith('slow:'));
    const fast = cases.filter((c) => !c.label.startsWith('slow:'));
    const run = async (c: Case) => ({
      c,
      r: await exchange(d.socket, c.parts, c.deadlineMs ?? 15_000),
    });
    const t0 = Date.now();
    // The slow ones hold their connections while everything else goes on.
    const [slowResults, fastResults] = await Promise.all([
      Promise.all(slow.map(run)),
      pool(fast, CONCURRENCY, run),
    ]);
    const failures: string[] = [];
    for (const { c, r } of [...fastResults, ...slowResults]) {
      const ok =
        !r.hung &&
        r.status !== undefined &&
        (c.expect ? c.expect.includes(r.status) : r.status >= 400 && r.status < 500);
      let code: string | undefined;
      try {
        code = (JSON.parse(r.body) as { code?: string }).code;
      } catch {
        code = undefined;
      }
      const coded = code !== undefined && code in ERROR_CODES;
      if (!ok || !coded)
        failures.push(
          `${c.label}: ${r.hung ? 'HUNG' : `status ${r.status ?? 'none'}`} after ${r.ms}ms: ${r.head.split('\r\n')[0] ?? ''} ${r.body.slice(0, 200)}`,
        );
    }
    if (!pidAlive(d.pid)) failures.push(`berthd died; its log ends: ${d.log.slice(-3000)}`);
    assert.deepEqual(
      failures,
      [],
      `seed ${SEED}: ${failures.length} of ${cases.length} cases failed (BERTH_FUZZ_SEED=${SEED} replays)`,
    );
    assert.ok(Date.now() - t0 < 45_000, `the run took ${Date.now() - t0}ms`);
  });

  it('is still up and made nothing', async () => {
    assert.ok(pidAlive(d.pid), 'berthd is alive');
    assert.equal((await exchange(d.socket, [http('GET', '/_ping')], 5000)).body, 'OK');
    const now = await state();
    assert.deepEqual(now.containers, before_.containers, 'no container');
    assert.deepEqual(now.volumes, before_.volumes, 'no volume');
    assert.deepEqual(now.networks, before_.networks, 'no network');
    assert.deepEqual(now.images, before_.images, 'no image or tag');
    assert.equal(now.events, before_.events, 'no event');
    assert.deepEqual(now.root, before_.root, 'no file under the data root');
    assert.deepEqual(now.run, before_.run, 'no file under the run root');
    assert.ok(!existsSync(canaryDir), `nothing made at ${canaryDir}`);
    assert.deepEqual(d.leaks(), []);
  });
});
