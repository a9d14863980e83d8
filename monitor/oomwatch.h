/*
 * OOM kills in the container's memory cgroup while it runs (PROTOCOL.md "OOM kills").
 * cgroup v1: an eventfd registered through cgroup.event_control on memory.oom_control;
 * cgroup v2 (the file is memory.events): inotify IN_MODIFY on memory.events. Each time
 * the `oom_kill N` counter is seen to grow, an `oom` event is appended.
 */
#ifndef BERTH_OOMWATCH_H
#define BERTH_OOMWATCH_H

#include <stdint.h>

/* Remembers the counter file (NULL: no OOM information at all). */
void oom_init(const char *oom_file);
/* Registers for notifications; the cgroup must exist (after `runc create`). Failing is
 * only logged: the counter is then still read at exit and on `stats`. */
void oom_watch_start(void);
int oom_watch_fd(void);                /* -1 if none */
void oom_watch_ready(int64_t now);     /* the fd is readable */
void oom_watch_tick(int64_t now, int *timeout); /* re-checks after a notification */
void oom_watch_stop(void);             /* before `runc delete` removes the cgroup */
/* Forgets the counter: a restarted container has a new cgroup that counts from 0. */
void oom_reset(void);
/* Reads the counter now (appending an `oom` event if it grew); returns the total as
 * far as known (the last value read if the file cannot be read). */
uint64_t oom_check(void);

#endif
