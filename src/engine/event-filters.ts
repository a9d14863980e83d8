// Docker's `events --filter` semantics over journal records: values of one key are ORed,
// different keys are ANDed. A filter only selects what a reader sees; it never changes
// where the reader's cursor is.
import type { EventRecord } from '../types/domain.ts';
import { invalid } from '../util/errors.ts';
import { parseFiltersJson } from './filters.ts';

export type EventFilters = Readonly<Record<string, readonly string[]>>;

type Matcher = (e: EventRecord, v: string) => boolean;

const TYPES = new Set(['container', 'image', 'daemon', 'volume', 'network']);

const stripSlash = (v: string) => v.replace(/^\//, '');

// Docker's untagged image names mean :latest.
const withTag = (v: string) => (/:[^/]*$/.test(v) || v.includes('@') ? v : `${v}:latest`);

const MATCHERS: Record<string, Matcher> = {
  type: (e, v) => e.type === v,
  // A name matches whole; an id matches by any prefix, as everywhere else in berth.
  container: (e, v) =>
    e.type === 'container' && (e.actorId.startsWith(v) || e.attributes['name'] === stripSlash(v)),
  // Docker's "exec_start: sh -c ..." actions match by the part before the colon too.
  event: (e, v) => e.action === v || e.action.startsWith(`${v}:`),
  image: (e, v) => {
    const img = e.type === 'image' ? e.attributes['name'] : e.attributes['image'];
    return (
      img === v ||
      (img !== undefined && withTag(img) === withTag(v)) ||
      (e.type === 'image' && e.actorId.startsWith(v.replace(/^sha256:/, '')))
    );
  },
  label: (e, v) => {
    const i = v.indexOf('=');
    return i < 0 ? v in e.attributes : e.attributes[v.slice(0, i)] === v.slice(i + 1);
  },
  // berth's daemon events name the daemon by its pid.
  daemon: (e, v) => e.type === 'daemon' && (e.actorId === v || e.attributes['name'] === v),
  // A volume's actor is its name, matched whole.
  volume: (e, v) => e.type === 'volume' && e.actorId === v,
  // A network's actor is its id, matched by prefix as ids are; its name matches whole.
  network: (e, v) =>
    e.type === 'network' && (e.actorId.startsWith(v) || e.attributes['name'] === v),
};
// Docker's older spelling.
MATCHERS['action'] = MATCHERS['event'] as Matcher;

const KEYS = Object.keys(MATCHERS);

export function validateEventFilters(f: EventFilters): void {
  for (const [k, vs] of Object.entries(f)) {
    if (!(k in MATCHERS)) throw invalid('filters', `unknown key "${k}" (${KEYS.join(', ')})`);
    if (k === 'type')
      for (const v of vs)
        if (!TYPES.has(v))
          throw invalid('filters', `unknown type "${v}" (${[...TYPES].join(', ')})`);
    for (const v of vs) if (v === '') throw invalid('filters', `${k} has an empty value`);
  }
}

export function parseEventFiltersJson(s: string | undefined): EventFilters {
  const f = parseFiltersJson(s);
  validateEventFilters(f);
  return f;
}

export function matchEvent(e: EventRecord, f: EventFilters): boolean {
  for (const [k, vs] of Object.entries(f)) {
    if (vs.length === 0) continue;
    const m = MATCHERS[k];
    if (!m || !vs.some((v) => m(e, v))) return false;
  }
  return true;
}
