// Bridge networks: the records the store keeps, what a container's attachment is, and the
// shapes of the API, which are docker's (`docker network inspect`).

export interface NetworkRecord {
  // 64 hex characters, as container ids.
  readonly id: string;
  readonly name: string;
  readonly driver: 'bridge';
  // IPv4 CIDR, its network address exact (10.214.3.0/24, never 10.214.3.7/24).
  readonly subnet: string;
  readonly gateway: string;
  // The Linux bridge the containers' veths hang on; made by the CNI bridge plugin at the
  // first attachment, not at create.
  readonly bridge: string;
  readonly labels: Readonly<Record<string, string>>;
  // RFC 3339 in UTC, whole seconds.
  readonly createdAt: string;
  // The default network, `bridge`: made by berthd, never removed.
  readonly builtin: boolean;
}

export interface PortMapping {
  readonly hostPort: number;
  readonly containerPort: number;
  readonly protocol: 'tcp' | 'udp';
  // '' for every address of the host.
  readonly hostIP: string;
}

// A container's place on a network, recorded before anything of it is made, so whatever
// berthd dies at, the sweep knows what to undo. The address fields are '' (and 0) until
// the CNI ADD has answered.
export interface NetworkAttachmentRecord {
  readonly containerId: string;
  readonly networkId: string;
  // The name under /run/netns.
  readonly netns: string;
  readonly ifname: string;
  readonly portMappings: readonly PortMapping[];
  readonly createdAt: string;
  readonly ip: string;
  readonly prefixLen: number;
  readonly gateway: string;
  readonly mac: string;
}

// What the engine gets from an attach, to put in the spec and tell the container.
export interface NetworkAttachment {
  // The network's name.
  readonly network: string;
  readonly netnsPath: string;
  readonly ip: string;
  readonly prefixLen: number;
  readonly gateway: string;
  readonly mac: string;
  readonly ifname: 'eth0';
}

export interface CreateNetworkRequest {
  name: string;
  subnet?: string;
  gateway?: string;
  labels?: Record<string, string>;
}

export interface NetworkEndpoint {
  Name: string;
  EndpointID: string;
  MacAddress: string;
  IPv4Address: string;
  IPv6Address: string;
}

export interface NetworkInspect {
  Name: string;
  Id: string;
  Created: string;
  Scope: 'local';
  Driver: 'bridge';
  EnableIPv6: false;
  IPAM: {
    Driver: 'default';
    Options: Record<string, string>;
    Config: { Subnet: string; Gateway: string }[];
  };
  Internal: false;
  Attachable: false;
  Ingress: false;
  // By container id.
  Containers: Record<string, NetworkEndpoint>;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}
