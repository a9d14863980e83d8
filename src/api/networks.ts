// Bridge networks over the API, in docker's shapes (`GET /networks` is a list of the
// objects `docker network inspect` shows).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { validateNetworkName, type ContainerEngine, type NetworkService } from '../engine/index.ts';
import type {
  NetworkAttachmentRecord,
  NetworkEndpoint,
  NetworkInspect,
  NetworkRecord,
} from '../types/network.ts';

const CreateNetworkBody = Type.Object(
  {
    name: Type.String({ maxLength: 256 }),
    subnet: Type.Optional(Type.String({ maxLength: 64 })),
    gateway: Type.Optional(Type.String({ maxLength: 64 })),
    labels: Type.Optional(
      Type.Record(Type.String({ maxLength: 1024 }), Type.String({ maxLength: 65536 }), {
        maxProperties: 256,
      }),
    ),
  },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) });
type IdReq = FastifyRequest<{ Params: Static<typeof IdParams> }>;

export function networkView(
  n: NetworkRecord,
  attachments: readonly NetworkAttachmentRecord[],
  nameOf: (containerId: string) => string,
): NetworkInspect {
  const containers: Record<string, NetworkEndpoint> = {};
  for (const a of attachments)
    containers[a.containerId] = {
      Name: nameOf(a.containerId),
      EndpointID: a.netns,
      MacAddress: a.mac,
      IPv4Address: a.ip ? `${a.ip}/${a.prefixLen}` : '',
      IPv6Address: '',
    };
  return {
    Name: n.name,
    Id: n.id,
    Created: n.createdAt,
    Scope: 'local',
    Driver: n.driver,
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: {}, Config: [{ Subnet: n.subnet, Gateway: n.gateway }] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    Containers: containers,
    Options: {
      'com.docker.network.bridge.name': n.bridge,
      ...(n.builtin ? { 'com.docker.network.bridge.default_bridge': 'true' } : {}),
    },
    Labels: { ...n.labels },
  };
}

const containerNames = (containers: ContainerEngine) =>
  new Map(containers.list().map((c) => [c.id, c.name]));

export function registerNetworkRoutes(
  app: FastifyInstance,
  networks: NetworkService,
  containers: ContainerEngine,
): void {
  const view = (n: NetworkRecord, names = containerNames(containers)) =>
    networkView(n, networks.attachments(n.id), (id) => names.get(id) ?? '');

  app.get('/v1/networks', async (): Promise<NetworkInspect[]> => {
    const names = containerNames(containers);
    return networks.list().map((n) => view(n, names));
  });

  app.post('/v1/networks', { schema: { body: CreateNetworkBody } }, async (req, reply) => {
    const body = req.body as Static<typeof CreateNetworkBody>;
    validateNetworkName(body.name);
    const n = await networks.create(body);
    return reply.code(201).send(view(n));
  });

  app.get('/v1/networks/:id', { schema: { params: IdParams } }, async (req: IdReq) =>
    view(networks.get(req.params.id)),
  );

  app.delete('/v1/networks/:id', { schema: { params: IdParams } }, async (req: IdReq, reply) => {
    await networks.remove(req.params.id);
    return reply.code(204).send();
  });
}
