// The error catalogue. Codes are stable: once published, a code keeps its meaning and is
// never reused. Only the API maps a class to an HTTP status (api/errors.ts).

export type ErrorClass =
  | 'NotFound'
  | 'AlreadyExists'
  | 'InvalidArgument'
  | 'FailedPrecondition'
  | 'Conflict'
  | 'Unavailable'
  | 'Internal';

export const ERROR_CODES = {
  REQUEST_TOO_LARGE: { class: 'InvalidArgument', doc: 'The request body is over the size limit' },
  HEADERS_TOO_LARGE: {
    class: 'InvalidArgument',
    doc: 'The request line and headers together are over the size limit',
  },
  REQUEST_TIMEOUT: {
    class: 'InvalidArgument',
    doc: "The client took too long to send the request's headers, or paused too long in its body",
  },
  ENDPOINT_NOT_FOUND: {
    class: 'NotFound',
    doc: 'No endpoint has that method and path (a typo, or a newer client than berthd)',
  },
  INVALID_ARGUMENT: {
    class: 'InvalidArgument',
    doc: 'A request field has a bad value; the message names the field',
  },
  CONTAINER_NOT_FOUND: { class: 'NotFound', doc: 'No container has that id, id prefix or name' },
  CONTAINER_AMBIGUOUS: {
    class: 'InvalidArgument',
    doc: 'An id prefix matches more than one container',
  },
  CONTAINER_NAME_IN_USE: { class: 'AlreadyExists', doc: 'Another container already has that name' },
  CONTAINER_NOT_RUNNING: {
    class: 'FailedPrecondition',
    doc: 'The operation needs a running container',
  },
  CONTAINER_RUNNING: {
    class: 'Conflict',
    doc: 'The operation needs a stopped container (use force to override where offered)',
  },
  CONTAINER_BUSY: { class: 'Conflict', doc: 'Another operation on the container is in progress' },
  IMAGE_NOT_FOUND: { class: 'NotFound', doc: 'No local image has that name or id' },
  IMAGE_INVALID: {
    class: 'InvalidArgument',
    doc: 'An image archive or root filesystem could not be used',
  },
  IMAGE_IN_USE: {
    class: 'Conflict',
    doc: 'A container uses the image, or an id names an image with several tags; the message says which (force untags)',
  },
  IMAGE_AMBIGUOUS: { class: 'InvalidArgument', doc: 'An id prefix matches more than one image' },
  COMMAND_NOT_FOUND: {
    class: 'FailedPrecondition',
    doc: 'The command to run does not exist in the container (exit 127)',
  },
  COMMAND_NOT_EXECUTABLE: {
    class: 'FailedPrecondition',
    doc: 'The command to run cannot be executed (exit 126)',
  },
  USER_NOT_FOUND: { class: 'InvalidArgument', doc: 'The user or group is not in the image' },
  RUNTIME_FAILED: {
    class: 'Internal',
    doc: 'The OCI runtime or the monitor failed; the message carries its error',
  },
  MONITOR_LOST: { class: 'Unavailable', doc: 'The container monitor is gone' },
  DAEMON_UNAVAILABLE: { class: 'Unavailable', doc: 'berthd cannot be reached on its socket' },
  DAEMON_ALREADY_RUNNING: {
    class: 'FailedPrecondition',
    doc: 'Another berthd already uses this data root',
  },
  EXEC_NOT_FOUND: { class: 'NotFound', doc: 'No exec session has that id' },
  NOT_IMPLEMENTED: {
    class: 'FailedPrecondition',
    doc: 'The endpoint or option is not supported by berth',
  },
  EVENTS_PRUNED: {
    class: 'FailedPrecondition',
    doc: 'Events after the requested sequence number are past retention; the message names the oldest retained',
  },
  VOLUME_NOT_FOUND: { class: 'NotFound', doc: 'No volume has that name' },
  VOLUME_NAME_IN_USE: {
    class: 'AlreadyExists',
    doc: 'A volume of that name exists with a different size',
  },
  VOLUME_IN_USE: {
    class: 'Conflict',
    doc: 'A container uses the volume; the message names it (force does not override)',
  },
  VOLUME_BUSY: {
    class: 'Conflict',
    doc: "The volume's filesystem is held by a process or another mount namespace; it stays mounted and intact",
  },
  DISK_HIGH_WATER: {
    class: 'FailedPrecondition',
    doc: "berthd's data filesystem is fuller than its high-water mark; no container is created",
  },
  PORT_IN_USE: {
    class: 'Conflict',
    doc: 'A requested host port is allocated to another container or held by a host process; the message names which',
  },
  PORTS_EXHAUSTED: {
    class: 'FailedPrecondition',
    doc: 'No host port is free in the range berthd allocates from (or in the range the request gave)',
  },
  USERNS_EXHAUSTED: {
    class: 'FailedPrecondition',
    doc: 'No range of subordinate ids is free in the pool berthd allocates user namespaces from',
  },
  NETWORK_NOT_FOUND: { class: 'NotFound', doc: 'No network has that name, id or id prefix' },
  NETWORK_AMBIGUOUS: {
    class: 'InvalidArgument',
    doc: 'An id prefix matches more than one network',
  },
  NETWORK_NAME_IN_USE: { class: 'AlreadyExists', doc: 'Another network already has that name' },
  NETWORK_SUBNET_IN_USE: {
    class: 'Conflict',
    doc: "The subnet overlaps another network's; the message names it",
  },
  NETWORKS_EXHAUSTED: {
    class: 'FailedPrecondition',
    doc: 'No free subnet is left to pick for a network created without one',
  },
  NETWORK_IN_USE: {
    class: 'Conflict',
    doc: 'A container uses the network; the message names it',
  },
  NETWORK_BUILTIN: {
    class: 'FailedPrecondition',
    doc: 'The default network cannot be removed',
  },
  REGISTRY_AUTH_FAILED: {
    class: 'FailedPrecondition',
    doc: 'The registry or its token server refused the credentials, or the image needs credentials that were not given',
  },
  REGISTRY_UNAVAILABLE: {
    class: 'Unavailable',
    doc: 'The registry cannot be reached or keeps failing; the message carries the cause',
  },
  MANIFEST_UNKNOWN: {
    class: 'NotFound',
    doc: 'The registry has no such repository, tag, digest or blob, or no manifest for the platform',
  },
  INTERNAL: { class: 'Internal', doc: 'An unexpected failure inside berthd' },
} as const satisfies Record<string, { class: ErrorClass; doc: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class BerthError extends Error {
  readonly code: ErrorCode;
  readonly class: ErrorClass;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'BerthError';
    this.code = code;
    this.class = ERROR_CODES[code].class;
    this.details = details;
  }
}

export function isBerthError(e: unknown, code?: ErrorCode): e is BerthError {
  return e instanceof BerthError && (code === undefined || e.code === code);
}

export function invalid(field: string, message: string): BerthError {
  return new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${message}`, { field });
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
