/* link.c — the last step of `nnqc build`: the generated objects are written to
 * temporary files beside the output and the system C compiler driver links them with
 * the runtime library (static) and the shared libraries it needs into an executable.
 * The library list is fixed when nnqc is built.
 *
 * The result appears under its name only when linking succeeded: the linker writes
 * OUT.PID.tmp, renamed over OUT. The objects are OUT.PID.I.o.tmp. Named with this
 * process's id, builds of one output side by side each link their own objects and the
 * last rename wins, whole (with shared names, two builds truncated and wrote each
 * other's objects). Every temporary file is removed when the build ends, also when
 * SIGINT, SIGTERM or SIGHUP ends it (Ctrl-C while it links). */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"
#include "nnq_rt.h"

extern char **environ;

#ifndef NNQ_RT_LIB
#error "NNQ_RT_LIB must name the runtime library"
#endif
#ifndef NNQ_LINK_LIBS
#define NNQ_LINK_LIBS ""
#endif

/* The build's temporary files, removed by a signal that ends it. The linker runs in a
 * process group of its own, which the handler gives the same signal and waits for (a
 * SIGTERM sent to nnqc alone, or to cc alone, would leave ld writing OUT.PID.tmp: gcc's
 * driver does not stop the collect2 and ld under it); a Ctrl-C at the terminal reaches
 * nnqc, which passes it on. Being out of the terminal's foreground group, the linker
 * does not touch the terminal: its input is /dev/null, its output comes through a pipe
 * that nnqc copies to its standard error (as ninja runs commands), so a terminal set to
 * stop background writers (stty tostop) cannot stop it. The signal's default action
 * follows, so the caller still sees the process killed by it. A signal ignored from the
 * start (nohup, a background job's SIGINT) stays ignored; the linker gets the default
 * actions back at its exec. */
static struct sigaction link_old[NNQ_STOP_SIGNALS];
static char *volatile link_tmp[CG_MAX_OBJECTS + 1];
static volatile sig_atomic_t link_ntmp;
static volatile pid_t link_child;

static void link_on_signal(int sig) {
    if (link_child > 0 && kill(-link_child, sig) == 0) /* its process group: cc, collect2, ld */
        while (waitpid(link_child, NULL, 0) < 0 && errno == EINTR) {
        }
    for (sig_atomic_t i = 0; i < link_ntmp; i++) unlink(link_tmp[i]);
    raise(sig); /* SA_RESETHAND: the default action, once this handler returns */
}

static void link_handle_signals(bool on) {
    link_ntmp = 0;
    link_child = 0;
    nnq_stop_signals(on ? link_on_signal : NULL, SA_RESETHAND, link_old);
}

/* OUT.PID plus suffix, malloc'd, removed by a signal from now on */
static char *link_tmp_name(const char *out, const char *suffix) {
    size_t n = strlen(out) + strlen(suffix) + 24;
    char *path = malloc(n);
    snprintf(path, n, "%s.%ld%s", out, (long)getpid(), suffix);
    link_tmp[link_ntmp] = path;
    link_ntmp = link_ntmp + 1;
    return path;
}

/* Runs the linker: cc -o tmp ... objects; true when it exited with 0. */
static bool run_linker(char *const *objects, int nobjects, const char *tmp, const char *out, Diag *diag) {
    /* argv: cc -o TMP --no-relax OBJECTS... RUNTIME LIBS... The program's buffers are
     * common symbols past the rest of .bss (codegen.c's trainer_buffers), reached through
     * the GOT; without --no-relax, GNU ld rewrites those loads into 32-bit offsets, and
     * fails where a buffer lies more than 2 GiB from the code. */
    char *libs = strdup(NNQ_LINK_LIBS);
    int cap = nobjects + 8;
    for (const char *c = libs; *c; c++) cap += *c == '|';
    const char **argv = calloc((size_t)cap, sizeof *argv);
    int argc = 0;
    const char *cc = getenv("CC");
    argv[argc++] = cc && *cc ? cc : "cc";
    argv[argc++] = "-o";
    argv[argc++] = tmp;
    argv[argc++] = "-Wl,--no-relax";
    for (int i = 0; i < nobjects; i++) argv[argc++] = objects[i];
    argv[argc++] = NNQ_RT_LIB;
    for (char *tok = strtok(libs, "|"); tok && argc < cap - 1; tok = strtok(NULL, "|")) argv[argc++] = tok;
    argv[argc] = NULL;
    pid_t pid;
    int out_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
        diag_error_noloc(diag, "cannot run the linker: %s", strerror(errno));
        free(argv);
        free(libs);
        return false;
    }
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&files, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&files, out_pipe[1], 2);
    /* signals held from the spawn until link_child names the linker, which starts with
     * the mask as it was */
    sigset_t all, mask;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &mask);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &mask);
    int rc = posix_spawnp(&pid, argv[0], &files, &attr, (char *const *)argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&files);
    if (rc == 0) link_child = pid;
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    close(out_pipe[1]);
    /* the linker's messages, to standard error, until it and its children close the pipe */
    char buf[4096];
    for (ssize_t n; rc == 0 && ((n = read(out_pipe[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR));)
        if (n > 0 && fwrite(buf, 1, (size_t)n, stderr) != (size_t)n) break;
    close(out_pipe[0]);
    bool ok = false;
    if (rc != 0) {
        diag_error_noloc(diag, "cannot run the linker '%s': %s (install gcc, or set CC)", argv[0], strerror(rc));
    } else {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        link_child = 0;
        ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok) diag_error_noloc(diag, "linking %s failed (the linker's messages are above)", out);
    }
    free(argv);
    free(libs);
    return ok;
}

bool link_output_ok(const char *out, Diag *diag) {
    char *real;
    bool stream = nnq_output_dest(out, &real) == NNQ_DEST_STREAM; /* renamed over, /dev/null would become a trainer */
    free(real);
    int err = stream ? 0 : nnq_output_check(out);
    if (stream) diag_error_noloc(diag, "cannot write the trainer '%s': it is not a regular file", out);
    if (err) diag_error_noloc(diag, "cannot write the trainer '%s': %s", out, nnq_output_problem(err));
    return !stream && !err;
}

bool link_trainer(LLVMMemoryBufferRef *objs, int nobjs, const char *out, Diag *diag) {
    char *real;
    nnq_output_dest(out, &real); /* link_output_ok refused a stream */
    if (real) out = real;        /* a link: the file it names is replaced, the link stays */
    char *paths[CG_MAX_OBJECTS + 1];
    int written = 0;
    bool ok = true;
    link_handle_signals(true);
    for (int i = 0; i < nobjs && ok; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, ".%d.o.tmp", i);
        paths[i] = link_tmp_name(out, suffix);
        written = i + 1;
        unlink(paths[i]); /* a new file, not one found there (a link planted in /tmp to write through) */
        int fd = open(paths[i], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (fd >= 0 && !f) close(fd);
        size_t len = LLVMGetBufferSize(objs[i]);
        ok = f && fwrite(LLVMGetBufferStart(objs[i]), 1, len, f) == len;
        ok = f && fclose(f) == 0 && ok;
        if (!ok) diag_error_noloc(diag, "cannot write %s: %s", paths[i], strerror(errno));
    }
    char *tmp = link_tmp_name(out, ".tmp");
    ok = ok && run_linker(paths, nobjs, tmp, out, diag);
    if (ok && rename(tmp, out) != 0) {
        diag_error_noloc(diag, "cannot create %s: %s", out, strerror(errno));
        ok = false;
    }
    if (!ok) unlink(tmp);
    for (int i = 0; i < written; i++) unlink(paths[i]);
    link_handle_signals(false);
    for (int i = 0; i < written; i++) free(paths[i]);
    free(tmp);
    free(real);
    return ok;
}
