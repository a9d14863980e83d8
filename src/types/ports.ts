// Published and named ports, and the network fields of a create request. Shared by the CLI
// (which builds them from -p, --port, --add-host, --dns), the API (which checks them), the
// engine (which allocates host ports) and the network leaf (which tells the container).

export type PortProtocol = 'tcp' | 'udp';

// One port as a client asks for it. A named port (--port NAME[:PORT]) always gets its
// host port from berthd's range; an unnamed one (-p) may fix it or leave it to berthd.
export interface PortRequest {
  // [a-z][a-z0-9_]*, unique per container; absent for -p ports.
  name?: string;
  // Absent only for a named port: it then takes its host port's number, so the process
  // binds the same number that the world connects to.
  containerPort?: number;
  protocol: PortProtocol;
  // '' for every address of the host.
  hostIP: string;
  // Absent or 0: berthd picks one from its range.
  hostPort?: number;
  // With hostPort: docker's -p 8000-8010:80, the first free port of hostPort..hostPortEnd.
  hostPortEnd?: number;
}

// A port as allocated: every field resolved. Kept from create until the container is
// removed, so restarts keep their ports.
export interface PortBinding {
  // '' for -p ports.
  readonly name: string;
  readonly containerPort: number;
  readonly protocol: PortProtocol;
  // '' for every address of the host.
  readonly hostIP: string;
  readonly hostPort: number;
}

// The network fields of CreateContainerRequest (the CLI's -p/-P/--port/--add-host/--dns/
// --dns-search). extraHosts are docker's "NAME:IP" strings; IP may be "host-gateway".
export interface NetworkCreateFields {
  ports?: PortRequest[];
  publishAll?: boolean;
  extraHosts?: string[];
  dns?: string[];
  dnsSearch?: string[];
}

export type SelfKnowledgeMode = 'bridge' | 'host' | 'none' | 'container';

// /run/berth/network.json inside a container.
export interface NetworkDocument {
  readonly mode: SelfKnowledgeMode;
  // The host's advertised IP (BERTH_HOST_IP).
  readonly hostIP: string;
  // The container's own IP (BERTH_IP).
  readonly ip: string;
  readonly ports: readonly NetworkDocumentPort[];
}

export interface NetworkDocumentPort {
  // The port's name; '' for a -p port.
  readonly name: string;
  // The suffix of its environment variables: the name upper-cased, or 80_TCP for a -p
  // port; '' when an earlier port already took that suffix.
  readonly key: string;
  readonly containerPort: number;
  readonly hostPort: number;
  // As bound: '' for every address of the host.
  readonly hostIP: string;
  readonly protocol: PortProtocol;
  // host:port by which the world reaches it (BERTH_ADDR_<KEY>); IPv6 in brackets.
  readonly address: string;
}
