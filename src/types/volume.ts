// Named volumes: the record the store keeps, and the shapes of the API, which are docker's
// (`docker volume inspect`) with berth's size and usage added.

export interface VolumeRecord {
  readonly name: string;
  // RFC 3339 in UTC, whole seconds, as docker shows it.
  readonly createdAt: string;
  // 0: unsized, a plain directory on the data filesystem. Otherwise the size of the
  // filesystem image the volume lives in.
  readonly sizeBytes: number;
  readonly labels: Readonly<Record<string, string>>;
}

export interface CreateVolumeRequest {
  name: string;
  sizeBytes?: number;
  labels?: Record<string, string>;
}

export interface VolumeSummary {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Scope: 'local';
  Options: Record<string, string>;
  SizeBytes: number;
}

export interface VolumeInspect extends VolumeSummary {
  // Bytes the volume's data takes; null when it cannot be told (a sized volume that is not
  // mounted).
  UsedBytes: number | null;
  // Sized volumes only: whether the filesystem is mounted where containers bind it.
  Status?: { Mounted: boolean };
}

export interface VolumeListResponse {
  Volumes: VolumeSummary[];
  Warnings: string[];
}

export interface VolumePruneResponse {
  VolumesDeleted: string[];
  SpaceReclaimed: number;
}
