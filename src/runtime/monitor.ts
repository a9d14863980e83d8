// Launching berth-monitor and talking to it (protocol: monitor/PROTOCOL.md).
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../util/errors.ts';

export interface MonitorLaunch {
  readonly binary: string;
  readonly id: string;
  readonly bundle: string;
  readonly runtime: string;
  readonly runtimeRoot: string;
  readonly stateDir: string;
  readonly logPath: string;
  readonly oomFile?: string;
  readonly cgroupProcs: readonly string[];
  readonly terminal: boolean;
  readonly stdin: boolean;
  readonly logMaxSize: number;
  readonly logMaxFiles: number;
  // --restart* options (see engine/restart-policy.ts).
  readonly restartArgs: readonly string[];
  // The root the monitor mounts before each run: an overlay on the image (upper and work
  // '': a read-only one).
  readonly overlay?: {
    readonly lower: string;
    readonly upper: string;
    readonly work: string;
    readonly merged: string;
    readonly reset: boolean;
  };
  // A user namespace (--userns=auto): the mapping, and the image's layers (topmost first)
  // that the monitor mounts idmapped into it as the overlay's lower (`overlay.lower`, the
  // shared image root, is then only the fallback where the kernel refuses idmapped mounts).
  readonly idmap?: {
    readonly uidBase: number;
    readonly gidBase: number;
    readonly size: number;
    readonly lowers: readonly string[];
  };
}

export interface MonitorStarted {
  readonly monitorPid: number;
  readonly pid: number;
}

export interface ExitRecord {
  readonly pid: number;
  readonly exitCode: number;
  readonly signal: number;
  readonly oomKilled: boolean;
  readonly finishedAt: string;
}

export const monitorFiles = (stateDir: string) => ({
  ctl: join(stateDir, 'ctl.sock'),
  attach: join(stateDir, 'attach.sock'),
  attachReadOnly: join(stateDir, 'attach-ro.sock'),
  exit: join(stateDir, 'exit.json'),
  events: join(stateDir, 'events.jsonl'),
  monitorPid: join(stateDir, 'monitor.pid'),
  containerPid: join(stateDir, 'container.pid'),
});

// Classifies runc's complaint the way Docker does for its exit codes 126 and 127.
function launchError(msg: string): BerthError {
  if (/executable file not found|no such file or directory/i.test(msg)) {
    return new BerthError('COMMAND_NOT_FOUND', `Cannot start container: ${msg}`);
  }
  if (/permission denied|exec format error|is a directory/i.test(msg)) {
    return new BerthError('COMMAND_NOT_EXECUTABLE', `Cannot start container: ${msg}`);
  }
  return new BerthError('RUNTIME_FAILED', `Cannot start container: ${msg}`);
}

export function launchMonitor(l: MonitorLaunch): Promise<MonitorStarted> {
  const args = [
    'run',
    '--id',
    l.id,
    '--bundle',
    l.bundle,
    '--runtime',
    l.runtime,
    '--runtime-root',
    l.runtimeRoot,
    '--state-dir',
    l.stateDir,
    '--log-path',
    l.logPath,
    '--sync-fd',
    '3',
  ];
  if (l.oomFile) args.push('--oom-file', l.oomFile);
  for (const p of l.cgroupProcs) args.push('--cgroup-procs', p);
  if (l.logMaxSize > 0)
    args.push('--log-max-size', String(l.logMaxSize), '--log-max-files', String(l.logMaxFiles));
  if (l.terminal) args.push('--terminal');
  if (l.stdin) args.push('--stdin');
  args.push(...l.restartArgs);
  if (l.overlay) {
    const o = l.overlay;
    args.push('--overlay', [o.lower, o.upper, o.work, o.merged].join(':'));
    if (o.reset) args.push('--overlay-reset');
  }
  if (l.idmap) {
    const m = l.idmap;
    args.push('--idmap', `${m.uidBase}:${m.gidBase}:${m.size}`);
    for (const d of m.lowers) args.push('--idmap-lower', d);
  }

  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      // detached: its own session from the first instant; the monitor then double-forks,
      // so it is never berthd's child.
      child = spawn(l.binary, args, {
        detached: true,
        stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      reject(new BerthError('RUNTIME_FAILED', `Cannot launch monitor: ${(e as Error).message}`));
      return;
    }
    const sync = child.stdio[3] as NodeJS.ReadableStream;
    let out = '';
    let err = '';
    child.stdio[2]?.on('data', (b: Buffer) => (err += b.toString()));
    sync.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', (e) =>
      reject(new BerthError('RUNTIME_FAILED', `Cannot launch monitor: ${e.message}`)),
    );
    sync.on('end', () => {
      const line = out.split('\n')[0] ?? '';
      if (!line) {
        reject(new BerthError('RUNTIME_FAILED', `Monitor exited without reporting: ${err.trim()}`));
        return;
      }
      let msg: { ok: boolean; error?: string; monitorPid?: number; pid?: number };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        reject(new BerthError('RUNTIME_FAILED', `Monitor sent a bad report: ${line}`));
        return;
      }
      if (msg.ok && msg.monitorPid && msg.pid)
        resolve({ monitorPid: msg.monitorPid, pid: msg.pid });
      else reject(launchError(msg.error ?? 'unknown monitor failure'));
    });
    child.unref();
  });
}

export interface MonitorEvent {
  readonly type: string;
  readonly time: string;
  readonly [k: string]: unknown;
}

// Complete lines of the monitor's event file from a byte offset, and the offset after
// them. Reads only what is new: the file grows for the container's whole run.
export async function readMonitorEvents(
  stateDir: string,
  offset: number,
): Promise<{ events: MonitorEvent[]; offset: number }> {
  let fh;
  try {
    fh = await open(monitorFiles(stateDir).events, 'r');
  } catch {
    return { events: [], offset };
  }
  try {
    const size = (await fh.stat()).size;
    if (size <= offset) return { events: [], offset };
    const buf = Buffer.alloc(Math.min(size - offset, 4 * 1024 * 1024));
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    const end = buf.subarray(0, bytesRead).lastIndexOf(10) + 1;
    const events: MonitorEvent[] = [];
    for (const line of buf.subarray(0, end).toString().split('\n')) {
      if (!line) continue;
      try {
        events.push(JSON.parse(line) as MonitorEvent);
      } catch {
        /* one write per line: a torn line cannot happen; skip garbage */
      }
    }
    return { events, offset: offset + end };
  } finally {
    await fh.close();
  }
}

export async function readExitRecord(stateDir: string): Promise<ExitRecord | undefined> {
  try {
    return JSON.parse(await readFile(monitorFiles(stateDir).exit, 'utf8')) as ExitRecord;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

// One open control connection per running container. Its close is how berthd learns the
// monitor is done (the container exited, or the monitor itself died): no polling.
export class MonitorConnection {
  private readonly sock: Socket;
  private buf = '';
  // Unsolicited lines from the monitor ("!event": new lines in events.jsonl).
  onNotify: ((what: string) => void) | undefined;
  private readonly pending: { resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  readonly closed: Promise<void>;

  private constructor(sock: Socket) {
    this.sock = sock;
    this.sock.setEncoding('utf8');
    this.sock.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (line.startsWith('!')) {
          this.onNotify?.(line.slice(1));
          continue;
        }
        const p = this.pending.shift();
        if (!p) continue;
        if (line === 'ok' || line.startsWith('ok ')) p.resolve(line.slice(3));
        else p.reject(new Error(line.replace(/^error /, '')));
      }
    });
    this.closed = new Promise((resolve) => {
      this.sock.on('close', () => {
        for (const p of this.pending.splice(0)) p.reject(new Error('monitor closed'));
        resolve();
      });
    });
    this.sock.on('error', () => {
      /* close follows */
    });
  }

  static connect(stateDir: string): Promise<MonitorConnection> {
    return new Promise((resolve, reject) => {
      const s = createConnection(monitorFiles(stateDir).ctl);
      s.once('connect', () => resolve(new MonitorConnection(s)));
      s.once('error', reject);
    });
  }

  request(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.sock.destroyed) {
        reject(new Error('monitor closed'));
        return;
      }
      this.pending.push({ resolve, reject });
      this.sock.write(`${line}\n`);
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

// A client without stdin uses the read-only socket: its leaving must not close the
// container's stdin for the others.
export function connectAttach(stateDir: string, stdin: boolean): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const files = monitorFiles(stateDir);
    const s = createConnection(stdin ? files.attach : files.attachReadOnly);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}
