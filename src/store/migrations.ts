// Append only: a released migration is never edited; the index+1 is the schema version.
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    monitor_pid INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NOT NULL DEFAULT 0,
    signal INTEGER NOT NULL DEFAULT 0,
    oom_killed INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    restart_count INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    stopped_by_user INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE images (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    size INTEGER NOT NULL,
    config TEXT NOT NULL
  );
  CREATE TABLE image_tags (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (repo, tag)
  );
  CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    time_nano INTEGER NOT NULL,
    type TEXT NOT NULL,
    action TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    attributes TEXT NOT NULL
  );
  `,
  `
  ALTER TABLE containers ADD COLUMN events_offset INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE containers ADD COLUMN log_dropped_bytes INTEGER NOT NULL DEFAULT 0;
  `,
  `ALTER TABLE containers ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0;`,
  `
  ALTER TABLE containers ADD COLUMN next_restart_at TEXT NOT NULL DEFAULT '';
  ALTER TABLE containers ADD COLUMN health TEXT NOT NULL DEFAULT '';
  `,
  `CREATE INDEX events_time ON events (time_nano);`,
  `
  CREATE TABLE volumes (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}'
  );
  `,
  `
  CREATE TABLE host_ports (
    host_ip TEXT NOT NULL DEFAULT '',
    host_port INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
    protocol TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
    container_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    container_port INTEGER NOT NULL CHECK (container_port BETWEEN 1 AND 65535),
    position INTEGER NOT NULL,
    UNIQUE (host_port, protocol)
  );
  CREATE INDEX host_ports_container ON host_ports (container_id, position);
  CREATE UNIQUE INDEX host_ports_name ON host_ports (container_id, name) WHERE name != '';
  `,
  `
  CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL DEFAULT 'bridge',
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    bridge TEXT NOT NULL UNIQUE,
    labels TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    builtin INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE network_attachments (
    container_id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    netns TEXT NOT NULL,
    ifname TEXT NOT NULL,
    port_mappings TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    prefix_len INTEGER NOT NULL DEFAULT 0,
    gateway TEXT NOT NULL DEFAULT '',
    mac TEXT NOT NULL DEFAULT ''
  );
  CREATE INDEX network_attachments_network ON network_attachments (network_id);
  `,
  // Layered images: each layer unpacked once (layers, by diff id) and shared by every
  // image that lists it (image_layers); meta holds the manifest and blob descriptors
  // (empty for an image from before, whose root is one flat directory).
  `
  ALTER TABLE images ADD COLUMN meta TEXT NOT NULL DEFAULT '';
  CREATE TABLE layers (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    diff_id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
  );
  CREATE TABLE image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    layer_n INTEGER NOT NULL REFERENCES layers(n),
    PRIMARY KEY (image_id, position)
  );
  CREATE INDEX image_layers_layer ON image_layers (layer_n);
  CREATE TABLE image_digests (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (repo, digest)
  );
  CREATE INDEX image_digests_image ON image_digests (image_id);
  CREATE INDEX image_tags_image ON image_tags (image_id);
  `,
  // Subordinate id ranges of containers in a user namespace (--userns=auto): a range is
  // the container's from create to removal (the cascade frees it with the row); deferred,
  // so the range is taken before the row that names it in the same transaction.
  `
  CREATE TABLE userns_ranges (
    container_id TEXT PRIMARY KEY
      REFERENCES containers(id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    uid_base INTEGER NOT NULL UNIQUE CHECK (uid_base >= 0),
    gid_base INTEGER NOT NULL UNIQUE CHECK (gid_base >= 0),
    size INTEGER NOT NULL CHECK (size > 0)
  );
  `,
];
