// The `berth` command: Docker's verbs and flags where they mean the same thing. Data goes
// to stdout, diagnostics to stderr; exit codes follow Docker (125 berth's own error, 126
// cannot execute, 127 not found, otherwise the container's).
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { BerthClient, DEFAULT_HOST, tlsFilesFrom, type TlsFlags } from '../client/index.ts';
import type { ContainerSummary, CreateContainerRequest, ResourcesRequest } from '../types/api.ts';
import { parseSize } from '../util/size.ts';
import { parseUlimit } from '../util/ulimit.ts';
import {
  addPolicyOptions,
  healthRequest,
  restartRequest,
  type PolicyFlags,
} from './policy-flags.ts';
import { addMountOptions, applyMountFlags, type MountFlags } from './mount-flags.ts';
import { addNetworkOptions, networkRequest, type NetworkFlags } from './network-flags.ts';
import {
  addSecurityOptions,
  PRIVILEGED_WARNING,
  securityRequest,
  type SecurityFlags,
} from './security-flags.ts';
import { BerthError, errorMessage } from '../util/errors.ts';
import { formatItems, table, truncate } from './output.ts';
import { initialResize, pumpStream } from './streams.ts';
import { Demuxer, STDERR } from '../util/stream-frame.ts';
import { parseTemplate } from './template.ts';
import { addEventsCommand } from './events.ts';
import { addVolumeCommands } from './volumes.ts';
import { addNetworkCommands } from './networks.ts';
import { addImageCommands, createPulling, parsePullPolicy } from './images.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

export function exitCodeFor(e: unknown): number {
  if (e instanceof BerthError) {
    if (e.code === 'COMMAND_NOT_FOUND') return 127;
    if (e.code === 'COMMAND_NOT_EXECUTABLE') return 126;
  }
  return 125;
}

class ExitError extends Error {
  readonly exitCode: number;
  constructor(code: number) {
    super(`exit ${code}`);
    this.exitCode = code;
  }
}

function parseEnv(values: string[], files: string[]): string[] {
  const out: string[] = [];
  const add = (line: string, where: string) => {
    const t = line.trim();
    if (!t || t.startsWith('#')) return;
    const i = t.indexOf('=');
    if (i === 0)
      throw new BerthError('INVALID_ARGUMENT', `Invalid env: "${t}" has no name (${where})`, {
        field: 'env',
      });
    // Docker: a bare NAME takes the value from berth's own environment, if set.
    if (i < 0) {
      const v = process.env[t];
      if (v !== undefined) out.push(`${t}=${v}`);
    } else out.push(t);
  };
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (e) {
      throw new BerthError(
        'INVALID_ARGUMENT',
        `Invalid env-file: ${f}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
        { field: 'env-file' },
      );
    }
    text.split('\n').forEach((l) => add(l, f));
  }
  for (const v of values) add(v, '-e');
  return out;
}

function parseLabels(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf('=');
    if (i === 0)
      throw new BerthError('INVALID_ARGUMENT', `Invalid label: "${v}" has no key`, {
        field: 'label',
      });
    if (i < 0) out[v] = '';
    else out[v.slice(0, i)] = v.slice(i + 1);
  }
  return out;
}

interface CreateFlags extends LimitFlags, PolicyFlags, MountFlags, NetworkFlags, SecurityFlags {
  name?: string;
  pull?: string;
  platform?: string;
  env: string[];
  envFile: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  label: string[];
  interactive?: boolean;
  tty?: boolean;
  rm?: boolean;
  network?: string;
  stopSignal?: string;
  stopTimeout?: string;
  logOpt: string[];
  ulimit: string[];
  userns?: string;
}

function addCreateOptions(c: Command): Command {
  return addSecurityOptions(addNetworkOptions(addMountOptions(addPolicyOptions(c))))
    .option('--name <name>', 'assign a name to the container')
    .option('--pull <policy>', 'pull the image: missing (default), always, never')
    .option('--platform <os/arch[/variant]>', 'the platform to pull when pulling')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect, [])
    .option('--env-file <file>', 'read environment variables from a file', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user[:group]>', 'user to run as')
    .option('--entrypoint <cmd>', 'override the image entrypoint')
    .option('-h, --hostname <name>', 'container hostname')
    .option('-l, --label <KEY=VALUE>', 'set a label', collect, [])
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('--rm', 'remove the container when it exits')
    .option('--network <mode>', 'bridge (default), host, none, container:NAME, or a network name')
    .option('--stop-signal <signal>', 'signal to stop the container')
    .option('--stop-timeout <seconds>', 'seconds to wait before SIGKILL on stop')
    .option('--log-opt <key=value>', 'log option: max-size, max-file, compress', collect, [])
    .option('-m, --memory <bytes>', 'memory limit (like 512m)')
    .option('--memory-reservation <bytes>', 'memory soft limit')
    .option('--memory-swap <bytes>', 'memory plus swap limit, or -1 for unlimited swap')
    .option('--cpus <number>', 'CPUs, like 0.5')
    .option('-c, --cpu-shares <weight>', 'CPU shares (relative weight)')
    .option('--cpuset-cpus <list>', 'CPUs to run on, like 0-1')
    .option('--pids-limit <n>', 'process limit (-1 for unlimited)')
    .option('--blkio-weight <weight>', 'block I/O weight, 10 to 1000')
    .option('--ulimit <name=soft[:hard]>', 'an rlimit, like nofile=1024:2048', collect, [])
    .option('--userns <mode>', 'user namespace: auto (root is an unprivileged host uid) or host')
    .helpOption('--help', 'display help for command');
}

interface LimitFlags {
  memory?: string;
  memoryReservation?: string;
  memorySwap?: string;
  cpus?: string;
  cpuShares?: string;
  cpusetCpus?: string;
  pidsLimit?: string;
  blkioWeight?: string;
  ulimit?: string[];
}

function num(v: string, field: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n))
    throw new BerthError('INVALID_ARGUMENT', `Invalid ${field}: "${v}" is not a number`, { field });
  return n;
}

function limitsRequest(f: LimitFlags): ResourcesRequest | undefined {
  const r: ResourcesRequest = {};
  if (f.memory !== undefined) r.memory = parseSize(f.memory, 'memory');
  if (f.memoryReservation !== undefined)
    r.memoryReservation = parseSize(f.memoryReservation, 'memory-reservation');
  if (f.memorySwap !== undefined)
    r.memorySwap = f.memorySwap === '-1' ? -1 : parseSize(f.memorySwap, 'memory-swap');
  if (f.cpus !== undefined) r.cpus = num(f.cpus, 'cpus');
  if (f.cpuShares !== undefined) r.cpuShares = num(f.cpuShares, 'cpu-shares');
  if (f.cpusetCpus !== undefined) r.cpusetCpus = f.cpusetCpus;
  if (f.pidsLimit !== undefined) r.pidsLimit = num(f.pidsLimit, 'pids-limit');
  if (f.blkioWeight !== undefined) r.blkioWeight = num(f.blkioWeight, 'blkio-weight');
  if (f.ulimit && f.ulimit.length > 0) r.ulimits = f.ulimit.map(parseUlimit);
  return Object.keys(r).length > 0 ? r : undefined;
}

function createRequest(image: string, cmd: string[], f: CreateFlags): CreateContainerRequest {
  const req: CreateContainerRequest = {
    image,
    env: parseEnv(f.env, f.envFile),
    labels: parseLabels(f.label),
  };
  const limits = limitsRequest(f);
  if (limits) req.resources = limits;
  const restart = restartRequest(f);
  if (restart) req.restartPolicy = restart;
  const health = healthRequest(f);
  if (health) req.healthcheck = health;
  applyMountFlags(req, f);
  Object.assign(req, networkRequest(f));
  Object.assign(req, securityRequest(f));
  // Loud on purpose: a privileged container is root on the host.
  if (f.privileged) process.stderr.write(PRIVILEGED_WARNING);
  if (cmd.length > 0) req.cmd = cmd;
  if (f.name !== undefined) req.name = f.name;
  if (f.workdir !== undefined) req.workdir = f.workdir;
  if (f.user !== undefined) req.user = f.user;
  if (f.entrypoint !== undefined) req.entrypoint = f.entrypoint === '' ? [] : [f.entrypoint];
  if (f.hostname !== undefined) req.hostname = f.hostname;
  if (f.tty) {
    req.tty = true;
    const size = terminalSize();
    if (size) req.consoleSize = size;
  }
  if (f.interactive) req.openStdin = true;
  if (f.rm) req.autoRemove = true;
  if (f.network !== undefined) req.networkMode = f.network;
  if (f.userns !== undefined) req.userns = f.userns;
  if (f.stopSignal !== undefined) req.stopSignal = f.stopSignal;
  if (f.logOpt.length > 0) {
    const opts: Record<string, string> = {};
    for (const kv of f.logOpt) {
      const j = kv.indexOf('=');
      if (j <= 0)
        throw new BerthError('INVALID_ARGUMENT', `Invalid log-opt: "${kv}" is not KEY=VALUE`, {
          field: 'log-opt',
        });
      opts[kv.slice(0, j)] = kv.slice(j + 1);
    }
    req.logOpts = opts;
  }
  if (f.stopTimeout !== undefined) {
    const n = Number(f.stopTimeout);
    if (!Number.isInteger(n) || n < 0)
      throw new BerthError(
        'INVALID_ARGUMENT',
        `Invalid stop-timeout: "${f.stopTimeout}" is not a whole number of seconds`,
        { field: 'stop-timeout' },
      );
    req.stopTimeout = n;
  }
  return req;
}

function terminalSize(): [number, number] | undefined {
  return process.stdout.isTTY && process.stdout.rows > 0
    ? [process.stdout.rows, process.stdout.columns]
    : undefined;
}

function psRow(c: ContainerSummary): Record<string, unknown> {
  return {
    ID: c.Id.slice(0, 12),
    Image: c.Image,
    Command: `"${truncate(c.Command, 20)}"`,
    CreatedAt: new Date(c.Created * 1000).toISOString(),
    RunningFor: c.Status,
    Status: c.Status,
    State: c.State,
    Names: c.Names.map((n) => n.replace(/^\//, '')).join(','),
    Labels: Object.entries(c.Labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    Ports: c.Ports.map((p) => `${p.IP}:${p.PublicPort}->${p.PrivatePort}/${p.Type}`).join(', '),
    Pid: c.Pid,
    Size:
      c.SizeRw !== undefined
        ? `${humanSize(c.SizeRw)} (virtual ${humanSize(c.SizeRootFs ?? 0)})`
        : '',
  };
}

function ago(sec: number): string {
  const s = Math.max(0, Math.floor(Date.now() / 1000 - sec));
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.floor(s / 60)} minutes ago`;
  if (s < 172800) return `${Math.floor(s / 3600)} hours ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

export function buildProgram(
  out: (s: string) => void = (s) => void process.stdout.write(s),
): Command {
  const program = new Command('berth')
    .description('berth: a production container host agent')
    .option(
      '-H, --host <url>',
      'berthd: unix:///path/to.sock or tcp://HOST:PORT (env BERTH_HOST)',
      process.env['BERTH_HOST'] || DEFAULT_HOST,
    )
    .option('--tlsverify', 'use mutual TLS and verify berthd (env BERTH_TLS_VERIFY)')
    .option('--tlscacert <file>', 'trust certificates signed by this CA (default CERT_PATH/ca.pem)')
    .option('--tlscert <file>', 'client certificate (default CERT_PATH/cert.pem)')
    .option('--tlskey <file>', "client certificate's key (default CERT_PATH/key.pem)")
    .enablePositionalOptions()
    .showHelpAfterError(false)
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    // Before any subcommand exists, so every one inherits it: usage errors exit 125.
    .exitOverride();

  // CERT_PATH: BERTH_CERT_PATH, else ~/.berth (Docker's DOCKER_CERT_PATH and ~/.docker).
  const client = () => {
    const o = program.opts() as TlsFlags & { host: string };
    return new BerthClient(o.host, { tls: tlsFilesFrom(o) });
  };

  // ---- run / create / start ----

  addCreateOptions(program.command('run'))
    .description('Create and start a container')
    .option('-d, --detach', 'run in the background and print the container id')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions()
    .action(async (image: string, cmd: string[], f: CreateFlags & { detach?: boolean }) => {
      const api = client();
      const req = createRequest(image, cmd, f);
      const { Id: id } = await createPulling(api, image, parsePullPolicy(f.pull), f.platform, () =>
        api.createContainer(req),
      );
      if (f.detach) {
        await api.startContainer(id);
        out(`${id}\n`);
        return;
      }
      const tty = !!f.tty;
      const stdin = !!f.interactive;
      const sock = await api.attachContainer(id, stdin);
      const exited = await api.waitContainer(id, f.rm ? 'removed' : 'next-exit');
      const pumped = pumpStream(sock, {
        tty,
        stdin,
        resize: (h, w) => api.resizeContainer(id, h, w),
      });
      try {
        await api.startContainer(id);
      } catch (e) {
        sock.destroy();
        throw e;
      }
      initialResize({ tty, stdin, resize: (h, w) => api.resizeContainer(id, h, w) });
      await pumped;
      const r = await exited.result;
      throw new ExitError(r.StatusCode);
    });

  addCreateOptions(program.command('create'))
    .description('Create a container without starting it')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions()
    .action(async (image: string, cmd: string[], f: CreateFlags) => {
      const api = client();
      const req = createRequest(image, cmd, f);
      const { Id } = await createPulling(api, image, parsePullPolicy(f.pull), f.platform, () =>
        api.createContainer(req),
      );
      out(`${Id}\n`);
    });

  program
    .command('start')
    .description('Start one or more containers')
    .option('-a, --attach', 'attach to the output and return the exit code')
    .option('-i, --interactive', 'attach stdin')
    .argument('<container...>')
    .action(async (names: string[], f: { attach?: boolean; interactive?: boolean }) => {
      const api = client();
      if (f.attach || f.interactive) {
        const name = names[0] as string;
        const info = (await api.inspectContainer(name)) as { Id: string; Config: { Tty: boolean } };
        const tty = info.Config.Tty;
        const sock = await api.attachContainer(info.Id, !!f.interactive);
        const exited = await api.waitContainer(info.Id, 'next-exit');
        const pumped = pumpStream(sock, {
          tty,
          stdin: !!f.interactive,
          resize: (h, w) => api.resizeContainer(info.Id, h, w),
        });
        await api.startContainer(info.Id);
        await pumped;
        throw new ExitError((await exited.result).StatusCode);
      }
      await forEach(names, async (n) => {
        await api.startContainer(n);
        out(`${n}\n`);
      });
    });

  program
    .command('attach')
    .description("Attach to a running container's output (and its input, if it keeps stdin open)")
    .option('--no-stdin', 'only watch the output')
    .argument('<container>')
    .action(async (name: string, f: { stdin: boolean }) => {
      const api = client();
      const info = (await api.inspectContainer(name)) as {
        Id: string;
        Config: { Tty: boolean; OpenStdin: boolean };
      };
      const stdin = f.stdin && info.Config.OpenStdin;
      const sock = await api.attachContainer(info.Id, stdin);
      const opts = {
        tty: info.Config.Tty,
        stdin,
        resize: (h: number, w: number) => api.resizeContainer(info.Id, h, w),
      };
      const exited = await api.waitContainer(info.Id, 'not-running');
      initialResize(opts);
      await pumpStream(sock, opts);
      // Docker: attach ends with the container's exit code when it stopped, else 0.
      const r = await Promise.race([
        exited.result,
        new Promise<undefined>((res) => setTimeout(() => res(undefined), 200)),
      ]);
      throw new ExitError(r?.StatusCode ?? 0);
    });

  // ---- stop / kill / restart / rm / wait ----

  program
    .command('stop')
    .description('Stop containers: the stop signal, then SIGKILL after the timeout')
    .option('-t, --time <seconds>', 'seconds to wait before killing')
    .option('-s, --signal <signal>', 'signal to send (ignored: the container stop signal is used)')
    .argument('<container...>')
    .action(async (names: string[], f: { time?: string }) => {
      const t = f.time === undefined ? undefined : intArg(f.time, 'time');
      await forEach(names, async (n) => {
        await client().stopContainer(n, t);
        out(`${n}\n`);
      });
    });

  program
    .command('kill')
    .description('Send a signal to containers (default SIGKILL)')
    .option('-s, --signal <signal>', 'signal to send', 'KILL')
    .argument('<container...>')
    .action(async (names: string[], f: { signal: string }) => {
      await forEach(names, async (n) => {
        await client().killContainer(n, f.signal);
        out(`${n}\n`);
      });
    });

  program
    .command('rename')
    .description('Rename a container')
    .argument('<container>')
    .argument('<new-name>')
    .action(async (name: string, newName: string) => {
      await client().renameContainer(name, newName);
    });

  program
    .command('restart')
    .description('Restart containers')
    .option('-t, --time <seconds>', 'seconds to wait before killing')
    .argument('<container...>')
    .action(async (names: string[], f: { time?: string }) => {
      const t = f.time === undefined ? undefined : intArg(f.time, 'time');
      await forEach(names, async (n) => {
        await client().restartContainer(n, t);
        out(`${n}\n`);
      });
    });

  program
    .command('rm')
    .description('Remove containers')
    .option('-f, --force', 'kill a running container first')
    .option('-v, --volumes', 'accepted for compatibility')
    .argument('<container...>')
    .action(async (names: string[], f: { force?: boolean }) => {
      await forEach(names, async (n) => {
        await client().removeContainer(n, !!f.force);
        out(`${n}\n`);
      });
    });

  program
    .command('wait')
    .description('Wait for containers to stop and print their exit codes')
    .argument('<container...>')
    .action(async (names: string[]) => {
      await forEach(names, async (n) => {
        const r = await (await client().waitContainer(n, 'not-running')).result;
        out(`${r.StatusCode}\n`);
      });
    });

  // ---- exec ----

  program
    .command('exec')
    .description('Run a command in a running container')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a pseudo-terminal')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect, [])
    .option('-w, --workdir <dir>', 'working directory')
    .option('-u, --user <user[:group]>', 'user to run as')
    .argument('<container>')
    .argument('<command...>')
    .passThroughOptions()
    .action(
      async (
        name: string,
        cmd: string[],
        f: { interactive?: boolean; tty?: boolean; env: string[]; workdir?: string; user?: string },
      ) => {
        const api = client();
        const body: Parameters<BerthClient['createExec']>[1] = {
          cmd,
          env: parseEnv(f.env, []),
          tty: !!f.tty,
          stdin: !!f.interactive,
        };
        if (f.workdir !== undefined) body.workdir = f.workdir;
        if (f.user !== undefined) body.user = f.user;
        const size = f.tty ? terminalSize() : undefined;
        if (size) body.consoleSize = size;
        const { Id } = await api.createExec(name, body);
        const sock = await api.startExec(Id);
        const opts = {
          tty: !!f.tty,
          stdin: !!f.interactive,
          resize: (h: number, w: number) => api.resizeExec(Id, h, w),
        };
        const pumped = pumpStream(sock, opts);
        initialResize(opts);
        await pumped;
        const r = await api.inspectExec(Id);
        throw new ExitError(r.ExitCode ?? 126);
      },
    );

  // ---- inspect / ps / top ----

  program
    .command('inspect')
    .description('Show low-level information on containers or images')
    .option('-f, --format <template>', "Go template, as docker's")
    .option('-s, --size', 'add SizeRw and SizeRootFs')
    .option('--type <type>', 'container or image (default: a container, else an image)')
    .argument('<name...>')
    .action(async (names: string[], f: { format?: string; size?: boolean; type?: string }) => {
      if (f.type !== undefined && f.type !== 'container' && f.type !== 'image') {
        throw new BerthError(
          'INVALID_ARGUMENT',
          `Invalid type: "${f.type}" is not container or image`,
          {
            field: 'type',
          },
        );
      }
      const items: unknown[] = [];
      let failed: unknown;
      for (const n of names) {
        try {
          // As docker: a name is tried as a container first, then as an image.
          if (f.type === 'image') items.push(await client().inspectImage(n));
          else {
            try {
              items.push(await client().inspectContainer(n, !!f.size));
            } catch (e) {
              if (
                f.type === 'container' ||
                !(e instanceof BerthError) ||
                e.code !== 'CONTAINER_NOT_FOUND'
              )
                throw e;
              try {
                items.push(await client().inspectImage(n));
              } catch {
                throw new BerthError('CONTAINER_NOT_FOUND', `No such object: ${n}`);
              }
            }
          }
        } catch (e) {
          failed = e;
          process.stderr.write(`Error: ${errorMessage(e)}\n`);
        }
      }
      if (f.format) {
        const t = parseTemplate(f.format);
        for (const i of items) out(t.render(i) + '\n');
      } else {
        out(JSON.stringify(items, null, 4) + '\n');
      }
      if (failed) throw new ExitError(1);
    });

  program
    .command('ps')
    .description('List containers')
    .option('-a, --all', 'show all containers (default shows running)')
    .option('-q, --quiet', 'only ids')
    .option('--no-trunc', 'do not truncate output')
    .option('-s, --size', 'show what each container has written (writable root and tmpfs)')
    .option(
      '-f, --filter <KEY=VALUE>',
      'filter (id, name, status, label, exited, ancestor)',
      collect,
      [],
    )
    .option('--format <format>', 'table, json, or a Go template')
    .action(
      async (f: {
        all?: boolean;
        quiet?: boolean;
        trunc: boolean;
        size?: boolean;
        filter: string[];
        format?: string;
      }) => {
        const filters: Record<string, string[]> = {};
        for (const a of f.filter) {
          const i = a.indexOf('=');
          if (i <= 0)
            throw new BerthError('INVALID_ARGUMENT', `Invalid filter: "${a}" is not KEY=VALUE`, {
              field: 'filter',
            });
          (filters[a.slice(0, i)] ??= []).push(a.slice(i + 1));
        }
        const list = await client().listContainers(!!f.all, filters, !!f.size);
        if (f.quiet) {
          out(list.map((c) => (f.trunc ? c.Id.slice(0, 12) : c.Id) + '\n').join(''));
          return;
        }
        const rows = list.map(psRow);
        out(
          formatItems(rows, f.format ?? '', () =>
            table([
              [
                'CONTAINER ID',
                'IMAGE',
                'COMMAND',
                'CREATED',
                'STATUS',
                'PORTS',
                'NAMES',
                ...(f.size ? ['SIZE'] : []),
              ],
              ...list.map((c, i) => [
                f.trunc ? c.Id.slice(0, 12) : c.Id,
                c.Image,
                f.trunc ? String(rows[i]?.['Command']) : `"${c.Command}"`,
                ago(c.Created),
                c.Status,
                String(rows[i]?.['Ports']),
                String(rows[i]?.['Names']),
                ...(f.size ? [String(rows[i]?.['Size'])] : []),
              ]),
            ]),
          ),
        );
      },
    );

  program
    .command('update')
    .description('Change the limits of containers, running ones in place')
    .option('-m, --memory <bytes>', 'memory limit (like 512m)')
    .option('--memory-reservation <bytes>', 'memory soft limit')
    .option('--memory-swap <bytes>', 'memory plus swap limit, or -1 for unlimited swap')
    .option('--cpus <number>', 'CPUs, like 0.5')
    .option('-c, --cpu-shares <weight>', 'CPU shares (relative weight)')
    .option('--cpuset-cpus <list>', 'CPUs to run on, like 0-1')
    .option('--pids-limit <n>', 'process limit (-1 for unlimited)')
    .option('--blkio-weight <weight>', 'block I/O weight, 10 to 1000')
    .argument('<container...>')
    .action(async (names: string[], f: LimitFlags) => {
      const body = limitsRequest(f);
      if (!body)
        throw new BerthError(
          'INVALID_ARGUMENT',
          'Invalid update: name at least one limit to change',
          { field: 'update' },
        );
      await forEach(names, async (n) => {
        await client().call('POST', `/v1/containers/${encodeURIComponent(n)}/update`, { body });
        out(`${n}\n`);
      });
    });

  program
    .command('stats')
    .description('Live resource use of running containers (CPU, memory, network, block I/O, pids)')
    .option('--no-stream', 'print the latest sample once and exit')
    .option('--format <format>', 'table, json, or a Go template')
    .argument('[container...]')
    .action(async (names: string[], f: { stream: boolean; format?: string }) => {
      const api = client();
      const fetchAll = async (): Promise<StatsView[]> => {
        if (names.length === 0) return (await api.call<StatsView[]>('GET', '/v1/stats')).data;
        return Promise.all(
          names.map(
            async (n) =>
              (await api.call<StatsView>('GET', `/v1/containers/${encodeURIComponent(n)}/stats`))
                .data,
          ),
        );
      };
      const render = (list: StatsView[]) =>
        formatItems(list.map(statsRow), f.format ?? '', () =>
          table([
            [
              'CONTAINER ID',
              'NAME',
              'CPU %',
              'MEM USAGE / LIMIT',
              'MEM %',
              'NET I/O',
              'BLOCK I/O',
              'PIDS',
            ],
            ...list.map((s) => {
              const r = statsRow(s);
              return [r.ID, r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs];
            }),
          ]),
        );
      if (!f.stream) {
        out(render(await fetchAll()));
        return;
      }
      // A top-like view: the sampler in berthd refreshes every second; we redraw with it.
      for (;;) {
        const text = render(await fetchAll());
        out(process.stdout.isTTY ? `\x1b[2J\x1b[H${text}` : text);
        await new Promise((r) => setTimeout(r, 1000));
      }
    });

  program
    .command('top')
    .description('Show the processes of a container')
    .argument('<container>')
    .action(async (name: string) => {
      const r = await client().top(name);
      out(table([r.Titles, ...r.Processes]));
    });

  program
    .command('version')
    .description('Show the client and daemon versions')
    .action(async () => {
      const v = await client().version();
      out(
        `Client: berth 0.1.0 (node ${process.version})\nServer: berthd ${String(v['Version'])} (node ${String(v['NodeVersion'])}, kernel ${String(v['KernelVersion'])})\n`,
      );
    });

  addEventsCommand(program, client, out);
  addVolumeCommands(program, client, out, (code) => new ExitError(code));
  addNetworkCommands(program, client, out, (code) => new ExitError(code));
  addImageCommands(program, client, out, (code) => new ExitError(code));

  program
    .command('logs')
    .description("Show a container's output, across its rotated files")
    .option('-f, --follow', 'keep printing new output until the container stops')
    .option('-n, --tail <lines>', 'number of lines from the end, or all', 'all')
    .option('--since <time>', 'from this time (RFC 3339, Unix seconds, or a duration like 10m)')
    .option('--until <time>', 'up to this time')
    .option('-t, --timestamps', 'prefix each line with its time')
    .option('--stream <stream>', 'only stdout or stderr')
    .argument('<container>')
    .action(
      async (
        name: string,
        f: {
          follow?: boolean;
          tail: string;
          since?: string;
          until?: string;
          timestamps?: boolean;
          stream?: string;
        },
      ) => {
        if (f.tail !== 'all' && !/^\d+$/.test(f.tail))
          throw new BerthError(
            'INVALID_ARGUMENT',
            `Invalid tail: "${f.tail}" is not a number or all`,
            { field: 'tail' },
          );
        if (f.stream !== undefined && f.stream !== 'stdout' && f.stream !== 'stderr') {
          throw new BerthError(
            'INVALID_ARGUMENT',
            `Invalid stream: "${f.stream}" (stdout or stderr)`,
            { field: 'stream' },
          );
        }
        const res = await client().stream(
          'GET',
          `/v1/containers/${encodeURIComponent(name)}/logs`,
          {
            follow: !!f.follow,
            tail: f.tail,
            since: f.since,
            until: f.until,
            timestamps: !!f.timestamps,
            stdout: f.stream === undefined || f.stream === 'stdout',
            stderr: f.stream === undefined || f.stream === 'stderr',
          },
        );
        await copyLogStream(res, (res.headers['content-type'] ?? '').includes('multiplexed'));
      },
    );

  program
    .command('journal')
    .description('One time-ordered view of the logs of all containers, removed ones included')
    .option('-f, --follow', 'keep printing new lines')
    .option('--container <name>', 'only this container (repeatable)', collect, [])
    .option('--label <key[=value]>', 'only containers with this label (repeatable)', collect, [])
    .option('--stream <stream>', 'only stdout or stderr')
    .option('--since <time>', 'from this time')
    .option('--until <time>', 'up to this time')
    .option('--grep <regexp>', 'only lines matching')
    .option('--after-cursor <cursor>', 'resume after this cursor')
    .option('--format <format>', 'json (with the cursor of each line), or a Go template')
    .action(
      async (f: {
        follow?: boolean;
        container: string[];
        label: string[];
        stream?: string;
        since?: string;
        until?: string;
        grep?: string;
        afterCursor?: string;
        format?: string;
      }) => {
        const q = new URLSearchParams();
        for (const c of f.container) q.append('container', c);
        for (const l of f.label) q.append('label', l);
        if (f.stream) q.set('stream', f.stream);
        if (f.since) q.set('since', f.since);
        if (f.until) q.set('until', f.until);
        if (f.grep) q.set('grep', f.grep);
        if (f.afterCursor) q.set('after', f.afterCursor);
        if (f.follow) q.set('follow', '1');
        const tpl = f.format && f.format !== 'json' ? parseTemplate(f.format) : undefined;
        const res = await client().stream('GET', `/v1/journal?${q.toString()}`);
        let buf = '';
        for await (const chunk of res) {
          buf += (chunk as Buffer).toString();
          let text = '';
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (f.format === 'json') text += line + '\n';
            else {
              const e = JSON.parse(line) as {
                time: string;
                name: string;
                stream: string;
                message: string;
              };
              text += tpl
                ? tpl.render(e) + '\n'
                : `${e.time} ${e.name}[${e.stream}]: ${e.message}\n`;
            }
          }
          if (text && !process.stdout.write(text))
            await new Promise((r) => process.stdout.once('drain', r));
        }
      },
    );

  // Declared here for --help; src/main.ts runs it without loading the client code path.
  program
    .command('daemon')
    .description('Run berthd, the container host agent (see berth daemon --help)')
    .allowUnknownOption()
    .helpOption(false);

  program.addOption(new Option('--debug', 'print stack traces on errors').hideHelp());
  return program;
}

// Copies a log stream to stdout and stderr with backpressure, demultiplexing docker's
// framing when the container has no terminal.
async function copyLogStream(res: AsyncIterable<unknown>, framed: boolean): Promise<void> {
  const write = (w: NodeJS.WriteStream, b: Buffer) =>
    w.write(b) ? undefined : new Promise((r) => w.once('drain', r));
  let pending: (Promise<unknown> | undefined)[] = [];
  const d = new Demuxer((stream, data) =>
    pending.push(write(stream === STDERR ? process.stderr : process.stdout, data)),
  );
  for await (const chunk of res) {
    if (framed) d.push(chunk as Buffer);
    else pending.push(write(process.stdout, chunk as Buffer));
    await Promise.all(pending);
    pending = [];
  }
}

interface StatsView {
  berth: {
    id: string;
    name: string;
    cpuPercent: number;
    memoryUsage: number;
    memoryLimit: number;
    memoryPercent: number;
    netRxBytes: number;
    netTxBytes: number;
    blkReadBytes: number;
    blkWriteBytes: number;
    pids: number;
    restarts: number;
    oomKills: number;
  };
}

// docker stats' columns and template fields.
function statsRow(v: StatsView) {
  const s = v.berth;
  const iec = (n: number) =>
    n < 1024
      ? `${n}B`
      : n < 1024 ** 2
        ? `${(n / 1024).toFixed(2)}KiB`
        : n < 1024 ** 3
          ? `${(n / 1024 ** 2).toFixed(2)}MiB`
          : `${(n / 1024 ** 3).toFixed(2)}GiB`;
  return {
    ID: s.id.slice(0, 12),
    Container: s.id.slice(0, 12),
    Name: s.name,
    CPUPerc: `${s.cpuPercent.toFixed(2)}%`,
    MemUsage: `${iec(s.memoryUsage)} / ${iec(s.memoryLimit)}`,
    MemPerc: `${s.memoryPercent.toFixed(2)}%`,
    NetIO: `${humanSize(s.netRxBytes)} / ${humanSize(s.netTxBytes)}`,
    BlockIO: `${humanSize(s.blkReadBytes)} / ${humanSize(s.blkWriteBytes)}`,
    PIDs: String(s.pids),
    Restarts: s.restarts,
    OOMKills: s.oomKills,
  };
}

function intArg(v: string, field: string): number {
  const n = Number(v);
  if (!Number.isInteger(n))
    throw new BerthError('INVALID_ARGUMENT', `Invalid ${field}: "${v}" is not a whole number`, {
      field,
    });
  return n;
}

function humanSize(n: number): string {
  if (n < 1000) return `${n}B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)}kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)}MB`;
  return `${(n / 1e9).toFixed(2)}GB`;
}

// Docker's multi-container verbs: go on past a failure, report each, fail at the end.
async function forEach(names: string[], fn: (n: string) => Promise<void>): Promise<void> {
  let failed: unknown;
  for (const n of names) {
    try {
      await fn(n);
    } catch (e) {
      failed = e;
      if (names.length > 1) process.stderr.write(`Error: ${errorMessage(e)}\n`);
    }
  }
  if (failed) {
    if (names.length > 1) throw new ExitError(1);
    throw failed;
  }
}

export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof ExitError) return e.exitCode;
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return 0;
      return 125;
    }
    process.stderr.write(`Error: ${errorMessage(e)}\n`);
    if (argv.includes('--debug') && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return exitCodeFor(e);
  }
}
