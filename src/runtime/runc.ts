// The runc driver: the few runc calls berthd makes itself. Creating and starting a
// container is the monitor's job (monitor.ts), so that runc's children are never ours.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from '../util/exec.ts';

export interface RuncOptions {
  readonly binary: string;
  readonly root: string;
}

export class Runc {
  readonly binary: string;
  readonly root: string;

  constructor(o: RuncOptions) {
    this.binary = o.binary;
    this.root = o.root;
  }

  private argv(...args: string[]): string[] {
    return [this.binary, '--root', this.root, ...args];
  }

  // Idempotent: a container runc does not know is already deleted. runc keeps one state
  // directory per container under its root; without it there is nothing to delete, and
  // the common case (the monitor already ran `runc delete`) costs no process.
  async delete(id: string): Promise<void> {
    if (!existsSync(join(this.root, id))) return;
    const r = await execFile(this.argv('delete', '--force', id), { allowFailure: true });
    if (r.code !== 0 && !/does not exist|not found/i.test(r.stderr)) {
      throw new Error(`runc delete ${id}: ${r.stderr.trim()}`);
    }
  }

  // New cgroup limits for a running container, in the OCI LinuxResources form.
  async update(id: string, resources: Record<string, unknown>): Promise<void> {
    await execFile(this.argv('update', '--resources', '-', id), {
      input: JSON.stringify(resources),
    });
  }

  async pids(id: string): Promise<number[]> {
    const r = await execFile(this.argv('ps', '--format', 'json', id));
    return JSON.parse(r.stdout || '[]') as number[];
  }

  async list(): Promise<{ id: string; pid: number; status: string }[]> {
    const r = await execFile(this.argv('list', '--format', 'json'), { allowFailure: true });
    if (r.code !== 0) return [];
    return (JSON.parse(r.stdout || 'null') ?? []) as { id: string; pid: number; status: string }[];
  }

  // An exec without a terminal: runc stays in the foreground and exits with the process's
  // status, so the caller streams its pipes and takes its exit code.
  spawnExec(id: string, processFile: string, stdin: boolean): ChildProcess {
    const [file, ...args] = this.argv('exec', '--process', processFile, id);
    return spawn(file as string, args, { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  }
}
