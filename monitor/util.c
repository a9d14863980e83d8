/*
 * Shared helpers of berth-monitor: diagnostics, byte buffers, fd and path helpers,
 * unix sockets, just enough JSON, and child processes. See util.h.
 */
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Diagnostics                                                                          */
/* ------------------------------------------------------------------------------------ */

int g_diag_fd = 2; /* stderr until `run` has opened STATE/monitor.log */

void fmt_time(const struct timespec *ts, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)ts->tv_nsec);
}

void mlog(const char *fmt, ...)
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

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        /* Nothing sensible is left to do without memory; leave a trace and stop. */
        mlog("out of memory (%zu bytes)", n);
        abort();
    }
    return q;
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------------------ */
/* Byte buffer: data lives in p[off, len); used for every pending queue                 */
/* ------------------------------------------------------------------------------------ */

void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void buf_append(struct buf *b, const void *d, size_t n)
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

void buf_putc(struct buf *b, char c) { buf_append(b, &c, 1); }
void buf_puts(struct buf *b, const char *s) { buf_append(b, s, strlen(s)); }

void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

/* NUL-terminated copy of the pending bytes (caller frees). */
char *buf_strdup(const struct buf *b)
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
int write_all(int fd, const void *d, size_t n)
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

void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void xclose(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

char *path_join(const char *dir, const char *name)
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
char *abs_path(const char *p)
{
    if (!p || p[0] == '/')
        return p ? strdup(p) : NULL;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return strdup(p);
    return path_join(cwd, p);
}

off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Reads a small file (pid files, oom counters) into a NUL-terminated buffer. */
int read_small_file(const char *path, char *out, size_t len)
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

pid_t read_pid_file(const char *path)
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
int write_file_atomic(const char *path, const char *data, size_t n, mode_t mode)
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
int unix_listen(const char *path)
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
int receive_console(int lfd, int timeout_ms)
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

void json_escape(struct buf *b, const char *s)
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
char *runc_last_error(const char *path, off_t from)
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
pid_t spawn(char *const argv[], const int stdio[3])
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
int run_sync(char *const argv[], const int stdio[3])
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

int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

void describe_status(int st, char *out, size_t len)
{
    if (st < 0)
        snprintf(out, len, "could not be started: %s", strerror(errno));
    else if (WIFSIGNALED(st))
        snprintf(out, len, "was killed by signal %d", WTERMSIG(st));
    else
        snprintf(out, len, "exited with status %d", WEXITSTATUS(st));
}

/* SIGCHLD arrives through a signalfd so that reaping is just another poll event. */
int make_signalfd(const int *sigs, int n)
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
uint64_t drain_signalfd(int fd)
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
