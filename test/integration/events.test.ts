// The event journal as a controller uses it: filters and positions through the CLI, every
// sequence number exactly once across a kill -9 of berthd, and bounded retention that
// says so when a reader asks for what is gone.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BerthClient } from '../../src/client/index.ts';
import { BerthError } from '../../src/util/errors.ts';
import { TestDaemon, waitFor } from '../helpers/daemon.ts';

interface Ev {
  seq: number;
  time: string;
  timeNano: string;
  type: string;
  action: string;
  actorId: string;
  attributes: Record<string, string>;
}

type Query = Record<string, string | number | boolean | undefined>;

function parseLines(text: string): Ev[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Ev);
}

async function readAll(client: BerthClient, query: Query = {}): Promise<Ev[]> {
  const res = await client.stream('GET', '/v1/events', query);
  let text = '';
  for await (const c of res) text += (c as Buffer).toString();
  return parseLines(text);
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const seqsOf = (es: readonly Ev[]) => es.map((e) => e.seq);

function createQuiet(client: BerthClient, name: string, labels: Record<string, string> = {}) {
  return client.createContainer({ image: 'busybox', name, cmd: ['true'], labels });
}

describe('berth events: filters and positions', () => {
  let d: TestDaemon;
  let all: Ev[] = [];
  let last = 0;
  before(async () => {
    d = await TestDaemon.start();
    await d.berthOk(['create', '--name', 'ev-a', '-l', 'team=pay', 'busybox', 'true']);
    await d.berthOk(['create', '--name', 'ev-b', '-l', 'team=ops', 'busybox', 'true']);
    await d.berthOk(['update', '--pids-limit', '200', 'ev-a']);
    await d.berthOk(['update', '--pids-limit', '300', 'ev-b']);
    await d.berthOk(['rm', 'ev-b']);
    all = parseLines(await d.berthOk(['events', '--format', 'json']));
    last = all.at(-1)?.seq ?? 0;
  });
  after(async () => {
    await d.destroy();
  });

  const cli = async (...args: string[]) =>
    parseLines(await d.berthOk(['events', '--format', 'json', '--until', String(last), ...args]));

  it('lists the whole journal in order, gapless from 1', () => {
    assert.deepEqual(seqsOf(all), range(1, last));
    const actions = all.filter((e) => e.type === 'container').map((e) => e.action);
    assert.deepEqual(actions, ['create', 'create', 'update', 'update', 'destroy']);
  });

  it('filters as docker does: one key ORed, different keys ANDed', async () => {
    const want = (p: (e: Ev) => boolean) => seqsOf(all.filter(p));
    assert.deepEqual(
      seqsOf(await cli('--filter', 'container=ev-a')),
      want((e) => e.attributes['name'] === 'ev-a'),
    );
    const idA = all.find((e) => e.attributes['name'] === 'ev-a')?.actorId ?? '';
    assert.deepEqual(
      seqsOf(await cli('--filter', `container=${idA.slice(0, 8)}`)),
      want((e) => e.actorId === idA),
    );
    assert.deepEqual(
      seqsOf(await cli('--filter', 'type=daemon')),
      want((e) => e.type === 'daemon'),
    );
    assert.deepEqual(
      seqsOf(await cli('--filter', 'event=create', '--filter', 'event=destroy')),
      want((e) => e.action === 'create' || e.action === 'destroy'),
    );
    assert.deepEqual(
      seqsOf(await cli('--filter', 'label=team=ops', '--filter', 'event=update')),
      want((e) => e.attributes['team'] === 'ops' && e.action === 'update'),
    );
    assert.deepEqual(
      seqsOf(await cli('--filter', 'label=team', '--filter', 'type=container')),
      want((e) => e.type === 'container'),
    );
    assert.deepEqual(
      seqsOf(await cli('--filter', 'image=busybox:latest', '--filter', 'type=image')),
      want((e) => e.type === 'image'),
    );
    const bad = await d.berth(['events', '--filter', 'plugin=x']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /Invalid filters: unknown key "plugin"/);
  });

  it('takes sequence numbers and times for --since and --until', async () => {
    assert.deepEqual(seqsOf(await cli('--since', '2')), range(3, last));
    assert.deepEqual(
      seqsOf(parseLines(await d.berthOk(['events', '--format', 'json', '--until', '3']))),
      range(1, 3),
    );
    // Times: RFC 3339, Unix seconds, and durations before now.
    const pivot = all.find((e) => e.action === 'update');
    assert.ok(pivot);
    const from = (nano: bigint) => seqsOf(all.filter((e) => BigInt(e.timeNano) >= nano));
    assert.deepEqual(seqsOf(await cli('--since', pivot.time)), from(BigInt(pivot.timeNano)));
    const sec = BigInt(pivot.timeNano) / 1_000_000_000n;
    assert.deepEqual(seqsOf(await cli('--since', String(sec))), from(sec * 1_000_000_000n));
    assert.deepEqual(seqsOf(await cli('--since', '1h')), range(1, last));
    assert.deepEqual(
      seqsOf(parseLines(await d.berthOk(['events', '--format', 'json', '--until', '1h']))),
      [],
    );
    const untilTime = parseLines(
      await d.berthOk(['events', '--format', 'json', '--until', pivot.time]),
    );
    assert.deepEqual(
      seqsOf(untilTime),
      seqsOf(all.filter((e) => BigInt(e.timeNano) <= BigInt(pivot.timeNano))),
    );
    const bad = await d.berth(['events', '--since', 'yesterday']);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /Invalid since/);
  });

  it('renders docker-style templates', async () => {
    const out = await d.berthOk([
      'events',
      '--until',
      String(last),
      '--filter',
      'container=ev-a',
      '--format',
      '{{.Seq}} {{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.team}}',
    ]);
    const a = all.filter((e) => e.attributes['name'] === 'ev-a');
    assert.equal(out, a.map((e) => `${e.seq} container ${e.action} ev-a pay\n`).join(''));
  });

  it('follows until --until and then ends by itself', async () => {
    const now = (await readAll(d.client)).at(-1)?.seq ?? 0;
    const follow = d.berth([
      'events',
      '-f',
      '--format',
      '{{.Seq}} {{.Action}}',
      '--since',
      String(now),
      '--until',
      String(now + 2),
    ]);
    await sleep(300);
    await d.berthOk(['update', '--pids-limit', '201', 'ev-a']);
    await d.berthOk(['update', '--pids-limit', '202', 'ev-a']);
    await d.berthOk(['update', '--pids-limit', '203', 'ev-a']);
    const r = await follow;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${now + 1} update\n${now + 2} update\n`);
  });
});

// Reads at its own slow pace, from its last seq; when berthd goes away it reconnects and
// resumes where it stopped, as a controller does.
class SlowFollower {
  readonly seqs: number[] = [];
  reconnects = 0;
  target: number | undefined;
  private res: IncomingMessage | undefined;
  private stopped = false;
  readonly done: Promise<void>;
  private readonly client: BerthClient;

  constructor(client: BerthClient) {
    this.client = client;
    this.done = this.run();
  }

  get last(): number {
    return this.seqs.at(-1) ?? 0;
  }

  private reached(): boolean {
    return this.target !== undefined && this.last >= this.target;
  }

  private async run(): Promise<void> {
    while (!this.stopped && !this.reached()) {
      try {
        const res = await this.client.stream('GET', '/v1/events', {
          since: this.last,
          follow: true,
        });
        this.res = res;
        let buf = '';
        let n = 0;
        for await (const c of res) {
          buf += (c as Buffer).toString();
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            this.seqs.push((JSON.parse(buf.slice(0, i)) as Ev).seq);
            buf = buf.slice(i + 1);
            // At most about 500 events a second, well behind the writers, so the kill
            // lands while this reader has a backlog.
            if (++n % 10 === 0) await sleep(20);
          }
          if (this.reached() || this.stopped) break;
        }
      } catch {
        // berthd is down or went away: come back to it.
      }
      this.res?.destroy();
      if (this.reached() || this.stopped) return;
      this.reconnects++;
      await sleep(100);
    }
  }

  stop(): void {
    this.stopped = true;
    this.res?.destroy();
  }
}

describe('a reader from cursor 0 across kill -9 of berthd', () => {
  let d: TestDaemon;
  const followers: SlowFollower[] = [];
  const stuck: IncomingMessage[] = [];
  before(async () => {
    d = await TestDaemon.start();
  });
  after(async () => {
    for (const f of followers) f.stop();
    for (const s of stuck) s.destroy();
    await d.destroy();
  });

  it('sees 10,000 events, every seq exactly once and in order', async (t) => {
    const WORKERS = 16;
    const UPDATES = 10_000;
    const ids: string[] = [];
    for (let i = 0; i < WORKERS; i++) ids.push((await createQuiet(d.client, `gen${i}`)).Id);

    // A reader that never reads: it must hold up neither berthd nor anyone else.
    const s = await d.client.stream('GET', '/v1/events', { since: 0, follow: true });
    s.pause();
    s.on('error', () => undefined);
    stuck.push(s);

    const follower = new SlowFollower(d.client);
    followers.push(follower);

    // Each update of a created container is one committed event; the writers retry
    // through the outage, so some updates may be committed twice: only the count of
    // successes is a lower bound, the journal says what happened.
    let done = 0;
    let down = false;
    const t0 = performance.now();
    const workers = ids.map(async (id, w) => {
      while (done < UPDATES) {
        try {
          await d.client.call('POST', `/v1/containers/${id}/update`, {
            body: { pidsLimit: 100 + ((done + w) % 1000) },
          });
          done++;
        } catch (e) {
          if (!down) throw e;
          await sleep(50);
        }
      }
    });
    const failed = Promise.all(workers).then(
      () => undefined,
      (e: unknown) => e,
    );
    await waitFor(() => done >= UPDATES / 2, 120_000, 'half of the updates');
    down = true;
    await d.kill9();
    const followerAtKill = follower.last;
    const doneAtKill = done;
    await sleep(500);
    await d.startProcess();
    down = false;
    const err = await failed;
    if (err !== undefined) throw err as Error;
    const genMs = performance.now() - t0;

    const journal = await readAll(d.client);
    const last = journal.at(-1)?.seq ?? 0;
    assert.deepEqual(seqsOf(journal), range(1, last), 'the journal is gapless from 1');
    assert.ok(last >= UPDATES + WORKERS, `at least ${UPDATES + WORKERS} events (${last})`);

    follower.target = last;
    await waitFor(() => follower.last >= last, 120_000, `the follower (at ${follower.last})`);
    follower.stop();
    await follower.done;
    assert.ok(follower.reconnects >= 1, 'the follower had to reconnect');
    assert.ok(followerAtKill < doneAtKill, 'the follower had a backlog when berthd died');
    assert.equal(follower.seqs.length, last, 'no event missed or repeated');
    assert.deepEqual(follower.seqs, range(1, last));

    // What a full read of the journal costs, API and CLI.
    const r0 = performance.now();
    const again = await readAll(d.client);
    const apiMs = performance.now() - r0;
    assert.equal(again.length, last);
    const c0 = performance.now();
    const cliOut = await d.berthOk(['events', '--format', 'json']);
    const cliMs = performance.now() - c0;
    assert.equal(cliOut.split('\n').filter(Boolean).length, last);
    t.diagnostic(
      `${last} events; writers ${Math.round(genMs)} ms (${WORKERS} in parallel, one kill -9); ` +
        `at the kill ${doneAtKill} updates were done and the follower was at seq ${followerAtKill}; ` +
        `${follower.reconnects} reconnect attempt(s); ` +
        `full read: API ${Math.round(apiMs)} ms, CLI --format json ${Math.round(cliMs)} ms`,
    );
  });
});

describe('event retention', () => {
  const daemons: TestDaemon[] = [];
  after(async () => {
    for (const d of daemons) await d.destroy();
  });

  it('keeps at most --events-max-count, and a reader behind it gets EVENTS_PRUNED', async () => {
    const d = await TestDaemon.start(['--events-max-count', '50']);
    daemons.push(d);
    const { Id: id } = await createQuiet(d.client, 'keep');
    for (let i = 0; i < 120; i++)
      await d.client.call('POST', `/v1/containers/${id}/update`, { body: { pidsLimit: 100 + i } });
    const before = (await readAll(d.client)).at(-1)?.seq ?? 0;
    // Pruning runs at start and every minute: a restart is the quick way to see it.
    await d.stopProcess();
    await d.startProcess();
    assert.match(d.log, /"pruned":\d+/);

    const kept = await readAll(d.client);
    const oldest = kept[0]?.seq ?? 0;
    const last = kept.at(-1)?.seq ?? 0;
    assert.ok(last > before, 'the journal goes on after the prune');
    assert.deepEqual(seqsOf(kept), range(oldest, last), 'what is kept is gapless');
    // 50 kept at start (the stop event is one of them), then berthd's start.
    assert.ok(oldest > 1 && oldest >= before - 50, `oldest ${oldest}, ${before} before`);
    assert.ok(kept.length <= 55, `${kept.length} kept`);

    // Behind the oldest: refused, naming the oldest retained.
    await assert.rejects(
      d.client.stream('GET', '/v1/events', { since: 1 }),
      (e: unknown) =>
        e instanceof BerthError &&
        e.code === 'EVENTS_PRUNED' &&
        e.details?.['status'] === 410 &&
        e.message.includes(`seq ${oldest}`),
    );
    const r = await d.berth(['events', '--since', String(oldest - 2)]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`oldest retained is seq ${oldest}\\b`));
    // Right behind the oldest, or from the start: everything kept.
    assert.deepEqual(seqsOf(await readAll(d.client, { since: oldest - 1 })), seqsOf(kept));
    assert.deepEqual(seqsOf(await readAll(d.client, { since: 0 })), seqsOf(kept));
  });

  it('drops events older than --events-max-age', async () => {
    const d = await TestDaemon.start(['--events-max-age', '1s']);
    daemons.push(d);
    const { Id: id } = await createQuiet(d.client, 'aged');
    for (let i = 0; i < 20; i++)
      await d.client.call('POST', `/v1/containers/${id}/update`, { body: { pidsLimit: 100 + i } });
    await sleep(1500);
    await d.stopProcess();
    await d.startProcess();
    // Everything before the shutdown is over a second old; the stop event is not.
    const kept = await readAll(d.client);
    assert.equal(kept[0]?.type, 'daemon');
    assert.equal(kept[0]?.action, 'stop');
    assert.ok((kept[0]?.seq ?? 0) > 21);
  });
});
