import type { ContainerConfig, ContainerRecord } from '../types/domain.ts';

// A container as it is before its first start. The one place that lists every runtime
// field's starting value, so a new column is added here and nowhere else.
export function newContainerRecord(
  id: string,
  name: string,
  config: ContainerConfig,
  createdAt: string,
): ContainerRecord {
  return {
    id,
    name,
    config,
    createdAt,
    state: 'created',
    pid: 0,
    monitorPid: 0,
    exitCode: 0,
    signal: 0,
    oomKilled: false,
    startedAt: '',
    finishedAt: '',
    restartCount: 0,
    error: '',
    stoppedByUser: false,
    eventsOffset: 0,
    logDroppedBytes: 0,
    oomKills: 0,
    nextRestartAt: '',
    health: undefined,
  };
}
