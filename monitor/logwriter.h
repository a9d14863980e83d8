/*
 * The container log (PROTOCOL.md "Log file", "Log rotation", "Log writer").
 *
 * The event loop formats container output as CRI records and queues them (logw_output);
 * a writer thread appends them to the live file, rotates it, and drops what a failing
 * disk does not take. The queue is bounded: logw_may_read() tells the loop whether to
 * read more output now (backpressure), for at most the stall bound per stall, after
 * which output is dropped until the queue is half empty. Nothing here ever blocks the
 * loop on the disk, except opening a file for `reopen`.
 */
#ifndef BERTH_LOGWRITER_H
#define BERTH_LOGWRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct logw_config {
    const char *path;   /* the live file (absolute); rotated ones are <path>.<SEQ> */
    uint64_t max_size;  /* rotate before a record would take the live file past this; 0: never */
    unsigned max_files; /* files kept, live included (>= 1) */
    size_t buffer;      /* queue bound, in bytes of formatted records */
    int stall_ms;       /* longest total pause of the output per stall */
    int wake_fd;        /* eventfd the writer signals when the loop should look again */
};

struct logw_stats {
    uint64_t written;   /* bytes appended to log files (records and markers) */
    uint64_t dropped;   /* bytes of container output that never reached a log file */
    uint64_t rotations;
};

/* Opens the live file and finds the rotation sequence. Before logw_start. -1 + errno. */
int logw_init(const struct logw_config *c);
/* Starts the writer thread (with every signal blocked). -1 + errno. */
int logw_start(void);

/* Loop side. Whether to read container output now; may lower *timeout (ms, -1 none)
 * to when it should be asked again. Call once per loop iteration. */
bool logw_may_read(int64_t now, int *timeout);
/* One chunk of output of stream 1 (stdout) or 2 (stderr): queued as CRI records, or
 * counted as dropped while the writer is stalled past the bound. */
void logw_output(int stream, const char *d, size_t n);
/* Opens the live path anew; records queued from now on go there. 0, or -1 + errno. */
int logw_reopen(void);
void logw_get_stats(struct logw_stats *s);
/* At exit: hands over pending drops, lets the writer finish the queue for at most
 * timeout_ms, then gives up on what is left (a log-dropped event reports it). */
void logw_finish(int timeout_ms);

#endif
