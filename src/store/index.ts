import { Database } from './db.ts';
import { ContainerRepo } from './containers.ts';
import { EventRepo } from './events.ts';
import { ImageRepo } from './images.ts';
import { HostPortRepo } from './ports.ts';
import { NetworkRepo } from './networks.ts';
import { VolumeRepo } from './volumes.ts';
import { UsernsRepo } from './userns.ts';

export type * from '../types/domain.ts';

export class Store {
  readonly db: Database;
  readonly containers: ContainerRepo;
  readonly images: ImageRepo;
  readonly events: EventRepo;
  readonly volumes: VolumeRepo;
  readonly ports: HostPortRepo;
  readonly networks: NetworkRepo;
  readonly userns: UsernsRepo;

  constructor(path: string) {
    this.db = new Database(path);
    this.containers = new ContainerRepo(this.db);
    this.images = new ImageRepo(this.db);
    this.events = new EventRepo(this.db);
    this.volumes = new VolumeRepo(this.db);
    this.ports = new HostPortRepo(this.db);
    this.networks = new NetworkRepo(this.db);
    this.userns = new UsernsRepo(this.db);
  }

  tx<T>(fn: () => T): T {
    return this.db.tx(fn);
  }

  close(): void {
    this.db.close();
  }
}
