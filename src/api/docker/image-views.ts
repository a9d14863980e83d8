// Images in the Docker Engine API's shapes (v1.41): the list's summaries (one per image,
// with all its names), inspect with ContainerConfig (compose reads its Volumes), history.
import type { ImageService } from '../../engine/index.ts';
import type { ImageRecord } from '../../types/domain.ts';
import { boolFilter, dockerFilters, globToRegExp, labelsMatch, type Query } from './params.ts';

const hexId = (id: string): string => `sha256:${id}`;
const unix = (iso: string): number => Math.floor(Date.parse(iso) / 1000);

// One record per image (the store has a row per name).
export function uniqueImages(images: ImageService): ImageRecord[] {
  const seen = new Map<string, ImageRecord>();
  for (const i of images.list()) if (!seen.has(i.id)) seen.set(i.id, i);
  return [...seen.values()];
}

export const IMAGE_FILTERS = ['dangling', 'label', 'reference', 'before', 'since'] as const;

// GET /images/json: Docker's filters; a reference filter keeps only the names it matches.
export function listImages(images: ImageService, q: Query): Record<string, unknown>[] {
  const f = dockerFilters(q, IMAGE_FILTERS);
  const dangling = boolFilter(f, 'dangling');
  const patterns = (f['reference'] ?? []).map(globToRegExp);
  const createdOf = (ref: string) => Date.parse(images.resolve(ref).createdAt);
  const before = f['before']?.map(createdOf);
  const since = f['since']?.map(createdOf);
  const out: Record<string, unknown>[] = [];
  for (const i of uniqueImages(images)) {
    const created = Date.parse(i.createdAt);
    if (before && !before.every((t) => created < t)) continue;
    if (since && !since.every((t) => created > t)) continue;
    if (!labelsMatch(i.config.labels, f['label'])) continue;
    let tags = images.tagsOf(i.id);
    let digests = images.digestsOf(i.id);
    if (dangling !== undefined && dangling !== (tags.length === 0)) continue;
    if (patterns.length > 0) {
      const match = (name: string) => {
        const repo = name.replace(/[:@][^:@/]*$/, '');
        return patterns.some((p) => p.test(name) || p.test(repo));
      };
      tags = tags.filter(match);
      digests = digests.filter(match);
      if (tags.length === 0 && digests.length === 0) continue;
    }
    out.push(imageSummary(i, tags, digests));
  }
  return out;
}

function imageSummary(i: ImageRecord, tags: string[], digests: string[]): Record<string, unknown> {
  const none = tags.length === 0 && digests.length === 0;
  return {
    Id: hexId(i.id),
    ParentId: '',
    RepoTags: none ? ['<none>:<none>'] : tags,
    RepoDigests: none ? ['<none>@<none>'] : digests,
    Created: unix(i.createdAt),
    Size: i.size,
    VirtualSize: i.size,
    SharedSize: -1,
    Labels: Object.keys(i.config.labels).length > 0 ? { ...i.config.labels } : null,
    Containers: -1,
  };
}

type OciConfig = Awaited<ReturnType<ImageService['readConfig']>>;

// Docker's container config of an image, every field present as Docker shows it.
function dockerConfig(i: ImageRecord, oci: OciConfig | undefined): Record<string, unknown> {
  const raw = oci?.config;
  const c = i.config;
  const list = (v: readonly string[] | null | undefined) => (v && v.length > 0 ? [...v] : null);
  const ports = raw
    ? raw.ExposedPorts
    : Object.fromEntries((c.exposedPorts ?? []).map((p) => [p, {}]));
  const health = raw
    ? raw.Healthcheck
    : c.healthcheck && {
        Test: [...c.healthcheck.test],
        Interval: c.healthcheck.intervalMs * 1e6,
        Timeout: c.healthcheck.timeoutMs * 1e6,
        StartPeriod: c.healthcheck.startPeriodMs * 1e6,
        Retries: c.healthcheck.retries,
      };
  const stopSignal = raw ? raw.StopSignal : c.stopSignal;
  return {
    Hostname: '',
    Domainname: '',
    User: raw ? (raw.User ?? '') : c.user,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    ...(ports && Object.keys(ports).length > 0 ? { ExposedPorts: ports } : {}),
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: raw ? list(raw.Env) : list(c.env),
    Cmd: raw ? list(raw.Cmd) : list(c.cmd),
    ...(health ? { Healthcheck: health } : {}),
    Image: '',
    Volumes: raw?.Volumes && Object.keys(raw.Volumes).length > 0 ? raw.Volumes : null,
    WorkingDir: raw ? (raw.WorkingDir ?? '') : c.workdir === '/' ? '' : c.workdir,
    Entrypoint: raw ? list(raw.Entrypoint) : list(c.entrypoint),
    OnBuild: null,
    Labels: raw ? (raw.Labels ?? null) : { ...c.labels },
    ...(stopSignal ? { StopSignal: stopSignal } : {}),
  };
}

export async function imageInspect(
  images: ImageService,
  i: ImageRecord,
): Promise<Record<string, unknown>> {
  const oci = i.meta ? await images.readConfig(hexId(i.id)) : undefined;
  const config = dockerConfig(i, oci);
  return {
    Id: hexId(i.id),
    RepoTags: images.tagsOf(i.id),
    RepoDigests: images.digestsOf(i.id),
    Parent: '',
    Comment: oci?.history?.at(-1)?.comment ?? '',
    Created: i.createdAt,
    Container: '',
    // Older clients (and compose, for its Volumes) read this; berth's images have no build
    // container, so it is the image's own config, as Docker shows for imported images.
    ContainerConfig: config,
    DockerVersion: '',
    Author: oci?.author ?? '',
    Config: config,
    Architecture: i.meta?.architecture ?? oci?.architecture ?? '',
    ...(i.meta?.variant ? { Variant: i.meta.variant } : {}),
    Os: i.meta?.os ?? 'linux',
    Size: i.size,
    VirtualSize: i.size,
    GraphDriver: { Name: 'overlay2', Data: { MergedDir: images.roots.path(i.id) } },
    RootFS: { Type: 'layers', Layers: i.meta?.layers.map((l) => l.diffId) ?? [] },
    Metadata: { LastTagTime: '0001-01-01T00:00:00Z' },
  };
}

export async function imageHistory(
  images: ImageService,
  i: ImageRecord,
): Promise<Record<string, unknown>[]> {
  const tags = images.tagsOf(i.id);
  if (!i.meta) {
    return [
      {
        Id: hexId(i.id),
        Created: unix(i.createdAt),
        CreatedBy: '',
        Tags: tags.length > 0 ? tags : null,
        Size: i.size,
        Comment: '',
      },
    ];
  }
  const oci = await images.readConfig(hexId(i.id));
  const sizes = images.layerSizes(i.id);
  type Entry = NonNullable<typeof oci.history>[number];
  const history: readonly Entry[] = oci.history ?? sizes.map((): Entry => ({}));
  let layer = 0;
  const rows = history.map((h) => ({
    Id: '<missing>',
    Created: h.created ? unix(h.created) : 0,
    CreatedBy: h.created_by ?? '',
    Tags: null as string[] | null,
    Size: h.empty_layer ? 0 : (sizes[layer++] ?? 0),
    Comment: h.comment ?? '',
  }));
  rows.reverse();
  const top = rows[0];
  if (top) {
    top.Id = hexId(i.id);
    top.Tags = tags.length > 0 ? tags : null;
  }
  return rows;
}
