// The one process-exec wrapper: every external program berth runs goes through here, so a
// failure always carries argv, exit code, signal and the tail of stderr.
import { spawn } from 'node:child_process';
import { BerthError } from './errors.ts';

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

export interface ExecOptions {
  readonly input?: string;
  readonly allowFailure?: boolean;
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

const STDERR_TAIL = 2000;

export function execFile(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('execFile: empty argv');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
      timeout: opts.timeoutMs,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    child.on('error', (e) =>
      reject(new BerthError('RUNTIME_FAILED', `${file}: ${e.message}`, { argv: [...argv] })),
    );
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if ((code === 0 || opts.allowFailure) && signal === null) {
        resolve({ stdout, stderr, code: code ?? -1 });
        return;
      }
      const tail = stderr.trim().slice(-STDERR_TAIL);
      reject(
        new BerthError(
          'RUNTIME_FAILED',
          `${file} ${args[0] ?? ''} failed (${signal ?? `exit ${code}`}): ${tail}`,
          { argv: [...argv], exitCode: code, signal, stderr: tail },
        ),
      );
    });
  });
}
