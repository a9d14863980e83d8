// Docker's volumes endpoints over berth's named volumes. The one driver is `local`; its one
// option is berth's: `size` (DriverOpts {"size": "1g"}) makes a sized volume, a filesystem
// of its own that a container cannot fill past it. Labels round-trip exactly (compose
// finds its volumes by them).
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { parseSize, validateVolumeName, type VolumeService } from '../../engine/index.ts';
import type { VolumeRecord } from '../../types/volume.ts';
import { BerthError, invalid, isBerthError } from '../../util/errors.ts';
import type { ApiDeps } from '../server.ts';
import {
  bodyObject,
  boolFilter,
  dockerFilters,
  field,
  labelsMatch,
  qBool,
  stringMap,
  type Query,
} from './params.ts';

const UNITS: readonly [number, string][] = [
  [1024 ** 4, 't'],
  [1024 ** 3, 'g'],
  [1024 ** 2, 'm'],
  [1024, 'k'],
];

// A size as DriverOpts gives it back: the largest unit that states it exactly (1g, 512m),
// so a compose file that writes it so sees no change.
export function formatVolumeSize(bytes: number): string {
  for (const [n, u] of UNITS) if (bytes % n === 0) return `${bytes / n}${u}`;
  return String(bytes);
}

export function dockerVolume(volumes: VolumeService, v: VolumeRecord): Record<string, unknown> {
  return {
    CreatedAt: v.createdAt,
    Driver: 'local',
    Labels: { ...v.labels },
    Mountpoint: volumes.mountpoint(v.name),
    Name: v.name,
    Options: v.sizeBytes > 0 ? { size: formatVolumeSize(v.sizeBytes) } : {},
    Scope: 'local',
  };
}

// Docker's rule, as berthd's: a container that names a volume holds it, running or not.
function usedVolumes(deps: ApiDeps): Set<string> {
  const used = new Set<string>();
  for (const c of deps.containers.list())
    for (const m of c.config.mounts ?? []) if (m.type === 'volume') used.add(m.source);
  return used;
}

const VOLUME_FILTERS = ['name', 'label', 'dangling', 'driver'] as const;

function filtered(deps: ApiDeps, q: Query): VolumeRecord[] {
  const f = dockerFilters(q, VOLUME_FILTERS);
  const dangling = boolFilter(f, 'dangling');
  const used = dangling === undefined ? undefined : usedVolumes(deps);
  return deps.volumes.list().filter((v) => {
    if (f['name']?.length && !f['name'].some((n) => v.name.includes(n))) return false;
    if (f['driver']?.length && !f['driver'].includes('local')) return false;
    if (!labelsMatch(v.labels, f['label'])) return false;
    if (used && dangling === used.has(v.name)) return false;
    return true;
  });
}

export function registerDockerVolumeRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const { volumes } = deps;

  app.get('/volumes', async (req) => ({
    Volumes: filtered(deps, req.query as Query).map((v) => dockerVolume(volumes, v)),
    Warnings: null,
  }));

  app.post('/volumes/create', async (req, reply) => {
    const b = bodyObject(req.body);
    const driver = field(b, 'Driver', 'string') ?? '';
    if (driver !== '' && driver !== 'local')
      throw new BerthError(
        'NOT_IMPLEMENTED',
        `Volume driver "${driver}" is not supported by berth: only local`,
        { field: 'Driver' },
      );
    const opts = stringMap(b, 'DriverOpts') ?? {};
    let sizeBytes: number | undefined;
    for (const [k, v] of Object.entries(opts)) {
      if (k === 'size') sizeBytes = parseSize(v, 'DriverOpts.size');
      else
        throw new BerthError(
          'NOT_IMPLEMENTED',
          `Volume option "${k}" is not supported by berth: the local driver takes only size`,
          { field: `DriverOpts.${k}` },
        );
    }
    const labels = stringMap(b, 'Labels') ?? {};
    // No name: Docker makes an anonymous volume with a random one.
    const name = field(b, 'Name', 'string') || randomBytes(32).toString('hex');
    validateVolumeName(name, 'Name');
    const v = await volumes.create({
      name,
      labels,
      ...(sizeBytes !== undefined ? { sizeBytes } : {}),
    });
    return reply.code(201).send(dockerVolume(volumes, v));
  });

  app.post('/volumes/prune', async (req) => {
    const q = req.query as Query;
    const f = dockerFilters(q, ['label', 'label!', 'all']);
    if (!f['label']?.length && !f['label!']?.length) return volumes.prune();
    // With labels: each unused volume that matches, removed as `volume rm` would.
    const used = usedVolumes(deps);
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const v of volumes.list()) {
      if (used.has(v.name) || !labelsMatch(v.labels, f['label'])) continue;
      if (f['label!']?.some((l) => labelsMatch(v.labels, [l]))) continue;
      const bytes = (await volumes.usage(v.name).catch(() => undefined))?.usedBytes ?? 0;
      try {
        if (await volumes.remove(v.name)) {
          deleted.push(v.name);
          reclaimed += bytes;
        }
      } catch (e) {
        if (!isBerthError(e, 'VOLUME_IN_USE') && !isBerthError(e, 'VOLUME_BUSY')) throw e;
      }
    }
    return { VolumesDeleted: deleted, SpaceReclaimed: reclaimed };
  });

  // The rest of the path: a volume name may be longer than a route parameter may.
  const nameOf = (params: unknown): string => {
    const name = (params as Record<string, string>)['*'] ?? '';
    if (name === '') throw invalid('name', 'give a volume');
    return name;
  };

  app.get('/volumes/*', async (req) => dockerVolume(volumes, volumes.get(nameOf(req.params))));

  app.delete('/volumes/*', async (req, reply) => {
    const force = qBool(req.query as Query, 'force');
    await volumes.remove(nameOf(req.params), force);
    return reply.code(204).send();
  });
}
