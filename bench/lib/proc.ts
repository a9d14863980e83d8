// Spawning measured and helper processes. The clock runs from just before spawn() to the
// child's 'close' (exited and its stdio drained), the same for every subject.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcResult {
  readonly ms: number;
  readonly code: number;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  // Bytes the process wrote to stdout (counted unless stdout is 'ignore').
  readonly stdoutBytes: number;
}

export interface ProcOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  // What becomes of stdout: 'tail' keeps its last few KB (the default), 'all' keeps all of
  // it, 'count' only counts bytes, 'ignore' sends it to /dev/null (nothing passes through
  // the bench: use it for large outputs that are timed).
  readonly stdout?: 'tail' | 'all' | 'count' | 'ignore';
  // A file descriptor for stdout instead (the process writes to it directly).
  readonly stdoutFd?: number;
}

const KEEP = 4000;

export function run(
  file: string,
  args: readonly string[],
  opts: ProcOptions = {},
): Promise<ProcResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let stdoutBytes = 0;
    const mode = opts.stdout ?? 'tail';
    const t0 = process.hrtime.bigint();
    const p = spawn(file, args, {
      stdio: ['ignore', opts.stdoutFd ?? (mode === 'ignore' ? 'ignore' : 'pipe'), 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.signal ? { signal: opts.signal, killSignal: 'SIGKILL' as const } : {}),
    });
    p.stdout?.on('data', (b: Buffer) => {
      stdoutBytes += b.length;
      if (mode === 'tail') stdout = (stdout + b.toString()).slice(-KEEP);
      else if (mode === 'all') stdout += b.toString();
    });
    p.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-KEEP)));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      clearTimeout(timer);
      resolve({ ms, code: code ?? -1, signal, stdout, stderr, stdoutBytes });
    });
  });
}

// A run that must succeed.
export async function runOk(
  file: string,
  args: readonly string[],
  opts: ProcOptions = {},
): Promise<ProcResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) {
    const how = r.signal ? `signal ${r.signal}` : `code ${r.code}`;
    const cmd = [file, ...args].join(' ');
    const shown = cmd.length > 300 ? `${cmd.slice(0, 300)}...` : cmd;
    throw new Error(`${shown} failed (${how}): ${r.stderr.trim()}`);
  }
  return r;
}

// A run that must succeed; returns its wall time in ms.
export async function timedOk(
  file: string,
  args: readonly string[],
  opts: ProcOptions = {},
): Promise<number> {
  return (await runOk(file, args, opts)).ms;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}
