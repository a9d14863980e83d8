// One health probe inside a running container: `runc exec` in the foreground with its
// output bounded, and on timeout the probe's processes killed inside the container too.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Runc } from '../runtime/runc.ts';
import { BerthError } from '../util/errors.ts';
import { limitOutput, MAX_OUTPUT_BYTES, type ProbeOutcome, timeoutMessage } from './health.ts';

export interface ProbeOptions {
  // Where the private directory for the process file goes; os.tmpdir() by default.
  readonly tmpDir?: string;
  readonly procRoot?: string;
  // After a timeout, how long the probe's processes get to die before runc itself is
  // killed.
  readonly killGraceMs?: number;
}

// runc exec copies the probe's output through pipes of its own and exits only when they
// close, so a probe that leaves a background child holding them would keep runc (and the
// probe) running until the timeout, and its exit code would be lost. Once the probe's own
// process is gone, that long is left for such children before they are killed.
const LEFTOVER_GRACE_MS = 1000;
const POLL_MS = 100;
// Once runc has exited, how long its pipes get to deliver the rest of the output.
const STREAM_LINGER_MS = 250;

// `ociProcess` is what runtime/spec.ts buildProcess returns, with terminal false.
export async function runProbe(
  runc: Runc,
  id: string,
  ociProcess: object,
  timeoutMs: number,
  opts: ProbeOptions = {},
): Promise<ProbeOutcome> {
  // A private directory, so no other user can swap the file runc reads as root.
  const dir = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'berth-health-'));
  try {
    const processFile = join(dir, 'process.json');
    const pidFile = join(dir, 'pid');
    await writeFile(processFile, JSON.stringify(ociProcess), { mode: 0o600 });
    // Runc.spawnExec has no --pid-file, and the probe's pid is what lets it be killed.
    const child = spawn(
      runc.binary,
      ['--root', runc.root, 'exec', '--pid-file', pidFile, '--process', processFile, id],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    return await collect(child, pidFile, timeoutMs, {
      procRoot: opts.procRoot ?? '/proc',
      killGraceMs: opts.killGraceMs ?? 2000,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function collect(
  child: ChildProcess,
  pidFile: string,
  timeoutMs: number,
  o: { procRoot: string; killGraceMs: number },
): Promise<ProbeOutcome> {
  return new Promise((resolve, reject) => {
    // One byte over the limit tells limitOutput that the output was cut.
    const chunks: Buffer[] = [];
    let kept = 0;
    const take = (b: Buffer) => {
      if (kept > MAX_OUTPUT_BYTES) return;
      const part = b.subarray(0, MAX_OUTPUT_BYTES + 1 - kept);
      chunks.push(part);
      kept += part.length;
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);

    let done = false;
    let timedOut = false;
    let exitCode: number | undefined;
    let execPid: number | undefined;
    let goneSince: number | undefined;
    let killSince: number | undefined;
    let linger: NodeJS.Timeout | undefined;

    // runc writes the file once the process runs; until then there is nothing of ours
    // in the container but runc's own children (see childPids).
    const readExecPid = (): number | undefined => {
      if (execPid === undefined) {
        try {
          const n = Number(readFileSync(pidFile, 'utf8').trim());
          if (Number.isInteger(n) && n > 0) execPid = n;
        } catch {
          /* not written yet */
        }
      }
      return execPid;
    };

    const poll = () => {
      if (exitCode !== undefined || done) return;
      const now = Date.now();
      const pid = readExecPid();
      if (killSince !== undefined) {
        // SIGKILL to a foreground runc exec would leave its process running in the
        // container, so the probe's processes go first and runc then exits by itself.
        // Repeated, because a probe still being set up can gain a child.
        if (pid !== undefined) killLeftovers(pid, o.procRoot);
        const runcPid = runcAlive(child);
        if (runcPid !== undefined) for (const c of childPids(runcPid, o.procRoot)) killTree(c);
        if (now - killSince >= o.killGraceMs) child.kill('SIGKILL');
      } else if (pid !== undefined && !existsSync(join(o.procRoot, String(pid)))) {
        goneSince ??= now;
        if (now - goneSince >= LEFTOVER_GRACE_MS) killLeftovers(pid, o.procRoot);
      }
    };
    const poller = setInterval(poll, POLL_MS);
    const timer = setTimeout(() => {
      timedOut = true;
      killSince = Date.now();
      poll();
    }, timeoutMs);

    const stop = () => {
      clearInterval(poller);
      clearTimeout(timer);
      clearTimeout(linger);
    };
    const finish = () => {
      if (done) return;
      done = true;
      stop();
      child.stdout?.destroy();
      child.stderr?.destroy();
      const output = limitOutput(Buffer.concat(chunks));
      if (timedOut) resolve({ exitCode: -1, output: timeoutMessage(timeoutMs, output) });
      else resolve({ exitCode: exitCode ?? -1, output });
    };

    child.on('error', (e) => {
      if (done) return;
      done = true;
      stop();
      reject(new BerthError('RUNTIME_FAILED', `runc exec: ${e.message}`, { error: e.message }));
    });
    child.on('exit', (code, signal) => {
      exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 9) : 0);
      clearInterval(poller);
      clearTimeout(timer);
      linger = setTimeout(finish, STREAM_LINGER_MS);
    });
    child.on('close', finish);
  });
}

function runcAlive(child: ChildProcess): number | undefined {
  return child.exitCode === null && child.signalCode === null ? child.pid : undefined;
}

// What is left of the probe's process group once its leader is gone: runc init makes the
// exec'd process a session and group leader, and a shell probe's children stay in its
// group. A live process with the leader's pid may be a stranger that got the pid after
// runc reaped the probe, so the group is only signalled while no process has that pid.
function killLeftovers(pid: number, procRoot: string): void {
  if (!existsSync(join(procRoot, String(pid)))) signal(-pid);
}

// The exec'd process is set up by runc init stages cloned with CLONE_PARENT, so it is a
// direct child of `runc exec` from its first moment, before runc could write a pid file.
export function childPids(pid: number, procRoot = '/proc'): number[] {
  const taskDir = join(procRoot, String(pid), 'task');
  let tasks: string[];
  try {
    tasks = readdirSync(taskDir);
  } catch {
    return [];
  }
  try {
    return tasks.flatMap((t) =>
      readFileSync(join(taskDir, t, 'children'), 'utf8')
        .split(/\s+/)
        .filter((s) => s !== '')
        .map(Number),
    );
  } catch {
    // A kernel without CONFIG_PROC_CHILDREN, or a thread that just ended.
    return childrenByScan(pid, procRoot);
  }
}

function childrenByScan(parent: number, procRoot: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync(procRoot)) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(join(procRoot, e, 'stat'), 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) out.push(Number(e));
    } catch {
      /* raced with exit */
    }
  }
  return out;
}

// The process and, when it leads one, its group. No group has the id of a live process
// that does not lead it, so the group signal cannot hit anyone else.
function killTree(pid: number): void {
  signal(-pid);
  signal(pid);
}

function signal(target: number): void {
  try {
    process.kill(target, 'SIGKILL');
  } catch {
    /* already gone */
  }
}
