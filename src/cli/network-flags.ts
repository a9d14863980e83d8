// docker run's -p, -P, --add-host, --dns and --dns-search, and berth's named ports
// (--port NAME[:CONTAINERPORT][/PROTO]), turned into the API's create fields. -p is parsed
// as docker's go-connections/nat.ParsePortSpec does, except that only tcp and udp exist.
import type { Command } from 'commander';
import { isIP } from 'node:net';
import type { NetworkCreateFields, PortProtocol, PortRequest } from '../types/ports.ts';
import { BerthError } from '../util/errors.ts';

export interface NetworkFlags {
  publish: string[];
  publishAll?: boolean;
  port: string[];
  addHost: string[];
  dns: string[];
  dnsSearch: string[];
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function addNetworkOptions(c: Command): Command {
  return c
    .option(
      '-p, --publish <[ip:][hostPort:]containerPort[/proto]>',
      'publish a container port on the host (ranges like 8000-8002:80-82)',
      collect,
      [],
    )
    .option('-P, --publish-all', 'publish every exposed port of the image on a free host port')
    .option(
      '--port <name[:containerPort][/proto]>',
      'a named port on a host port berthd picks (PORT, BERTH_PORT_<NAME>, ...)',
      collect,
      [],
    )
    .option(
      '--add-host <host:ip>',
      'add a line to /etc/hosts (ip may be host-gateway)',
      collect,
      [],
    )
    .option('--dns <ip>', 'a DNS server instead of the host’s', collect, [])
    .option('--dns-search <domain>', 'a DNS search domain instead of the host’s', collect, []);
}

function bad(field: string, msg: string): BerthError {
  return new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${msg}`, { field });
}

// docker's splitParts: the last part is the container's, the one before it the host
// port's, everything before that the IP (so an unbracketed IPv6 address works too).
function splitParts(raw: string): [ip: string, hostPort: string, containerPort: string] {
  const parts = raw.split(':');
  const n = parts.length;
  const last = parts[n - 1] ?? '';
  if (n === 1) return ['', '', last];
  if (n === 2) return ['', parts[0] ?? '', last];
  return [parts.slice(0, n - 2).join(':'), parts[n - 2] ?? '', last];
}

function portNumber(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function parseRange(s: string): [number, number] | undefined {
  const [a = '', b, ...rest] = s.split('-');
  if (rest.length > 0) return undefined;
  const start = portNumber(a);
  const end = b === undefined ? start : portNumber(b);
  if (start === undefined || end === undefined || end < start) return undefined;
  return [start, end];
}

function protocol(p: string | undefined, field: string, raw: string): PortProtocol {
  const proto = (p === undefined || p === '' ? 'tcp' : p).toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp')
    throw bad(field, `"${raw}": protocol "${p}" is not tcp or udp`);
  return proto;
}

// -p [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]; a host port range with one container port
// means the first free port of that range, as on docker.
export function parsePublish(raw: string): PortRequest[] {
  const field = 'publish';
  const [rawIP, hostPart, containerPart] = splitParts(raw);
  let ip = rawIP;
  if (ip.startsWith('[')) {
    if (!ip.endsWith(']')) throw bad(field, `"${raw}": "${ip}" is not an IP address`);
    ip = ip.slice(1, -1);
  }
  if (ip !== '' && isIP(ip) === 0) throw bad(field, `"${raw}": "${ip}" is not an IP address`);
  const slash = containerPart.split('/');
  if (slash.length > 2) throw bad(field, `"${raw}" is not [IP:][HOSTPORT:]PORT[/PROTO]`);
  const [ports = '', proto] = slash;
  if (ports === '') throw bad(field, `"${raw}": no container port`);
  const cr = parseRange(ports);
  if (!cr || cr[0] === 0) throw bad(field, `"${raw}": "${ports}" is not a port or a range`);
  const hr = hostPart === '' ? undefined : parseRange(hostPart);
  if (hostPart !== '' && !hr)
    throw bad(field, `"${raw}": "${hostPart}" is not a host port or a range`);
  const protocolName = protocol(proto, field, raw);
  const [cStart, cEnd] = cr;
  const count = cEnd - cStart + 1;
  if (hr && hr[1] - hr[0] + 1 !== count && count > 1)
    throw bad(field, `"${raw}": the host range ${hostPart} and container range ${ports} differ`);
  const out: PortRequest[] = [];
  for (let i = 0; i < count; i++) {
    const r: PortRequest = { containerPort: cStart + i, protocol: protocolName, hostIP: ip };
    if (hr && count === 1 && hr[1] > hr[0]) {
      if (hr[0] === 0) throw bad(field, `"${raw}": a host port range starts at 1`);
      r.hostPort = hr[0];
      r.hostPortEnd = hr[1];
    } else if (hr && hr[0] + i !== 0) {
      r.hostPort = hr[0] + i;
    }
    out.push(r);
  }
  return out;
}

// --port NAME[:CONTAINERPORT][/PROTO]
export function parseNamedPort(raw: string): PortRequest {
  const m = /^([^:/]*)(?::([^/]*))?(?:\/(.*))?$/.exec(raw);
  const name = m?.[1] ?? '';
  if (!/^[a-z][a-z0-9_]*$/.test(name) || name.length > 63)
    throw bad(
      'port',
      `"${raw}": the name "${name}" must be lower case letters, digits and _, from a letter`,
    );
  const r: PortRequest = { name, protocol: protocol(m?.[3], 'port', raw), hostIP: '' };
  if (m?.[2] !== undefined) {
    const p = portNumber(m[2]);
    if (p === undefined || p === 0) throw bad('port', `"${raw}": "${m[2]}" is not a port`);
    r.containerPort = p;
  }
  return r;
}

// --add-host NAME:IP (or docker's newer NAME=IP); the IP may be bracketed, or
// host-gateway. Given on as docker's "NAME:IP".
export function parseAddHost(raw: string): string {
  const eq = raw.indexOf('=');
  const sep = eq >= 0 ? eq : raw.indexOf(':');
  const name = sep < 0 ? '' : raw.slice(0, sep);
  let ip = sep < 0 ? '' : raw.slice(sep + 1);
  if (/^\[.*\]$/.test(ip)) ip = ip.slice(1, -1);
  if (!/^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$/.test(name))
    throw bad('add-host', `"${raw}" is not HOST:IP`);
  if (ip !== 'host-gateway' && isIP(ip) === 0)
    throw bad('add-host', `"${raw}": "${ip}" is not an IP address or host-gateway`);
  return `${name}:${ip}`;
}

const DOMAIN =
  /^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.?$/;

export function networkRequest(f: NetworkFlags): NetworkCreateFields {
  const out: NetworkCreateFields = {};
  const ports = [...f.publish.flatMap(parsePublish), ...f.port.map(parseNamedPort)];
  const names = new Set<string>();
  for (const p of ports) {
    if (p.name === undefined) continue;
    if (names.has(p.name)) throw bad('port', `"${p.name}" is given more than once`);
    names.add(p.name);
  }
  if (ports.length > 0) out.ports = ports;
  if (f.publishAll) out.publishAll = true;
  if (f.addHost.length > 0) out.extraHosts = f.addHost.map(parseAddHost);
  for (const ip of f.dns) if (isIP(ip) === 0) throw bad('dns', `"${ip}" is not an IP address`);
  if (f.dns.length > 0) out.dns = [...f.dns];
  for (const d of f.dnsSearch)
    if (d !== '.' && (d.length > 255 || !DOMAIN.test(d)))
      throw bad('dns-search', `"${d}" is not a domain name`);
  if (f.dnsSearch.length > 0) out.dnsSearch = [...f.dnsSearch];
  return out;
}
