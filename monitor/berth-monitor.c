/*
 * berth-monitor: the per-container process that owns a container's data path.
 *
 * See PROTOCOL.md for the contract with berthd. In short, `run` detaches, runs
 * `runc create`, reports on a sync fd, then serves ctl.sock/attach.sock, writes the
 * CRI log, and records the init's exit in exit.json. `exec-tty` runs `runc exec` with
 * a pty and relays it over its own stdio.
 *
 * libc only, single-threaded, one poll() loop per subcommand. Every fd we create is
 * close-on-exec; the only fds a child (runc) gets are the three we dup2 onto its
 * stdio, so neither the sync fd nor the listening sockets can leak into a container.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)          /* one read() from the container's output */
#define CRI_MAX_PIECE (16 * 1024)       /* longest text of one CRI log record */
#define ATTACH_PAUSE (1024 * 1024)      /* stop reading output while a client lags this much */
#define ATTACH_DROP (8 * 1024 * 1024)   /* after exit (no pause), drop a client this far behind */
#define CTL_LINE_MAX 1024               /* longest ctl request line */
#define CTL_OUT_MAX (64 * 1024)         /* a ctl client that never reads its replies is dropped */
#define DRAIN_MS 2000                   /* output drain bound after the init exited */
#define FLUSH_MS 2000                   /* attach flush bound after the drain */
#define RUNC_LOG_TAIL (1024 * 1024)     /* how much of runc.log we scan for its last error */

/* ------------------------------------------------------------------------------------ */
/* Diagnostics                                                                          */
/* ------------------------------------------------------------------------------------ */

static int g_diag_fd = 2; /* stderr until `run` has opened STATE/monitor.log */

static void fmt_time(const struct timespec *ts, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)ts->tv_nsec);
}

static void mlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mlog(const char *fmt, ...)
{
    char line[2048], ts[64];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fmt_time(&now, ts, sizeof ts);
    int n = snprintf(line, sizeof line, "%s berth-monitor[%d]: ", ts, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* Best effort: a diagnostics failure must never disturb the container. */
    ssize_t r = write(g_diag_fd, line, len);
    (void)r;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        /* Nothing sensible is left to do without memory; leave a trace and stop. */
        mlog("out of memory (%zu bytes)", n);
        abort();
    }
    return q;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------------------ */
/* Byte buffer: data lives in p[off, len); used for every pending queue                 */
/* ------------------------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t off, len, cap;
};

static size_t buf_pending(const struct buf *b) { return b->len - b->off; }
static const char *buf_data(const struct buf *b) { return b->p + b->off; }

static void buf_reset(struct buf *b) { b->off = b->len = 0; }

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void buf_append(struct buf *b, const void *d, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap && b->off > 0) {
        /* Reclaim the consumed prefix before growing. */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_putc(struct buf *b, char c) { buf_append(b, &c, 1); }
static void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

/* NUL-terminated copy of the pending bytes (caller frees). */
static char *buf_strdup(const struct buf *b)
{
    size_t n = buf_pending(b);
    char *s = xrealloc(NULL, n + 1);
    memcpy(s, buf_data(b), n);
    s[n] = 0;
    return s;
}

/* ------------------------------------------------------------------------------------ */
/* fd helpers                                                                           */
/* ------------------------------------------------------------------------------------ */

/* Writes everything to a blocking fd; retries EINTR and partial writes. */
static int write_all(int fd, const void *d, size_t n)
{
    const char *p = d;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void xclose(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static char *path_join(const char *dir, const char *name)
{
    char *s;
    if (asprintf(&s, "%s/%s", dir, name) < 0) {
        mlog("out of memory");
        abort();
    }
    return s;
}

/* Absolute form of a path, so that the monitor can chdir("/") (daemons must not pin
 * berthd's working directory) and hand the same paths to runc. */
static char *abs_path(const char *p)
{
    if (!p || p[0] == '/')
        return p ? strdup(p) : NULL;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return strdup(p);
    return path_join(cwd, p);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Reads a small file (pid files, oom counters) into a NUL-terminated buffer. */
static int read_small_file(const char *path, char *out, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < len - 1) {
        ssize_t r = read(fd, out + got, len - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    out[got] = 0;
    return 0;
}

static pid_t read_pid_file(const char *path)
{
    char s[64];
    if (read_small_file(path, s, sizeof s) < 0)
        return -1;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v <= 0 || v > INT_MAX)
        return -1;
    return (pid_t)v;
}

/* Atomic replace: temp file, fsync, rename, fsync of the directory. berthd may read the
 * file at any moment (and after a host crash) and must never see a partial one. */
static int write_file_atomic(const char *path, const char *data, size_t n, mode_t mode)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int rc = -1;
    if (fd >= 0 && write_all(fd, data, n) == 0 && fsync(fd) == 0 && close(fd) == 0) {
        fd = -1;
        rc = rename(tmp, path);
    }
    int saved = errno;
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(tmp);
    else {
        char *slash = strrchr(tmp, '/');
        if (slash) {
            *slash = 0;
            int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
        }
    }
    free(tmp);
    errno = saved;
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Unix sockets                                                                         */
/* ------------------------------------------------------------------------------------ */

static int make_sockaddr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

/* A listening socket at path, mode 0600 from the start (umask around bind, so there is
 * no window in which another user could connect). Non-blocking, close-on-exec. */
static int unix_listen(const char *path)
{
    struct sockaddr_un sa;
    if (make_sockaddr(path, &sa) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    unlink(path); /* a stale socket from a crashed predecessor */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || listen(fd, 64) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Receives one fd passed with SCM_RIGHTS (runc sends the pty master this way, with the
 * pty's name as payload). Extra fds, if any, are closed. */
static int recv_fd(int sock)
{
    char payload[512];
    struct iovec iov = {payload, sizeof payload};
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.b;
    msg.msg_controllen = sizeof ctl.b;
    ssize_t n;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    int got = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int fds[4];
        memcpy(fds, CMSG_DATA(c), nfd * sizeof(int) <= sizeof fds ? nfd * sizeof(int) : sizeof fds);
        for (size_t i = 0; i < nfd && i < 4; i++) {
            if (got < 0)
                got = fds[i];
            else
                close(fds[i]);
        }
    }
    if (got < 0)
        errno = EPROTO;
    return got;
}

/* Accepts runc's connection on the console socket and takes the pty master from it.
 * runc has already exited (create/exec --detach are synchronous), so the connection and
 * its message are queued; the timeout only guards against a runc that never sent one. */
static int receive_console(int lfd, int timeout_ms)
{
    struct pollfd p = {lfd, POLLIN, 0};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        errno = r == 0 ? ETIMEDOUT : errno;
        return -1;
    }
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return -1;
    p.fd = c;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    int fd = r > 0 ? recv_fd(c) : -1;
    int saved = r == 0 ? ETIMEDOUT : errno;
    close(c);
    errno = saved;
    return fd;
}

/* ------------------------------------------------------------------------------------ */
/* JSON: just enough to read runc's log lines and to write our own messages             */
/* ------------------------------------------------------------------------------------ */

static void json_escape(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\r': buf_puts(b, "\\r"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\b': buf_puts(b, "\\b"); break;
        case '\f': buf_puts(b, "\\f"); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                buf_printf(b, "\\u%04x", *p);
            else
                buf_putc(b, (char)*p);
        }
    }
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static void utf8_put(struct buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    buf_append(b, u, n);
}

/* Decodes the JSON string at p (*p == '"') into out (NULL: just skip it).
 * Returns the position after the closing quote, NULL if malformed. */
static const char *json_string(const char *p, const char *end, struct buf *out)
{
    p++;
    while (p < end) {
        char c = *p++;
        if (c == '"')
            return p;
        if (c != '\\') {
            if (out)
                buf_putc(out, c);
            continue;
        }
        if (p >= end)
            return NULL;
        char e = *p++, lit;
        switch (e) {
        case '"': case '\\': case '/': lit = e; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            if (end - p < 4 || hex4(p) < 0)
                return NULL;
            uint32_t cp = (uint32_t)hex4(p);
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                int lo = hex4(p + 2);
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                    p += 6;
                }
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xfffd; /* lone surrogate */
            if (out)
                utf8_put(out, cp);
            continue;
        }
        default:
            return NULL;
        }
        if (out)
            buf_putc(out, lit);
    }
    return NULL;
}

/* Skips any JSON value; returns the position of the ',' or '}' that follows it. */
static const char *json_skip_value(const char *p, const char *end)
{
    int depth = 0;
    while (p && p < end) {
        char c = *p;
        if (c == '"') {
            p = json_string(p, end, NULL);
            continue;
        }
        if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && depth-- == 0)
            return p;
        else if (c == ',' && depth == 0)
            return p;
        p++;
    }
    return NULL;
}

static const char *json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

static bool buf_equals(const struct buf *b, const char *s)
{
    return buf_pending(b) == strlen(s) && memcmp(buf_data(b), s, buf_pending(b)) == 0;
}

/* Parses one runc log line (a flat JSON object) for its "level" and "msg" strings. */
static bool parse_log_line(const char *p, const char *end, struct buf *level, struct buf *msg)
{
    struct buf key = {0};
    bool ok = false;
    buf_reset(level);
    buf_reset(msg);
    p = json_ws(p, end);
    if (p >= end || *p++ != '{')
        goto out;
    for (;;) {
        p = json_ws(p, end);
        if (p < end && *p == '}') {
            ok = true;
            goto out;
        }
        if (p >= end || *p != '"')
            goto out;
        buf_reset(&key);
        if (!(p = json_string(p, end, &key)))
            goto out;
        p = json_ws(p, end);
        if (p >= end || *p++ != ':')
            goto out;
        p = json_ws(p, end);
        struct buf *dst = buf_equals(&key, "level") ? level : buf_equals(&key, "msg") ? msg : NULL;
        if (dst && p < end && *p == '"')
            p = json_string(p, end, dst);
        else
            p = json_skip_value(p, end);
        if (!p)
            goto out;
        p = json_ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        ok = p < end && *p == '}';
        goto out;
    }
out:
    buf_free(&key);
    return ok;
}

/* The "msg" of the last error-level line runc appended to its JSON log after offset
 * `from` (so an old error is never blamed for a new failure). Caller frees; NULL if none. */
static char *runc_last_error(const char *path, off_t from)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL, *result = NULL;
    if (fstat(fd, &st) < 0 || st.st_size <= from)
        goto out;
    if (st.st_size - from > RUNC_LOG_TAIL)
        from = st.st_size - RUNC_LOG_TAIL;
    size_t n = (size_t)(st.st_size - from), got = 0;
    data = xrealloc(NULL, n);
    while (got < n) {
        ssize_t r = pread(fd, data + got, n - got, from + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    struct buf level = {0}, msg = {0};
    for (char *line = data, *end = data + got; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *lend = nl ? nl : end;
        if (parse_log_line(line, lend, &level, &msg) &&
            (buf_equals(&level, "error") || buf_equals(&level, "fatal") ||
             buf_equals(&level, "panic")) && buf_pending(&msg) > 0) {
            free(result);
            result = buf_strdup(&msg);
        }
        line = lend + 1;
    }
    buf_free(&level);
    buf_free(&msg);
out:
    free(data);
    close(fd);
    return result;
}

/* ------------------------------------------------------------------------------------ */
/* Child processes                                                                      */
/* ------------------------------------------------------------------------------------ */

/* fork+exec argv with stdio[0..2] as its fds 0-2. Everything else we hold is
 * close-on-exec. The child gets an empty signal mask and default SIGPIPE: both are
 * inherited across exec and would otherwise leak into runc and the container. */
static pid_t spawn(char *const argv[], const int stdio[3])
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    for (int i = 0; i < 3; i++) {
        if (stdio[i] == i)
            fcntl(i, F_SETFD, 0); /* dup2(i, i) would not clear FD_CLOEXEC */
        else if (dup2(stdio[i], i) < 0)
            _exit(127);
    }
    execvp(argv[0], argv);
    dprintf(2, "berth-monitor: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Runs a helper to completion (runc create/start/delete/exec -d). Returns its wait
 * status, or -1 if it could not be started. Other children that exit meanwhile stay
 * zombies until the event loop's waitpid(-1) sweep. */
static int run_sync(char *const argv[], const int stdio[3])
{
    pid_t pid = spawn(argv, stdio);
    if (pid < 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return st;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

static void describe_status(int st, char *out, size_t len)
{
    if (st < 0)
        snprintf(out, len, "could not be started: %s", strerror(errno));
    else if (WIFSIGNALED(st))
        snprintf(out, len, "was killed by signal %d", WTERMSIG(st));
    else
        snprintf(out, len, "exited with status %d", WEXITSTATUS(st));
}

/* SIGCHLD arrives through a signalfd so that reaping is just another poll event. */
static int make_signalfd(const int *sigs, int n)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++)
        sigaddset(&set, sigs[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Empties the signalfd; returns a bitmask of the signals seen (bit = signo). */
static uint64_t drain_signalfd(int fd)
{
    uint64_t seen = 0;
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t r = read(fd, &si, sizeof si);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof si)
            break;
        if (si.ssi_signo < 64)
            seen |= (uint64_t)1 << si.ssi_signo;
    }
    return seen;
}

/* ------------------------------------------------------------------------------------ */
/* `run`: state                                                                         */
/* ------------------------------------------------------------------------------------ */

struct run_opts {
    char *id, *bundle, *runtime, *runtime_root, *state_dir, *log_path, *oom_file;
    char **cgroup_procs;
    int n_cgroup_procs;
    bool terminal, want_stdin;
    int sync_fd;
};

enum conn_kind { CONN_CTL, CONN_ATTACH };

struct conn {
    struct conn *next;
    int fd;
    enum conn_kind kind;
    bool rd_eof;     /* peer shut down its sending side: no more reads */
    bool dead;       /* freed at the end of the loop iteration */
    bool discarding; /* ctl: skipping the rest of an over-long line */
    size_t in_len;
    char in[CTL_LINE_MAX];
    struct buf out;  /* bytes not yet accepted by the socket */
};

static struct monitor {
    struct run_opts o;
    /* paths under the state dir */
    char *runc_log, *pid_file, *console_sock, *ctl_sock, *attach_sock, *monitor_pid,
         *exit_json, *monitor_log;

    int devnull, sig_fd, ctl_lfd, attach_lfd, console_lfd, log_fd;
    bool log_broken; /* log a write failure once, not once per chunk */

    /* Container output: [0] stdout, [1] stderr; with a terminal only [0] (the master). */
    int out_fd[2];
    bool out_open[2];
    int pty_fd;

    /* Container stdin: pipe write end, or the pty master (in_is_pty, then not ours to
     * close). Bytes the fd did not accept wait in in_buf. */
    int in_fd;
    bool in_is_pty, in_close_req;
    struct buf in_buf;

    bool made_console, made_ctl, made_attach, made_pidfile; /* ours to remove */
    bool created; /* runc may hold state for the id: `runc delete` it on failure */
    bool started;
    pid_t init_pid;
    bool reaped;
    int wstatus;
    struct timespec finished;

    struct conn *conns;
} M = {
    .devnull = -1, .sig_fd = -1, .ctl_lfd = -1, .attach_lfd = -1, .console_lfd = -1,
    .log_fd = -1, .out_fd = {-1, -1}, .pty_fd = -1, .in_fd = -1,
};

/* runc's global flags: its own state root, and a JSON log we can mine for errors. */
static int runc_argv(const char **argv)
{
    int n = 0;
    argv[n++] = M.o.runtime;
    argv[n++] = "--root";
    argv[n++] = M.o.runtime_root;
    argv[n++] = "--log";
    argv[n++] = M.runc_log;
    argv[n++] = "--log-format";
    argv[n++] = "json";
    return n;
}

/* Runs `runc <cmd...> ID` with stdio on /dev/null and stderr on monitor.log. On failure
 * fills err with runc's own last error (or how it ended). Returns its wait status. */
static int runc_helper(const char *const *cmd, char *err, size_t errlen)
{
    const char *argv[24];
    int n = runc_argv(argv);
    while (*cmd)
        argv[n++] = *cmd++;
    argv[n++] = M.o.id;
    argv[n] = NULL;
    off_t from = file_size(M.runc_log);
    const int stdio[3] = {M.devnull, M.devnull, g_diag_fd};
    int st = run_sync((char *const *)argv, stdio);
    if (err && !(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char *msg = runc_last_error(M.runc_log, from);
        if (msg)
            snprintf(err, errlen, "%s", msg);
        else {
            char how[128];
            describe_status(st, how, sizeof how);
            snprintf(err, errlen, "runc %s %s", argv[7], how);
        }
        free(msg);
    }
    return st;
}

static void runc_delete(void)
{
    static const char *const cmd[] = {"delete", "--force", NULL};
    char err[1024] = "";
    int st = runc_helper(cmd, err, sizeof err);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
        mlog("runc delete failed: %s", err);
}

/* Whether runc holds state for our id (runc keeps it in RUNTIME_ROOT/ID). */
static bool runc_state_exists(void)
{
    char *dir = path_join(M.o.runtime_root, M.o.id);
    struct stat st;
    bool exists = lstat(dir, &st) == 0;
    free(dir);
    return exists;
}

/* Removes only what this monitor created: after a failed start the same paths may
 * belong to a live monitor of the same id. */
static void remove_files(void)
{
    if (M.made_console)
        unlink(M.console_sock);
    if (M.made_ctl)
        unlink(M.ctl_sock);
    if (M.made_attach)
        unlink(M.attach_sock);
    if (M.made_pidfile)
        unlink(M.monitor_pid);
}

static void sync_report(const char *line)
{
    if (M.o.sync_fd < 0)
        return;
    if (write_all(M.o.sync_fd, line, strlen(line)) < 0)
        mlog("writing the sync fd: %s", strerror(errno));
    xclose(&M.o.sync_fd);
}

/* Start-up failure: clean up first (so that when berthd reads the error, runc's state
 * and our sockets are gone and it may retry the same id at once), then report, exit 1. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mlog("start-up failed: %s", msg);
    if (M.created && runc_state_exists())
        runc_delete();
    remove_files();
    struct buf b = {0};
    buf_puts(&b, "{\"ok\":false,\"error\":\"");
    json_escape(&b, msg);
    buf_puts(&b, "\"}\n");
    char *line = buf_strdup(&b);
    sync_report(line);
    exit(1);
}

/* ------------------------------------------------------------------------------------ */
/* `run`: start-up                                                                      */
/* ------------------------------------------------------------------------------------ */

static void usage_run(void)
{
    fprintf(stderr,
            "usage: berth-monitor run --id ID --bundle DIR --runtime PATH --runtime-root DIR\n"
            "         --state-dir DIR --log-path FILE [--oom-file FILE] [--cgroup-procs FILE]...\n"
            "         [--terminal] [--stdin] [--sync-fd N]\n");
    exit(2);
}

static void parse_run_opts(int argc, char **argv)
{
    enum { OPT_ID = 1, OPT_BUNDLE, OPT_RUNTIME, OPT_ROOT, OPT_STATE, OPT_LOG, OPT_OOM,
           OPT_CG, OPT_TERM, OPT_STDIN, OPT_SYNC };
    static const struct option lo[] = {
        {"id", 1, 0, OPT_ID}, {"bundle", 1, 0, OPT_BUNDLE}, {"runtime", 1, 0, OPT_RUNTIME},
        {"runtime-root", 1, 0, OPT_ROOT}, {"state-dir", 1, 0, OPT_STATE},
        {"log-path", 1, 0, OPT_LOG}, {"oom-file", 1, 0, OPT_OOM}, {"cgroup-procs", 1, 0, OPT_CG},
        {"terminal", 0, 0, OPT_TERM}, {"stdin", 0, 0, OPT_STDIN}, {"sync-fd", 1, 0, OPT_SYNC},
        {0, 0, 0, 0}};
    struct run_opts *o = &M.o;
    o->sync_fd = -1;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_ID: o->id = optarg; break;
        case OPT_BUNDLE: o->bundle = optarg; break;
        case OPT_RUNTIME: o->runtime = optarg; break;
        case OPT_ROOT: o->runtime_root = optarg; break;
        case OPT_STATE: o->state_dir = optarg; break;
        case OPT_LOG: o->log_path = optarg; break;
        case OPT_OOM: o->oom_file = optarg; break;
        case OPT_CG:
            o->cgroup_procs = xrealloc(o->cgroup_procs, sizeof(char *) * (size_t)(o->n_cgroup_procs + 1));
            o->cgroup_procs[o->n_cgroup_procs++] = optarg;
            break;
        case OPT_TERM: o->terminal = true; break;
        case OPT_STDIN: o->want_stdin = true; break;
        case OPT_SYNC: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > INT_MAX)
                usage_run();
            o->sync_fd = (int)v;
            break;
        }
        default: usage_run();
        }
    }
    if (optind != argc || !o->id || !o->bundle || !o->runtime || !o->runtime_root ||
        !o->state_dir || !o->log_path)
        usage_run();
}

/* The sync fd must survive everything below but never reach runc: make it CLOEXEC and
 * move it off 0-2, which are about to be reopened on /dev/null. */
static void adopt_sync_fd(void)
{
    int fd = M.o.sync_fd;
    if (fd < 0)
        return;
    if (fcntl(fd, F_GETFD) < 0) {
        fprintf(stderr, "berth-monitor: --sync-fd %d: %s\n", fd, strerror(errno));
        exit(1);
    }
    if (fd <= 2) {
        M.o.sync_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (M.o.sync_fd < 0) {
            fprintf(stderr, "berth-monitor: dup sync fd: %s\n", strerror(errno));
            exit(1);
        }
    } else
        fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void make_paths(void)
{
    struct run_opts *o = &M.o;
    o->bundle = abs_path(o->bundle);
    o->runtime_root = abs_path(o->runtime_root);
    o->state_dir = abs_path(o->state_dir);
    o->log_path = abs_path(o->log_path);
    o->oom_file = abs_path(o->oom_file);
    for (int i = 0; i < o->n_cgroup_procs; i++)
        o->cgroup_procs[i] = abs_path(o->cgroup_procs[i]);
    if (strchr(o->runtime, '/'))
        o->runtime = abs_path(o->runtime);
    M.runc_log = path_join(o->state_dir, "runc.log");
    M.pid_file = path_join(o->state_dir, "container.pid");
    M.ctl_sock = path_join(o->state_dir, "ctl.sock");
    M.attach_sock = path_join(o->state_dir, "attach.sock");
    M.monitor_pid = path_join(o->state_dir, "monitor.pid");
    M.exit_json = path_join(o->state_dir, "exit.json");
    M.monitor_log = path_join(o->state_dir, "monitor.log");
    if (o->terminal)
        M.console_sock = path_join(o->state_dir, "console.sock");
}

/* Double fork: the process berthd spawned exits as soon as the intermediate has, so
 * berthd never becomes (or stays) the container's ancestor; the monitor ends up
 * reparented to init, in its own session. */
static void daemonize(void)
{
    pid_t p = fork();
    if (p < 0)
        fail("fork: %s", strerror(errno));
    if (p > 0) {
        int st;
        while (waitpid(p, &st, 0) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    if (setsid() < 0)
        fail("setsid: %s", strerror(errno));
    p = fork();
    if (p < 0)
        fail("fork: %s", strerror(errno));
    if (p > 0)
        _exit(0);
}

/* Closes whatever berthd let us inherit (other than the sync fd) so the long-lived
 * monitor does not pin berthd's files or sockets. */
static void close_inherited_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int keep = dirfd(d);
    int fds[1024];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < sizeof fds / sizeof *fds;) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > 2 && fd != keep && fd != M.o.sync_fd)
            fds[n++] = fd;
    }
    closedir(d);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

static void setup_process(void)
{
    close_inherited_fds();
    /* 0-2 first: berthd may have left some of them closed, and the next open() would
     * then land there and be clobbered. */
    int nul = open("/dev/null", O_RDWR);
    if (nul < 0)
        fail("open /dev/null: %s", strerror(errno));
    for (int i = 0; i < 3; i++)
        if (nul != i)
            dup2(nul, i);
    if (nul > 2)
        close(nul);
    M.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int logfd = open(M.monitor_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (M.devnull < 0 || logfd < 0)
        fail("open %s: %s", logfd < 0 ? M.monitor_log : "/dev/null", strerror(errno));
    g_diag_fd = logfd;
    if (chdir("/") < 0)
        mlog("chdir /: %s", strerror(errno));
    umask(022);

    /* Leave berthd's cgroup for berth's monitor cgroup. */
    char pid[32];
    int plen = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    for (int i = 0; i < M.o.n_cgroup_procs; i++) {
        int fd = open(M.o.cgroup_procs[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write_all(fd, pid, (size_t)plen) < 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            fail("joining cgroup %s: %s", M.o.cgroup_procs[i], strerror(e));
        }
        close(fd);
    }

    /* The monitor must outlive memory pressure that kills containers. */
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, "-999", 4) < 0)
        mlog("setting oom_score_adj: %s", strerror(errno));
    if (fd >= 0)
        close(fd);

    /* `runc create` exits leaving the container init (and runc init intermediates) to us. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        fail("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));

    /* SIGPIPE: broken clients and pipes are handled as EPIPE. SIGTERM/INT/HUP: the
     * container's lifetime is not ours to end; berthd uses ctl `kill`. */
    signal(SIGPIPE, SIG_IGN);
    static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
    M.sig_fd = make_signalfd(sigs, 4);
    if (M.sig_fd < 0)
        fail("signalfd: %s", strerror(errno));
}

static int open_log_file(void)
{
    return open(M.o.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* Runs `runc create` with the container's stdio: pipes, or the console socket. */
static void create_container(void)
{
    int child_io[3] = {M.devnull, M.devnull, g_diag_fd};
    int pout[2] = {-1, -1}, perr[2] = {-1, -1}, pin[2] = {-1, -1};

    /* runc would refuse too, but our failure path runs `runc delete --force ID`, which
     * must never hit another monitor's container. */
    if (runc_state_exists())
        fail("container %s already exists in %s", M.o.id, M.o.runtime_root);

    if (M.o.terminal) {
        M.console_lfd = unix_listen(M.console_sock);
        if (M.console_lfd < 0)
            fail("listening on %s: %s", M.console_sock, strerror(errno));
        M.made_console = true;
    } else {
        if (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
            (M.o.want_stdin && pipe2(pin, O_CLOEXEC) < 0))
            fail("pipe: %s", strerror(errno));
        child_io[0] = M.o.want_stdin ? pin[0] : M.devnull;
        child_io[1] = pout[1];
        child_io[2] = perr[1];
    }

    const char *argv[24];
    int n = runc_argv(argv);
    argv[n++] = "create";
    argv[n++] = "--bundle";
    argv[n++] = M.o.bundle;
    argv[n++] = "--pid-file";
    argv[n++] = M.pid_file;
    if (M.o.terminal) {
        argv[n++] = "--console-socket";
        argv[n++] = M.console_sock;
    }
    argv[n++] = M.o.id;
    argv[n] = NULL;

    unlink(M.pid_file);
    off_t from = file_size(M.runc_log);
    int st = run_sync((char *const *)argv, child_io);
    /* The container holds its own copies now; ours would keep EOF from ever coming. */
    xclose(&pout[1]);
    xclose(&perr[1]);
    xclose(&pin[0]);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        /* runc usually cleans up after itself, but may leave state behind. */
        M.created = true;
        char *msg = runc_last_error(M.runc_log, from);
        if (msg)
            fail("%s", msg);
        char how[128];
        describe_status(st, how, sizeof how);
        fail("runc create %s", how);
    }
    M.created = true;

    if (M.o.terminal) {
        M.pty_fd = receive_console(M.console_lfd, 5000);
        if (M.pty_fd < 0)
            fail("receiving the pty master from runc: %s", strerror(errno));
        xclose(&M.console_lfd);
        unlink(M.console_sock);
        M.made_console = false;
        set_nonblock(M.pty_fd);
        M.out_fd[0] = M.pty_fd;
        M.out_open[0] = true;
        if (M.o.want_stdin) {
            M.in_fd = M.pty_fd;
            M.in_is_pty = true;
        }
    } else {
        M.out_fd[0] = pout[0];
        M.out_fd[1] = perr[0];
        M.out_open[0] = M.out_open[1] = true;
        set_nonblock(pout[0]);
        set_nonblock(perr[0]);
        if (M.o.want_stdin) {
            M.in_fd = pin[1];
            set_nonblock(pin[1]);
        }
    }

    M.init_pid = read_pid_file(M.pid_file);
    if (M.init_pid <= 0)
        fail("reading %s: %s", M.pid_file, strerror(errno ? errno : EINVAL));
    mlog("created container %s, init pid %d", M.o.id, (int)M.init_pid);
}

/* Warn loudly if the init is not our child: its exit would then never be seen. */
static void check_init_parent(void)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)M.init_pid);
    if (read_small_file(path, stat, sizeof stat) < 0)
        return; /* already gone (a zombie still has /proc; this is a race at worst) */
    char *rp = strrchr(stat, ')');
    int ppid = 0;
    if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid != getpid())
        mlog("warning: init %d has parent %d, not the monitor", (int)M.init_pid, ppid);
}

static void start_listening(void)
{
    M.ctl_lfd = unix_listen(M.ctl_sock);
    if (M.ctl_lfd < 0)
        fail("listening on %s: %s", M.ctl_sock, strerror(errno));
    M.made_ctl = true;
    M.attach_lfd = unix_listen(M.attach_sock);
    if (M.attach_lfd < 0)
        fail("listening on %s: %s", M.attach_sock, strerror(errno));
    M.made_attach = true;
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (write_file_atomic(M.monitor_pid, pid, (size_t)n, 0644) < 0)
        fail("writing %s: %s", M.monitor_pid, strerror(errno));
    M.made_pidfile = true;
}

/* ------------------------------------------------------------------------------------ */
/* `run`: container output -> log file -> attach clients                                */
/* ------------------------------------------------------------------------------------ */

static void cri_record(struct buf *b, const char *ts, const char *stream, char tag,
                       const char *text, size_t n)
{
    buf_puts(b, ts);
    buf_putc(b, ' ');
    buf_puts(b, stream);
    buf_putc(b, ' ');
    buf_putc(b, tag);
    buf_putc(b, ' ');
    buf_append(b, text, n);
    buf_putc(b, '\n');
}

/* One chunk as CRI records: each complete line is F, an unterminated tail is P (we do
 * not hold bytes back waiting for a newline), and lines longer than 16 KiB are cut into
 * P pieces. All records of a chunk share one timestamp and go out in one write. */
static void log_output(int stream, const char *d, size_t n)
{
    if (M.log_fd < 0)
        return;
    static struct buf b;
    buf_reset(&b);
    char ts[64];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fmt_time(&now, ts, sizeof ts);
    const char *sname = stream == 2 ? "stderr" : "stdout";
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(d + i, '\n', n - i);
        size_t linelen = nl ? (size_t)(nl - (d + i)) : n - i;
        size_t j = 0;
        do {
            size_t piece = linelen - j < CRI_MAX_PIECE ? linelen - j : CRI_MAX_PIECE;
            bool last = j + piece == linelen;
            cri_record(&b, ts, sname, last && nl ? 'F' : 'P', d + i + j, piece);
            j += piece;
        } while (j < linelen);
        i += linelen + (nl ? 1 : 0);
    }
    if (write_all(M.log_fd, buf_data(&b), buf_pending(&b)) < 0) {
        if (!M.log_broken)
            mlog("writing %s: %s", M.o.log_path, strerror(errno));
        M.log_broken = true;
    } else
        M.log_broken = false;
}

/* Sends as much of c->out as the socket takes now. */
static void conn_flush(struct conn *c)
{
    while (!c->dead && buf_pending(&c->out) > 0) {
        ssize_t w = send(c->fd, buf_data(&c->out), buf_pending(&c->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                c->dead = true; /* EPIPE/ECONNRESET: the client is gone */
            return;
        }
        buf_consume(&c->out, (size_t)w);
    }
}

static void fanout_output(int stream, const char *d, size_t n)
{
    unsigned char hdr[8] = {(unsigned char)stream, 0, 0, 0, (unsigned char)(n >> 24),
                            (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                            (unsigned char)n};
    for (struct conn *c = M.conns; c; c = c->next) {
        if (c->kind != CONN_ATTACH || c->dead)
            continue;
        if (!M.o.terminal)
            buf_append(&c->out, hdr, sizeof hdr);
        buf_append(&c->out, d, n);
        conn_flush(c);
        /* After exit we no longer pause the output (the log must get it all), so a
         * client that cannot keep up is cut off rather than buffered without bound. */
        if (M.reaped && buf_pending(&c->out) > ATTACH_DROP) {
            mlog("dropping attach client fd %d: %zu bytes behind", c->fd, buf_pending(&c->out));
            c->dead = true;
        }
    }
}

/* Reads one chunk from an output fd. EOF, or EIO on a pty master whose slave side is
 * closed everywhere, ends that stream. */
static void read_output(int idx)
{
    static char chunk[READ_CHUNK];
    ssize_t n = read(M.out_fd[idx], chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        if (n < 0 && errno != EIO)
            mlog("reading container output: %s", strerror(errno));
        M.out_open[idx] = false;
        if (!M.o.terminal)
            xclose(&M.out_fd[idx]);
        return;
    }
    int stream = M.o.terminal ? 1 : idx + 1;
    log_output(stream, chunk, (size_t)n); /* the log first: it is the record of truth */
    fanout_output(stream, chunk, (size_t)n);
}

/* While the init runs, a client more than ATTACH_PAUSE behind stops our reads, which
 * fills the pipe and blocks the container's writes, as a slow terminal would. */
static bool output_paused(void)
{
    if (M.reaped)
        return false;
    for (struct conn *c = M.conns; c; c = c->next)
        if (c->kind == CONN_ATTACH && !c->dead && buf_pending(&c->out) > ATTACH_PAUSE)
            return true;
    return false;
}

static bool attach_pending(void)
{
    for (struct conn *c = M.conns; c; c = c->next)
        if (c->kind == CONN_ATTACH && !c->dead && buf_pending(&c->out) > 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------------------------ */
/* `run`: attach clients -> container stdin                                             */
/* ------------------------------------------------------------------------------------ */

static void stdin_close_now(void)
{
    if (!M.in_is_pty)
        xclose(&M.in_fd);
    M.in_fd = -1;
    buf_free(&M.in_buf);
}

/* A client's EOF closes the container's stdin once what is queued has been written.
 * A pty has no separate input side to close, so there it is a no-op. */
static void stdin_close_request(void)
{
    if (M.in_fd < 0 || M.in_is_pty || M.in_close_req)
        return;
    M.in_close_req = true;
    if (buf_pending(&M.in_buf) == 0)
        stdin_close_now();
}

/* Writes queued stdin bytes; on EPIPE (the container closed its stdin) drops them. */
static void stdin_flush(void)
{
    while (M.in_fd >= 0 && buf_pending(&M.in_buf) > 0) {
        ssize_t w = write(M.in_fd, buf_data(&M.in_buf), buf_pending(&M.in_buf));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            mlog("writing container stdin: %s", strerror(errno));
            stdin_close_now();
            return;
        }
        buf_consume(&M.in_buf, (size_t)w);
    }
    if (M.in_close_req && M.in_fd >= 0 && buf_pending(&M.in_buf) == 0)
        stdin_close_now();
}

static void attach_read(struct conn *c)
{
    static char tmp[READ_CHUNK];
    ssize_t n = read(c->fd, tmp, sizeof tmp);
    if (n < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            c->dead = true;
        return;
    }
    if (n == 0) {
        c->rd_eof = true;
        stdin_close_request();
        return;
    }
    if (M.in_fd < 0 || M.in_close_req)
        return; /* no stdin (or it is closing): the bytes have nowhere to go */
    buf_append(&M.in_buf, tmp, (size_t)n);
    stdin_flush();
}

/* ------------------------------------------------------------------------------------ */
/* `run`: control requests                                                              */
/* ------------------------------------------------------------------------------------ */

static void ctl_reply(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ctl_reply(struct conn *c, const char *fmt, ...)
{
    char line[1100];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    for (size_t i = 0; i < len; i++) /* one reply is one line, whatever runc said */
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    buf_append(&c->out, line, len);
    conn_flush(c);
    if (buf_pending(&c->out) > CTL_OUT_MAX)
        c->dead = true;
}

static void cmd_start(struct conn *c)
{
    if (M.started) {
        ctl_reply(c, "ok");
        return;
    }
    static const char *const cmd[] = {"start", NULL};
    char err[1024];
    int st = runc_helper(cmd, err, sizeof err);
    if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        M.started = true;
        mlog("started container");
        ctl_reply(c, "ok");
    } else
        ctl_reply(c, "error %s", err);
}

static void cmd_kill(struct conn *c, long sig)
{
    /* Only until the reap: after it the pid may belong to someone else. */
    if (M.reaped)
        ctl_reply(c, "error exited");
    else if (sig < 1 || sig > 64)
        ctl_reply(c, "error invalid signal");
    else if (kill(M.init_pid, (int)sig) < 0)
        ctl_reply(c, "error %s", strerror(errno));
    else
        ctl_reply(c, "ok");
}

static void cmd_resize(struct conn *c, long rows, long cols)
{
    if (M.pty_fd < 0) {
        ctl_reply(c, "error no terminal");
        return;
    }
    if (rows < 0 || rows > 65535 || cols < 0 || cols > 65535) {
        ctl_reply(c, "error invalid size");
        return;
    }
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    if (ioctl(M.pty_fd, TIOCSWINSZ, &ws) < 0)
        ctl_reply(c, "error %s", strerror(errno));
    else
        ctl_reply(c, "ok");
}

/* After berthd renamed the log: open a new one, and keep the old fd if that fails. */
static void cmd_reopen(struct conn *c)
{
    int fd = open_log_file();
    if (fd < 0) {
        ctl_reply(c, "error %s", strerror(errno));
        return;
    }
    xclose(&M.log_fd);
    M.log_fd = fd;
    M.log_broken = false;
    ctl_reply(c, "ok");
}

static void ctl_command(struct conn *c, char *line)
{
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = 0;
    char word[16], extra;
    long a, b;
    if (sscanf(line, "%15s", word) != 1)
        ctl_reply(c, "error unknown command");
    else if (strcmp(word, "start") == 0 && sscanf(line, "%*s %c", &extra) < 1)
        cmd_start(c);
    else if (strcmp(word, "kill") == 0 && sscanf(line, "%*s %ld %c", &a, &extra) == 1)
        cmd_kill(c, a);
    else if (strcmp(word, "resize") == 0 && sscanf(line, "%*s %ld %ld %c", &a, &b, &extra) == 2)
        cmd_resize(c, a, b);
    else if (strcmp(word, "reopen") == 0 && sscanf(line, "%*s %c", &extra) < 1)
        cmd_reopen(c);
    else if (!strcmp(word, "start") || !strcmp(word, "kill") || !strcmp(word, "resize") ||
             !strcmp(word, "reopen"))
        ctl_reply(c, "error invalid arguments");
    else
        ctl_reply(c, "error unknown command");
}

static void ctl_read(struct conn *c)
{
    ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
    if (n < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            c->dead = true;
        return;
    }
    if (n == 0) {
        /* Half-closed: keep the connection, berthd learns of our exit by its EOF. */
        c->rd_eof = true;
        return;
    }
    c->in_len += (size_t)n;
    char *start = c->in, *end = c->in + c->in_len, *nl;
    while (!c->dead && (nl = memchr(start, '\n', (size_t)(end - start)))) {
        *nl = 0;
        if (!c->discarding)
            ctl_command(c, start);
        c->discarding = false;
        start = nl + 1;
    }
    c->in_len = (size_t)(end - start);
    memmove(c->in, start, c->in_len);
    if (c->in_len == sizeof c->in) {
        if (!c->discarding)
            ctl_reply(c, "error line too long");
        c->discarding = true;
        c->in_len = 0;
    }
}

/* ------------------------------------------------------------------------------------ */
/* `run`: event loop                                                                    */
/* ------------------------------------------------------------------------------------ */

static void accept_conns(int lfd, enum conn_kind kind)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                mlog("accept: %s", strerror(errno));
            return;
        }
        struct conn *c = xrealloc(NULL, sizeof *c);
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->kind = kind;
        c->next = M.conns;
        M.conns = c;
    }
}

static void sweep_conns(void)
{
    for (struct conn **pp = &M.conns; *pp;) {
        struct conn *c = *pp;
        if (c->dead) {
            *pp = c->next;
            close(c->fd);
            buf_free(&c->out);
            free(c);
        } else
            pp = &c->next;
    }
}

/* Reaps every exited child: runc init intermediates, and the container init, whose
 * status and time we keep. */
static void reap_children(void)
{
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p < 0 && errno == EINTR)
            continue;
        if (p <= 0)
            return;
        if (p == M.init_pid && !M.reaped) {
            M.reaped = true;
            M.wstatus = st;
            clock_gettime(CLOCK_REALTIME, &M.finished);
            mlog("container init %d exited (status 0x%x)", (int)p, st);
            stdin_close_now(); /* nobody is left to read it */
        }
    }
}

static void handle_signals(void)
{
    uint64_t seen = drain_signalfd(M.sig_fd);
    for (int s = 1; s < 64; s++)
        if ((seen >> s & 1) && s != SIGCHLD)
            mlog("ignoring signal %d", s);
    reap_children(); /* also on spurious wakeups: cheap, and never misses an exit */
}

enum tag { T_SIG, T_CTL_L, T_ATT_L, T_OUT0, T_OUT1, T_STDIN, T_CONN };

struct pollset {
    struct pollfd *pfd;
    enum tag *tag;
    struct conn **conn;
    size_t n, cap;
};

static void ps_add(struct pollset *ps, int fd, short ev, enum tag t, struct conn *c)
{
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 16;
        ps->pfd = xrealloc(ps->pfd, ps->cap * sizeof *ps->pfd);
        ps->tag = xrealloc(ps->tag, ps->cap * sizeof *ps->tag);
        ps->conn = xrealloc(ps->conn, ps->cap * sizeof *ps->conn);
    }
    ps->pfd[ps->n] = (struct pollfd){fd, ev, 0};
    ps->tag[ps->n] = t;
    ps->conn[ps->n] = c;
    ps->n++;
}

static void build_pollset(struct pollset *ps, bool read_output_now)
{
    ps->n = 0;
    ps_add(ps, M.sig_fd, POLLIN, T_SIG, NULL);
    ps_add(ps, M.ctl_lfd, POLLIN, T_CTL_L, NULL);
    ps_add(ps, M.attach_lfd, POLLIN, T_ATT_L, NULL);
    if (read_output_now) {
        if (M.out_open[0])
            ps_add(ps, M.out_fd[0], POLLIN, T_OUT0, NULL);
        if (M.out_open[1])
            ps_add(ps, M.out_fd[1], POLLIN, T_OUT1, NULL);
    }
    if (M.in_fd >= 0 && buf_pending(&M.in_buf) > 0)
        ps_add(ps, M.in_fd, POLLOUT, T_STDIN, NULL);
    for (struct conn *c = M.conns; c; c = c->next) {
        short ev = 0;
        /* An attach client is not read while stdin is backed up: its bytes would only
         * pile up here instead of in its socket, where they push back on the sender. */
        if (!c->rd_eof && (c->kind == CONN_CTL || buf_pending(&M.in_buf) == 0))
            ev |= POLLIN;
        if (buf_pending(&c->out) > 0)
            ev |= POLLOUT;
        /* With ev == 0 poll still reports POLLHUP. That is how a half-closed client's
         * final close is noticed; a client merely held back is left out instead, so
         * that its hang-up cannot spin the loop before its last bytes were read. */
        if (ev || c->rd_eof)
            ps_add(ps, c->fd, ev, T_CONN, c);
    }
}

static void dispatch(struct pollset *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        short re = ps->pfd[i].revents;
        if (!re)
            continue;
        struct conn *c = ps->conn[i];
        switch (ps->tag[i]) {
        case T_SIG: handle_signals(); break;
        case T_CTL_L: accept_conns(M.ctl_lfd, CONN_CTL); break;
        case T_ATT_L: accept_conns(M.attach_lfd, CONN_ATTACH); break;
        case T_OUT0: if (M.out_open[0]) read_output(0); break;
        case T_OUT1: if (M.out_open[1]) read_output(1); break;
        case T_STDIN: stdin_flush(); break;
        case T_CONN:
            if (c->dead)
                break;
            if ((re & (POLLIN | POLLHUP | POLLERR)) && !c->rd_eof)
                c->kind == CONN_CTL ? ctl_read(c) : attach_read(c);
            if (!c->dead && (re & POLLOUT))
                conn_flush(c);
            /* Fully closed and read to EOF (or broken): gone. */
            if (!c->dead && ((re & POLLERR) || ((re & POLLHUP) && c->rd_eof)))
                c->dead = true;
            break;
        }
    }
}

/* Runs until the init is reaped, its output drained (bounded) and the attach clients
 * flushed (bounded). */
static void event_loop(void)
{
    struct pollset ps = {0};
    int64_t drain_deadline = 0, flush_deadline = 0;
    bool drained = false;
    reap_children();
    for (;;) {
        int timeout = -1;
        if (M.reaped) {
            int64_t now = now_ms();
            if (!drain_deadline)
                drain_deadline = now + DRAIN_MS;
            if (!drained && ((!M.out_open[0] && !M.out_open[1]) || now >= drain_deadline)) {
                if (M.out_open[0] || M.out_open[1])
                    mlog("output still open %d ms after exit; giving up on it", DRAIN_MS);
                drained = true;
                flush_deadline = now + FLUSH_MS;
            }
            if (drained && (!attach_pending() || now >= flush_deadline))
                break;
            timeout = (int)((drained ? flush_deadline : drain_deadline) - now);
        }
        build_pollset(&ps, !drained && !output_paused());
        int r = poll(ps.pfd, ps.n, timeout);
        if (r < 0) {
            if (errno != EINTR)
                mlog("poll: %s", strerror(errno));
            continue;
        }
        dispatch(&ps);
        sweep_conns();
    }
    free(ps.pfd);
    free(ps.tag);
    free(ps.conn);
}

/* ------------------------------------------------------------------------------------ */
/* `run`: exit                                                                          */
/* ------------------------------------------------------------------------------------ */

/* "oom_kill N" from memory.oom_control (v1) or memory.events (v2). Must be read before
 * `runc delete` removes the cgroup. */
static bool read_oom_killed(void)
{
    if (!M.o.oom_file)
        return false;
    char s[4096];
    if (read_small_file(M.o.oom_file, s, sizeof s) < 0) {
        mlog("reading %s: %s", M.o.oom_file, strerror(errno));
        return false;
    }
    for (char *line = s; line && *line;) {
        unsigned long long v;
        if (strncmp(line, "oom_kill ", 9) == 0 && sscanf(line + 9, "%llu", &v) == 1)
            return v > 0;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

static void write_exit_json(bool oom)
{
    int st = M.wstatus, sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    char ts[64], json[256];
    fmt_time(&M.finished, ts, sizeof ts);
    int n = snprintf(json, sizeof json,
                     "{\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":%s,"
                     "\"finishedAt\":\"%s\"}\n",
                     (int)M.init_pid, status_code(st), sig, oom ? "true" : "false", ts);
    if (write_file_atomic(M.exit_json, json, (size_t)n, 0644) < 0)
        mlog("writing %s: %s", M.exit_json, strerror(errno));
}

static void finish(void)
{
    bool oom = read_oom_killed();
    runc_delete();
    reap_children(); /* whatever runc delete killed or orphaned */
    write_exit_json(oom);
    /* Remove the files before closing the clients: a client's EOF tells berthd that
     * exit.json is final and that no monitor is left behind these paths. */
    remove_files();
    for (struct conn *c = M.conns; c; c = c->next)
        c->dead = true;
    sweep_conns();
    mlog("exiting");
    exit(0);
}

static int cmd_run(int argc, char **argv)
{
    parse_run_opts(argc, argv);
    adopt_sync_fd();
    make_paths();
    daemonize();
    setup_process();
    M.log_fd = open_log_file();
    if (M.log_fd < 0)
        fail("opening %s: %s", M.o.log_path, strerror(errno));
    create_container();
    check_init_parent();
    start_listening();

    char ok[128];
    snprintf(ok, sizeof ok, "{\"ok\":true,\"monitorPid\":%d,\"pid\":%d}\n", (int)getpid(),
             (int)M.init_pid);
    sync_report(ok);

    event_loop();
    finish();
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* `exec-tty`                                                                           */
/* ------------------------------------------------------------------------------------ */

/* Exit status when exec-tty itself fails before the process ran (docker uses 125 too). */
#define EXEC_TTY_FAILED 125

static struct exec_tty {
    char *id, *runtime, *runtime_root, *process, *dir, *sock, *pidf;
    int ctl_fd, pty, sig_fd;
    bool pty_eof, stdin_eof;
    struct buf to_pty;
    char ctl_in[256];
    size_t ctl_len;
    pid_t pid;
    bool reaped;
    int st;
} X = {.ctl_fd = -1, .pty = -1, .sig_fd = -1};

static void xt_cleanup_files(void)
{
    if (X.sock)
        unlink(X.sock);
    if (X.pidf)
        unlink(X.pidf);
    if (X.dir)
        rmdir(X.dir);
}

static void xt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void xt_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "berth-monitor exec-tty: %s\n", msg);
    xt_cleanup_files();
    exit(EXEC_TTY_FAILED);
}

static void usage_exec_tty(void)
{
    fprintf(stderr, "usage: berth-monitor exec-tty --id ID --runtime PATH --runtime-root DIR "
                    "--process FILE [--ctl-fd N]\n");
    exit(2);
}

static void xt_parse(int argc, char **argv)
{
    enum { OPT_ID = 1, OPT_RUNTIME, OPT_ROOT, OPT_PROCESS, OPT_CTL };
    static const struct option lo[] = {
        {"id", 1, 0, OPT_ID}, {"runtime", 1, 0, OPT_RUNTIME}, {"runtime-root", 1, 0, OPT_ROOT},
        {"process", 1, 0, OPT_PROCESS}, {"ctl-fd", 1, 0, OPT_CTL}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_ID: X.id = optarg; break;
        case OPT_RUNTIME: X.runtime = optarg; break;
        case OPT_ROOT: X.runtime_root = optarg; break;
        case OPT_PROCESS: X.process = optarg; break;
        case OPT_CTL: {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > INT_MAX)
                usage_exec_tty();
            X.ctl_fd = (int)v;
            break;
        }
        default: usage_exec_tty();
        }
    }
    if (optind != argc || !X.id || !X.runtime || !X.runtime_root || !X.process)
        usage_exec_tty();
}

/* runc only uses --console-socket with --detach, so: exec detached, become the
 * subreaper the exec'd process is orphaned to, and wait for it ourselves. */
static void xt_start(void)
{
    const char *tmp = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/berth-exec-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpl))
        xt_fail("mkdtemp %s: %s", tmpl, strerror(errno));
    X.dir = strdup(tmpl);
    X.sock = path_join(X.dir, "console.sock");
    X.pidf = path_join(X.dir, "exec.pid");
    int lfd = unix_listen(X.sock);
    if (lfd < 0)
        xt_fail("listening on %s: %s", X.sock, strerror(errno));

    const char *argv[] = {X.runtime, "--root", X.runtime_root, "exec", "--detach", "--tty",
                          "--console-socket", X.sock, "--pid-file", X.pidf,
                          "--process", X.process, X.id, NULL};
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    const int stdio[3] = {devnull, devnull, 2}; /* runc's errors reach our caller */
    int st = run_sync((char *const *)argv, stdio);
    close(devnull);
    if (st < 0)
        xt_fail("running %s: %s", X.runtime, strerror(errno));
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        xt_cleanup_files();
        exit(status_code(st)); /* runc already said why on stderr */
    }
    X.pty = receive_console(lfd, 5000);
    close(lfd);
    X.pid = read_pid_file(X.pidf);
    if (X.pty < 0 || X.pid <= 0) {
        int e = errno;
        if (X.pid > 0)
            kill(X.pid, SIGKILL); /* without its pty nobody could talk to it */
        xt_fail("%s: %s", X.pty < 0 ? "receiving the pty master" : "reading the pid file",
                strerror(e));
    }
    xt_cleanup_files();
    set_nonblock(X.pty);
}

static void xt_reap(void)
{
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p < 0 && errno == EINTR)
            continue;
        if (p <= 0)
            return;
        if (p == X.pid) {
            X.reaped = true;
            X.st = st;
        }
    }
}

static void xt_pty_flush(void)
{
    while (X.pty >= 0 && buf_pending(&X.to_pty) > 0) {
        ssize_t w = write(X.pty, buf_data(&X.to_pty), buf_pending(&X.to_pty));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                buf_reset(&X.to_pty);
            return;
        }
        buf_consume(&X.to_pty, (size_t)w);
    }
}

static void xt_read_stdin(void)
{
    char tmp[READ_CHUNK];
    ssize_t n = read(0, tmp, sizeof tmp);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        /* A pty has no input side to close: stop forwarding, keep the session. */
        X.stdin_eof = true;
        return;
    }
    buf_append(&X.to_pty, tmp, (size_t)n);
    xt_pty_flush();
}

static void xt_read_pty(void)
{
    char tmp[READ_CHUNK];
    ssize_t n = read(X.pty, tmp, sizeof tmp);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        X.pty_eof = true; /* EIO: every slave fd is closed */
        return;
    }
    if (write_all(1, tmp, (size_t)n) < 0) {
        /* Our reader is gone: hang up the terminal, as closing a terminal window does,
         * so the process gets SIGHUP instead of running unattended forever. */
        xclose(&X.pty);
        X.pty_eof = true;
    }
}

static void xt_read_ctl(void)
{
    ssize_t n = read(X.ctl_fd, X.ctl_in + X.ctl_len, sizeof X.ctl_in - 1 - X.ctl_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        xclose(&X.ctl_fd);
        return;
    }
    X.ctl_len += (size_t)n;
    X.ctl_in[X.ctl_len] = 0;
    char *start = X.ctl_in, *nl;
    while ((nl = strchr(start, '\n'))) {
        *nl = 0;
        unsigned rows, cols;
        if (sscanf(start, "resize %u %u", &rows, &cols) == 2 && rows <= 65535 && cols <= 65535) {
            struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
            if (X.pty >= 0)
                ioctl(X.pty, TIOCSWINSZ, &ws);
        }
        start = nl + 1;
    }
    X.ctl_len = strlen(start);
    memmove(X.ctl_in, start, X.ctl_len);
    if (X.ctl_len == sizeof X.ctl_in - 1)
        X.ctl_len = 0; /* an over-long line is garbage */
}

static int cmd_exec_tty(int argc, char **argv)
{
    xt_parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    static const int sigs[] = {SIGCHLD};
    X.sig_fd = make_signalfd(sigs, 1);
    if (X.sig_fd < 0)
        xt_fail("signalfd: %s", strerror(errno));
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        xt_fail("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    if (X.ctl_fd >= 0)
        fcntl(X.ctl_fd, F_SETFD, FD_CLOEXEC);
    xt_start();

    int64_t deadline = 0;
    xt_reap();
    for (;;) {
        int timeout = -1;
        if (X.reaped) {
            int64_t now = now_ms();
            if (!deadline)
                deadline = now + DRAIN_MS;
            if (X.pty_eof || now >= deadline)
                break;
            timeout = (int)(deadline - now);
        }
        struct pollfd p[4];
        int n = 0, isig, ipty = -1, iin = -1, ictl = -1;
        isig = n;
        p[n++] = (struct pollfd){X.sig_fd, POLLIN, 0};
        if (X.pty >= 0 && (!X.pty_eof || buf_pending(&X.to_pty))) {
            ipty = n;
            p[n++] = (struct pollfd){X.pty, (short)((X.pty_eof ? 0 : POLLIN) |
                                                    (buf_pending(&X.to_pty) ? POLLOUT : 0)), 0};
        }
        if (!X.stdin_eof && X.pty >= 0 && buf_pending(&X.to_pty) == 0) {
            iin = n;
            p[n++] = (struct pollfd){0, POLLIN, 0};
        }
        if (X.ctl_fd >= 0) {
            ictl = n;
            p[n++] = (struct pollfd){X.ctl_fd, POLLIN, 0};
        }
        if (poll(p, (nfds_t)n, timeout) < 0)
            continue;
        if (p[isig].revents) {
            drain_signalfd(X.sig_fd);
            xt_reap();
        }
        if (ipty >= 0 && (p[ipty].revents & POLLOUT))
            xt_pty_flush();
        if (ipty >= 0 && (p[ipty].revents & (POLLIN | POLLHUP | POLLERR)) && !X.pty_eof)
            xt_read_pty();
        if (iin >= 0 && p[iin].revents)
            xt_read_stdin();
        if (ictl >= 0 && p[ictl].revents)
            xt_read_ctl();
    }
    return status_code(X.st);
}

/* ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "exec-tty") == 0)
        return cmd_exec_tty(argc - 1, argv + 1);
    fprintf(stderr, "usage: berth-monitor run|exec-tty [options]  (see PROTOCOL.md)\n");
    return 2;
}
