import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  displayProgress,
  humanSize,
  progressText,
  ProgressRenderer,
  type JsonMessage,
  type ProgressOutput,
} from '../../src/cli/progress.ts';
import {
  historyArgs,
  humanDuration,
  matchesReference,
  parseTagTarget,
  qualifiedReference,
  saveDestination,
} from '../../src/cli/images.ts';
import { BerthError } from '../../src/util/errors.ts';

// A writable that records what is written, and replays it on a minimal terminal: \n, \r,
// cursor up/down (ESC[nA, ESC[nB) and erase line (ESC[2K), the codes the renderer uses.
class FakeOut implements ProgressOutput {
  readonly chunks: string[] = [];
  readonly isTTY: boolean;
  readonly columns: number | undefined;
  constructor(isTTY: boolean, columns?: number) {
    this.isTTY = isTTY;
    this.columns = columns;
  }
  write(s: string): boolean {
    this.chunks.push(s);
    return true;
  }
  get text(): string {
    return this.chunks.join('');
  }
  screen(): string[] {
    const rows: string[] = [''];
    let y = 0;
    let x = 0;
    const s = this.text;
    for (let i = 0; i < s.length; i++) {
      const ch = s[i] as string;
      if (ch === '\x1b') {
        const m = /^\[(\d*)([A-Za-z])/.exec(s.slice(i + 1));
        assert.ok(m, `unknown escape at ${JSON.stringify(s.slice(i, i + 8))}`);
        const n = Number(m[1] || '1');
        if (m[2] === 'A') y = Math.max(0, y - n);
        else if (m[2] === 'B') y += n;
        else if (m[2] === 'K') rows[y] = '';
        else assert.fail(`unexpected escape ${m[0]}`);
        while (rows.length <= y) rows.push('');
        i += m[0].length;
      } else if (ch === '\n') {
        y++;
        x = 0;
        while (rows.length <= y) rows.push('');
      } else if (ch === '\r') {
        x = 0;
      } else {
        const row = (rows[y] ?? '').padEnd(x);
        rows[y] = row.slice(0, x) + ch + row.slice(x + 1);
        x++;
      }
    }
    while (rows.length > 0 && rows[rows.length - 1] === '') rows.pop();
    return rows;
  }
}

async function* from(lines: JsonMessage[]): AsyncGenerator<JsonMessage> {
  for (const l of lines) yield l;
}

const dl = (id: string, current: number, total: number): JsonMessage => ({
  id,
  status: 'Downloading',
  progressDetail: { current, total },
});

const PULL: JsonMessage[] = [
  { id: 'latest', status: 'Pulling from library/alpine' },
  { id: 'a1b2c3d4e5f6', status: 'Pulling fs layer', progressDetail: {} },
  { id: 'b2c3d4e5f6a1', status: 'Pulling fs layer', progressDetail: {} },
  dl('a1b2c3d4e5f6', 12_300_000, 50_100_000),
  dl('b2c3d4e5f6a1', 1_000, 2_000),
  dl('a1b2c3d4e5f6', 25_000_000, 50_100_000),
  dl('a1b2c3d4e5f6', 50_100_000, 50_100_000),
  { id: 'a1b2c3d4e5f6', status: 'Download complete', progressDetail: {} },
  { id: 'a1b2c3d4e5f6', status: 'Pull complete', progressDetail: {} },
  dl('b2c3d4e5f6a1', 2_000, 2_000),
  { id: 'b2c3d4e5f6a1', status: 'Pull complete' },
  { status: 'Digest: sha256:' + 'e'.repeat(64) },
  { status: 'Status: Downloaded newer image for alpine:latest' },
];

describe('progress on a terminal', () => {
  it('keeps one line per id, redrawn in place, with status lines in stream order', async () => {
    const out = new FakeOut(true, 130);
    await displayProgress(from(PULL), out);
    assert.deepEqual(out.screen(), [
      'latest: Pulling from library/alpine',
      'a1b2c3d4e5f6: Pull complete',
      'b2c3d4e5f6a1: Pull complete',
      'Digest: sha256:' + 'e'.repeat(64),
      'Status: Downloaded newer image for alpine:latest',
    ]);
    // Redrawn with cursor movement, never by printing the line again below.
    assert.ok(out.text.includes('\x1b[2A\x1b[2K\ra1b2c3d4e5f6: Downloading'));
  });

  it('shows a bar and sizes while a layer downloads', () => {
    const out = new FakeOut(true, 130);
    const r = new ProgressRenderer(out);
    r.push({ id: 'a1b2c3d4e5f6', status: 'Pulling fs layer', progressDetail: {} });
    r.push({ id: 'b2c3d4e5f6a1', status: 'Waiting', progressDetail: {} });
    r.push(dl('a1b2c3d4e5f6', 12_300_000, 50_100_000));
    r.finish();
    assert.deepEqual(out.screen(), [
      `a1b2c3d4e5f6: Downloading [============>${' '.repeat(38)}]   12.3MB/50.1MB`,
      'b2c3d4e5f6a1: Waiting',
    ]);
  });

  it('leaves the bar out on a narrow terminal and cuts lines to its width', () => {
    const out = new FakeOut(true, 30);
    const r = new ProgressRenderer(out);
    r.push(dl('a1b2c3d4e5f6', 12_300_000, 50_100_000));
    assert.deepEqual(out.screen(), ['a1b2c3d4e5f6: Downloading   1']);
    const wide = new FakeOut(true, 80);
    new ProgressRenderer(wide).push(dl('a1b2c3d4e5f6', 12_300_000, 50_100_000));
    assert.deepEqual(wide.screen(), ['a1b2c3d4e5f6: Downloading   12.3MB/50.1MB']);
  });

  it('starts a new block of layer lines after a line without an id', () => {
    const out = new FakeOut(true, 130);
    const r = new ProgressRenderer(out);
    r.push({ id: 'aaaa', status: 'Preparing' });
    r.push({ status: 'between' });
    r.push({ id: 'aaaa', status: 'Pushed' });
    assert.deepEqual(out.screen(), ['aaaa: Preparing', 'between', 'aaaa: Pushed']);
  });
});

describe('progress off a terminal', () => {
  it('prints one plain line per status change of each id, and every other line', async () => {
    const out = new FakeOut(false);
    await displayProgress(from(PULL), out);
    assert.equal(
      out.text,
      [
        'latest: Pulling from library/alpine',
        'a1b2c3d4e5f6: Pulling fs layer',
        'b2c3d4e5f6a1: Pulling fs layer',
        'a1b2c3d4e5f6: Downloading',
        'b2c3d4e5f6a1: Downloading',
        'a1b2c3d4e5f6: Download complete',
        'a1b2c3d4e5f6: Pull complete',
        'b2c3d4e5f6a1: Pull complete',
        'Digest: sha256:' + 'e'.repeat(64),
        'Status: Downloaded newer image for alpine:latest',
        '',
      ].join('\n'),
    );
    assert.ok(!out.text.includes('\x1b'));
  });

  it('shows only what `show` accepts (load -q: the lines without an id)', async () => {
    const out = new FakeOut(false);
    await displayProgress(
      from([
        { id: 'aaaa', status: 'Loading layer', progressDetail: { current: 1, total: 2 } },
        { status: 'Loaded image: alpine:latest' },
      ]),
      out,
      { show: (m) => !m.id },
    );
    assert.equal(out.text, 'Loaded image: alpine:latest\n');
  });
});

describe('progress errors', () => {
  const failing: JsonMessage[] = [
    { id: 'latest', status: 'Pulling from library/nope' },
    { id: 'aaaa', status: 'Pulling fs layer', progressDetail: {} },
    {
      error: 'manifest unknown: nope:latest',
      errorDetail: { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown: nope:latest' },
    },
    { status: 'never shown' },
  ];

  for (const tty of [true, false]) {
    it(`throws the error line's code and message after the display (${tty ? 'tty' : 'plain'})`, async () => {
      const out = new FakeOut(tty, 130);
      await assert.rejects(
        displayProgress(from(failing), out),
        (e: unknown) =>
          e instanceof BerthError &&
          e.code === 'MANIFEST_UNKNOWN' &&
          e.message === 'manifest unknown: nope:latest',
      );
      assert.deepEqual(out.screen(), [
        'latest: Pulling from library/nope',
        'aaaa: Pulling fs layer',
      ]);
      assert.doesNotMatch(out.text, /never shown/);
      // The cursor is left below the layer lines, so the error message starts a clean line.
      if (tty) assert.ok(out.text.endsWith('\x1b[1B'));
    });
  }

  it('makes an unknown or missing code INTERNAL, and uses `error` without errorDetail', async () => {
    await assert.rejects(
      displayProgress(
        from([{ errorDetail: { code: 'E_WHAT', message: 'boom' } }]),
        new FakeOut(false),
      ),
      (e: unknown) => e instanceof BerthError && e.code === 'INTERNAL' && e.message === 'boom',
    );
    await assert.rejects(
      displayProgress(from([{ error: 'plain' }]), new FakeOut(false)),
      (e: unknown) => e instanceof BerthError && e.code === 'INTERNAL' && e.message === 'plain',
    );
  });

  it('fails even when the error line is not shown', () => {
    const r = new ProgressRenderer(new FakeOut(false), { show: () => false });
    assert.equal(
      r.push({ error: 'x', errorDetail: { code: 'IMAGE_INVALID', message: 'x' } }),
      false,
    );
    assert.throws(
      () => r.finish(),
      (e: unknown) => e instanceof BerthError && e.code === 'IMAGE_INVALID',
    );
  });
});

describe('progress text', () => {
  it("formats like docker's JSONProgress", () => {
    assert.equal(progressText({}, 200), '');
    assert.equal(progressText({ current: 1_500 }, 200), '   1.5kB');
    assert.equal(progressText({ current: 60, total: 50 }, 80), '     60B');
    assert.equal(progressText({ current: 25, total: 50 }, 80), '     25B/50B');
    assert.equal(
      progressText({ current: 50, total: 50 }, 200),
      `[${'='.repeat(50)}>]      50B/50B`,
    );
    assert.equal(humanSize(7_790_000, 3), '7.79MB');
    assert.equal(humanSize(142_300_000, 3), '142MB');
  });
});

describe('image command helpers', () => {
  it('save refuses a terminal stdout unless -o names a file', () => {
    assert.throws(
      () => saveDestination(undefined, true),
      /cowardly refusing to save to a terminal\. Use the -o flag or redirect/,
    );
    assert.equal(saveDestination(undefined, false), 'stdout');
    assert.deepEqual(saveDestination('img.tar', true), { file: 'img.tar' });
  });

  it('prints fully qualified references as docker does after pull', () => {
    assert.equal(qualifiedReference('alpine'), 'docker.io/library/alpine:latest');
    assert.equal(qualifiedReference('user/app:1'), 'docker.io/user/app:1');
    assert.equal(qualifiedReference('localhost:5000/app'), 'localhost:5000/app:latest');
    const d = 'sha256:' + 'a'.repeat(64);
    assert.equal(qualifiedReference(`alpine@${d}`), `docker.io/library/alpine@${d}`);
    assert.equal(qualifiedReference('index.docker.io/x/y:2'), 'docker.io/x/y:2');
  });

  it('splits a tag target, refusing digests', () => {
    assert.deepEqual(parseTagTarget('host:5000/app'), { repo: 'host:5000/app', tag: 'latest' });
    assert.deepEqual(parseTagTarget('app:v2'), { repo: 'app', tag: 'v2' });
    assert.throws(() => parseTagTarget('app@sha256:abc'), /digest/);
  });

  it('filters images by REPO[:TAG] with globs, familiar or qualified', () => {
    const row = { Repository: 'alpine', Tag: '3.20' };
    assert.ok(matchesReference(row, 'alpine'));
    assert.ok(matchesReference(row, 'docker.io/library/alpine:3.*'));
    assert.ok(matchesReference(row, 'alp*'));
    assert.ok(!matchesReference(row, 'alpine:latest'));
    assert.ok(!matchesReference({ Repository: '<none>', Tag: '<none>' }, '*'));
  });

  it('reads history -H the way pflag does', () => {
    assert.deepEqual(historyArgs('img', true), { image: 'img', human: true });
    assert.deepEqual(historyArgs('img', '=false'), { image: 'img', human: false });
    assert.deepEqual(historyArgs(undefined, 'img'), { image: 'img', human: true });
    assert.throws(() => historyArgs('img', 'maybe'), /Invalid human/);
  });

  it("words ages like docker's HumanDuration", () => {
    assert.equal(humanDuration(30), '30 seconds');
    assert.equal(humanDuration(90), 'About a minute');
    assert.equal(humanDuration(3600), 'About an hour');
    assert.equal(humanDuration(86400 * 3), '3 days');
    assert.equal(humanDuration(86400 * 40), '5 weeks');
    assert.equal(humanDuration(86400 * 200), '6 months');
    assert.equal(humanDuration(86400 * 800), '2 years');
  });
});
