// One transition table for the container lifecycle. An illegal operation is refused with
// an error that names the current state.
import { BerthError, type ErrorCode } from '../util/errors.ts';
import type { ContainerState } from '../types/domain.ts';

export type Operation = 'start' | 'stop' | 'kill' | 'remove' | 'exec' | 'attach' | 'top' | 'resize';

const ALLOWED: Record<Operation, readonly ContainerState[]> = {
  start: ['created', 'exited'],
  stop: ['running', 'restarting'],
  kill: ['running', 'restarting'],
  remove: ['created', 'exited', 'removing'],
  exec: ['running'],
  attach: ['created', 'exited', 'running', 'starting', 'restarting'],
  top: ['running'],
  resize: ['running'],
};

const REFUSAL: Partial<Record<ContainerState, ErrorCode>> = {
  running: 'CONTAINER_RUNNING',
  restarting: 'CONTAINER_RUNNING',
  starting: 'CONTAINER_BUSY',
  stopping: 'CONTAINER_BUSY',
  removing: 'CONTAINER_BUSY',
};

export function canDo(op: Operation, state: ContainerState): boolean {
  return ALLOWED[op].includes(state);
}

export function assertCan(op: Operation, state: ContainerState, name: string): void {
  if (canDo(op, state)) return;
  const code = REFUSAL[state] ?? 'CONTAINER_NOT_RUNNING';
  const hint = op === 'remove' && state === 'running' ? ' (stop it first, or use force)' : '';
  throw new BerthError(code, `Cannot ${op} container ${name}: it is ${state}${hint}`, { state });
}
