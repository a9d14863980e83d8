import type { Database } from './db.ts';
import type { PortBinding, PortProtocol } from '../types/ports.ts';

interface Row {
  host_ip: string;
  host_port: number;
  protocol: string;
  container_id: string;
  name: string;
  container_port: number;
  position: number;
}

export interface HostPortRecord extends PortBinding {
  readonly containerId: string;
  // The order the container asked for its ports in: PORT is its first named one.
  readonly position: number;
}

export interface PortHolder {
  readonly containerId: string;
  // '' when the container row is gone (a leftover sweep() has not removed yet).
  readonly containerName: string;
}

function fromRow(r: Row): HostPortRecord {
  return {
    containerId: r.container_id,
    position: r.position,
    name: r.name,
    containerPort: r.container_port,
    protocol: r.protocol as PortProtocol,
    hostIP: r.host_ip,
    hostPort: r.host_port,
  };
}

// Host ports handed to containers. UNIQUE (host_port, protocol) is the last word on
// double allocation: whatever the caller checked, the second insert of a port fails.
export class HostPortRepo {
  private readonly db: Database;
  constructor(db: Database) {
    this.db = db;
  }

  insert(p: HostPortRecord): void {
    this.db.db
      .prepare(
        `INSERT INTO host_ports
           (host_ip, host_port, protocol, container_id, name, container_port, position)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(p.hostIP, p.hostPort, p.protocol, p.containerId, p.name, p.containerPort, p.position);
  }

  holder(hostPort: number, protocol: PortProtocol): PortHolder | undefined {
    const r = this.db.db
      .prepare(
        `SELECT p.container_id AS id, coalesce(c.name, '') AS name
         FROM host_ports p LEFT JOIN containers c ON c.id = p.container_id
         WHERE p.host_port = ? AND p.protocol = ?`,
      )
      .get(hostPort, protocol) as { id: string; name: string } | undefined;
    return r && { containerId: r.id, containerName: r.name };
  }

  // Host ports of a protocol taken within from..to.
  used(protocol: PortProtocol, from: number, to: number): Set<number> {
    const rows = this.db.db
      .prepare('SELECT host_port FROM host_ports WHERE protocol = ? AND host_port BETWEEN ? AND ?')
      .all(protocol, from, to) as unknown as { host_port: number }[];
    return new Set(rows.map((r) => r.host_port));
  }

  byContainer(containerId: string): HostPortRecord[] {
    const rows = this.db.db
      .prepare('SELECT * FROM host_ports WHERE container_id = ? ORDER BY position')
      .all(containerId) as unknown as Row[];
    return rows.map(fromRow);
  }

  list(): HostPortRecord[] {
    const rows = this.db.db
      .prepare('SELECT * FROM host_ports ORDER BY host_port, protocol')
      .all() as unknown as Row[];
    return rows.map(fromRow);
  }

  deleteByContainer(containerId: string): number {
    return Number(
      this.db.db.prepare('DELETE FROM host_ports WHERE container_id = ?').run(containerId).changes,
    );
  }

  // Ports of containers that no longer exist: a crash between allocating and inserting
  // the container, or between deleting it and releasing its ports.
  deleteOrphans(): number {
    return Number(
      this.db.db
        .prepare('DELETE FROM host_ports WHERE container_id NOT IN (SELECT id FROM containers)')
        .run().changes,
    );
  }
}
