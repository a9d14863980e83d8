import { constants } from 'node:os';

const SIGNALS: Record<string, number> = constants.signals as Record<string, number>;

// Accepts what docker accepts for --signal and --stop-signal: "TERM", "SIGTERM", "15".
export function parseSignal(s: string): number | undefined {
  const t = s.trim().toUpperCase();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return n >= 1 && n <= 64 ? n : undefined;
  }
  const name = t.startsWith('SIG') ? t : `SIG${t}`;
  return SIGNALS[name];
}

export function signalName(n: number): string {
  for (const [k, v] of Object.entries(SIGNALS)) if (v === n) return k;
  return String(n);
}
