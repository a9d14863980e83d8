export const ZERO_TIME = '0001-01-01T00:00:00Z';

export function nowIso(): string {
  return new Date().toISOString();
}

// Accepts Go-style durations as Docker does for timeouts ("10s", "1m30s", "500ms") and a
// bare number meaning seconds.
export function parseDurationMs(s: string): number | undefined {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(t)) !== null) {
    const n = Number(m[1]);
    const unit = m[2];
    total += n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
    consumed = re.lastIndex;
  }
  return consumed === t.length && t.length > 0 ? total : undefined;
}

// The monitor's timestamp form: RFC 3339, UTC, nine fractional digits, so that log times
// compare as strings.
export function toLogTime(ms: number, extraNs = 0): string {
  const iso = new Date(ms).toISOString();
  return iso.replace('Z', `${String(extraNs).padStart(6, '0')}Z`);
}

// What docker accepts for --since and --until: an RFC 3339 time or date, a Unix time with
// optional fraction, or a duration meaning that long before now.
export function parseTimeArg(s: string, now = Date.now()): string | undefined {
  const t = s.trim();
  if (/^\d+(\.\d{1,9})?$/.test(t)) {
    const [sec = '0', frac = ''] = t.split('.');
    const ns = frac.padEnd(9, '0');
    return toLogTime(Number(sec) * 1000 + Number(ns.slice(0, 3)), Number(ns.slice(3)));
  }
  const d = parseDurationMs(t);
  if (d !== undefined) return toLogTime(now - d);
  if (/^\d{4}-\d\d-\d\d(T[\d:.]+(Z|[+-]\d\d:?\d\d)?)?$/.test(t)) {
    const ms = Date.parse(
      t.length === 10 ? `${t}T00:00:00Z` : /Z|[+-]\d\d:?\d\d$/.test(t) ? t : `${t}Z`,
    );
    if (Number.isNaN(ms)) return undefined;
    const frac = /\.(\d+)/.exec(t)?.[1] ?? '';
    return toLogTime(ms, Number(frac.padEnd(9, '0').slice(3, 9)));
  }
  return undefined;
}
