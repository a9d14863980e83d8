/*
 * berth-monitor: helpers shared by `run` (berth-monitor.c and its modules) and
 * `exec-tty` (exec-tty.c). libc only.
 */
#ifndef BERTH_UTIL_H
#define BERTH_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define READ_CHUNK (64 * 1024)          /* one read() from the container's output */
#define DRAIN_MS 2000                   /* output drain bound after the init exited */
#define RUNC_LOG_TAIL (1024 * 1024)     /* how much of runc.log we scan for its last error */

/* Diagnostics: one line per message on g_diag_fd (stderr until `run` has opened
 * STATE/monitor.log). Safe to call from any thread. */
extern int g_diag_fd;
void mlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RFC3339 UTC with always 9 fractional digits (Go's RFC3339Nano parser accepts it). */
void fmt_time(const struct timespec *ts, char *out, size_t len);
void *xrealloc(void *p, size_t n); /* aborts (after a diagnostic) when out of memory */
int64_t now_ms(void);              /* CLOCK_MONOTONIC */

/* Byte buffer: data lives in p[off, len); used for every pending queue. Not locked. */
struct buf {
    char *p;
    size_t off, len, cap;
};
static inline size_t buf_pending(const struct buf *b) { return b->len - b->off; }
static inline const char *buf_data(const struct buf *b) { return b->p + b->off; }
static inline void buf_reset(struct buf *b) { b->off = b->len = 0; }
void buf_free(struct buf *b);
void buf_append(struct buf *b, const void *d, size_t n);
void buf_putc(struct buf *b, char c);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_consume(struct buf *b, size_t n);
char *buf_strdup(const struct buf *b); /* NUL-terminated copy (caller frees) */

/* fds and paths */
int write_all(int fd, const void *d, size_t n);
void set_nonblock(int fd);
void xclose(int *fd);
char *path_join(const char *dir, const char *name);
char *abs_path(const char *p);
off_t file_size(const char *path);
int read_small_file(const char *path, char *out, size_t len);
pid_t read_pid_file(const char *path);
int write_file_atomic(const char *path, const char *data, size_t n, mode_t mode);

/* unix sockets */
int unix_listen(const char *path);
int receive_console(int lfd, int timeout_ms);

/* JSON */
void json_escape(struct buf *b, const char *s);
char *runc_last_error(const char *path, off_t from);

/* child processes */
pid_t spawn(char *const argv[], const int stdio[3]);
int run_sync(char *const argv[], const int stdio[3]);
int status_code(int st);
void describe_status(int st, char *out, size_t len);
int make_signalfd(const int *sigs, int n);
uint64_t drain_signalfd(int fd);

#endif
