// What a container is told about how it is reached, as environment variables and as
// /run/berth/network.json. Pure: the caller gives the mode, the addresses and the ports.
//
// BERTH_IP is the address the container's own processes have: its bridge address (the
// shared container's with --network container:X), the host's advertised address in host
// mode, and 127.0.0.1 with --network none, where only loopback exists and which its
// /etc/hosts gives its hostname, so BERTH_IP and `hostname -i` agree in every mode.
//
// Each port has a key, the suffix of its variables: a named port's name upper-cased
// (BERTH_PORT_HTTP); a -p port's container port and protocol (BERTH_PORT_80_TCP). Names
// start with a letter and derived keys with a digit, so the two never collide. A -p port
// published twice keeps the key on its first binding only; network.json lists all.
import { isIP } from 'node:net';
import type {
  NetworkDocument,
  NetworkDocumentPort,
  PortBinding,
  SelfKnowledgeMode,
} from '../types/ports.ts';

export interface SelfKnowledgeInput {
  readonly mode: SelfKnowledgeMode;
  // The host's advertised IP (HostAddress).
  readonly hostIP: string;
  // bridge: the container's address; container: the shared container's. Unused otherwise.
  readonly containerIP: string;
  // In the order the container asked for them (PortAllocator.bindings).
  readonly bindings: readonly PortBinding[];
}

export const NONE_MODE_IP = '127.0.0.1';

export function ownIP(k: SelfKnowledgeInput): string {
  switch (k.mode) {
    case 'host':
      return k.hostIP;
    case 'none':
      return NONE_MODE_IP;
    default:
      return k.containerIP;
  }
}

export function portKey(b: PortBinding): string {
  return b.name !== '' ? b.name.toUpperCase() : `${b.containerPort}_${b.protocol.toUpperCase()}`;
}

const WILDCARDS = new Set(['', '0.0.0.0', '::']);

// A port bound on every address is reached by the host's advertised one.
export function portAddress(b: PortBinding, hostIP: string): string {
  const ip = WILDCARDS.has(b.hostIP) ? hostIP : b.hostIP;
  return isIP(ip) === 6 ? `[${ip}]:${b.hostPort}` : `${ip}:${b.hostPort}`;
}

export function networkDocument(k: SelfKnowledgeInput): NetworkDocument {
  const keys = new Set<string>();
  const ports: NetworkDocumentPort[] = k.bindings.map((b) => {
    let key = portKey(b);
    if (keys.has(key)) key = '';
    else keys.add(key);
    return {
      name: b.name,
      key,
      containerPort: b.containerPort,
      hostPort: b.hostPort,
      hostIP: b.hostIP,
      protocol: b.protocol,
      address: portAddress(b, k.hostIP),
    };
  });
  return { mode: k.mode, hostIP: k.hostIP, ip: ownIP(k), ports };
}

// KEY=VALUE strings. PORT is the container side of the first named port, and absent
// without one: a -p port is the image's own choice, already known to the process.
export function networkEnv(k: SelfKnowledgeInput): string[] {
  const doc = networkDocument(k);
  const env: string[] = [];
  const first = doc.ports.find((p) => p.name !== '');
  if (first) env.push(`PORT=${first.containerPort}`);
  env.push(`BERTH_HOST_IP=${doc.hostIP}`, `BERTH_IP=${doc.ip}`);
  for (const p of doc.ports) {
    if (p.key === '') continue;
    env.push(
      `BERTH_PORT_${p.key}=${p.containerPort}`,
      `BERTH_HOST_PORT_${p.key}=${p.hostPort}`,
      `BERTH_ADDR_${p.key}=${p.address}`,
    );
  }
  return env;
}

// The text of /run/berth/network.json.
export function networkJson(k: SelfKnowledgeInput): string {
  return `${JSON.stringify(networkDocument(k), null, 2)}\n`;
}
