// A small CNI runtime: what libcni does for a network configuration list, for the plugin
// binaries of Debian's containernetworking-plugins (spec versions up to 1.0.0).
//
// ADD runs the plugins in order, each given the previous one's result; DEL runs them in
// reverse with the last result ADD gave and the same runtimeConfig. Plugins need both at
// DEL: portmap deletes nothing without its portMappings, and the firewall plugin finds its
// rules only through the addresses in prevResult. So the cache file (one per container
// and interface) is written before the first plugin runs, with the configuration and the
// runtimeConfig, and again after every plugin that answers, with its result: wherever
// berthd dies during an ADD, a DEL from the cache undoes what was done.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, errorMessage } from '../util/errors.ts';
import { execFile, type ExecOptions, type ExecResult } from '../util/exec.ts';

export const CNI_VERSION = '1.0.0';
export const DEFAULT_PLUGIN_DIRS: readonly string[] = ['/usr/lib/cni', '/opt/cni/bin'];

export interface CniPlugin {
  readonly type: string;
  // Keys of runtimeConfig the plugin takes (portMappings for portmap).
  readonly capabilities?: Readonly<Record<string, boolean>>;
  readonly [key: string]: unknown;
}

export interface CniConfList {
  readonly cniVersion: string;
  readonly name: string;
  readonly plugins: readonly CniPlugin[];
}

export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  readonly sandbox?: string;
}

export interface CniIPConfig {
  // CIDR: the address and its prefix length.
  readonly address: string;
  readonly gateway?: string;
  // Index into interfaces.
  readonly interface?: number;
}

export interface CniResult {
  readonly cniVersion: string;
  readonly interfaces?: readonly CniInterface[];
  readonly ips?: readonly CniIPConfig[];
  readonly routes?: readonly { dst: string; gw?: string }[];
  readonly dns?: Readonly<Record<string, unknown>>;
}

export interface CniRuntimeConf {
  readonly containerId: string;
  readonly netns: string;
  readonly ifname: string;
  // By capability name: what plugins that declare it get as runtimeConfig.<name>.
  readonly capabilityArgs?: Readonly<Record<string, unknown>>;
}

export interface CniCache {
  readonly kind: 'berthCniCacheV1';
  readonly containerId: string;
  readonly ifname: string;
  readonly netns: string;
  readonly config: CniConfList;
  readonly capabilityArgs: Readonly<Record<string, unknown>>;
  // The last result ADD got; absent until the first plugin answered.
  readonly result?: CniResult;
}

export type Exec = (argv: readonly string[], opts: ExecOptions) => Promise<ExecResult>;

export interface CniOptions {
  readonly pluginDirs?: readonly string[];
  // Results of ADD, for DEL. Best on the run root: it goes with a reboot, as the
  // namespaces and leases it describes do.
  readonly cacheDir: string;
  readonly exec?: Exec;
  readonly timeoutMs?: number;
}

// The spec's error codes below 100; plugins use 999 for the rest.
const ERROR_NAMES: Record<number, string> = {
  1: 'incompatible CNI version',
  2: 'unsupported field in network configuration',
  3: 'container unknown or does not exist',
  4: 'invalid environment variables',
  5: 'I/O failure',
  6: 'failed to decode content',
  7: 'invalid network config',
  11: 'try again later',
};

// The configuration one plugin of the list gets on stdin (the spec's section 4).
export function pluginConfig(
  list: CniConfList,
  plugin: CniPlugin,
  capabilityArgs: Readonly<Record<string, unknown>>,
  prevResult: CniResult | undefined,
): Record<string, unknown> {
  const conf: Record<string, unknown> = {
    ...plugin,
    cniVersion: list.cniVersion,
    name: list.name,
  };
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(plugin.capabilities ?? {}))
    if (on && capabilityArgs[cap] !== undefined) runtimeConfig[cap] = capabilityArgs[cap];
  if (Object.keys(runtimeConfig).length > 0) conf['runtimeConfig'] = runtimeConfig;
  if (prevResult !== undefined) conf['prevResult'] = prevResult;
  return conf;
}

// A plugin's answer: its result on success; on failure the spec's error object, turned
// into one BerthError that carries the plugin's own message.
export function parsePluginOutput(
  plugin: string,
  command: string,
  r: ExecResult,
): CniResult | undefined {
  const out = r.stdout.trim();
  let parsed: unknown;
  try {
    parsed = out === '' ? undefined : JSON.parse(out);
  } catch {
    parsed = undefined;
  }
  if (r.code === 0) {
    if (command !== 'ADD') return undefined;
    if (parsed === undefined || typeof parsed !== 'object' || parsed === null)
      throw new BerthError(
        'RUNTIME_FAILED',
        `CNI plugin ${plugin} ${command} gave no result: ${out.slice(0, 200) || '(empty)'}`,
        { plugin, command },
      );
    return parsed as CniResult;
  }
  const e = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as {
    code?: unknown;
    msg?: unknown;
    details?: unknown;
  };
  const code = typeof e.code === 'number' ? e.code : undefined;
  const msg = typeof e.msg === 'string' ? e.msg : '';
  const details = typeof e.details === 'string' ? e.details : '';
  const text =
    [msg, details].filter(Boolean).join(': ') ||
    r.stderr.trim().slice(-500) ||
    out.slice(0, 500) ||
    `exit ${r.code}`;
  const kind = code !== undefined && ERROR_NAMES[code] ? ` (${ERROR_NAMES[code]})` : '';
  return failed(plugin, command, `${text}${kind}`, { cniCode: code, exitCode: r.code });
}

function failed(
  plugin: string,
  command: string,
  text: string,
  extra: Record<string, unknown> = {},
): never {
  throw new BerthError('RUNTIME_FAILED', `CNI plugin ${plugin} ${command} failed: ${text}`, {
    plugin,
    command,
    ...extra,
  });
}

const cacheName = (containerId: string, ifname: string) => `${containerId}-${ifname}.json`;

export class Cni {
  private readonly dirs: readonly string[];
  private readonly cacheDir: string;
  private readonly exec: Exec;
  private readonly timeoutMs: number;

  constructor(opts: CniOptions) {
    this.dirs = opts.pluginDirs ?? DEFAULT_PLUGIN_DIRS;
    this.cacheDir = opts.cacheDir;
    this.exec = opts.exec ?? execFile;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  // The plugin binary, from the first directory that has it.
  findPlugin(type: string): string | undefined {
    if (!/^[A-Za-z0-9_.-]+$/.test(type)) return undefined;
    for (const d of this.dirs) if (existsSync(join(d, type))) return join(d, type);
    return undefined;
  }

  // Runs the list's ADD; with cache false (a netns' loopback), nothing is kept for DEL.
  async add(list: CniConfList, rt: CniRuntimeConf, cache = true): Promise<CniResult> {
    const capabilityArgs = rt.capabilityArgs ?? {};
    const base: CniCache = {
      kind: 'berthCniCacheV1',
      containerId: rt.containerId,
      ifname: rt.ifname,
      netns: rt.netns,
      config: list,
      capabilityArgs,
    };
    if (cache) await this.writeCache(base);
    let result: CniResult | undefined;
    for (const p of list.plugins) {
      result =
        (await this.invoke('ADD', p, pluginConfig(list, p, capabilityArgs, result), rt)) ?? result;
      if (cache && result !== undefined) await this.writeCache({ ...base, result });
    }
    if (result === undefined)
      throw new BerthError('RUNTIME_FAILED', `CNI network ${list.name} has no plugins`);
    return result;
  }

  // Runs CHECK over the list with the cached result; throws what the first plugin says.
  async check(rt: Pick<CniRuntimeConf, 'containerId' | 'ifname'>): Promise<void> {
    const c = await this.cached(rt.containerId, rt.ifname);
    if (!c?.result)
      throw new BerthError('RUNTIME_FAILED', `CNI CHECK: no ADD result for ${rt.containerId}`);
    for (const p of c.config.plugins)
      await this.invoke('CHECK', p, pluginConfig(c.config, p, c.capabilityArgs, c.result), {
        containerId: c.containerId,
        netns: c.netns,
        ifname: c.ifname,
      });
  }

  // Undoes an ADD: with the cache when there is one, else with the list and runtime
  // configuration given (nothing to do if neither). Every plugin is asked even when one
  // fails, so one stuck plugin does not keep the others' state; the first failure is
  // thrown after, and the cache is kept for another try. A DEL of what is gone (netns,
  // lease, rules) is no error: the plugins treat it so.
  async del(rt: CniRuntimeConf, fallback?: CniConfList): Promise<void> {
    const c = await this.cached(rt.containerId, rt.ifname);
    const list = c?.config ?? fallback;
    if (list === undefined) return;
    const capabilityArgs = c?.capabilityArgs ?? rt.capabilityArgs ?? {};
    const runtime = { containerId: rt.containerId, netns: c?.netns ?? rt.netns, ifname: rt.ifname };
    let first: unknown;
    for (const p of [...list.plugins].reverse()) {
      try {
        await this.invoke('DEL', p, pluginConfig(list, p, capabilityArgs, c?.result), runtime);
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
    await rm(join(this.cacheDir, cacheName(rt.containerId, rt.ifname)), { force: true });
  }

  async cached(containerId: string, ifname: string): Promise<CniCache | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.cacheDir, cacheName(containerId, ifname)), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const c = JSON.parse(text) as CniCache;
      return c.kind === 'berthCniCacheV1' ? c : undefined;
    } catch {
      // Writes are renames, so a torn file is not ours to trust.
      return undefined;
    }
  }

  // Container ids with a cache file for the interface.
  async cachedIds(ifname: string): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.cacheDir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const suffix = `-${ifname}.json`;
    return entries.filter((e) => e.endsWith(suffix)).map((e) => e.slice(0, -suffix.length));
  }

  private async writeCache(c: CniCache): Promise<void> {
    await mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
    const path = join(this.cacheDir, cacheName(c.containerId, c.ifname));
    const tmp = `${path}.tmp`;
    await writeFile(tmp, JSON.stringify(c), { mode: 0o600 });
    await rename(tmp, path);
  }

  private async invoke(
    command: 'ADD' | 'DEL' | 'CHECK',
    plugin: CniPlugin,
    conf: Record<string, unknown>,
    rt: Pick<CniRuntimeConf, 'containerId' | 'netns' | 'ifname'>,
  ): Promise<CniResult | undefined> {
    const bin = this.findPlugin(plugin.type);
    if (bin === undefined)
      failed(
        plugin.type,
        command,
        `no such plugin in ${this.dirs.join(', ')} (install containernetworking-plugins)`,
      );
    let r: ExecResult;
    try {
      r = await this.exec([bin], {
        input: JSON.stringify(conf),
        allowFailure: true,
        timeoutMs: this.timeoutMs,
        env: {
          // The plugins run iptables and ip by name.
          PATH:
            process.env['PATH'] ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
          CNI_COMMAND: command,
          CNI_CONTAINERID: rt.containerId,
          CNI_NETNS: rt.netns,
          CNI_IFNAME: rt.ifname,
          CNI_PATH: this.dirs.join(':'),
        },
      });
    } catch (e) {
      return failed(plugin.type, command, errorMessage(e));
    }
    return parsePluginOutput(plugin.type, command, r);
  }
}

export interface BridgeNetworkConf {
  readonly name: string;
  readonly bridge: string;
  readonly subnet: string;
  readonly gateway: string;
  // host-local's leases; the plugin adds the network's name.
  readonly ipamDataDir: string;
}

// berth's chain for a bridge network. The bridge is the gateway and masquerades what
// leaves the subnet; hairpin lets a container reach itself through a published port.
// portmap publishes ports, and with snat (its default, set to say so) it also sets
// route_localnet on the bridge and masquerades connections from 127.0.0.1, which is what
// makes a port published on 127.0.0.1 reachable from the host. The firewall plugin
// accepts the containers' traffic in FORWARD, whatever its policy.
// withPorts false leaves portmap out of the chain: a container without published ports
// then saves its ADD (~35 ms) and, since DEL runs the cached chain, its DEL (~100 ms).
export function bridgeConfList(n: BridgeNetworkConf, withPorts = true): CniConfList {
  return {
    cniVersion: CNI_VERSION,
    name: n.name,
    plugins: [
      {
        type: 'bridge',
        bridge: n.bridge,
        isGateway: true,
        // Masquerading is one rule per network (netns.ts masqueradeRule), not a chain per
        // container.
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: n.subnet, gateway: n.gateway }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: n.ipamDataDir,
        },
      },
      ...(withPorts ? [{ type: 'portmap', capabilities: { portMappings: true }, snat: true }] : []),
      { type: 'firewall', backend: 'iptables' },
    ],
  };
}

// Brings lo up in a fresh namespace: runc only does that in namespaces it makes itself.
export function loopbackConfList(): CniConfList {
  return { cniVersion: CNI_VERSION, name: 'lo', plugins: [{ type: 'loopback' }] };
}

export interface AttachmentAddress {
  readonly ip: string;
  readonly prefixLen: number;
  readonly gateway: string;
  readonly mac: string;
  // The host end of the veth, when the result names it.
  readonly hostVeth: string | undefined;
}

// The container's IPv4 address, gateway and MAC from a bridge chain's result: the address
// on the interface in the sandbox named ifname.
export function addressOf(r: CniResult, ifname: string): AttachmentAddress {
  const ifaces = r.interfaces ?? [];
  const idx = ifaces.findIndex((i) => i.name === ifname && i.sandbox !== undefined);
  const ipc = (r.ips ?? []).find(
    (i) => i.address.includes('.') && (idx < 0 || i.interface === undefined || i.interface === idx),
  );
  if (ipc === undefined)
    throw new BerthError('RUNTIME_FAILED', `CNI result has no IPv4 address for ${ifname}`, {
      result: r,
    });
  const [ip = '', len = ''] = ipc.address.split('/');
  const bridgeSide = ifaces.filter((i) => i.sandbox === undefined);
  return {
    ip,
    prefixLen: Number(len),
    gateway: ipc.gateway ?? '',
    mac: idx >= 0 ? (ifaces[idx]?.mac ?? '') : '',
    // The bridge plugin lists the bridge first, then the host veth.
    hostVeth: bridgeSide.length >= 2 ? bridgeSide[bridgeSide.length - 1]?.name : undefined,
  };
}
