// The event bus: events are appended to the store inside the state change's transaction;
// listeners are only told after the commit, and followers re-read the store from their
// cursor, so a slow follower never blocks anyone and never misses an event.
import { EventEmitter } from 'node:events';
import type { Store } from '../store/index.ts';
import type { EventRecord, NewEvent } from '../types/domain.ts';

export class EventBus {
  private readonly store: Store;
  private readonly emitter = new EventEmitter();

  constructor(store: Store) {
    this.store = store;
    this.emitter.setMaxListeners(0);
  }

  // Call inside store.tx(); the notification is deferred past the commit.
  append(e: NewEvent, at?: Date | string): EventRecord {
    const rec = this.store.events.append(e, at);
    queueMicrotask(() => this.emitter.emit('event', rec));
    return rec;
  }

  after(seq: number, limit = 1000): EventRecord[] {
    return this.store.events.after(seq, limit);
  }

  lastSeq(): number {
    return this.store.events.lastSeq();
  }

  firstSeqSince(nano: bigint): number | undefined {
    return this.store.events.firstSeqSince(nano);
  }

  onAppend(fn: (e: EventRecord) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }
}
