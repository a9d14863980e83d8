/*
 * berth-monitor: user namespaces and idmapped mounts (see idmap.h).
 *
 * A namespace is made by a short-lived child: it unshares a new user namespace (or enters
 * an existing one) and, if asked, then a network namespace inside it, reporting each step
 * on a pipe and waiting for the parent. The parent, root in the host's namespaces, writes
 * a new user namespace's uid_map and gid_map (no setgroups=deny needed: it has CAP_SETGID
 * over it), then opens or bind-mounts the child's /proc/PID/ns files, and lets it go.
 *
 * An idmapped mount needs its user namespace only while mount_setattr(MOUNT_ATTR_IDMAP)
 * runs: the mount keeps a copy of the mapping.
 */
#include "idmap.h"
#include "util.h"

#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int idmap_parse(const char *s, struct idmap *m)
{
    uint64_t v[3];
    for (int i = 0; i < 3; i++) {
        char *end;
        if (!(*s >= '0' && *s <= '9'))
            return -1;
        errno = 0;
        unsigned long long x = strtoull(s, &end, 10);
        if (errno || x > UINT32_MAX || *end != (i < 2 ? ':' : '\0'))
            return -1;
        v[i] = x;
        s = end + (i < 2);
    }
    /* The range [base, base+count) must leave out (uid_t)-1. */
    if (v[2] < 1 || v[0] + v[2] > UINT32_MAX || v[1] + v[2] > UINT32_MAX)
        return -1;
    *m = (struct idmap){(uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2]};
    return 0;
}

/* The child: its pid, the pipe it reports on, the pipe whose bytes (and EOF) let it on. */
struct ns_child {
    pid_t pid;
    int report, go;
};

static int child_step(struct ns_child *c)
{
    unsigned char e = 0;
    ssize_t r;
    while ((r = read(c->report, &e, 1)) < 0 && errno == EINTR)
        ;
    if (r != 1) {
        errno = EIO;
        return -1;
    }
    if (e) {
        errno = e;
        return -1;
    }
    return 0;
}

static void child_end(struct ns_child *c)
{
    xclose(&c->go);
    xclose(&c->report);
    while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Starts the child: in a new user namespace (userns_fd -1) or in userns_fd; once this
 * returns 0 the caller may write a new namespace's maps. Then child_more() has it unshare
 * `more` (0: nothing), and child_end() lets it exit. */
static int child_start(struct ns_child *c, int userns_fd, int more)
{
    int rep[2], go[2];
    if (pipe2(rep, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(go, O_CLOEXEC) < 0) {
        int e = errno;
        close(rep[0]);
        close(rep[1]);
        errno = e;
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(rep[0]);
        close(rep[1]);
        close(go[0]);
        close(go[1]);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        /* The monitor has threads: only async-signal-safe calls here. Our copies of the
         * parent's ends go first, or the parent's close would never reach us as EOF. */
        close(rep[0]);
        close(go[1]);
        unsigned char e = 0, x;
        if ((userns_fd < 0 ? unshare(CLONE_NEWUSER) : setns(userns_fd, CLONE_NEWUSER)) < 0)
            e = (unsigned char)errno;
        if (write(rep[1], &e, 1) != 1 || e)
            _exit(1);
        if (read(go[0], &x, 1) != 1) /* EOF: the parent gave up */
            _exit(1);
        if (more && unshare(more) < 0)
            e = (unsigned char)errno;
        if (write(rep[1], &e, 1) != 1 || e)
            _exit(1);
        while (read(go[0], &x, 1) < 0 && errno == EINTR)
            ; /* EOF: the parent is done with our namespaces */
        _exit(0);
    }
    close(rep[1]);
    close(go[0]);
    *c = (struct ns_child){pid, rep[0], go[1]};
    if (child_step(c) < 0) {
        int e = errno;
        child_end(c);
        errno = e;
        return -1;
    }
    return 0;
}

static int child_more(struct ns_child *c)
{
    if (write(c->go, "", 1) != 1)
        return -1;
    return child_step(c);
}

static int write_map(pid_t pid, const char *file, uint32_t host, uint32_t count)
{
    char path[64], map[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int n = snprintf(map, sizeof map, "0 %u %u\n", host, count);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* A map is written in one write(2) or not at all. */
    ssize_t w = write(fd, map, (size_t)n);
    int e = errno;
    close(fd);
    if (w != n) {
        errno = w < 0 ? e : EIO;
        return -1;
    }
    return 0;
}

/* A child in a new user namespace with mapping m, its maps written. */
static int child_userns(struct ns_child *c, const struct idmap *m)
{
    if (child_start(c, -1, 0) < 0)
        return -1;
    if (write_map(c->pid, "uid_map", m->uid, m->count) < 0 ||
        write_map(c->pid, "gid_map", m->gid, m->count) < 0 || child_more(c) < 0) {
        int e = errno;
        child_end(c);
        errno = e;
        return -1;
    }
    return 0;
}

int idmap_userns(const struct idmap *m)
{
    struct ns_child c;
    if (child_userns(&c, m) < 0)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)c.pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int e = errno;
    child_end(&c);
    errno = e;
    return fd;
}

int idmap_tree(const char *dir, int userns_fd)
{
    int fd = open_tree(AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
    if (fd < 0)
        return -1;
    struct mount_attr a = {
        .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV,
        .userns_fd = (uint64_t)userns_fd,
    };
    if (mount_setattr(fd, "", AT_EMPTY_PATH, &a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------------------------------ */
/* userns-create, netns-create                                                          */
/* ------------------------------------------------------------------------------------ */

/* Bind-mounts the child's /proc/PID/ns/NS on path (a file made if missing, as `ip netns
 * add` does; berthd never asks for one that is mounted already). */
static int keep_ns(pid_t pid, const char *ns, const char *path)
{
    char src[64];
    snprintf(src, sizeof src, "/proc/%d/ns/%s", (int)pid, ns);
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
    bool made = fd >= 0;
    if (fd < 0 && errno == EEXIST)
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    close(fd);
    if (mount(src, path, NULL, MS_BIND, NULL) < 0) {
        int e = errno;
        if (made)
            unlink(path);
        errno = e;
        return -1;
    }
    return 0;
}

static void usage_ns(void)
{
    fprintf(stderr, "usage: berth-monitor userns-create --idmap UID:GID:COUNT --path FILE\n"
                    "       berth-monitor netns-create --userns FILE --path FILE\n");
    exit(2);
}

/* --idmap, --userns, --path: whichever the subcommand takes. */
static void parse_ns_opts(int argc, char **argv, const char **idmap, const char **userns,
                          const char **path)
{
    static const struct option lo[] = {
        {"idmap", 1, 0, 'i'}, {"userns", 1, 0, 'u'}, {"path", 1, 0, 'p'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'i' && idmap)
            *idmap = optarg;
        else if (c == 'u' && userns)
            *userns = optarg;
        else if (c == 'p')
            *path = optarg;
        else
            usage_ns();
    }
    if (optind != argc || !*path || (*path)[0] != '/' || (idmap && !*idmap) ||
        (userns && (!*userns || (*userns)[0] != '/')))
        usage_ns();
}

int cmd_userns_create(int argc, char **argv)
{
    const char *idmap = NULL, *path = NULL;
    parse_ns_opts(argc, argv, &idmap, NULL, &path);
    struct idmap m;
    if (idmap_parse(idmap, &m) < 0)
        usage_ns();
    struct ns_child c;
    if (child_userns(&c, &m) < 0) {
        fprintf(stderr, "berth-monitor: making a user namespace: %s\n", strerror(errno));
        return 1;
    }
    int rc = keep_ns(c.pid, "user", path);
    int e = errno;
    child_end(&c);
    if (rc < 0) {
        fprintf(stderr, "berth-monitor: keeping the user namespace on %s: %s\n", path, strerror(e));
        return 1;
    }
    return 0;
}

int cmd_netns_create(int argc, char **argv)
{
    const char *userns = NULL, *path = NULL;
    parse_ns_opts(argc, argv, NULL, &userns, &path);
    int ufd = open(userns, O_RDONLY | O_CLOEXEC);
    if (ufd < 0) {
        fprintf(stderr, "berth-monitor: opening %s: %s\n", userns, strerror(errno));
        return 1;
    }
    /* The directory `ip netns` keeps names in may not exist yet on this boot. */
    char *dir = strdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        mkdir(dir, 0755);
    }
    free(dir);
    struct ns_child c;
    int rc = child_start(&c, ufd, CLONE_NEWNET);
    int e = errno;
    close(ufd);
    if (rc == 0 && child_more(&c) < 0) {
        e = errno;
        child_end(&c);
        rc = -1;
    }
    if (rc < 0) {
        fprintf(stderr, "berth-monitor: making a network namespace in %s: %s\n", userns,
                strerror(e));
        return 1;
    }
    rc = keep_ns(c.pid, "net", path);
    e = errno;
    child_end(&c);
    if (rc < 0) {
        fprintf(stderr, "berth-monitor: keeping the network namespace on %s: %s\n", path, strerror(e));
        return 1;
    }
    return 0;
}
