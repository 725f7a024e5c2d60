/* cgroup.c — the limits the system sets this process: the memory of its cgroups (the
 * memory check, run.c) and the CPUs it may use (the default thread count of a run,
 * parallel.c, and of code generation, jit.c).
 *
 * Requires: Linux (sched_getaffinity, /proc/self/cgroup, the cgroup file systems under
 * /sys/fs/cgroup); elsewhere the files are absent and nothing is limited.
 * Provides: nnq_cpus_usable, rt_cpus_usable; rt_cgroup_limit and rt_cgroup_cpus, which read any
 * /proc/self/cgroup and any root (tests give files of their own).
 *
 * One walk serves both (cgroup_walk): the process's group for a controller, as cgroup
 * v2 names it (the "0::PATH" line, under ROOT and ROOT/unified) and as v1 does (the line
 * naming the controller, under ROOT/CONTROLLER), then every group above it up to the
 * root; the least limit found anywhere on the way counts. A group whose files are
 * missing (a container that sees only its own group, mounted at the root) sets none.
 *
 * The CPUs: the affinity mask's (taskset, numactl, a batch scheduler's or Open MPI's
 * binding), lowered to the CPU quota, rounded up (v2 cpu.max "QUOTA PERIOD" or "max
 * PERIOD"; v1 cpu.cfs_quota_us, -1 for none, over cpu.cfs_period_us; a container given
 * --cpus=4 on a 64-CPU host: 4). Counting every online CPU instead put 2 threads on 1
 * CPU under `taskset -c 0` (the flagship's two epochs 1.7 s against 1.1 s with
 * --threads 1), and would put 64 spinning threads on a quota of 4. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_internal.h"

/* Calls visit(dir, v2, ctx) for each directory of the process's cgroup for `controller`
 * (v2's, and v1's under each of v1_dirs), from its own group up to the root. */
static void cgroup_walk(const char *self_cgroup, const char *fs_root, const char *controller,
                        const char *const *v1_dirs, void (*visit)(const char *dir, bool v2, void *ctx), void *ctx) {
    static const char *const v2_dirs[] = {"", "/unified", NULL};
    FILE *f = fopen(self_cgroup, "r");
    if (!f)
        return;
    char line[PATH_MAX + 256];
    while (fgets(line, sizeof line, f)) { /* "ID:CONTROLLERS:PATH" */
        line[strcspn(line, "\n")] = 0;
        char *ctl = strchr(line, ':'), *group = ctl ? strchr(ctl + 1, ':') : NULL;
        if (!group)
            continue;
        *ctl++ = 0, *group++ = 0;
        bool v2 = !strcmp(line, "0") && !*ctl, named = false;
        for (const char *t = ctl; *t && !named;) { /* "memory" among "blkio,memory" */
            size_t n = strcspn(t, ",");
            named = n == strlen(controller) && !strncmp(t, controller, n);
            t += n + (t[n] == ',');
        }
        if ((!v2 && !named) || *group != '/')
            continue;
        for (const char *const *m = v2 ? v2_dirs : v1_dirs; *m; m++)
            for (size_t len = strlen(group);;) {
                while (len > 0 && group[len - 1] == '/')
                    len--; /* "/" is the root, "" */
                char dir[PATH_MAX];
                if ((size_t)snprintf(dir, sizeof dir, "%s%s%.*s", fs_root, *m, (int)len, group) < sizeof dir)
                    visit(dir, v2, ctx);
                if (len == 0)
                    break;
                while (len > 0 && group[len - 1] != '/')
                    len--; /* the group above */
            }
    }
    fclose(f);
}

/* The first two words of DIR/FILE as numbers into v ("max": -1); how many were read. */
static int file_numbers(const char *dir, const char *file, long long v[2]) {
    char path[PATH_MAX + 64], word[2][32];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = fscanf(f, "%31s %31s", word[0], word[1]);
    fclose(f);
    n = n < 0 ? 0 : n;
    for (int i = 0; i < n; i++)
        v[i] = strcmp(word[i], "max") ? strtoll(word[i], NULL, 10) : -1;
    return n;
}

/* ---- memory ---- */

static void memory_visit(const char *dir, bool v2, void *ctx) {
    int64_t *lowest = ctx;
    long long lim[2];
    if (file_numbers(dir, v2 ? "memory.max" : "memory.limit_in_bytes", lim) >= 1 && lim[0] > 0 &&
        lim[0] < ((long long)1 << 60) && (*lowest < 0 || lim[0] < *lowest)) /* near 2^63: none */
        *lowest = lim[0];
}

int64_t rt_cgroup_limit(const char *proc_cgroup, const char *root) {
    static const char *const v1_dirs[] = {"/memory", NULL};
    int64_t lowest = -1;
    cgroup_walk(proc_cgroup, root, "memory", v1_dirs, memory_visit, &lowest);
    return lowest;
}

/* ---- CPUs ---- */

static void cpu_visit(const char *dir, bool v2, void *ctx) {
    int *least = ctx;
    long long qp[2], period[2]; /* v2: "QUOTA PERIOD"; v1: a file each */
    bool read = v2 ? file_numbers(dir, "cpu.max", qp) == 2
                   : file_numbers(dir, "cpu.cfs_quota_us", qp) >= 1 && file_numbers(dir, "cpu.cfs_period_us", period) >= 1;
    if (read && !v2)
        qp[1] = period[0];
    if (!read || qp[0] <= 0 || qp[1] <= 0)
        return;
    long long cpus = qp[0] / qp[1] + (qp[0] % qp[1] != 0); /* rounded up; qp[0] may be LLONG_MAX */
    if (cpus > INT_MAX)
        cpus = INT_MAX;
    if (*least == 0 || cpus < *least)
        *least = (int)cpus;
}

int rt_cgroup_cpus(const char *self_cgroup, const char *fs_root) {
    static const char *const v1_dirs[] = {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu", NULL};
    int least = 0;
    cgroup_walk(self_cgroup, fs_root, "cpu", v1_dirs, cpu_visit, &least);
    return least;
}

int rt_cpus_usable(bool *bound) {
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    long cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : online;
    if (bound)
        *bound = cpus < online;
    int quota = rt_cgroup_cpus("/proc/self/cgroup", "/sys/fs/cgroup");
    if (quota > 0 && quota < cpus)
        cpus = quota;
    return cpus > 0 ? (int)(cpus > INT_MAX ? INT_MAX : cpus) : 1;
}

int nnq_cpus_usable(void) { return rt_cpus_usable(NULL); }
