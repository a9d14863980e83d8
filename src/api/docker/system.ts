// Docker's system endpoints: _ping (version negotiation), version, info, events, system/df,
// and a clear refusal for the areas berth does not have (swarm, plugins, build, ...).
import { existsSync, readFileSync } from 'node:fs';
import { cpus, hostname, machine, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiDeps } from '../server.ts';
import { imageSummary } from '../images.ts';
import { containerSummary } from '../views.ts';
import { dockerError, dropUnreadBody, notSupported } from './errors.ts';
import { registerDockerEventRoute } from './events.ts';
import { DOCKER_API_VERSION, DOCKER_MIN_API_VERSION } from './version.ts';

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' };

export function goArch(): string {
  return GOARCH[process.arch] ?? process.arch;
}

function osRelease(): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    for (const line of readFileSync('/etc/os-release', 'utf8').split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line);
      if (m?.[1]) out[m[1]] = (m[2] ?? '').replace(/^"(.*)"$/, '$1');
    }
  } catch {
    /* no os-release */
  }
  return out;
}

export function cgroupVersion(): '1' | '2' {
  return existsSync('/sys/fs/cgroup/cgroup.controllers') ? '2' : '1';
}

// The data root, as the LogService knows it (DATA_ROOT/logs/ID).
function dataRoot(deps: ApiDeps): string {
  return dirname(dirname(deps.logs.dir('x')));
}

export function containerCounts(deps: ApiDeps): {
  total: number;
  running: number;
  stopped: number;
} {
  let running = 0;
  const all = deps.containers.list();
  for (const c of all) if (c.state === 'running' || c.state === 'stopping') running++;
  return { total: all.length, running, stopped: all.length - running };
}

function imageCount(deps: ApiDeps): number {
  return new Set(deps.images.list().map((i) => i.id)).size;
}

// Areas of the Docker API berth has no part of: answered before any body is read.
const UNSUPPORTED: readonly [string, string][] = [
  ['/swarm', 'Swarm mode'],
  ['/swarm/*', 'Swarm mode'],
  ['/nodes', 'Swarm mode (nodes)'],
  ['/nodes/*', 'Swarm mode (nodes)'],
  ['/services', 'Swarm mode (services)'],
  ['/services/*', 'Swarm mode (services)'],
  ['/tasks', 'Swarm mode (tasks)'],
  ['/tasks/*', 'Swarm mode (tasks)'],
  ['/secrets', 'Swarm mode (secrets)'],
  ['/secrets/*', 'Swarm mode (secrets)'],
  ['/configs', 'Swarm mode (configs)'],
  ['/configs/*', 'Swarm mode (configs)'],
  ['/plugins', 'Plugins'],
  ['/plugins/*', 'Plugins'],
  ['/build', 'Building images (build elsewhere, then docker load or push and pull)'],
  ['/build/*', 'Building images'],
  ['/session', 'BuildKit sessions'],
  ['/grpc', 'BuildKit'],
  ['/distribution/*', 'Registry distribution inspection'],
  ['/commit', 'Committing a container to an image'],
];

export function refuse(app: FastifyInstance, url: string, what: string): void {
  app.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
    url,
    exposeHeadRoute: false,
    // Before the body is parsed: a tar upload to /build is refused, not parsed.
    onRequest: async (req: FastifyRequest, reply: FastifyReply) => {
      await dropUnreadBody(req.raw, reply);
      return dockerError(reply, notSupported(what));
    },
    handler: async (_req, reply) => dockerError(reply, notSupported(what)),
  });
}

export function registerDockerSystemRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const ping = async (_req: FastifyRequest, reply: FastifyReply) =>
    reply
      .header('Builder-Version', '1')
      .header('Cache-Control', 'no-cache, no-store, must-revalidate')
      .header('Pragma', 'no-cache')
      .type('text/plain; charset=utf-8')
      .send('OK');
  app.get('/_ping', ping);

  const kernel = release();
  const os = osRelease();

  app.get('/version', async () => {
    const details = {
      ApiVersion: DOCKER_API_VERSION,
      Arch: goArch(),
      BuildTime: '',
      Experimental: 'false',
      GitCommit: '',
      GoVersion: `node ${process.version}`,
      KernelVersion: kernel,
      MinAPIVersion: DOCKER_MIN_API_VERSION,
      Os: 'linux',
    };
    return {
      Platform: { Name: `berth ${deps.version}` },
      Components: [{ Name: 'Engine', Version: deps.version, Details: details }],
      Version: deps.version,
      ApiVersion: DOCKER_API_VERSION,
      MinAPIVersion: DOCKER_MIN_API_VERSION,
      GitCommit: '',
      GoVersion: details.GoVersion,
      Os: 'linux',
      Arch: details.Arch,
      KernelVersion: kernel,
      BuildTime: '',
    };
  });

  app.get('/info', async () => {
    const n = containerCounts(deps);
    const cg = cgroupVersion();
    return {
      ID: '',
      Containers: n.total,
      ContainersRunning: n.running,
      ContainersPaused: 0,
      ContainersStopped: n.stopped,
      Images: imageCount(deps),
      Driver: 'overlay2',
      DriverStatus: [['Backing Filesystem', 'extfs']],
      Plugins: {
        Volume: ['local'],
        Network: ['bridge', 'host', 'none'],
        Authorization: null,
        Log: ['berth-monitor'],
      },
      MemoryLimit: true,
      SwapLimit: existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes') || cg === '2',
      KernelMemory: false,
      KernelMemoryTCP: false,
      CpuCfsPeriod: true,
      CpuCfsQuota: true,
      CPUShares: true,
      CPUSet: true,
      PidsLimit: true,
      IPv4Forwarding: true,
      BridgeNfIptables: true,
      BridgeNfIp6tables: true,
      Debug: false,
      NFd: 0,
      // A capability of the host (cgroup v1 has it), not a setting.
      OomKillDisable: cg === '1',
      NGoroutines: 0,
      SystemTime: new Date().toISOString(),
      LoggingDriver: 'berth-monitor',
      CgroupDriver: 'cgroupfs',
      CgroupVersion: cg,
      NEventsListener: 0,
      KernelVersion: kernel,
      OperatingSystem: os['PRETTY_NAME'] ?? 'Linux',
      OSVersion: os['VERSION_ID'] ?? '',
      OSType: 'linux',
      Architecture: machine(),
      IndexServerAddress: 'https://index.docker.io/v1/',
      RegistryConfig: {
        AllowNondistributableArtifactsCIDRs: [],
        AllowNondistributableArtifactsHostnames: [],
        InsecureRegistryCIDRs: ['127.0.0.0/8'],
        IndexConfigs: {
          'docker.io': { Name: 'docker.io', Mirrors: [], Secure: true, Official: true },
        },
        Mirrors: [],
      },
      NCPU: cpus().length,
      MemTotal: totalmem(),
      GenericResources: null,
      DockerRootDir: dataRoot(deps),
      HttpProxy: '',
      HttpsProxy: '',
      NoProxy: '',
      Name: hostname(),
      Labels: [],
      ExperimentalBuild: false,
      ServerVersion: deps.version,
      Runtimes: { runc: { path: 'runc' } },
      DefaultRuntime: 'runc',
      Swarm: {
        NodeID: '',
        NodeAddr: '',
        LocalNodeState: 'inactive',
        ControlAvailable: false,
        Error: '',
        RemoteManagers: null,
      },
      // berth's containers never depended on berthd: they outlive it, always.
      LiveRestoreEnabled: true,
      Isolation: '',
      InitBinary: '',
      ContainerdCommit: { ID: '', Expected: '' },
      RuncCommit: { ID: '', Expected: '' },
      InitCommit: { ID: '', Expected: '' },
      SecurityOptions: ['name=seccomp,profile=builtin', 'name=no-new-privileges'],
      Warnings: [],
    };
  });

  registerDockerEventRoute(app, deps.events);

  // docker system df: what images, containers and volumes take.
  app.get('/system/df', async () => {
    const { containers, images, volumes } = deps;
    const all = containers.list();
    const seen = new Set<string>();
    const imgs = [];
    for (const i of images.list()) {
      if (seen.has(i.id)) continue;
      seen.add(i.id);
      imgs.push({
        ...imageSummary(images, i),
        RepoTags: images.tagsOf(i.id),
        SharedSize: 0,
        VirtualSize: i.size,
        Containers: all.filter((c) => c.config.imageId === i.id).length,
      });
    }
    const ctrs = await Promise.all(
      all.map(async (c) => {
        const u = await containers.diskUsage(c).catch(() => ({ writableBytes: 0, tmpfsBytes: 0 }));
        const rw = u.writableBytes + u.tmpfsBytes;
        let image = 0;
        try {
          image = images.resolve(c.config.imageId).size;
        } catch {
          /* gone */
        }
        return {
          ...containerSummary(c, containers.netView(c.id)),
          SizeRw: rw,
          SizeRootFs: rw + image,
          Mounts: [],
        };
      }),
    );
    const vols = await Promise.all(
      volumes.list().map(async (v) => {
        const u = await volumes.usage(v.name).catch(() => ({ usedBytes: null }));
        const refs = all.filter((c) =>
          c.config.mounts?.some((m) => m.type === 'volume' && m.source === v.name),
        ).length;
        return {
          Name: v.name,
          Driver: 'local',
          Mountpoint: volumes.mountpoint(v.name),
          CreatedAt: v.createdAt,
          Labels: { ...v.labels },
          Scope: 'local',
          Options: {},
          UsageData: { Size: u.usedBytes ?? -1, RefCount: refs },
        };
      }),
    );
    return {
      LayersSize: imgs.reduce((a, i) => a + i.VirtualSize, 0),
      Images: imgs,
      Containers: ctrs,
      Volumes: vols,
      BuildCache: [],
    };
  });

  for (const [url, what] of UNSUPPORTED) refuse(app, url, what);
}
