// Docker's /events over berth's durable journal. Each berth event becomes Docker's message
// (Type, Action, Actor {ID, Attributes}, scope, time, timeNano, and the legacy status, id
// and from that older clients read); `since` reaches back as far as the journal does,
// across berthd restarts, which dockerd's in-memory 256 events never could.
import type { FastifyInstance } from 'fastify';
import type { EventBus } from '../../engine/index.ts';
import { matchEvent, type EventFilters } from '../../engine/event-filters.ts';
import { parseFiltersJson } from '../../engine/filters.ts';
import type { EventRecord } from '../../types/domain.ts';
import { BerthError, invalid } from '../../util/errors.ts';
import { streamJournal } from '../journal-stream.ts';
import { timeArgNano } from '../events.ts';

export interface DockerEvent {
  readonly type: string;
  readonly action: string;
  readonly actorId: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly timeNano: bigint;
}

// berth's record as Docker would have said it.
export function toDockerEvent(e: EventRecord): DockerEvent {
  let action = e.action;
  let actorId = e.actorId;
  const attributes: Record<string, string> = { ...e.attributes };
  if (e.type === 'container') {
    switch (e.action) {
      // A restart by policy is a start to Docker (its `restart` is the command's).
      case 'restart':
        action = 'start';
        break;
      case 'health_status':
        action = `health_status: ${e.attributes['healthStatus'] ?? 'unknown'}`;
        break;
      case 'rename':
        if (attributes['oldName'] !== undefined)
          attributes['oldName'] = `/${attributes['oldName']}`;
        break;
    }
  } else if (e.type === 'image' && e.action === 'pull' && e.attributes['name']) {
    // Docker names a pulled image by its reference.
    actorId = e.attributes['name'];
  }
  return { type: e.type, action, actorId, attributes, timeNano: e.timeNano };
}

export function dockerEventLine(d: DockerEvent): string {
  const legacy =
    d.type === 'container'
      ? { status: d.action, id: d.actorId, from: d.attributes['image'] ?? '' }
      : d.type === 'image'
        ? { status: d.action, id: d.actorId }
        : {};
  const body = JSON.stringify({
    ...legacy,
    Type: d.type,
    Action: d.action,
    Actor: { ID: d.actorId, Attributes: d.attributes },
    scope: 'local',
    time: Number(d.timeNano / 1_000_000_000n),
  });
  // timeNano is past 2^53: written as the integer it is, not a rounded double.
  return `${body.slice(0, -1)},"timeNano":${d.timeNano.toString()}}\n`;
}

// Docker's filter keys. Those of things berth has none of (swarm's, plugins) match nothing.
const BERTH_KEYS = new Set([
  'container',
  'event',
  'image',
  'label',
  'daemon',
  'volume',
  'network',
  'type',
]);
const NONE_KEYS = new Set(['node', 'plugin', 'service', 'config', 'secret']);
const BERTH_TYPES = new Set(['container', 'image', 'volume', 'network', 'daemon']);
const DOCKER_TYPES = new Set([...BERTH_TYPES, 'plugin', 'node', 'service', 'secret', 'config']);

export function dockerEventFilter(json: string | undefined): (d: DockerEvent) => boolean {
  const f = parseFiltersJson(json);
  const mine: Record<string, string[]> = {};
  let never = false;
  for (const [k, vs] of Object.entries(f)) {
    if (vs.length === 0) continue;
    if (k === 'scope') {
      for (const v of vs)
        if (v !== 'local' && v !== 'swarm') throw invalid('filters', `invalid scope "${v}"`);
      if (!vs.includes('local')) never = true;
    } else if (NONE_KEYS.has(k)) never = true;
    else if (!BERTH_KEYS.has(k)) throw new BerthError('INVALID_ARGUMENT', `invalid filter '${k}'`);
    else if (k === 'type') {
      for (const v of vs)
        if (!DOCKER_TYPES.has(v))
          throw new BerthError('INVALID_ARGUMENT', `invalid event type "${v}"`);
      const kept = vs.filter((v) => BERTH_TYPES.has(v));
      if (kept.length === 0) never = true;
      mine[k] = kept;
    } else mine[k] = vs;
  }
  const filters: EventFilters = mine;
  if (never) return () => false;
  return (d) =>
    matchEvent(
      {
        seq: 0,
        time: '',
        timeNano: d.timeNano,
        type: d.type as EventRecord['type'],
        action: d.action,
        actorId: d.actorId,
        attributes: d.attributes,
      },
      filters,
    );
}

export function registerDockerEventRoute(app: FastifyInstance, events: EventBus): void {
  app.get('/events', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    const sinceNano = timeArgNano(q['since'], 'since');
    const untilNano = timeArgNano(q['until'], 'until');
    const wanted = dockerEventFilter(q['filters']);
    let cursor: number;
    if (sinceNano !== undefined) {
      const first = events.firstSeqSince(sinceNano);
      cursor = first !== undefined ? first - 1 : events.lastSeq();
    } else cursor = events.lastSeq();
    const nowNano = () => BigInt(Date.now()) * 1_000_000n;
    // Until in the past: a replay that ends when it has caught up.
    const live = untilNano === undefined || untilNano > nowNano();

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Api-Version': '1.41',
      'Docker-Experimental': 'false',
      Ostype: 'linux',
    });
    res.flushHeaders();

    streamJournal(res, events, {
      cursor,
      live,
      ...(untilNano !== undefined ? { liveUntilMs: Number(untilNano / 1_000_000n) } : {}),
      ...(untilNano !== undefined ? { past: (e) => e.timeNano > untilNano } : {}),
      line: (e) => {
        if (sinceNano !== undefined && e.timeNano < sinceNano) return '';
        const d = toDockerEvent(e);
        return wanted(d) ? dockerEventLine(d) : '';
      },
    });
  });
}
