// The log workload: a container that writes short lines to stdout as fast as its engine
// takes them. A 4 MB block of lines is made once in /dev/shm (a tmpfs in every engine's
// containers), then one `cat` of the block repeated: the writer costs next to nothing, so
// the time is the log path's.
import { cli, printedId, type Engine, type LogLimits } from './engines.ts';

export const LINE = 'a short log line of about fifty bytes, number 0123456789';

export interface LogLoad {
  // sh -c script.
  readonly script: string;
  // Output bytes (newlines included) and lines.
  readonly bytes: number;
  readonly lines: number;
}

export function logLoad(targetBytes: number): LogLoad {
  const lineBytes = LINE.length + 1;
  const perBlock = Math.floor(4_000_000 / lineBytes);
  const blockBytes = perBlock * lineBytes;
  const blocks = Math.max(1, Math.round(targetBytes / blockBytes));
  const f = '/dev/shm/bb-block';
  const script =
    `yes '${LINE}' | head -n ${perBlock} > ${f} && set -- && i=0 && ` +
    `while [ $i -lt ${blocks} ]; do set -- "$@" ${f}; i=$((i+1)); done && exec cat "$@"`;
  return { script, bytes: blocks * blockBytes, lines: blocks * perBlock };
}

// Creates (does not start) a container that writes `load`, its log kept within `limits`;
// returns its id.
export async function createWriter(
  e: Engine,
  load: LogLoad,
  limits: LogLimits,
  signal: AbortSignal,
): Promise<string> {
  const r = await cli(
    e,
    ['create', ...e.runFlags, ...e.logFlags(limits), e.image, 'sh', '-c', load.script],
    { signal },
  );
  return printedId(r.stdout);
}

export const MB = 1e6;

// Log file limits that keep `payload` bytes whole in berth (CRI: ~1.7x the payload) and in
// docker's json-file (~2.2x), in files of 100 MiB; at least docker-style 100m x 10.
export function limitsFor(payload: number): LogLimits {
  const files = Math.ceil((2.4 * payload) / (100 * 1024 * 1024)) + 1;
  return { maxSize: '100m', maxFiles: Math.max(10, files) };
}
