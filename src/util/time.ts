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
