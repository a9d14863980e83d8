import type { Database } from './db.ts';
import type { NetworkAttachmentRecord, NetworkRecord, PortMapping } from '../types/network.ts';

interface NetworkRow {
  id: string;
  name: string;
  driver: string;
  subnet: string;
  gateway: string;
  bridge: string;
  labels: string;
  created_at: string;
  builtin: number;
}

interface AttachmentRow {
  container_id: string;
  network_id: string;
  netns: string;
  ifname: string;
  port_mappings: string;
  created_at: string;
  ip: string;
  prefix_len: number;
  gateway: string;
  mac: string;
}

function networkFromRow(r: NetworkRow): NetworkRecord {
  return {
    id: r.id,
    name: r.name,
    driver: 'bridge',
    subnet: r.subnet,
    gateway: r.gateway,
    bridge: r.bridge,
    labels: JSON.parse(r.labels) as Record<string, string>,
    createdAt: r.created_at,
    builtin: r.builtin !== 0,
  };
}

function attachmentFromRow(r: AttachmentRow): NetworkAttachmentRecord {
  return {
    containerId: r.container_id,
    networkId: r.network_id,
    netns: r.netns,
    ifname: r.ifname,
    portMappings: JSON.parse(r.port_mappings) as PortMapping[],
    createdAt: r.created_at,
    ip: r.ip,
    prefixLen: r.prefix_len,
    gateway: r.gateway,
    mac: r.mac,
  };
}

export class NetworkRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  insert(n: NetworkRecord): void {
    this.db.db
      .prepare(
        'INSERT INTO networks (id, name, driver, subnet, gateway, bridge, labels, created_at, builtin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        n.id,
        n.name,
        n.driver,
        n.subnet,
        n.gateway,
        n.bridge,
        JSON.stringify(n.labels),
        n.createdAt,
        n.builtin ? 1 : 0,
      );
  }

  // Only the builtin network changes after create: the daemon's options may move it.
  update(id: string, u: Pick<NetworkRecord, 'subnet' | 'gateway' | 'bridge'>): void {
    this.db.db
      .prepare('UPDATE networks SET subnet = ?, gateway = ?, bridge = ? WHERE id = ?')
      .run(u.subnet, u.gateway, u.bridge, id);
  }

  get(id: string): NetworkRecord | undefined {
    const r = this.db.db.prepare('SELECT * FROM networks WHERE id = ?').get(id) as
      NetworkRow | undefined;
    return r && networkFromRow(r);
  }

  byName(name: string): NetworkRecord | undefined {
    const r = this.db.db.prepare('SELECT * FROM networks WHERE name = ?').get(name) as
      NetworkRow | undefined;
    return r && networkFromRow(r);
  }

  // Networks whose id starts with the prefix (hex only: no LIKE wildcards reach here).
  byIdPrefix(prefix: string): NetworkRecord[] {
    return (
      this.db.db
        .prepare('SELECT * FROM networks WHERE substr(id, 1, ?) = ? ORDER BY id')
        .all(prefix.length, prefix) as unknown as NetworkRow[]
    ).map(networkFromRow);
  }

  list(): NetworkRecord[] {
    return (
      this.db.db
        .prepare('SELECT * FROM networks ORDER BY builtin DESC, name')
        .all() as unknown as NetworkRow[]
    ).map(networkFromRow);
  }

  delete(id: string): boolean {
    return this.db.db.prepare('DELETE FROM networks WHERE id = ?').run(id).changes > 0;
  }

  insertAttachment(a: NetworkAttachmentRecord): void {
    this.db.db
      .prepare(
        'INSERT INTO network_attachments (container_id, network_id, netns, ifname, port_mappings, created_at, ip, prefix_len, gateway, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        a.containerId,
        a.networkId,
        a.netns,
        a.ifname,
        JSON.stringify(a.portMappings),
        a.createdAt,
        a.ip,
        a.prefixLen,
        a.gateway,
        a.mac,
      );
  }

  setAttachmentAddress(
    containerId: string,
    a: Pick<NetworkAttachmentRecord, 'ip' | 'prefixLen' | 'gateway' | 'mac'>,
  ): void {
    this.db.db
      .prepare(
        'UPDATE network_attachments SET ip = ?, prefix_len = ?, gateway = ?, mac = ? WHERE container_id = ?',
      )
      .run(a.ip, a.prefixLen, a.gateway, a.mac, containerId);
  }

  attachment(containerId: string): NetworkAttachmentRecord | undefined {
    const r = this.db.db
      .prepare('SELECT * FROM network_attachments WHERE container_id = ?')
      .get(containerId) as AttachmentRow | undefined;
    return r && attachmentFromRow(r);
  }

  // All attachments, or a network's.
  attachments(networkId?: string): NetworkAttachmentRecord[] {
    const rows = (networkId === undefined
      ? this.db.db.prepare('SELECT * FROM network_attachments ORDER BY created_at').all()
      : this.db.db
          .prepare('SELECT * FROM network_attachments WHERE network_id = ? ORDER BY created_at')
          .all(networkId)) as unknown as AttachmentRow[];
    return rows.map(attachmentFromRow);
  }

  deleteAttachment(containerId: string): boolean {
    return (
      this.db.db.prepare('DELETE FROM network_attachments WHERE container_id = ?').run(containerId)
        .changes > 0
    );
  }
}
