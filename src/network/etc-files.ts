// /etc/hosts, /etc/hostname and /etc/resolv.conf for a container, written into its bundle
// and bound read-only. Bridge networks and user networks arrive with the networking issue.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export type NetworkMode = 'none' | 'host';

export interface EtcFiles {
  readonly hosts: string;
  readonly hostname: string;
  readonly resolvConf: string;
}

// A resolver on the host's loopback (systemd-resolved, dnsmasq) is unreachable from a
// container with its own network namespace, so such lines are dropped, as Docker does.
export function containerResolvConf(hostResolv: string, ownNetns: boolean): string {
  const lines = hostResolv.split('\n').filter((l) => {
    if (!ownNetns) return true;
    const m = /^\s*nameserver\s+(\S+)/.exec(l);
    return !m || (!(m[1] ?? '').startsWith('127.') && m[1] !== '::1');
  });
  return lines.join('\n').trimEnd() + '\n';
}

export function containerHosts(hostname: string, mode: NetworkMode, hostHosts: string): string {
  if (mode === 'host') return hostHosts;
  return [
    `127.0.0.1\tlocalhost ${hostname}`,
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    '',
  ].join('\n');
}

export async function writeEtcFiles(
  dir: string,
  hostname: string,
  mode: NetworkMode,
  hostEtc = '/etc',
): Promise<EtcFiles> {
  const read = (f: string) => readFile(join(hostEtc, f), 'utf8').catch(() => '');
  const files: EtcFiles = {
    hosts: join(dir, 'hosts'),
    hostname: join(dir, 'hostname'),
    resolvConf: join(dir, 'resolv.conf'),
  };
  await writeFile(files.hosts, containerHosts(hostname, mode, await read('hosts')));
  await writeFile(files.hostname, `${hostname}\n`);
  await writeFile(
    files.resolvConf,
    containerResolvConf(await read('resolv.conf'), mode !== 'host'),
  );
  return files;
}
