/*
 * berth-monitor exec-tty (PROTOCOL.md, `exec-tty`): runs `runc exec --detach --tty`,
 * receives the pty master on a private console socket, relays it over our own stdio,
 * applies `resize ROWS COLS` lines from --ctl-fd, and exits with the process's code.
 */
#include "exec-tty.h"
#include "util.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

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

int cmd_exec_tty(int argc, char **argv)
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

