// Named volumes over the API, in docker's shapes (`GET /volumes` lists under `Volumes`,
// inspect is one volume object) with berth's SizeBytes and UsedBytes added.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { validateVolumeName, type VolumeService } from '../engine/index.ts';
import type {
  VolumeInspect,
  VolumeListResponse,
  VolumeRecord,
  VolumeSummary,
} from '../types/volume.ts';
import { truthy } from './query.ts';

const CreateVolumeBody = Type.Object(
  {
    name: Type.String({ maxLength: 256 }),
    sizeBytes: Type.Optional(Type.Integer({ minimum: 0 })),
    labels: Type.Optional(
      Type.Record(Type.String({ maxLength: 1024 }), Type.String({ maxLength: 65536 }), {
        maxProperties: 256,
      }),
    ),
  },
  { additionalProperties: false },
);

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 256 }) });
type NameReq = FastifyRequest<{ Params: Static<typeof NameParams> }>;

export function volumeSummary(v: VolumeRecord, mountpoint: string): VolumeSummary {
  return {
    Name: v.name,
    Driver: 'local',
    Mountpoint: mountpoint,
    CreatedAt: v.createdAt,
    Labels: { ...v.labels },
    Scope: 'local',
    Options: v.sizeBytes > 0 ? { size: String(v.sizeBytes) } : {},
    SizeBytes: v.sizeBytes,
  };
}

async function inspectView(volumes: VolumeService, name: string): Promise<VolumeInspect> {
  const v = volumes.get(name);
  const u = await volumes.usage(name);
  return {
    ...volumeSummary(v, volumes.mountpoint(name)),
    UsedBytes: u.usedBytes,
    ...(u.mounted === undefined ? {} : { Status: { Mounted: u.mounted } }),
  };
}

export function registerVolumeRoutes(app: FastifyInstance, volumes: VolumeService): void {
  app.get('/v1/volumes', async (): Promise<VolumeListResponse> => ({
    Volumes: volumes.list().map((v) => volumeSummary(v, volumes.mountpoint(v.name))),
    Warnings: [],
  }));

  app.post('/v1/volumes', { schema: { body: CreateVolumeBody } }, async (req, reply) => {
    const body = req.body as Static<typeof CreateVolumeBody>;
    validateVolumeName(body.name);
    const v = await volumes.create(body);
    return reply.code(201).send(await inspectView(volumes, v.name));
  });

  app.get('/v1/volumes/:name', { schema: { params: NameParams } }, async (req: NameReq) =>
    inspectView(volumes, req.params.name),
  );

  app.delete(
    '/v1/volumes/:name',
    {
      schema: {
        params: NameParams,
        querystring: Type.Object({ force: Type.Optional(Type.String({ maxLength: 5 })) }),
      },
    },
    async (req: NameReq, reply) => {
      await volumes.remove(req.params.name, truthy((req.query as { force?: string }).force));
      return reply.code(204).send();
    },
  );

  app.post('/v1/volumes/prune', async () => volumes.prune());
}
