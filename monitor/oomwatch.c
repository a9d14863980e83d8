/* OOM kill notifications: see oomwatch.h and PROTOCOL.md. Loop thread only. */
#include "oomwatch.h"
#include "events.h"
#include "util.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

/* The v1 notification comes when the cgroup hits its limit, before the kernel has
 * picked and killed a victim (and counted it): look again a little later. */
static const int RECHECK_MS[] = {10, 50, 200, 1000};
#define N_RECHECK ((int)(sizeof RECHECK_MS / sizeof *RECHECK_MS))

static struct {
    const char *file;
    bool v2;
    int fd;
    uint64_t kills;       /* last value read */
    bool known, read_failed;
    int64_t notified_at;  /* of the last notification */
    int next_recheck;     /* index into RECHECK_MS, N_RECHECK when none is due */
} O = {.fd = -1, .next_recheck = N_RECHECK};

/* "oom_kill N" from memory.oom_control (v1) or memory.events (v2); -1 if unreadable. */
static int read_counter(uint64_t *out)
{
    char s[4096];
    if (!O.file || read_small_file(O.file, s, sizeof s) < 0)
        return -1;
    for (char *line = s; line && *line;) {
        unsigned long long v;
        if (strncmp(line, "oom_kill ", 9) == 0 && sscanf(line + 9, "%llu", &v) == 1) {
            *out = v;
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    errno = ENODATA;
    return -1;
}

void oom_init(const char *oom_file)
{
    O.file = oom_file;
    if (!oom_file)
        return;
    const char *slash = strrchr(oom_file, '/');
    O.v2 = strcmp(slash ? slash + 1 : oom_file, "memory.events") == 0;
}

uint64_t oom_check(void)
{
    uint64_t v;
    if (read_counter(&v) < 0) {
        if (O.file && !O.read_failed)
            mlog("reading %s: %s", O.file, strerror(errno));
        O.read_failed = true; /* once: `stats` asks again and again */
        return O.kills;
    }
    if (O.known && v > O.kills) {
        mlog("OOM kills in the container's cgroup: %llu (was %llu)", (unsigned long long)v,
             (unsigned long long)O.kills);
        events_append("oom", "\"oomKills\":%llu", (unsigned long long)v);
    } else if (!O.known && v > 0) {
        /* Kills before we could watch (between `runc create` and now): report them too. */
        events_append("oom", "\"oomKills\":%llu", (unsigned long long)v);
    }
    if (!O.known || v > O.kills)
        O.kills = v;
    O.known = true;
    return O.kills;
}

static int watch_v1(void)
{
    char *dir = strdup(O.file), *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    char *ctl = path_join(dir, "cgroup.event_control");
    free(dir);
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int ofd = open(O.file, O_RDONLY | O_CLOEXEC);
    int cfd = open(ctl, O_WRONLY | O_CLOEXEC);
    int rc = -1;
    if (efd >= 0 && ofd >= 0 && cfd >= 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "%d %d", efd, ofd);
        rc = write_all(cfd, line, (size_t)n);
    }
    int saved = errno;
    /* The kernel keeps what it needs of oom_control; only the eventfd stays with us. */
    if (ofd >= 0)
        close(ofd);
    if (cfd >= 0)
        close(cfd);
    if (rc < 0 && efd >= 0)
        close(efd);
    free(ctl);
    errno = saved;
    return rc < 0 ? -1 : efd;
}

static int watch_v2(void)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
        return -1;
    if (inotify_add_watch(fd, O.file, IN_MODIFY) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void oom_watch_start(void)
{
    if (!O.file)
        return;
    O.fd = O.v2 ? watch_v2() : watch_v1();
    if (O.fd < 0)
        mlog("watching %s for OOM kills: %s; they are only read at exit", O.file,
             strerror(errno));
    oom_check(); /* the baseline, after registering: nothing falls in between */
}

int oom_watch_fd(void)
{
    return O.fd;
}

void oom_watch_ready(int64_t now)
{
    char buf[4096]; /* an eventfd counter, or inotify events: their content is moot */
    while (read(O.fd, buf, sizeof buf) > 0)
        ;
    O.notified_at = now;
    O.next_recheck = 0;
    oom_check();
}

void oom_watch_tick(int64_t now, int *timeout)
{
    while (O.next_recheck < N_RECHECK) {
        int64_t due = O.notified_at + RECHECK_MS[O.next_recheck];
        if (now < due) {
            int left = (int)(due - now);
            if (*timeout < 0 || left < *timeout)
                *timeout = left;
            return;
        }
        O.next_recheck++;
        oom_check();
    }
}

void oom_watch_stop(void)
{
    xclose(&O.fd);
    O.next_recheck = N_RECHECK;
}

void oom_reset(void)
{
    O.kills = 0;
    O.known = false;
    O.read_failed = false;
}
