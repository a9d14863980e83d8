// docker run's --privileged, --cap-add, --cap-drop, --security-opt, --device and --sysctl,
// turned into the API's create fields. A seccomp profile file is read here and sent as
// JSON, as docker's client does; berthd checks everything else.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CreateContainerRequest, DeviceRequest } from '../types/api.ts';
import { BerthError, errorMessage } from '../util/errors.ts';

export interface SecurityFlags {
  privileged?: boolean;
  capAdd: string[];
  capDrop: string[];
  securityOpt: string[];
  device: string[];
  sysctl: string[];
}

export const PRIVILEGED_WARNING =
  'WARNING: --privileged: the container gets every capability, every host device, no seccomp filter and a writable /sys; it can take over the host\n';

const collect = (v: string, prev: string[]) => [...prev, v];

export function addSecurityOptions(c: Command): Command {
  return c
    .option(
      '--privileged',
      'every capability, every host device, no seccomp, writable /sys (full host access)',
    )
    .option('--cap-add <cap>', 'add a capability (like NET_ADMIN, or ALL)', collect, [])
    .option('--cap-drop <cap>', 'drop a capability (like NET_RAW, or ALL)', collect, [])
    .option(
      '--security-opt <opt>',
      'seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false] (default true)',
      collect,
      [],
    )
    .option('--device <host[:container][:perms]>', 'add a host device (perms: rwm)', collect, [])
    .option(
      '--sysctl <key=value>',
      'a namespaced sysctl: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*',
      collect,
      [],
    );
}

function bad(field: string, msg: string): BerthError {
  return new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${msg}`, { field });
}

// seccomp=PATH becomes seccomp=<the file's JSON>; everything else goes as given.
function securityOpt(opt: string, read: (path: string) => string): string {
  const m = /^seccomp[=:](.*)$/s.exec(opt);
  const value = m?.[1];
  if (
    value === undefined ||
    value === '' ||
    ['unconfined', 'default', 'builtin'].includes(value) ||
    value.trimStart().startsWith('{')
  )
    return opt;
  let text: string;
  try {
    text = read(value);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw bad('security-opt', `seccomp profile ${value}: ${code ?? errorMessage(e)}`);
  }
  let profile: unknown;
  try {
    profile = JSON.parse(text);
  } catch (e) {
    throw bad('security-opt', `seccomp profile ${value} is not JSON: ${errorMessage(e)}`);
  }
  if (typeof profile !== 'object' || profile === null || Array.isArray(profile))
    throw bad('security-opt', `seccomp profile ${value} is not a JSON object`);
  return `seccomp=${JSON.stringify(profile)}`;
}

// Docker's forms: HOST, HOST:CONTAINER, HOST:PERMS, HOST:CONTAINER:PERMS.
export function parseDevice(v: string): DeviceRequest {
  const parts = v.split(':');
  const perms = (s: string) => /^[rwm]{1,3}$/.test(s);
  const [host = '', second, third] = parts;
  if (!host || parts.length > 3)
    throw bad('device', `"${v}" is not HOST[:CONTAINER][:PERMISSIONS]`);
  const d: DeviceRequest = { pathOnHost: host };
  if (parts.length === 2 && second !== undefined) {
    if (perms(second)) d.cgroupPermissions = second;
    else d.pathInContainer = second;
  } else if (parts.length === 3 && second !== undefined && third !== undefined) {
    if (!perms(third)) throw bad('device', `"${third}" is not a combination of r, w and m`);
    d.pathInContainer = second;
    d.cgroupPermissions = third;
  }
  return d;
}

export function securityRequest(
  f: SecurityFlags,
  read: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): Partial<CreateContainerRequest> {
  const r: Partial<CreateContainerRequest> = {};
  if (f.privileged) r.privileged = true;
  if (f.capAdd.length > 0) r.capAdd = [...f.capAdd];
  if (f.capDrop.length > 0) r.capDrop = [...f.capDrop];
  if (f.securityOpt.length > 0) r.securityOpt = f.securityOpt.map((o) => securityOpt(o, read));
  if (f.device.length > 0) r.devices = f.device.map(parseDevice);
  if (f.sysctl.length > 0) {
    const sysctls: Record<string, string> = {};
    for (const kv of f.sysctl) {
      const i = kv.indexOf('=');
      if (i <= 0) throw bad('sysctl', `"${kv}" is not KEY=VALUE`);
      sysctls[kv.slice(0, i).trim()] = kv.slice(i + 1);
    }
    r.sysctls = sysctls;
  }
  return r;
}
