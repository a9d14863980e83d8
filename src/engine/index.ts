export { ContainerEngine, DEFAULT_TMPFS, type ContainerEngineOptions } from './containers.ts';
export { ExecService, type ExecSession } from './exec.ts';
export { ImageService, type ProgressMessage } from './images.ts';
export { ImageTransfer } from './image-transfer.ts';
export { ImageArchives } from './image-archives.ts';
export { RegistryLogin, checkPullReference } from './registry-login.ts';
export { EventBus } from './events.ts';
export {
  matchFilters,
  parseFilterArgs,
  parseFiltersJson,
  validateFilters,
  type Filters,
} from './filters.ts';
export { LogService, parseLogOpts, parseSize, type LogPolicy } from './logs.ts';
export { decodeCursor, type JournalSource, type LogLine, type Stream } from '../logs/index.ts';
export { StatsService, type ContainerStats } from './stats.ts';
export { VolumeService, validateVolumeName, type VolumeServiceOptions } from './volumes.ts';
export {
  NetworkService,
  validateNetworkName,
  type NetworkHost,
  type NetworkServiceOptions,
} from './networks.ts';
export {
  DEFAULT_PORT_RANGE,
  PortAllocator,
  checkNetworkFields,
  checkPortRequests,
  parsePortRange,
  portsForMode,
  publishAllRequests,
  type NetworkCreateFields,
  type PortAllocatorOptions,
  type PortBinding,
  type PortRange,
  type PortRequest,
} from './ports.ts';
