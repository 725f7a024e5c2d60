/* link.c — the last step of `nnqc build`: the system C compiler driver links the
 * generated object with the runtime library (static) and the shared libraries it
 * needs into an executable. The result appears under its name only when linking
 * succeeded (OUT.PID.tmp, then rename). The library list is fixed when nnqc is built. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"

extern char **environ;

#ifndef NNQ_RT_LIB
#error "NNQ_RT_LIB must name the runtime library"
#endif
#ifndef NNQ_LINK_LIBS
#define NNQ_LINK_LIBS ""
#endif

bool link_trainer(const char *const *objects, int nobjects, const char *out, Diag *diag) {
    size_t n = strlen(out) + 32;
    char *tmp = malloc(n);
    snprintf(tmp, n, "%s.%ld.tmp", out, (long)getpid()); /* this build's own (nnqc.c: build_trainer) */
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
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ);
    bool ok = false;
    if (rc != 0) {
        diag_error_noloc(diag, "cannot run the linker '%s': %s (install gcc, or set CC)", argv[0], strerror(rc));
    } else {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            diag_error_noloc(diag, "linking %s failed (the linker's messages are above)", out);
        else if (rename(tmp, out) != 0)
            diag_error_noloc(diag, "cannot create %s: %s", out, strerror(errno));
        else
            ok = true;
    }
    if (!ok) unlink(tmp);
    free(argv);
    free(libs);
    free(tmp);
    return ok;
}
