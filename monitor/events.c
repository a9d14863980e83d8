/* STATE/events.jsonl writer: see events.h and PROTOCOL.md "Events". */
#include "events.h"
#include "util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int ev_fd = -1, ev_wake = -1;
static const char *ev_path;
static atomic_uint ev_unannounced;

int events_open(const char *path, int wake_fd)
{
    ev_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    ev_path = path;
    ev_wake = wake_fd;
    return ev_fd < 0 ? -1 : 0;
}

static void append_v(const struct timespec *at, const char *type, const char *fields, va_list ap)
{
    char body[1536], ts[64], line[1700];
    vsnprintf(body, sizeof body, fields, ap);
    struct timespec now;
    if (!at) {
        clock_gettime(CLOCK_REALTIME, &now);
        at = &now;
    }
    fmt_time(at, ts, sizeof ts);
    int n = snprintf(line, sizeof line, "{\"type\":\"%s\"%s%s,\"time\":\"%s\"}\n", type,
                     body[0] ? "," : "", body, ts);
    if (n < 0 || (size_t)n >= sizeof line)
        return; /* our own fixed-size records: cannot happen */
    /* One write: with O_APPEND the line lands whole even next to the other thread's. */
    ssize_t w;
    do
        w = write(ev_fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    if (w != n) {
        mlog("appending to %s: %s", ev_path ? ev_path : "events.jsonl",
             w < 0 ? strerror(errno) : "short write");
        if (w <= 0)
            return; /* nothing was appended: nothing to announce */
        ssize_t r = write(ev_fd, "\n", 1); /* keep the next event on a line of its own */
        (void)r;
    }
    atomic_fetch_add(&ev_unannounced, 1);
    if (ev_wake >= 0) {
        uint64_t one = 1;
        ssize_t r = write(ev_wake, &one, sizeof one);
        (void)r; /* only EAGAIN at counter overflow, and then the loop is awake anyway */
    }
}

void events_append(const char *type, const char *fields, ...)
{
    va_list ap;
    va_start(ap, fields);
    append_v(NULL, type, fields, ap);
    va_end(ap);
}

void events_append_at(const struct timespec *at, const char *type, const char *fields, ...)
{
    va_list ap;
    va_start(ap, fields);
    append_v(at, type, fields, ap);
    va_end(ap);
}

unsigned events_take_unannounced(void)
{
    return atomic_exchange(&ev_unannounced, 0);
}
