/* binfile.c — the little-endian binary files the runtime writes and reads (model files,
 * checkpoints): a writer that CRCs what it writes and commits the file durably, and a
 * bounds-checked reader.
 *
 * Invariants:
 *  - A writer never leaves a partial file under the destination name: the data goes to
 *    PATH.tmp, the CRC-32 of everything written is appended, the file is fsynced and
 *    renamed over PATH, and the directory is fsynced (best effort). On any failure the
 *    .tmp is removed, PATH is untouched and the run fails naming the step, after the
 *    descriptor is closed. Where PATH is a symbolic link, the file it names is replaced
 *    and the link stays; where PATH is no file (/dev/null, a terminal, a pipe:
 *    nnq_output_dest), it is written in place, since a rename would replace the device
 *    with a file. Writers of one PATH in several processes take turns (a lock on
 *    PATH.tmp, wr_init): each file renamed into place is one writer's, whole.
 *  - Between rt_wr_open and rt_wr_commit nothing fails: a write error is recorded and
 *    reported by the commit.
 *  - A reader never reads past `end`; a failed read leaves a message in `err`. A file
 *    is read whole into memory (rt_slurp), not mapped: a file cut short or a disk
 *    failing while it is read is an error, where a mapping would end the process with
 *    SIGBUS.
 *  - nnq_file_write is the same writer for a whole file in memory without a run (nnqc
 *    --emit -o): no CRC, the failure described in the caller's buffer.
 *  - nnq_std_fds, at the start of a command, opens /dev/null read-only on standard
 *    input, output or error where one is closed (`>&-`): a file opened next would
 *    otherwise get number 1 or 2 and receive what is printed (the epoch lines were
 *    written into the metrics file). Written to, it fails, as the closed one did.
 *  - nnq_stdout_check, at the end of a command, reports output to standard output that
 *    was lost (a full disk, a closed pipe with SIGPIPE ignored, as a training run ignores
 *    it: progress.c), so the exit status says so.
 *  - nnq_output_check tells, before a run or a build does its work, whether such a
 *    PATH.tmp can be created (model files; nnqc build's trainer, whose objects and link
 *    write PATH.PID.*.tmp beside it). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_internal.h"

uint32_t rt_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t rt_le64(const unsigned char *p) {
    return rt_le32(p) | (uint64_t)rt_le32(p + 4) << 32;
}

void rt_put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void rt_put_le64(unsigned char *p, uint64_t v) {
    rt_put_le32(p, (uint32_t)v);
    rt_put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ---- writing ---- */

/* The path a symbolic link's target has from here: a relative target is taken from the
 * link's directory. malloc'd; NULL when it cannot be read. */
static char *link_target(const char *link, off_t len) {
    char *t = malloc((size_t)len + 1);
    ssize_t n = t ? readlink(link, t, (size_t)len + 1) : -1;
    if (n < 0 || n > len) {
        free(t);
        return NULL;
    }
    t[n] = '\0';
    const char *slash = strrchr(link, '/');
    if (t[0] == '/' || !slash)
        return t;
    size_t d = (size_t)(slash - link) + 1;
    char *joined = malloc(d + (size_t)n + 1);
    if (joined) {
        memcpy(joined, link, d);
        memcpy(joined + d, t, (size_t)n + 1);
    }
    free(t);
    return joined;
}

/* Whether the kernel's rule for links in shared directories (fs.protected_symlinks)
 * lets this process follow the link `link` (lstat: *ls): not when it lies in a sticky
 * directory anyone may write (/tmp) and belongs neither to this process's user nor to
 * the directory's owner. Another user's link in /tmp naming /etc/shadow would otherwise
 * have a root run's output renamed over that file; the link itself is replaced instead. */
static bool may_follow(const char *link, const struct stat *ls) {
    if (ls->st_uid == geteuid())
        return true;
    const char *slash = strrchr(link, '/');
    char *dir = slash ? strndup(link, slash == link ? 1 : (size_t)(slash - link)) : NULL;
    struct stat ds;
    bool known = (!slash || dir) && stat(dir ? dir : ".", &ds) == 0;
    free(dir);
    if (!known)
        return false; /* cannot tell: not followed */
    bool shared = (ds.st_mode & S_ISVTX) && (ds.st_mode & S_IWOTH);
    return !shared || ls->st_uid == ds.st_uid;
}

NnqDest nnq_output_dest(const char *path, char **real) {
    struct stat st;
    *real = NULL;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return NNQ_DEST_STREAM;
    /* links, to a file or to none yet (a link made for the first run's output), followed
     * as the kernel does, at most 40 */
    for (int hops = 0; hops < 40 && lstat(*real ? *real : path, &st) == 0 && S_ISLNK(st.st_mode); hops++) {
        if (!may_follow(*real ? *real : path, &st))
            break;
        char *next = link_target(*real ? *real : path, st.st_size);
        free(*real);
        *real = next;
        if (!next)
            break; /* unreadable: the link itself is replaced */
    }
    return NNQ_DEST_FILE;
}

bool nnq_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int rt_open_tmp_locked(const char *tmp, bool wait) {
    struct stat mine, named;
    int fd;
    for (int tries = 0;; tries++) {
        /* a link here is followed only by may_follow's rule (another user's link planted
         * in /tmp would have its file truncated and written where the kernel does not
         * apply that rule itself, fs.protected_symlinks = 0); tests write through a link
         * of their own to /dev/full to fill a disk */
        fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
        struct stat ls;
        if (fd < 0 && errno == ELOOP && lstat(tmp, &ls) == 0 && S_ISLNK(ls.st_mode) && may_follow(tmp, &ls))
            fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            return -1;
        int locked;
        while ((locked = flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
        }
        if (locked != 0 && errno == EWOULDBLOCK) {
            close(fd);
            errno = EWOULDBLOCK;
            return -1;
        } /* any other failure (no locks on this file system): on, unlocked */
        if (fstat(fd, &mine) != 0) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        if (tries == 1000 || (stat(tmp, &named) == 0 && named.st_dev == mine.st_dev && named.st_ino == mine.st_ino))
            break; /* the file PATH.tmp names, and it is ours */
        close(fd); /* renamed or removed by the writer we waited for */
    }
    if (S_ISREG(mine.st_mode) && ftruncate(fd, 0) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* PATH.tmp opened for w (tmp: the caller's, freed by it) by rt_open_tmp_locked, waiting
 * its turn, or PATH itself for a stream (nnq_output_dest); a failure is recorded as the
 * step "create" ("open"), which rt_wr_bytes then skips and wr_finish reports. The lock is
 * held until the .tmp is renamed or removed (wr_finish). (Opened with O_TRUNC and
 * unlocked, two runs saving one model file both wrote into one .tmp, and a mix of the
 * two was renamed into place.) */
static void wr_init(RtWriter *w, NnqRun *run, const char *path, const char *tmp, const char *what, bool stream) {
    *w = (RtWriter){.run = run, .path = path, .tmp = tmp, .what = what, .crc = crc32(0L, Z_NULL, 0), .stream = stream};
    w->fd = stream ? open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY) : rt_open_tmp_locked(tmp, true);
    if (w->fd < 0)
        w->step = stream ? "open" : "create", w->err = errno;
}

char *rt_tmp_name(char *tmp, const char *path) {
    size_t n = strlen(path);
    if (tmp) {
        memcpy(tmp, path, n);
        memcpy(tmp + n, ".tmp", 5);
    }
    return tmp;
}

void rt_wr_open(NnqRun *run, RtWriter *w, const char *path, const char *what) {
    char *real;
    bool stream = nnq_output_dest(path, &real) == NNQ_DEST_STREAM;
    if (real) {
        path = rt_strdup(run, real);
        free(real);
    }
    char *tmp = stream ? NULL : rt_tmp_name(rt_alloc_block(run, (int64_t)strlen(path) + 5, false), path);
    wr_init(w, run, path, tmp, what, stream);
    if (w->step)
        nnq_rt_fail(run, "%s '%s': cannot %s '%s': %s", what, path, stream ? "open" : "create", stream ? path : tmp,
                    strerror(w->err));
    w->defer = run->files_deferred && !stream;
}

int nnq_output_check(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) /* the rename at the end would fail */
        return EISDIR;
    char *real;
    if (nnq_output_dest(path, &real) == NNQ_DEST_STREAM)
        return access(path, W_OK) == 0 ? 0 : errno;
    char *tmp = rt_tmp_name(malloc(strlen(real ? real : path) + 5), real ? real : path);
    free(real);
    if (!tmp)
        return ENOMEM;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    bool made = fd >= 0;
    if (fd < 0 && errno == EEXIST)
        fd = open(tmp, O_WRONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0)
        close(fd);
    if (made)
        unlink(tmp);
    free(tmp);
    return err;
}

const char *nnq_output_problem(int err) {
    return err == EISDIR ? "it is a directory" : strerror(err);
}

void rt_wr_bytes(RtWriter *w, const void *data, size_t n) {
    if (w->step || n == 0)
        return;
    w->crc = crc32_z(w->crc, data, n);
    const unsigned char *p = data;
    while (n > 0) {
        ssize_t k = write(w->fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            w->step = "write";
            w->err = errno;
            return;
        }
        p += k;
        n -= (size_t)k;
    }
}

void rt_wr_u32(RtWriter *w, uint32_t v) {
    unsigned char b[4];
    rt_put_le32(b, v);
    rt_wr_bytes(w, b, 4);
}

void rt_wr_u64(RtWriter *w, uint64_t v) {
    unsigned char b[8];
    rt_put_le64(b, v);
    rt_wr_bytes(w, b, 8);
}

/* tmp renamed over path, then the directory fsynced (best effort: not every file system
 * allows it, and the rename is done); false with errno where the rename failed. */
static bool wr_rename(const char *tmp, const char *path) {
    if (rename(tmp, path) != 0)
        return false;
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
    int dfd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
    return true;
}

/* The commit's steps: the CRC (unless no_crc), fsync, then (outside a file set)
 * wr_rename, and close, which releases wr_init's lock: the .tmp is renamed, or on failure
 * removed, while it is held. w->step says which step failed. (In a file set the .tmp is
 * closed before nnq_files_commit renames it: the set's directory lock covers it.) */
static bool wr_finish(RtWriter *w) {
    if (!w->no_crc)
        rt_wr_u32(w, (uint32_t)w->crc);
    if (!w->step && !w->stream && fsync(w->fd) != 0)
        w->step = "sync", w->err = errno;
    if (!w->step && !w->defer && !w->stream && !wr_rename(w->tmp, w->path))
        w->step = "rename", w->err = errno;
    if (w->step && w->fd >= 0 && !w->stream) /* a .tmp this writer created */
        unlink(w->tmp);
    if (w->fd >= 0 && close(w->fd) != 0 && !w->step)
        w->step = "close", w->err = errno;
    return !w->step;
}

void rt_wr_commit(RtWriter *w) {
    if (!wr_finish(w))
        nnq_rt_fail(w->run, "%s '%s': %s of '%s' failed: %s", w->what, w->path, w->step, w->stream ? w->path : w->tmp,
                    strerror(w->err));
    if (!w->defer)
        return;
    NnqRun *run = w->run;
    if (run->nfiles_pending == run->cap_files_pending) {
        int32_t cap = run->cap_files_pending ? 2 * run->cap_files_pending : 16;
        void *grown = realloc(run->files_pending, sizeof *run->files_pending * (size_t)cap);
        if (!grown) {
            unlink(w->tmp);
            nnq_rt_fail(run, "%s '%s': out of memory", w->what, w->path);
        }
        run->files_pending = grown;
        run->cap_files_pending = cap;
    }
    run->files_pending[run->nfiles_pending++] =
        (struct RtPendingFile){w->tmp, rt_strdup(run, w->path)};
}

bool nnq_file_write(const char *path, const void *data, size_t len, char *msg, size_t cap) {
    char *real;
    bool stream = nnq_output_dest(path, &real) == NNQ_DEST_STREAM;
    const char *dest = real ? real : path;
    char *tmp = stream ? NULL : rt_tmp_name(malloc(strlen(dest) + 5), dest);
    if (!stream && !tmp) {
        free(real);
        snprintf(msg, cap, "out of memory");
        return false;
    }
    RtWriter w;
    wr_init(&w, NULL, dest, tmp, NULL, stream);
    w.no_crc = true;
    rt_wr_bytes(&w, data, len);
    bool ok = wr_finish(&w);
    if (!ok && w.fd < 0)
        snprintf(msg, cap, "cannot %s '%s': %s", stream ? "open" : "create", stream ? dest : tmp, strerror(w.err));
    else if (!ok)
        snprintf(msg, cap, "%s of '%s' failed: %s", w.step, stream ? dest : tmp, strerror(w.err));
    free(tmp);
    free(real);
    return ok;
}

/* ---- file sets ---- */

int rt_dir_lock(const char *dir, bool wait) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        if (!wait) {
            close(fd);
            return -1;
        }
        fprintf(stderr, "note: waiting for another process writing into '%s'\n", dir);
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
        }
    } /* any other failure (no locks on this file system): on, unlocked */
    return fd + 1;
}

void rt_dir_unlock(int *lock) {
    if (*lock > 0)
        close(*lock - 1);
    *lock = 0;
}

/* The .tmp files of a set that was not committed (the run failed part way). */
static void files_release(NnqRun *run) {
    for (int32_t i = 0; i < run->nfiles_pending; i++)
        unlink(run->files_pending[i].tmp);
    free(run->files_pending);
    run->files_pending = NULL;
    run->nfiles_pending = run->cap_files_pending = 0;
    run->files_deferred = false;
    rt_dir_unlock(&run->files_lock);
}

/* One set a directory at a time: the directory is locked (flock) from here to the
 * commit, so two processes writing sets into one directory take turns whole. (Each
 * .tmp is closed, and its own lock released, before the commit renames it: without
 * this, two exports side by side could leave one's header beside the other's source.)
 * A directory that cannot be opened or locked is written unlocked; its files' own
 * creation then reports what is wrong. */
void nnq_files_begin(NnqRun *run, const char *dir) {
    rt_on_release(run, files_release);
    run->files_deferred = true;
    run->files_lock = rt_dir_lock(dir, true);
}

void nnq_files_commit(NnqRun *run) {
    run->files_deferred = false;
    int32_t n = run->nfiles_pending;
    for (int32_t i = 0; i < n; i++) {
        const char *tmp = run->files_pending[i].tmp, *path = run->files_pending[i].path;
        if (wr_rename(tmp, path))
            continue;
        int err = errno;
        unlink(tmp);
        /* the ones after it: removed as the run ends (files_release) */
        memmove(run->files_pending, run->files_pending + i + 1,
                sizeof *run->files_pending * (size_t)(n - i - 1));
        run->nfiles_pending = n - i - 1;
        nnq_rt_fail(run,
                    "cannot write '%s': rename of '%s' failed: %s; %d of the %d files were written",
                    path, tmp, strerror(err), i, n);
    }
    run->nfiles_pending = 0;
    rt_dir_unlock(&run->files_lock);
}

void nnq_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        int null = open("/dev/null", O_RDONLY); /* read-only: a write to it fails, EBADF */
        if (null >= 0 && null != fd) { /* (the lowest free number, so fd itself: the ones below are open) */
            dup2(null, fd);
            close(null);
        }
    }
}

bool nnq_stdout_check(void) {
    int err = fflush(stdout) != 0 ? errno : 0;
    if (!err && !ferror(stdout))
        return true;
    fprintf(stderr, "nnqc: error: cannot write standard output%s%s\n", err ? ": " : "",
            err ? strerror(err) : "");
    return false;
}

/* ---- directories ---- */

/* mkdir -p: false with errno set and *at = the component that failed. */
static bool mkdirs(char *path, const char **at) {
    *at = path;
    for (char *s = path + 1;; s++) {
        if (*s != '/' && *s != 0)
            continue;
        char c = *s;
        *s = 0;
        struct stat st;
        bool ok = true;
        if (stat(path, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                errno = ENOTDIR;
                ok = false;
            }
        } else if (errno != ENOENT || (mkdir(path, 0777) != 0 && errno != EEXIST)) {
            ok = false;
        }
        if (!ok)
            return false; /* path now ends at the failing component */
        *s = c;
        if (!c)
            return true;
    }
}

void nnq_make_dirs(NnqRun *run, const char *dir, const char *what) {
    char *probe = rt_strdup(run, dir);
    const char *at;
    if (!mkdirs(probe, &at)) {
        int e = errno;
        if (strcmp(at, dir) != 0)
            nnq_rt_fail(run, "cannot create %s '%s': '%s': %s", what, dir, at, strerror(e));
        nnq_rt_fail(run, "cannot create %s '%s': %s", what, dir, strerror(e));
    }
}

/* ---- whole files of other formats (nnqc predict, export) ---- */

void nnq_file_save(NnqRun *run, const char *path, const void *data, size_t len, const char *what) {
    RtWriter w;
    rt_wr_open(run, &w, path, what);
    w.no_crc = true;
    rt_wr_bytes(&w, data, len);
    rt_wr_commit(&w);
}

void nnq_npy_save(NnqRun *run, const char *path, const char *descr, int ndim, const int64_t *shape,
                  const void *data, size_t len) {
    /* NumPy format 1.0: magic, version, header length, a dict padded with spaces to a
     * multiple of 64 bytes, ending in a newline */
    char dict[512];
    int n =
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim && n < 400; d++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[d],
                      ndim == 1      ? ","
                      : d + 1 < ndim ? ", "
                                     : "");
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    int total = (10 + n + 1 + 63) / 64 * 64;
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    head[8] = (unsigned char)(total - 10), head[9] = (unsigned char)((total - 10) >> 8);
    while (10 + n + 1 < total)
        dict[n++] = ' ';
    dict[n++] = '\n';
    RtWriter w;
    rt_wr_open(run, &w, path, "cannot write");
    w.no_crc = true;
    rt_wr_bytes(&w, head, 10);
    rt_wr_bytes(&w, dict, (size_t)n);
    rt_wr_bytes(&w, data, len);
    rt_wr_commit(&w);
}

/* ---- reading ---- */

unsigned char *rt_slurp(const char *path, const char *what, size_t *size, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s '%s': %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        snprintf(err, errlen, "cannot read %s '%s': %s", what, path, e ? strerror(e) : "not a regular file");
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        snprintf(err, errlen, "cannot read %s '%s': out of memory for its %zu bytes", what, path, n);
        close(fd);
        return NULL;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, errlen, "cannot read %s '%s': %s", what, path,
                     r < 0 ? strerror(errno) : "file shrank while reading");
            free(buf);
            close(fd);
            return NULL;
        }
        got += (size_t)r;
    }
    close(fd);
    *size = n;
    return buf;
}

void rt_rd_error(RtReader *r, const char *fmt, ...) {
    int n = r->path ? snprintf(r->err, r->errlen, "'%s': %s: ", r->path, r->kind)
                    : snprintf(r->err, r->errlen, "%s: ", r->kind);
    if (n < 0 || (size_t)n >= r->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

bool rt_rd_need(RtReader *r, uint64_t n, const char *what) {
    if (n > r->end - r->pos) {
        rt_rd_error(r, "%s at byte %zu needs %llu bytes, %zu left", what, r->pos,
                    (unsigned long long)n, r->end - r->pos);
        return false;
    }
    return true;
}

bool rt_rd_u32(RtReader *r, uint32_t *v, const char *what) {
    if (!rt_rd_need(r, 4, what))
        return false;
    *v = rt_le32(r->p + r->pos);
    r->pos += 4;
    return true;
}

bool rt_rd_u64(RtReader *r, uint64_t *v, const char *what) {
    if (!rt_rd_need(r, 8, what))
        return false;
    *v = rt_le64(r->p + r->pos);
    r->pos += 8;
    return true;
}

bool rt_rd_str(RtReader *r, const char **s, uint32_t *len, uint32_t max, const char *what) {
    if (!rt_rd_u32(r, len, what))
        return false;
    if (*len > max) {
        rt_rd_error(r, "%s of %u bytes at byte %zu", what, *len, r->pos - 4);
        return false;
    }
    if (!rt_rd_need(r, *len, what))
        return false;
    *s = (const char *)r->p + r->pos;
    r->pos += *len;
    return true;
}

bool rt_is_name(const char *s, size_t len, size_t max) {
    if (len < 1 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

bool rt_rd_name(RtReader *r, const char **s, uint32_t *len, uint32_t max, const char *what) {
    size_t at = r->pos;
    if (!rt_rd_str(r, s, len, max, what))
        return false;
    if (!rt_is_name(*s, *len, max)) {
        char shown[4 * 64 + 4];
        rt_rd_error(r, "%s at byte %zu is '%s': a name is 1 to %u printable ASCII characters, no space",
                    what, at, rt_printable(*s, *len, 64, shown, sizeof shown), max);
        return false;
    }
    return true;
}

const char *rt_printable(const void *s, size_t len, size_t max, char *out, size_t cap) {
    const unsigned char *p = s;
    size_t o = 0;
    for (size_t i = 0; i < len && i < max && o + 5 <= cap; i++) {
        if (p[i] >= ' ' && p[i] <= '~' && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
    }
    if (len > max && o + 4 <= cap)
        memcpy(out + o, "...", 3), o += 3;
    out[o < cap ? o : cap - 1] = '\0';
    return out;
}
