export { listLogFiles, LIVE_NAME, type LogFile } from './files.ts';
export { readLog, type LogLine, type ReadOptions, type Stream } from './reader.ts';
export {
  decodeCursor,
  encodeCursor,
  readJournal,
  type Cursor,
  type JournalEntry,
  type JournalOptions,
  type JournalSource,
} from './journal.ts';
