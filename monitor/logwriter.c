/*
 * The container log: CRI formatting (loop thread), a bounded queue, and the writer
 * thread that appends, rotates and drops. See logwriter.h and PROTOCOL.md.
 *
 * Threads: the event loop owns L (the gate and the formatting); the writer owns W (the
 * live file); Q is shared under Q.mu; the counters are atomics. The writer never touches
 * the loop's clients: it signals the loop's wake eventfd, and events.c does the same
 * after each event, so that the loop can announce it.
 */
#include "logwriter.h"
#include "events.h"
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CRI_MAX_PIECE (16 * 1024)       /* longest text of one CRI log record */
#define WRITER_STACK (256 * 1024)

/* ------------------------------------------------------------------------------------ */
/* State                                                                                */
/* ------------------------------------------------------------------------------------ */

enum item_type {
    IT_DATA,   /* CRI records, each one line */
    IT_NOTE,   /* the loop dropped `payload` bytes here (writer stalled past the bound) */
    IT_REOPEN, /* switch to `fd` (the live path, opened anew by the loop) */
};

struct item {
    struct item *next;
    enum item_type type;
    int fd;
    uint64_t payload; /* container output bytes the item stands for */
    char ts[40];      /* IT_NOTE: when the loop stopped dropping (the marker's time) */
    size_t len;       /* bytes of data */
    char data[];
};

/* Shared, under Q.mu. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t work; /* the writer waits for items (or stop) */
    pthread_cond_t idle; /* logw_finish waits for the writer's end */
    struct item *head, *tail;
    size_t queued;           /* record bytes queued or being written */
    uint64_t queued_payload; /* output bytes they (and queued notes) stand for */
    size_t wake_below;       /* signal the loop once queued < this (0: no one waits) */
    bool stopping, done;
} Q = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_uint_fast64_t st_written, st_dropped, st_rotations;
static atomic_uint_fast64_t w_drop_bytes; /* the writer's drop period: bytes so far */
static atomic_bool abandoned;             /* logw_finish gave up on the writer */

/* Loop thread only. */
static struct {
    struct logw_config c;
    bool drop_mode;       /* stalled past the bound: output is dropped */
    int64_t paused_since; /* the loop holds back output since (ms), or -1 */
    int64_t stall_total;  /* ms held back in this stall so far */
    uint64_t note;        /* bytes dropped in drop mode, not yet handed to the writer */
    pthread_t thread;
    bool started;
} L = {.paused_since = -1};

/* Writer thread only (and logw_init before it starts). */
static struct {
    int fd;               /* live file, -1 while it could not be opened */
    int open_err;
    uint64_t size;        /* of the live file */
    bool partial;         /* the live file ends within a record (a short write) */
    bool rotate_failing;  /* a rename failed: logged once, retried per record */
    unsigned long long next_seq;
    const char *drop_reason; /* of the current drop period (its first drop) */
    char *dir, *base;
} W = {.fd = -1};

static const char *const REASON_FULL = "disk full", *const REASON_IO = "write error",
                         *const REASON_STALL = "disk stalled";

static const char *reason_for(int err)
{
    return err == ENOSPC || err == EDQUOT ? REASON_FULL : REASON_IO;
}

/* ------------------------------------------------------------------------------------ */
/* Rotated files: <path>.<SEQ> and <path>.<SEQ>.gz                                      */
/* ------------------------------------------------------------------------------------ */

static char *seq_path(unsigned long long seq, bool gz)
{
    char *s;
    if (asprintf(&s, "%s.%llu%s", L.c.path, seq, gz ? ".gz" : "") < 0) {
        mlog("out of memory");
        abort();
    }
    return s;
}

static bool path_exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* SEQ of a rotated file's name ("<base>.<digits>" or "<base>.<digits>.gz", digits in
 * canonical decimal), or -1. */
static long long parse_seq(const char *name)
{
    size_t bl = strlen(W.base);
    if (strncmp(name, W.base, bl) != 0 || name[bl] != '.')
        return -1;
    const char *d = name + bl + 1, *e = d;
    while (*e >= '0' && *e <= '9')
        e++;
    if (e == d || e - d > 18 || (*d == '0' && e - d > 1))
        return -1;
    if (*e && strcmp(e, ".gz") != 0)
        return -1;
    return strtoll(d, NULL, 10);
}

static int cmp_seq(const void *a, const void *b)
{
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

/* The distinct SEQs of the rotated files in the directory, ascending (caller frees). */
static unsigned long long *scan_seqs(size_t *count)
{
    unsigned long long *v = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(W.dir);
    if (!d) {
        mlog("scanning %s: %s", W.dir, strerror(errno));
        *count = 0;
        return NULL;
    }
    for (struct dirent *e; (e = readdir(d));) {
        long long s = parse_seq(e->d_name);
        if (s < 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = (unsigned long long)s;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, cmp_seq);
    size_t u = 0; /* N and N.gz are one file */
    for (size_t i = 0; i < n; i++)
        if (u == 0 || v[u - 1] != v[i])
            v[u++] = v[i];
    *count = u;
    return v;
}

/* Keeps the newest max_files-1 rotated files; an N and an N.gz count as one and go
 * together. */
static void prune(void)
{
    size_t n;
    unsigned long long *v = scan_seqs(&n);
    size_t keep = L.c.max_files - 1;
    for (size_t i = 0; i + keep < n; i++) {
        for (int gz = 0; gz < 2; gz++) {
            char *p = seq_path(v[i], gz);
            if (unlink(p) < 0 && errno != ENOENT)
                mlog("removing %s: %s", p, strerror(errno));
            free(p);
        }
    }
    free(v);
}

/* ------------------------------------------------------------------------------------ */
/* Writer: the live file                                                                */
/* ------------------------------------------------------------------------------------ */

/* Makes fd (the live path, opened for append) the live file. */
static void adopt_live(int fd)
{
    W.fd = fd;
    struct stat st;
    W.size = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    /* A predecessor may have died within a record: finish that line before ours. */
    char last = '\n';
    W.partial = W.size > 0 && pread(fd, &last, 1, (off_t)W.size - 1) == 1 && last != '\n';
}

static int open_live_fd(void)
{
    return open(L.c.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* Opens the live path. Returns 0 or an errno. Also used by logw_init. */
static int open_live(void)
{
    int fd = open_live_fd();
    if (fd < 0)
        return W.open_err = errno;
    adopt_live(fd);
    return 0;
}

/* Appends d[0, n) as far as the file takes it. Returns 0 or an errno; *done is what
 * was written. */
static int raw_write(const char *d, size_t n, size_t *done)
{
    *done = 0;
    while (*done < n) {
        ssize_t w = write(W.fd, d + *done, n - *done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        *done += (size_t)w;
        W.size += (uint64_t)w;
        atomic_fetch_add(&st_written, (uint64_t)w);
    }
    return 0;
}

/* Ends the record a short write left unfinished, so the file stays one record per
 * line. Returns 0 or an errno (then it is still unfinished). */
static int terminate_partial(void)
{
    size_t done;
    int err = W.partial ? raw_write("\n", 1, &done) : 0;
    if (!err)
        W.partial = false;
    return err;
}

static void rotate(void)
{
    terminate_partial(); /* best effort: a rotated file should end with a whole line */
    unsigned long long seq = W.next_seq;
    char *to = NULL;
    for (;; seq++) { /* never rename over a file someone else put there */
        free(to);
        to = seq_path(seq, false);
        char *gz = seq_path(seq, true);
        bool taken = path_exists(to) || path_exists(gz);
        free(gz);
        if (!taken)
            break;
    }
    if (rename(L.c.path, to) < 0) {
        int e = errno;
        free(to);
        if (e != ENOENT) {
            if (!W.rotate_failing)
                mlog("rotating %s: %s; appending past --log-max-size", L.c.path, strerror(e));
            W.rotate_failing = true;
            return;
        }
        /* The live file is gone (someone else moved it): just start a new one. */
        xclose(&W.fd);
        if (open_live() != 0)
            mlog("opening %s: %s", L.c.path, strerror(W.open_err));
        return;
    }
    free(to);
    W.rotate_failing = false;
    W.next_seq = seq + 1;
    atomic_fetch_add(&st_rotations, 1);
    xclose(&W.fd);
    if (open_live() != 0)
        mlog("opening %s after rotation: %s", L.c.path, strerror(W.open_err));
    if (!atomic_load(&abandoned))
        events_append("log-rotated", "\"seq\":%llu", seq);
    prune();
}

/* Writes n bytes (whole records) to the live file: opens it if needed, finishes a
 * partial record, rotates first if they would take the file past max_size (unless the
 * file is empty: a record larger than max_size goes alone into a fresh file). Returns 0
 * or an errno; *done is what was written. */
static int emit(const char *d, size_t n, size_t *done)
{
    int err;
    *done = 0;
    if (W.fd < 0 && (err = open_live()) != 0)
        return err;
    if ((err = terminate_partial()) != 0)
        return err;
    if (L.c.max_size && W.size > 0 && W.size + n > L.c.max_size) {
        rotate();
        if (W.fd < 0)
            return W.open_err;
    }
    err = raw_write(d, n, done);
    if (err && *done > 0 && d[*done - 1] != '\n') {
        W.partial = true;
        terminate_partial(); /* now if the disk takes one byte more, else before the next */
    }
    return err;
}

/* ------------------------------------------------------------------------------------ */
/* Writer: drops and the marker                                                         */
/* ------------------------------------------------------------------------------------ */

static void drop(uint64_t bytes, const char *reason, int err)
{
    if (atomic_load(&w_drop_bytes) == 0 && reason != REASON_STALL)
        mlog("writing %s: %s; dropping output until a write succeeds", L.c.path, strerror(err));
    if (!W.drop_reason)
        W.drop_reason = reason;
    atomic_fetch_add(&w_drop_bytes, bytes);
}

static void end_drop_period(void)
{
    unsigned long long n = atomic_exchange(&w_drop_bytes, 0);
    if (!atomic_load(&abandoned))
        events_append("log-dropped", "\"bytes\":%llu,\"reason\":\"%s\"", n, W.drop_reason);
    W.drop_reason = NULL;
}

/* The first record after a drop period says what is missing. It takes the time of the
 * record it precedes (or of the end of the gap), so that times in the file never go
 * backwards; NULL: now. Returns 0 or an errno. */
static int write_marker(const char *when)
{
    char ts[64], line[256];
    if (when)
        snprintf(ts, sizeof ts, "%s", when);
    else {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        fmt_time(&now, ts, sizeof ts);
    }
    unsigned long long n = atomic_load(&w_drop_bytes);
    int len = snprintf(line, sizeof line,
                       "%s stderr F [berth-monitor] dropped %llu bytes of output (reason: %s)\n",
                       ts, n, W.drop_reason);
    size_t done;
    int err = emit(line, (size_t)len, &done);
    if (err)
        return err;
    mlog("log writes succeed again; %llu bytes of output were dropped (%s)", n, W.drop_reason);
    end_drop_period();
    return 0;
}

static const char *rec_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl + 1 : end;
}

/* The container output one record stands for: its text, plus the newline of an F. */
static uint64_t rec_payload(const char *p, const char *e)
{
    int spaces = 0;
    while (p < e && spaces < 3)
        if (*p++ == ' ')
            spaces++;
    if (spaces < 3 || p >= e)
        return 0;
    return (uint64_t)(e - p - 1) + (p[-2] == 'F');
}

/* A record's timestamp (its first field). */
static const char *rec_time(const char *p, const char *e, char *out, size_t len)
{
    const char *sp = memchr(p, ' ', (size_t)(e - p));
    size_t n = sp ? (size_t)(sp - p) : 0;
    if (n == 0 || n >= len)
        return NULL;
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

static void drop_records(const char *p, const char *end, int err)
{
    uint64_t n = 0;
    for (const char *r; p < end; p = r) {
        r = rec_end(p, end);
        n += rec_payload(p, r);
    }
    atomic_fetch_add(&st_dropped, n);
    drop(n, reason_for(err), err);
}

/* Writes an item's records: runs of whole records that fit the live file go out in one
 * write; after a failure each record is tried (and dropped) on its own. */
static void write_records(const char *p, const char *end)
{
    while (p < end) {
        const char *q = rec_end(p, end);
        int err;
        char ts[40];
        if (atomic_load(&w_drop_bytes) && (err = write_marker(rec_time(p, q, ts, sizeof ts))) != 0) {
            drop_records(p, q, err);
            p = q;
            continue;
        }
        if (W.fd >= 0 && !W.partial)
            while (q < end) {
                const char *r = rec_end(q, end);
                if (L.c.max_size && W.size + (uint64_t)(r - p) > L.c.max_size)
                    break;
                q = r;
            }
        size_t done;
        err = emit(p, (size_t)(q - p), &done);
        if (err) {
            const char *x = p; /* records written whole are kept */
            while (x < q && (size_t)(rec_end(x, q) - p) <= done)
                x = rec_end(x, q);
            drop_records(x, q, err);
        }
        p = q;
    }
}

static void process(struct item *it)
{
    switch (it->type) {
    case IT_DATA:
        write_records(it->data, it->data + it->len);
        break;
    case IT_NOTE:
        drop(it->payload, REASON_STALL, 0);
        write_marker(it->ts); /* if it fails, the period goes on */
        break;
    case IT_REOPEN:
        xclose(&W.fd);
        adopt_live(it->fd);
        break;
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&Q.mu);
    for (;;) {
        while (!Q.head && !Q.stopping)
            pthread_cond_wait(&Q.work, &Q.mu);
        struct item *it = Q.head;
        if (!it)
            break;
        Q.head = it->next;
        if (!Q.head)
            Q.tail = NULL;
        pthread_mutex_unlock(&Q.mu);
        process(it);
        pthread_mutex_lock(&Q.mu);
        Q.queued -= it->len;
        Q.queued_payload -= it->payload;
        if (Q.wake_below && Q.queued < Q.wake_below) {
            Q.wake_below = 0;
            uint64_t one = 1;
            ssize_t r = write(L.c.wake_fd, &one, sizeof one);
            (void)r;
        }
        free(it);
    }
    pthread_mutex_unlock(&Q.mu);
    /* The container has exited: a last try for the marker, else just the event. */
    if (atomic_load(&w_drop_bytes) && write_marker(NULL) != 0)
        end_drop_period();
    pthread_mutex_lock(&Q.mu);
    Q.done = true;
    pthread_cond_broadcast(&Q.idle);
    pthread_mutex_unlock(&Q.mu);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Loop side                                                                            */
/* ------------------------------------------------------------------------------------ */

static void enqueue(struct item *it)
{
    it->next = NULL;
    pthread_mutex_lock(&Q.mu);
    if (Q.tail)
        Q.tail->next = it;
    else
        Q.head = it;
    Q.tail = it;
    Q.queued += it->len;
    Q.queued_payload += it->payload;
    pthread_cond_signal(&Q.work);
    pthread_mutex_unlock(&Q.mu);
}

static struct item *new_item(enum item_type type, size_t len)
{
    struct item *it = xrealloc(NULL, sizeof *it + len);
    memset(it, 0, sizeof *it);
    it->type = type;
    it->len = len;
    it->fd = -1;
    return it;
}

static void hand_over_note(void)
{
    if (!L.note)
        return;
    struct item *it = new_item(IT_NOTE, 0);
    it->payload = L.note;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    fmt_time(&now, it->ts, sizeof it->ts);
    L.note = 0;
    enqueue(it);
}

int logw_init(const struct logw_config *c)
{
    L.c = *c;
    char *slash = strrchr(c->path, '/'); /* the path is absolute */
    W.dir = !slash ? strdup(".") : slash == c->path ? strdup("/")
          : strndup(c->path, (size_t)(slash - c->path));
    W.base = strdup(slash ? slash + 1 : c->path);
    size_t n;
    unsigned long long *v = scan_seqs(&n);
    W.next_seq = n ? v[n - 1] + 1 : 1;
    free(v);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&Q.work, NULL);
    pthread_cond_init(&Q.idle, &ca);
    pthread_condattr_destroy(&ca);
    int err = open_live();
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

int logw_start(void)
{
    /* The loop takes SIGCHLD through a signalfd: no signal may land on this thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, WRITER_STACK);
    int err = pthread_create(&L.thread, &a, writer_main, NULL);
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        errno = err;
        return -1;
    }
    L.started = true;
    return 0;
}

bool logw_may_read(int64_t now, int *timeout)
{
    pthread_mutex_lock(&Q.mu);
    size_t q = Q.queued;
    bool full = !L.drop_mode && q >= L.c.buffer;
    if (full)
        Q.wake_below = L.c.buffer; /* same lock as the writer's check: no lost wake-up */
    pthread_mutex_unlock(&Q.mu);

    if (L.drop_mode) {
        if (q > L.c.buffer / 2)
            return true; /* read, and drop */
        mlog("log writer caught up; %llu bytes of output were dropped meanwhile",
             (unsigned long long)L.note);
        L.drop_mode = false;
        L.stall_total = 0;
        hand_over_note(); /* the marker goes exactly where the gap is */
        return true;
    }
    if (full) {
        if (L.paused_since < 0)
            L.paused_since = now;
        int64_t total = L.stall_total + (now - L.paused_since);
        if (total >= L.c.stall_ms) {
            mlog("log writer stalled for %lld ms with %zu bytes queued; dropping output "
                 "until the queue is half empty", (long long)total, q);
            L.drop_mode = true;
            L.paused_since = -1;
            L.stall_total = 0;
            return true;
        }
        int left = (int)(L.c.stall_ms - total);
        if (*timeout < 0 || left < *timeout)
            *timeout = left;
        return false;
    }
    if (L.paused_since >= 0) {
        L.stall_total += now - L.paused_since;
        L.paused_since = -1;
    }
    if (q <= L.c.buffer / 2)
        L.stall_total = 0; /* this stall is over */
    return true;
}

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
 * P pieces. All records of a chunk share one timestamp and are one queue item. */
void logw_output(int stream, const char *d, size_t n)
{
    if (n == 0)
        return;
    if (L.drop_mode) {
        L.note += n;
        atomic_fetch_add(&st_dropped, n);
        return;
    }
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
    struct item *it = new_item(IT_DATA, buf_pending(&b));
    memcpy(it->data, buf_data(&b), buf_pending(&b));
    it->payload = n;
    enqueue(it);
}

int logw_reopen(void)
{
    int fd = open_live_fd();
    if (fd < 0)
        return -1;
    struct item *it = new_item(IT_REOPEN, 0);
    it->fd = fd;
    enqueue(it);
    return 0;
}

void logw_get_stats(struct logw_stats *s)
{
    s->written = atomic_load(&st_written);
    s->dropped = atomic_load(&st_dropped);
    s->rotations = atomic_load(&st_rotations);
}

void logw_finish(int timeout_ms)
{
    if (!L.started)
        return;
    hand_over_note();
    L.drop_mode = false;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&Q.mu);
    Q.stopping = true;
    pthread_cond_signal(&Q.work);
    while (!Q.done && pthread_cond_timedwait(&Q.idle, &Q.mu, &dl) == 0)
        ;
    bool done = Q.done;
    unsigned long long lost = 0;
    if (!done) {
        atomic_store(&abandoned, true);
        lost = Q.queued_payload + atomic_load(&w_drop_bytes);
    }
    pthread_mutex_unlock(&Q.mu);
    if (done) {
        pthread_join(L.thread, NULL);
        return;
    }
    /* The writer is stuck in a write: leave it (exit ends it) and report the rest. */
    mlog("log writer still busy %d ms after exit; giving up on %llu bytes of output",
         timeout_ms, lost);
    events_append("log-dropped", "\"bytes\":%llu,\"reason\":\"%s\"", lost, REASON_STALL);
}
