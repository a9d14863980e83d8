/*
 * berth-monitor: the per-container process that owns a container's data path.
 *
 * See PROTOCOL.md for the contract with berthd. In short, `run` detaches, runs
 * `runc create`, reports on a sync fd, then serves ctl.sock/attach.sock, writes the
 * CRI log, and records the init's exit in exit.json. `exec-tty` (exec-tty.c) runs
 * `runc exec` with a pty and relays it over its own stdio.
 *
 * This file is `run`: one poll() loop on the main thread. The log file is written by a
 * writer thread (logwriter.c), so that a slow or full disk never stops the loop; OOM
 * kills are watched in oomwatch.c; events.c appends STATE/events.jsonl. Every fd we
 * create is close-on-exec; the only fds a child (runc) gets are the three we dup2 onto
 * its stdio, so neither the sync fd nor the listening sockets can leak into a container.
 */
#include "events.h"
#include "exec-tty.h"
#include "idmap.h"
#include "logwriter.h"
#include "oomwatch.h"
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define ATTACH_PAUSE (1024 * 1024)      /* stop reading output while a client lags this much */
#define ATTACH_DROP (8 * 1024 * 1024)   /* after exit (no pause), drop a client this far behind */
#define CTL_LINE_MAX 1024               /* longest ctl request line */
#define CTL_OUT_MAX (64 * 1024)         /* a ctl client that never reads its replies is dropped */
#define FLUSH_MS 2000                   /* attach flush bound after the drain */
#define LOG_FLUSH_MS 2000               /* log writer flush bound at exit */
#define LOG_BUFFER_DEFAULT (4 * 1024 * 1024)
#define LOG_STALL_DEFAULT 1000

/* ------------------------------------------------------------------------------------ */
/* `run`: state                                                                         */
/* ------------------------------------------------------------------------------------ */

struct run_opts {
    char *id, *bundle, *runtime, *runtime_root, *state_dir, *log_path, *oom_file;
    char **cgroup_procs;
    int n_cgroup_procs;
    bool terminal, want_stdin;
    int sync_fd;
    uint64_t log_max_size;   /* 0: unbounded */
    unsigned log_max_files;  /* live included */
    size_t log_buffer;
    int log_stall_ms;
    /* Restart policy (PROTOCOL.md "Restarts"); unless-stopped is `always` here. */
    enum { RESTART_NO, RESTART_ON_FAILURE, RESTART_ALWAYS } restart;
    uint64_t restart_max;      /* on-failure: restarts before giving up; 0: no limit */
    uint64_t restart_delay_ms, restart_max_delay_ms, restart_reset_ms;
    double restart_factor, restart_jitter;
    uint64_t restart_count;    /* restarts already done by an earlier monitor */
    /* A writable root: an overlay the monitor mounts before each run and unmounts after,
     * so that with overlay_reset every run (a restart too) starts from the image. */
    char *ov_lower, *ov_upper, *ov_work, *ov_merged; /* no upper (NULL): a read-only root */
    bool overlay_reset;
    /* A user namespace (--idmap): the root's layers are mounted idmapped into its range. */
    bool idmap;
    struct idmap idmap_map;
    char **idmap_lowers; /* top first */
    int n_idmap_lowers;
};

enum conn_kind { CONN_CTL, CONN_ATTACH };

struct conn {
    struct conn *next;
    int fd;
    enum conn_kind kind;
    bool rd_eof;     /* peer shut down its sending side: no more reads */
    bool dead;       /* freed at the end of the loop iteration */
    bool discarding; /* ctl: skipping the rest of an over-long line */
    bool readonly;   /* attach-ro.sock: output only; its input and its EOF are ignored */
    size_t in_len;
    char in[CTL_LINE_MAX];
    struct buf out;  /* bytes not yet accepted by the socket */
};

static struct monitor {
    struct run_opts o;
    /* paths under the state dir */
    char *runc_log, *pid_file, *console_sock, *ctl_sock, *attach_sock, *attach_ro_sock, *monitor_pid,
         *exit_json, *monitor_log, *events;

    int devnull, sig_fd, ctl_lfd, attach_lfd, attach_ro_lfd, console_lfd;
    int wake_fd; /* eventfd: the log writer or an event wants the loop's attention */

    /* Container output: [0] stdout, [1] stderr; with a terminal only [0] (the master). */
    int out_fd[2];
    bool out_open[2];
    int pty_fd;

    /* Container stdin: pipe write end, or the pty master (in_is_pty, then not ours to
     * close). Bytes the fd did not accept wait in in_buf. */
    int in_fd;
    bool in_is_pty, in_close_req;
    struct buf in_buf;

    bool made_console, made_ctl, made_attach, made_attach_ro, made_pidfile; /* ours to remove */
    bool created; /* runc may hold state for the id: `runc delete` it on failure */
    bool started;
    pid_t init_pid;
    bool reaped;
    int wstatus;
    struct timespec finished;
    int64_t finished_ms, run_started_ms; /* CLOCK_MONOTONIC */

    /* Restarts. held: an operator stopped the container, so this run is the last;
     * force_reason: restart after this run whatever the policy (a failing health check). */
    bool held;
    char force_reason[32];
    uint64_t restarts; /* done so far, --restart-count included */
    unsigned streak;   /* restarts since the last run that lasted restart_reset_ms */
    int64_t restart_due_ms;
    char restart_reason[32];
    uint64_t oom_kills; /* of the last run, read before its cgroup went */

    int idmap_ns;        /* user namespace of --idmap, made at the first run and kept */
    bool idmap_fallback; /* idmapped layers failed once: the plain lower from then on */

    struct conn *conns;
} M = {
    .devnull = -1, .sig_fd = -1, .ctl_lfd = -1, .attach_lfd = -1, .attach_ro_lfd = -1, .console_lfd = -1,
    .wake_fd = -1, .out_fd = {-1, -1}, .pty_fd = -1, .in_fd = -1, .idmap_ns = -1,
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
    if (M.made_attach_ro)
        unlink(M.attach_ro_sock);
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

static void umount_overlay(void);

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
    umount_overlay();
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
            "         [--terminal] [--stdin] [--sync-fd N] [--log-max-size BYTES]\n"
            "         [--log-max-files N] [--log-buffer BYTES] [--log-stall-ms MS]\n"
            "         [--restart no|on-failure|always] [--restart-max N] [--restart-delay-ms MS]\n"
            "         [--restart-max-delay-ms MS] [--restart-factor F] [--restart-reset-ms MS]\n"
            "         [--restart-jitter F] [--restart-count N]\n"
            "         [--overlay LOWER:UPPER:WORK:MERGED [--overlay-reset]]\n"
            "         [--idmap UID:GID:COUNT --idmap-lower DIR...]\n");
    exit(2);
}

/* A decimal number in [min, max] (no sign, no suffix), or usage. */
static uint64_t parse_count(const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!(*s >= '0' && *s <= '9') || *end || errno || v < min || v > max)
        usage_run();
    return v;
}

/* A decimal fraction in [min, max], or usage. */
static double parse_real(const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!(*s >= '0' && *s <= '9') || *end || errno || !(v >= min && v <= max))
        usage_run();
    return v;
}

static void parse_run_opts(int argc, char **argv)
{
    enum { OPT_ID = 1, OPT_BUNDLE, OPT_RUNTIME, OPT_ROOT, OPT_STATE, OPT_LOG, OPT_OOM,
           OPT_CG, OPT_TERM, OPT_STDIN, OPT_SYNC, OPT_MAXSIZE, OPT_MAXFILES, OPT_BUFFER,
           OPT_STALL, OPT_RESTART, OPT_RMAX, OPT_RDELAY, OPT_RMAXDELAY, OPT_RFACTOR, OPT_RRESET,
           OPT_RJITTER, OPT_RCOUNT, OPT_OVERLAY, OPT_OVRESET, OPT_IDMAP, OPT_IDMAP_LOWER };
    static const struct option lo[] = {
        {"id", 1, 0, OPT_ID}, {"bundle", 1, 0, OPT_BUNDLE}, {"runtime", 1, 0, OPT_RUNTIME},
        {"runtime-root", 1, 0, OPT_ROOT}, {"state-dir", 1, 0, OPT_STATE},
        {"log-path", 1, 0, OPT_LOG}, {"oom-file", 1, 0, OPT_OOM}, {"cgroup-procs", 1, 0, OPT_CG},
        {"terminal", 0, 0, OPT_TERM}, {"stdin", 0, 0, OPT_STDIN}, {"sync-fd", 1, 0, OPT_SYNC},
        {"log-max-size", 1, 0, OPT_MAXSIZE}, {"log-max-files", 1, 0, OPT_MAXFILES},
        {"log-buffer", 1, 0, OPT_BUFFER}, {"log-stall-ms", 1, 0, OPT_STALL},
        {"restart", 1, 0, OPT_RESTART}, {"restart-max", 1, 0, OPT_RMAX},
        {"restart-delay-ms", 1, 0, OPT_RDELAY}, {"restart-max-delay-ms", 1, 0, OPT_RMAXDELAY},
        {"restart-factor", 1, 0, OPT_RFACTOR}, {"restart-reset-ms", 1, 0, OPT_RRESET},
        {"restart-jitter", 1, 0, OPT_RJITTER}, {"restart-count", 1, 0, OPT_RCOUNT},
        {"overlay", 1, 0, OPT_OVERLAY}, {"overlay-reset", 0, 0, OPT_OVRESET},
        {"idmap", 1, 0, OPT_IDMAP}, {"idmap-lower", 1, 0, OPT_IDMAP_LOWER},
        {0, 0, 0, 0}};
    struct run_opts *o = &M.o;
    o->sync_fd = -1;
    o->log_max_files = 1;
    o->log_buffer = LOG_BUFFER_DEFAULT;
    o->log_stall_ms = LOG_STALL_DEFAULT;
    o->restart_delay_ms = 100; /* Docker's backoff: 100 ms doubling to 1 min, reset after 10 s */
    o->restart_max_delay_ms = 60000;
    o->restart_reset_ms = 10000;
    o->restart_factor = 2;
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
        case OPT_MAXSIZE: o->log_max_size = parse_count(optarg, 0, UINT64_MAX); break;
        case OPT_MAXFILES: o->log_max_files = (unsigned)parse_count(optarg, 1, 1000000); break;
        case OPT_BUFFER: o->log_buffer = (size_t)parse_count(optarg, 1, SIZE_MAX / 4); break;
        case OPT_STALL: o->log_stall_ms = (int)parse_count(optarg, 0, 24 * 3600 * 1000); break;
        case OPT_RESTART:
            if (strcmp(optarg, "no") == 0)
                o->restart = RESTART_NO;
            else if (strcmp(optarg, "on-failure") == 0)
                o->restart = RESTART_ON_FAILURE;
            else if (strcmp(optarg, "always") == 0)
                o->restart = RESTART_ALWAYS;
            else
                usage_run();
            break;
        case OPT_RMAX: o->restart_max = parse_count(optarg, 0, UINT32_MAX); break;
        case OPT_RDELAY: o->restart_delay_ms = parse_count(optarg, 0, 7 * 24 * 3600 * 1000ULL); break;
        case OPT_RMAXDELAY:
            o->restart_max_delay_ms = parse_count(optarg, 0, 7 * 24 * 3600 * 1000ULL);
            break;
        case OPT_RFACTOR: o->restart_factor = parse_real(optarg, 1, 100); break;
        case OPT_RRESET: o->restart_reset_ms = parse_count(optarg, 0, 7 * 24 * 3600 * 1000ULL); break;
        case OPT_RJITTER: o->restart_jitter = parse_real(optarg, 0, 1); break;
        case OPT_RCOUNT: o->restart_count = parse_count(optarg, 0, UINT32_MAX); break;
        case OPT_OVERLAY: {
            /* LOWER:UPPER:WORK:MERGED, absolute paths without ':'; UPPER and WORK both
             * empty: a read-only root */
            char *s = strdup(optarg), *p[4];
            for (int i = 0; i < 4; i++) {
                p[i] = strsep(&s, ":");
                if (!p[i] || (p[i][0] != '/' && !((i == 1 || i == 2) && !p[i][0])))
                    usage_run();
            }
            if (s || !p[1][0] != !p[2][0])
                usage_run();
            o->ov_lower = p[0];
            o->ov_upper = p[1][0] ? p[1] : NULL;
            o->ov_work = p[2][0] ? p[2] : NULL;
            o->ov_merged = p[3];
            break;
        }
        case OPT_OVRESET: o->overlay_reset = true; break;
        case OPT_IDMAP:
            if (idmap_parse(optarg, &o->idmap_map) < 0)
                usage_run();
            o->idmap = true;
            break;
        case OPT_IDMAP_LOWER:
            if (optarg[0] != '/' || strchr(optarg, ':') || strchr(optarg, ','))
                usage_run();
            o->idmap_lowers =
                xrealloc(o->idmap_lowers, sizeof(char *) * (size_t)(o->n_idmap_lowers + 1));
            o->idmap_lowers[o->n_idmap_lowers++] = optarg;
            break;
        default: usage_run();
        }
    }
    if (optind != argc || !o->id || !o->bundle || !o->runtime || !o->runtime_root ||
        !o->state_dir || !o->log_path)
        usage_run();
    /* The idmapped layers are the overlay's lower: both or neither. */
    if (o->idmap != (o->n_idmap_lowers > 0) || (o->idmap && !o->ov_merged))
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
    M.attach_ro_sock = path_join(o->state_dir, "attach-ro.sock");
    M.monitor_pid = path_join(o->state_dir, "monitor.pid");
    M.exit_json = path_join(o->state_dir, "exit.json");
    M.monitor_log = path_join(o->state_dir, "monitor.log");
    M.events = path_join(o->state_dir, "events.jsonl");
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

    M.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (M.wake_fd < 0)
        fail("eventfd: %s", strerror(errno));
    if (events_open(M.events, M.wake_fd) < 0)
        fail("opening %s: %s", M.events, strerror(errno));
}

/* The live log file and its writer thread (started after the signal mask is set). */
static void setup_log(void)
{
    struct logw_config c = {
        .path = M.o.log_path, .max_size = M.o.log_max_size, .max_files = M.o.log_max_files,
        .buffer = M.o.log_buffer, .stall_ms = M.o.log_stall_ms, .wake_fd = M.wake_fd,
    };
    if (logw_init(&c) < 0)
        fail("opening %s: %s", M.o.log_path, strerror(errno));
    if (logw_start() < 0)
        fail("starting the log writer: %s", strerror(errno));
}

static int wipe_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    if (ftw->level == 0)
        return 0; /* the directory itself stays */
    if (remove(path) < 0 && errno != ENOENT) {
        mlog("removing %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The root's layers idmapped into the container's range (PROTOCOL.md "User namespaces"):
 * fills fds (one per --idmap-lower, top first) and returns 0, or -1 with err set and no
 * fd left open. */
static int idmap_lowers(int *fds, char *err, size_t errlen)
{
    if (M.idmap_ns < 0) {
        M.idmap_ns = idmap_userns(&M.o.idmap_map);
        if (M.idmap_ns < 0) {
            snprintf(err, errlen, "making a user namespace for idmapped layers: %s",
                     strerror(errno));
            return -1;
        }
    }
    for (int i = 0; i < M.o.n_idmap_lowers; i++) {
        fds[i] = idmap_tree(M.o.idmap_lowers[i], M.idmap_ns);
        if (fds[i] < 0) {
            snprintf(err, errlen, "idmapping %s: %s", M.o.idmap_lowers[i], strerror(errno));
            while (i > 0)
                xclose(&fds[--i]);
            return -1;
        }
    }
    return 0;
}

/* Mounts the root on MERGED: an overlay of lower (a ':' list) with UPPER and WORK, a
 * read-only overlay of lower without them, or, with one lower and no upper, the lower
 * itself (fd >= 0: an idmapped detached tree, attached as it is; else a read-only bind). */
static int mount_root_from(const char *lower, int nlower, int fd, char *err, size_t errlen)
{
    const char *merged = M.o.ov_merged;
    char opts[3 * PATH_MAX + 64];
    if (M.o.ov_upper) {
        snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, M.o.ov_upper,
                 M.o.ov_work);
        if (mount("overlay", merged, "overlay", MS_NODEV, opts) == 0)
            return 0;
    } else if (nlower > 1) {
        snprintf(opts, sizeof opts, "lowerdir=%s", lower);
        if (mount("overlay", merged, "overlay", MS_RDONLY | MS_NODEV, opts) == 0)
            return 0;
    } else if (fd >= 0) {
        if (move_mount(fd, "", AT_FDCWD, merged, MOVE_MOUNT_F_EMPTY_PATH) == 0)
            return 0;
    } else if (mount(lower, merged, NULL, MS_BIND | MS_REC, NULL) == 0) {
        if (mount(NULL, merged, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NODEV, NULL) == 0)
            return 0;
        int e = errno;
        umount2(merged, MNT_DETACH);
        errno = e;
    }
    snprintf(err, errlen, "mounting the root on %s: %s", merged, strerror(errno));
    return -1;
}

/* Mounts the root for the next run (the writable root, or with --idmap the container's
 * view of the image); with --overlay-reset first empties the upper and work directories,
 * so the run sees the image and nothing a run wrote. */
static int mount_overlay(char *err, size_t errlen)
{
    if (!M.o.ov_merged)
        return 0;
    umount2(M.o.ov_merged, 0); /* one left by a monitor that was killed: not stacked */
    if (M.o.overlay_reset && M.o.ov_upper &&
        (nftw(M.o.ov_upper, wipe_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 ||
         nftw(M.o.ov_work, wipe_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)) {
        snprintf(err, errlen, "resetting the writable root: %s", strerror(errno));
        return -1;
    }
    if (M.o.idmap && !M.idmap_fallback) {
        int n = M.o.n_idmap_lowers;
        int *fds = xrealloc(NULL, sizeof(int) * (size_t)n);
        int rc = idmap_lowers(fds, err, errlen);
        if (rc == 0) {
            /* overlayfs resolves each path in this process: the detached trees by fd. */
            struct buf b = {0};
            for (int i = 0; i < n; i++)
                buf_printf(&b, "%s/proc/self/fd/%d", i ? ":" : "", fds[i]);
            char *lower = buf_strdup(&b);
            buf_free(&b);
            rc = mount_root_from(lower, n, n == 1 ? fds[0] : -1, err, errlen);
            free(lower);
            /* The overlay holds private copies of its layers; an attached tree stays. */
            for (int i = 0; i < n; i++)
                xclose(&fds[i]);
        }
        free(fds);
        if (rc == 0)
            return 0;
        /* The kernel or the filesystem refuses idmapped layers: run on the shared root
         * as it is (its files show as the overflow id inside), and say so once. */
        M.idmap_fallback = true;
        mlog("idmapped layers unavailable, using %s as it is: %s", M.o.ov_lower, err);
        struct buf e = {0};
        json_escape(&e, err);
        char *msg = buf_strdup(&e);
        buf_free(&e);
        events_append("idmap-fallback", "\"error\":\"%.900s\"", msg);
        free(msg);
        umount2(M.o.ov_merged, MNT_DETACH);
    }
    return mount_root_from(M.o.ov_lower, 1, -1, err, errlen);
}

static void umount_overlay(void)
{
    if (M.o.ov_merged && umount2(M.o.ov_merged, 0) < 0 && errno != EINVAL)
        mlog("unmounting %s: %s", M.o.ov_merged, strerror(errno));
}

/* Runs `runc create` with the container's stdio: pipes, or the console socket. On failure
 * returns -1 with the reason in err, having closed what it opened (runc's state, if any,
 * is left to the caller: M.created says whether runc ran). */
static int create_container(char *err, size_t errlen)
{
    int child_io[3] = {M.devnull, M.devnull, g_diag_fd};
    int pout[2] = {-1, -1}, perr[2] = {-1, -1}, pin[2] = {-1, -1};

#define CREATE_FAIL(...)                                                                 \
    do {                                                                                 \
        snprintf(err, errlen, __VA_ARGS__);                                              \
        goto failed;                                                                     \
    } while (0)

    /* runc would refuse too, but our failure path runs `runc delete --force ID`, which
     * must never hit another monitor's container. */
    if (runc_state_exists())
        CREATE_FAIL("container %s already exists in %s", M.o.id, M.o.runtime_root);

    if (M.o.terminal) {
        M.console_lfd = unix_listen(M.console_sock);
        if (M.console_lfd < 0)
            CREATE_FAIL("listening on %s: %s", M.console_sock, strerror(errno));
        M.made_console = true;
    } else {
        if (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
            (M.o.want_stdin && pipe2(pin, O_CLOEXEC) < 0))
            CREATE_FAIL("pipe: %s", strerror(errno));
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
    /* runc usually cleans up after a failure, but may leave state behind. */
    M.created = true;
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char *msg = runc_last_error(M.runc_log, from);
        if (msg) {
            snprintf(err, errlen, "%s", msg);
            free(msg);
            goto failed;
        }
        char how[128];
        describe_status(st, how, sizeof how);
        CREATE_FAIL("runc create %s", how);
    }

    if (M.o.terminal) {
        M.pty_fd = receive_console(M.console_lfd, 5000);
        if (M.pty_fd < 0)
            CREATE_FAIL("receiving the pty master from runc: %s", strerror(errno));
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
        pout[0] = perr[0] = -1;
        M.out_open[0] = M.out_open[1] = true;
        set_nonblock(M.out_fd[0]);
        set_nonblock(M.out_fd[1]);
        if (M.o.want_stdin) {
            M.in_fd = pin[1];
            pin[1] = -1;
            set_nonblock(M.in_fd);
        }
    }

    M.init_pid = read_pid_file(M.pid_file);
    if (M.init_pid <= 0)
        CREATE_FAIL("reading %s: %s", M.pid_file, strerror(errno ? errno : EINVAL));
    mlog("created container %s, init pid %d", M.o.id, (int)M.init_pid);
    return 0;
#undef CREATE_FAIL

failed:
    xclose(&pout[0]);
    xclose(&pout[1]);
    xclose(&perr[0]);
    xclose(&perr[1]);
    xclose(&pin[0]);
    xclose(&pin[1]);
    if (M.console_lfd >= 0) {
        xclose(&M.console_lfd);
        unlink(M.console_sock);
        M.made_console = false;
    }
    return -1;
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
    M.attach_ro_lfd = unix_listen(M.attach_ro_sock);
    if (M.attach_ro_lfd < 0)
        fail("listening on %s: %s", M.attach_ro_sock, strerror(errno));
    M.made_attach_ro = true;
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (write_file_atomic(M.monitor_pid, pid, (size_t)n, 0644) < 0)
        fail("writing %s: %s", M.monitor_pid, strerror(errno));
    M.made_pidfile = true;
}

/* ------------------------------------------------------------------------------------ */
/* `run`: container output -> log file -> attach clients                                */
/* ------------------------------------------------------------------------------------ */

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
    logw_output(stream, chunk, (size_t)n); /* the log first: it is the record of truth */
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
        /* A viewer that leaves must not end the input of a client that is typing. */
        if (!c->readonly)
            stdin_close_request();
        return;
    }
    if (c->readonly)
        return;
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
    /* Once running, or restarted by us: the start berthd asked for has happened. */
    if (M.started || M.restarts > M.o.restart_count) {
        ctl_reply(c, "ok");
        return;
    }
    static const char *const cmd[] = {"start", NULL};
    char err[1024];
    int st = runc_helper(cmd, err, sizeof err);
    if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        M.started = true;
        M.run_started_ms = now_ms();
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

/* After berthd renamed the log: open a new one, and keep the old fd if that fails.
 * Records queued before go to the old file, later ones to the new. */
static void cmd_reopen(struct conn *c)
{
    if (logw_reopen() < 0)
        ctl_reply(c, "error %s", strerror(errno));
    else
        ctl_reply(c, "ok");
}

static void cmd_stats(struct conn *c)
{
    struct logw_stats ls;
    uint64_t oom = oom_check(); /* fresh, rather than as of the last notification */
    logw_get_stats(&ls);
    ctl_reply(c, "ok {\"logBytes\":%llu,\"logDroppedBytes\":%llu,\"logRotations\":%llu,"
                 "\"oomKills\":%llu}",
              (unsigned long long)ls.written, (unsigned long long)ls.dropped,
              (unsigned long long)ls.rotations, (unsigned long long)oom);
}

/* Tells every ctl client that events.jsonl has grown: one `!event` line per event. No
 * request is answered with a line starting with '!', so clients tell them apart. */
static void announce_events(void)
{
    uint64_t cnt;
    ssize_t r = read(M.wake_fd, &cnt, sizeof cnt); /* resets the eventfd */
    (void)r;
    for (unsigned n = events_take_unannounced(); n > 0; n--)
        for (struct conn *c = M.conns; c; c = c->next)
            if (c->kind == CONN_CTL && !c->dead)
                ctl_reply(c, "!event");
}

/* The operator stopped the container: no restart after this run, and a pending one is
 * called off (the monitor then exits). */
static void cmd_hold(struct conn *c)
{
    M.held = true;
    ctl_reply(c, "ok");
}

/* Restart after this run even if the policy would not (a failing health check). */
static void cmd_force_restart(struct conn *c, const char *reason)
{
    for (const char *p = reason; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            ctl_reply(c, "error invalid arguments");
            return;
        }
    snprintf(M.force_reason, sizeof M.force_reason, "%s", reason);
    ctl_reply(c, "ok");
}

static void ctl_command(struct conn *c, char *line)
{
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = 0;
    char word[16], arg[32], extra;
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
    else if (strcmp(word, "stats") == 0 && sscanf(line, "%*s %c", &extra) < 1)
        cmd_stats(c);
    else if (strcmp(word, "hold") == 0 && sscanf(line, "%*s %c", &extra) < 1)
        cmd_hold(c);
    else if (strcmp(word, "force-restart") == 0 &&
             sscanf(line, "%*s %31s %c", arg, &extra) == 1)
        cmd_force_restart(c, arg);
    else if (!strcmp(word, "start") || !strcmp(word, "kill") || !strcmp(word, "resize") ||
             !strcmp(word, "reopen") || !strcmp(word, "stats") || !strcmp(word, "hold") ||
             !strcmp(word, "force-restart"))
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

static void accept_conns(int lfd, enum conn_kind kind, bool readonly)
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
        c->readonly = readonly;
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
            M.finished_ms = now_ms();
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

enum tag { T_SIG, T_WAKE, T_OOM, T_CTL_L, T_ATT_L, T_ATR_L, T_OUT0, T_OUT1, T_STDIN, T_CONN };

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
    ps_add(ps, M.wake_fd, POLLIN, T_WAKE, NULL);
    if (oom_watch_fd() >= 0)
        ps_add(ps, oom_watch_fd(), POLLIN, T_OOM, NULL);
    ps_add(ps, M.ctl_lfd, POLLIN, T_CTL_L, NULL);
    ps_add(ps, M.attach_lfd, POLLIN, T_ATT_L, NULL);
    ps_add(ps, M.attach_ro_lfd, POLLIN, T_ATR_L, NULL);
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
        case T_WAKE: announce_events(); break; /* and the log gate is looked at again */
        case T_OOM: oom_watch_ready(now_ms()); break;
        case T_CTL_L: accept_conns(M.ctl_lfd, CONN_CTL, false); break;
        case T_ATT_L: accept_conns(M.attach_lfd, CONN_ATTACH, false); break;
        case T_ATR_L: accept_conns(M.attach_ro_lfd, CONN_ATTACH, true); break;
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

/* One turn of a loop: wait (at most timeout ms, -1: no bound), then serve what is ready. */
static void poll_and_dispatch(struct pollset *ps, int timeout)
{
    if (poll(ps->pfd, ps->n, timeout) < 0) {
        if (errno != EINTR)
            mlog("poll: %s", strerror(errno));
        return;
    }
    dispatch(ps);
    sweep_conns();
}

static void pollset_free(struct pollset *ps)
{
    free(ps->pfd);
    free(ps->tag);
    free(ps->conn);
}

/* Runs until the init is reaped, its output drained (bounded) and the attach clients
 * flushed (bounded). Output is read while neither an attach client nor the log queue
 * holds it back (logw_may_read bounds how long the log may). */
static void event_loop(void)
{
    struct pollset ps = {0};
    int64_t drain_deadline = 0, flush_deadline = 0;
    bool drained = false;
    reap_children();
    for (;;) {
        int timeout = -1;
        int64_t now = now_ms();
        if (M.reaped) {
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
        oom_watch_tick(now, &timeout);
        bool want = !drained && (M.out_open[0] || M.out_open[1]);
        build_pollset(&ps, want && logw_may_read(now, &timeout) && !output_paused());
        poll_and_dispatch(&ps, timeout);
    }
    pollset_free(&ps);
}

/* ------------------------------------------------------------------------------------ */
/* `run`: exit                                                                          */
/* ------------------------------------------------------------------------------------ */

/* oomKilled: any OOM kill in the container's cgroup (oom_kill > 0), of the init or
 * not; oomKills: how many. */
static void write_exit_json(uint64_t oom_kills)
{
    int st = M.wstatus, sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    char ts[64], json[320];
    fmt_time(&M.finished, ts, sizeof ts);
    int n = snprintf(json, sizeof json,
                     "{\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":%s,"
                     "\"oomKills\":%llu,\"finishedAt\":\"%s\"}\n",
                     (int)M.init_pid, status_code(st), sig, oom_kills > 0 ? "true" : "false",
                     (unsigned long long)oom_kills, ts);
    if (write_file_atomic(M.exit_json, json, (size_t)n, 0644) < 0)
        mlog("writing %s: %s", M.exit_json, strerror(errno));
}

/* Closes what belonged to the run that ended: its stdio, and the attach clients, which
 * get their EOF as at any exit (a client attaches to one run, as with Docker). */
static void close_run_fds(void)
{
    if (M.pty_fd >= 0) {
        if (M.out_fd[0] == M.pty_fd)
            M.out_fd[0] = -1;
        xclose(&M.pty_fd);
    }
    xclose(&M.out_fd[0]);
    xclose(&M.out_fd[1]);
    M.out_open[0] = M.out_open[1] = false;
    if (M.in_is_pty)
        M.in_fd = -1;
    xclose(&M.in_fd);
    M.in_is_pty = false;
    M.in_close_req = false;
    buf_free(&M.in_buf);
    for (struct conn *c = M.conns; c; c = c->next)
        if (c->kind == CONN_ATTACH)
            c->dead = true;
    sweep_conns();
}

/* After each run: the last OOM count, `runc delete` (the cgroup goes with it), and the
 * `exit` event with the time the init exited. Returns the OOM kill count. */
static uint64_t end_run(void)
{
    uint64_t oom_kills = M.oom_kills = oom_check(); /* before `runc delete` removes the cgroup */
    oom_watch_stop();
    if (M.created)
        runc_delete();
    M.created = false;
    reap_children(); /* whatever runc delete killed or orphaned */
    umount_overlay();
    close_run_fds();
    int st = M.wstatus, sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    int64_t ran = M.run_started_ms && M.finished_ms >= M.run_started_ms
                      ? M.finished_ms - M.run_started_ms
                      : 0;
    events_append_at(&M.finished, "exit",
                     "\"pid\":%d,\"exitCode\":%d,\"signal\":%d,\"oomKilled\":%s,\"oomKills\":%llu,"
                     "\"runMs\":%lld",
                     (int)M.init_pid, status_code(st), sig, oom_kills > 0 ? "true" : "false",
                     (unsigned long long)oom_kills, (long long)ran);
    return oom_kills;
}

/* Whether to run the container again, and when: the policy (or a forced restart), then
 * the backoff, which grows by the factor per restart up to the maximum and starts over
 * after a run of at least restart_reset_ms. */
static bool plan_restart(uint64_t oom_kills)
{
    int code = status_code(M.wstatus);
    bool failed = code != 0;
    const char *why = NULL;
    if (M.held)
        return false;
    if (M.force_reason[0])
        why = M.force_reason;
    else if (M.o.restart == RESTART_ALWAYS || (M.o.restart == RESTART_ON_FAILURE && failed))
        why = oom_kills > 0 && WIFSIGNALED(M.wstatus) && WTERMSIG(M.wstatus) == SIGKILL
                  ? "oom"
                  : failed ? "failure" : "exit";
    if (!why)
        return false;
    if (!M.force_reason[0] && M.o.restart == RESTART_ON_FAILURE && M.o.restart_max > 0 &&
        M.restarts >= M.o.restart_max) {
        mlog("giving up after %llu restarts", (unsigned long long)M.restarts);
        events_append("restart-giveup", "\"restarts\":%llu,\"maxRetries\":%llu",
                      (unsigned long long)M.restarts, (unsigned long long)M.o.restart_max);
        return false;
    }
    snprintf(M.restart_reason, sizeof M.restart_reason, "%s", why);
    M.force_reason[0] = 0;

    int64_t ran = M.run_started_ms ? M.finished_ms - M.run_started_ms : 0;
    if (ran >= (int64_t)M.o.restart_reset_ms)
        M.streak = 0;
    double d = (double)M.o.restart_delay_ms;
    for (unsigned i = 0; i < M.streak && d < (double)M.o.restart_max_delay_ms; i++)
        d *= M.o.restart_factor;
    if (d > (double)M.o.restart_max_delay_ms)
        d = (double)M.o.restart_max_delay_ms;
    if (M.o.restart_jitter > 0) {
        static unsigned seed;
        if (!seed)
            seed = (unsigned)getpid() ^ (unsigned)now_ms();
        double r = (double)rand_r(&seed) / RAND_MAX; /* [0, 1] */
        d *= 1 + M.o.restart_jitter * (2 * r - 1);
    }
    int64_t delay = (int64_t)(d + 0.5);
    M.streak++;
    M.restarts++;
    /* From the exit, not from now: draining the output is not part of the delay. */
    M.restart_due_ms = M.finished_ms + delay;
    struct timespec at = M.finished;
    at.tv_sec += delay / 1000;
    at.tv_nsec += (delay % 1000) * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    char ts[64];
    fmt_time(&at, ts, sizeof ts);
    mlog("restarting in %lld ms (attempt %llu, %s)", (long long)delay,
         (unsigned long long)M.restarts, why);
    events_append("restart-scheduled",
                  "\"attempt\":%llu,\"delayMs\":%lld,\"reason\":\"%s\",\"restartAt\":\"%s\"",
                  (unsigned long long)M.restarts, (long long)delay, why, ts);
    return true;
}

/* The backoff: serves ctl (and attach connections, for the next run) until the restart
 * is due. false: an operator's `hold` called it off. */
static bool wait_restart(void)
{
    struct pollset ps = {0};
    bool go = true;
    /* The exit and the plan reach berthd now, not after the next run has started. */
    announce_events();
    for (;;) {
        if (M.held) {
            mlog("restart called off");
            go = false;
            break;
        }
        int64_t now = now_ms();
        if (now >= M.restart_due_ms)
            break;
        build_pollset(&ps, false);
        poll_and_dispatch(&ps, (int)(M.restart_due_ms - now));
    }
    pollset_free(&ps);
    return go;
}

/* Runs the container again: `runc create` and `runc start`. A failure counts as a run
 * that exited with 128, so the policy and the backoff apply to it as to any exit. */
static void restart_container(void)
{
    char err[1024] = "";
    M.reaped = false;
    M.started = false;
    M.init_pid = 0;
    M.wstatus = 0;
    M.run_started_ms = 0;
    oom_reset();
    int rc = mount_overlay(err, sizeof err);
    if (rc == 0)
        rc = create_container(err, sizeof err);
    if (rc == 0) {
        check_init_parent();
        oom_watch_start();
        static const char *const cmd[] = {"start", NULL};
        int st = runc_helper(cmd, err, sizeof err);
        if (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            M.started = true;
            M.run_started_ms = now_ms();
            mlog("restarted container, init pid %d", (int)M.init_pid);
            events_append("restart", "\"attempt\":%llu,\"pid\":%d,\"reason\":\"%s\"",
                          (unsigned long long)M.restarts, (int)M.init_pid, M.restart_reason);
            return;
        }
        rc = -1;
    }
    mlog("restart failed: %s", err);
    struct buf b = {0};
    json_escape(&b, err);
    char *msg = buf_strdup(&b);
    buf_free(&b);
    events_append("restart-failed", "\"attempt\":%llu,\"error\":\"%.900s\"",
                  (unsigned long long)M.restarts, msg);
    free(msg);
    /* A failed run: reaped at once with 128, so that end_run() and the policy see it. */
    if (M.created && runc_state_exists())
        runc_delete();
    M.created = false;
    reap_children();
    umount_overlay();
    close_run_fds();
    M.reaped = true;
    M.wstatus = 128 << 8;
    clock_gettime(CLOCK_REALTIME, &M.finished);
    M.finished_ms = now_ms();
}

static void finish(void)
{
    logw_finish(LOG_FLUSH_MS);
    announce_events(); /* every event is in events.jsonl before exit.json is written */
    write_exit_json(M.oom_kills);
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
    setup_log();
    oom_init(M.o.oom_file);
    M.restarts = M.o.restart_count;
    char err[1024];
    if (mount_overlay(err, sizeof err) < 0 || create_container(err, sizeof err) < 0)
        fail("%s", err);
    check_init_parent();
    oom_watch_start(); /* the cgroup exists now */
    start_listening();

    char ok[128];
    snprintf(ok, sizeof ok, "{\"ok\":true,\"monitorPid\":%d,\"pid\":%d}\n", (int)getpid(),
             (int)M.init_pid);
    sync_report(ok);

    for (;;) {
        event_loop();
        if (!plan_restart(end_run()) || !wait_restart())
            break;
        restart_container();
    }
    finish();
    return 0;
}
/* ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "exec-tty") == 0)
        return cmd_exec_tty(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "userns-create") == 0)
        return cmd_userns_create(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "netns-create") == 0)
        return cmd_netns_create(argc - 1, argv + 1);
    fprintf(stderr, "usage: berth-monitor run|exec-tty|userns-create|netns-create [options]"
                    "  (see PROTOCOL.md)\n");
    return 2;
}

