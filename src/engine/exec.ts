// Exec sessions: a process started inside a running container. Like Docker's, an exec
// belongs to the API connection that started it; a plain exec is `runc exec` in the
// foreground, a terminal exec goes through `berth-monitor exec-tty`, which receives the pty.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex, Writable } from 'node:stream';
import { resolveUser } from '../images/users.ts';
import type { Runc } from '../runtime/runc.ts';
import { buildProcess } from '../runtime/spec.ts';
import type { ExecRequest } from '../types/api.ts';
import { BerthError, invalid } from '../util/errors.ts';
import { newId } from '../util/ids.ts';
import { hardNofile } from '../util/proc.ts';
import { frame, STDERR, STDOUT } from '../util/stream-frame.ts';
import { mergeEnv, type ContainerEngine } from './containers.ts';
import type { ImageService } from './images.ts';
import { assertCan } from './lifecycle.ts';
import { processSecurity } from './security.ts';

export interface ExecSession {
  readonly id: string;
  readonly containerId: string;
  readonly req: ExecRequest;
  running: boolean;
  exitCode: number | null;
  pid: number;
  ctl?: Writable;
}

export class ExecService {
  private readonly containers: ContainerEngine;
  private readonly images: ImageService;
  private readonly runc: Runc;
  private readonly monitorBinary: string;
  private readonly sessions = new Map<string, ExecSession>();
  private readonly nofile = hardNofile();

  constructor(
    containers: ContainerEngine,
    images: ImageService,
    runc: Runc,
    monitorBinary: string,
  ) {
    this.containers = containers;
    this.images = images;
    this.runc = runc;
    this.monitorBinary = monitorBinary;
  }

  create(ref: string, req: ExecRequest): ExecSession {
    const c = this.containers.resolve(ref);
    assertCan('exec', c.state, c.name);
    if (req.cmd.length === 0 || !req.cmd[0]) throw invalid('cmd', 'no command specified');
    if (req.workdir !== undefined && req.workdir !== '' && !req.workdir.startsWith('/')) {
      throw invalid('workdir', `"${req.workdir}" is not an absolute path`);
    }
    const s: ExecSession = {
      id: newId(),
      containerId: c.id,
      req,
      running: false,
      exitCode: null,
      pid: 0,
    };
    this.sessions.set(s.id, s);
    // One that is never started does not stay forever.
    setTimeout(() => {
      if (!s.running && s.exitCode === null) this.sessions.delete(s.id);
    }, 5 * 60_000).unref();
    return s;
  }

  get(id: string): ExecSession {
    const s = this.sessions.get(id);
    if (!s) throw new BerthError('EXEC_NOT_FOUND', `No such exec instance: ${id}`);
    return s;
  }

  // Runs the exec with its streams on `conn` and resolves with its exit code.
  async start(id: string, conn: Duplex): Promise<number> {
    const s = this.get(id);
    if (s.running || s.exitCode !== null)
      throw new BerthError('CONTAINER_BUSY', `Exec ${id} has already been started`);
    // Claimed before the first await, so two concurrent starts cannot both pass.
    s.running = true;
    try {
      return await this.run(s, conn);
    } finally {
      s.running = false;
      if (s.exitCode === null) s.exitCode = 126;
      // Keep the finished session a while so a client can read its exit code.
      setTimeout(() => this.sessions.delete(s.id), 60_000).unref();
    }
  }

  private async run(s: ExecSession, conn: Duplex): Promise<number> {
    const c = this.containers.resolve(s.containerId);
    assertCan('exec', c.state, c.name);
    const user = await resolveUser(
      await this.images.root(c.config.imageId),
      s.req.user ?? c.config.user,
    );
    const env = mergeEnv(
      [
        ...c.config.env,
        `HOSTNAME=${c.config.hostname}`,
        `HOME=${user.home}`,
        ...(await this.containers.initEnv(c.id)),
        ...(s.req.tty ? ['TERM=xterm'] : []),
      ],
      s.req.env ?? [],
    );
    const processFile = join(this.containers.stateDir(c.id), `exec-${s.id}.json`);
    await writeFile(
      processFile,
      JSON.stringify(
        buildProcess({
          args: s.req.cmd,
          env,
          cwd: s.req.workdir || c.config.workdir,
          uid: user.uid,
          gid: user.gid,
          additionalGids: user.additionalGids,
          terminal: s.req.tty ?? false,
          nofileLimit: this.nofile,
          consoleSize: s.req.consoleSize,
          ulimits: c.config.resources?.ulimits,
          // Never more privilege than the container it enters.
          ...processSecurity(c.config),
        }),
      ),
    );
    try {
      const child = s.req.tty
        ? this.spawnTty(c.id, processFile)
        : this.runc.spawnExec(c.id, processFile, s.req.stdin ?? false);
      s.pid = child.pid ?? 0;
      if (s.req.tty) {
        s.ctl = child.stdio[3] as Writable;
        // A resize racing the exec's end must not take berthd down with EPIPE.
        s.ctl.on('error', () => undefined);
      }
      const code = await this.pump(child, conn, s.req.tty ?? false, s.req.stdin ?? false);
      s.exitCode = code;
      return code;
    } finally {
      await rm(processFile, { force: true });
    }
  }

  private spawnTty(containerId: string, processFile: string): ChildProcess {
    return spawn(
      this.monitorBinary,
      [
        'exec-tty',
        '--id',
        containerId,
        '--runtime',
        this.runc.binary,
        '--runtime-root',
        this.runc.root,
        '--process',
        processFile,
        '--ctl-fd',
        '3',
      ],
      { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] },
    );
  }

  private pump(child: ChildProcess, conn: Duplex, tty: boolean, stdin: boolean): Promise<number> {
    return new Promise((resolve) => {
      // Backpressure: a client that reads slowly pauses the process's output, as a pipe
      // would, instead of piling it up in berthd's memory.
      const send = (b: Buffer) => {
        if (conn.write(b)) return;
        child.stdout?.pause();
        child.stderr?.pause();
        conn.once('drain', () => {
          child.stdout?.resume();
          child.stderr?.resume();
        });
      };
      child.stdout?.on('data', (b: Buffer) => send(tty ? b : frame(STDOUT, b)));
      child.stderr?.on('data', (b: Buffer) => send(tty ? b : frame(STDERR, b)));
      if (stdin && child.stdin) {
        conn.pipe(child.stdin);
        child.stdin.on('error', () => undefined);
      } else {
        conn.resume();
      }
      // The client going away ends the process, as with docker exec. Without stdin its
      // hang-up arrives as 'end' on the half-open socket.
      const onGone = () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      };
      conn.once('close', onGone);
      if (!stdin) conn.once('end', onGone);
      conn.on('error', onGone);
      // runc exits 255 when it could not start the process; its message says why, and
      // Docker's codes say 127 for a missing command and 126 for one that cannot run.
      let errTail = '';
      child.stderr?.on('data', (b: Buffer) => (errTail = (errTail + b.toString()).slice(-4096)));
      child.on('error', () => resolve(126));
      child.on('close', (code, signal) => {
        conn.off('close', onGone);
        conn.off('end', onGone);
        if (code === 255 && /executable file not found|no such file or directory/.test(errTail))
          resolve(127);
        else if (code === 255 && /permission denied|exec format error/.test(errTail)) resolve(126);
        else resolve(code ?? (signal ? 128 + (signalNumber(signal) ?? 9) : 126));
      });
    });
  }

  resize(id: string, rows: number, cols: number): void {
    const s = this.get(id);
    if (!s.running || !s.ctl)
      throw new BerthError('CONTAINER_NOT_RUNNING', `Exec ${id} is not running with a terminal`);
    s.ctl.write(`resize ${rows} ${cols}\n`);
  }
}

function signalNumber(sig: NodeJS.Signals): number | undefined {
  return (
    { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 } as Record<
      string,
      number
    >
  )[sig];
}
