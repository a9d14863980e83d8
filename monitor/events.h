/*
 * STATE/events.jsonl: the monitor's durable events, one JSON object per line, appended
 * with O_APPEND and one write() per line (so lines from the two threads never mix).
 * Each append also bumps a counter and signals the event loop's wake eventfd; the loop
 * then sends `!event` to every ctl client (events_take_unannounced()).
 */
#ifndef BERTH_EVENTS_H
#define BERTH_EVENTS_H

#include <time.h>

/* Opens (creates) the file. wake_fd: eventfd written after each append. -1 + errno. */
int events_open(const char *path, int wake_fd);

/* Appends {"type":TYPE,<fields>,"time":"<RFC3339Nano UTC>"}. fields is a printf format
 * for the JSON members between type and time, without leading/trailing comma ("" for
 * none). Safe from any thread. */
void events_append(const char *type, const char *fields, ...) __attribute__((format(printf, 2, 3)));

/* The same with the time the event happened, rather than now. */
void events_append_at(const struct timespec *at, const char *type, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* Number of events appended since the last call (the loop announces each once). */
unsigned events_take_unannounced(void);

#endif
