/* cpus.c — how many CPUs this process may use: the default thread count of a run
 * (parallel.c) and of code generation (jit.c).
 *
 * Requires: Linux (sched_getaffinity, /proc/self/cgroup, the cgroup file systems under
 * /sys/fs/cgroup).
 * Provides: nnq_cpus_usable, and rt_cgroup_cpus (its cgroup part, on any root: tested).
 *
 * The count is that of the affinity mask (taskset, numactl, a batch scheduler's binding,
 * Open MPI's), lowered to the CPU quota of the process's cgroup and of every cgroup
 * above it, rounded up (a container given --cpus=4 on a 64-CPU host: 4). Counting every
 * online CPU instead put 2 threads on 1 CPU under `taskset -c 0` (the flagship's two
 * epochs 1.7 s against 1.1 s with --threads 1), and 64 spinning threads on a quota of 4.
 * The quota is read as cgroup v2 writes it (cpu.max: "QUOTA PERIOD" or "max PERIOD",
 * under /sys/fs/cgroup or /sys/fs/cgroup/unified) and as v1 does (cpu.cfs_quota_us, -1
 * for none, and cpu.cfs_period_us, under /sys/fs/cgroup/cpu or cpu,cpuacct); a group
 * whose files are missing (a container that sees only its own group, mounted at the
 * root) counts as none, and the root is read too. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_internal.h"

static long long read_ll(const char *dir, const char *file, bool *found) {
    char path[PATH_MAX];
    long long v = -1;
    *found = false;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path)
        return -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char word[32] = "";
    if (fscanf(f, "%31s", word) == 1) {
        *found = true;
        v = strcmp(word, "max") ? strtoll(word, NULL, 10) : -1;
    }
    fclose(f);
    return v;
}

/* The CPUs a cgroup directory's quota allows, rounded up; 0: no quota (or none read). */
static int dir_cpus(const char *dir) {
    char path[PATH_MAX];
    long long quota = -1, period = 0;
    bool found;
    if ((size_t)snprintf(path, sizeof path, "%s/cpu.max", dir) < sizeof path) {
        FILE *f = fopen(path, "r");
        if (f) {
            char q[32];
            if (fscanf(f, "%31s %lld", q, &period) == 2 && strcmp(q, "max"))
                quota = strtoll(q, NULL, 10);
            fclose(f);
            goto done;
        }
    }
    quota = read_ll(dir, "cpu.cfs_quota_us", &found);
    period = found ? read_ll(dir, "cpu.cfs_period_us", &found) : 0;
done:
    if (quota <= 0 || period <= 0)
        return 0;
    long long cpus = (quota + period - 1) / period;
    return cpus > INT_MAX ? INT_MAX : (int)cpus;
}

int rt_cgroup_cpus(const char *self_cgroup, const char *fs_root) {
    static const char *const v2_mounts[] = {"", "/unified", NULL};
    static const char *const v1_mounts[] = {"/cpu", "/cpu,cpuacct", "/cpuacct,cpu", NULL};
    FILE *f = fopen(self_cgroup, "r");
    if (!f)
        return 0;
    int least = 0;
    char line[PATH_MAX + 256];
    while (fgets(line, sizeof line, f)) { /* ID:CONTROLLERS:PATH */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *controllers = c1 + 1;
        char *group = c2 + 1;
        group[strcspn(group, "\n")] = 0;
        bool v2 = !*controllers, cpu = false;
        for (const char *t = controllers; *t && !cpu;) { /* "cpu" among "cpu,cpuacct" */
            size_t n = strcspn(t, ",");
            cpu = n == 3 && !strncmp(t, "cpu", 3);
            t += n + (t[n] == ',');
        }
        if (!v2 && !cpu)
            continue;
        for (const char *const *m = v2 ? v2_mounts : v1_mounts; *m; m++) {
            /* the group, then each group above it, up to the mount's root */
            for (size_t len = strlen(group);;) {
                char dir[PATH_MAX];
                if ((size_t)snprintf(dir, sizeof dir, "%s%s%.*s", fs_root, *m, (int)len, group) < sizeof dir) {
                    int n = dir_cpus(dir);
                    if (n > 0 && (least == 0 || n < least))
                        least = n;
                }
                if (len == 0)
                    break;
                while (len > 0 && group[len - 1] != '/')
                    len--;
                if (len > 0)
                    len--; /* the '/' before the last component */
            }
        }
    }
    fclose(f);
    return least;
}

int nnq_cpus_usable(void) {
    cpu_set_t set;
    long cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
    int quota = rt_cgroup_cpus("/proc/self/cgroup", "/sys/fs/cgroup");
    if (quota > 0 && quota < cpus)
        cpus = quota;
    return cpus > 0 ? (int)(cpus > INT_MAX ? INT_MAX : cpus) : 1;
}
