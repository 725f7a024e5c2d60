/* near.c — "did you mean" (near.h). */
#include "near.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEAR_MAX_LEN 64

/* Edit distance of a and b where two neighbours swapped count one edit (optimal string
 * alignment), both at most NEAR_MAX_LEN bytes. */
static int near_distance(const char *a, int la, const char *b, int lb) {
    int d[NEAR_MAX_LEN + 1][NEAR_MAX_LEN + 1];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

DiagNear diag_near(const char *name) {
    int len = (int)strlen(name);
    return (DiagNear){name, NULL, len > NEAR_MAX_LEN ? -1 : (len + 2) / 3 + 1};
}

void diag_near_offer(DiagNear *near, const char *candidate) {
    int la = (int)strlen(near->name), lb = (int)strlen(candidate);
    if (near->dist <= 1 || lb > NEAR_MAX_LEN || abs(la - lb) >= near->dist || !strcmp(near->name, candidate))
        return;
    int d = near_distance(near->name, la, candidate, lb);
    if (d < near->dist) {
        near->dist = d;
        near->best = candidate;
    }
}

const char *diag_near_hint(const DiagNear *near, char *buf, size_t cap) {
    if (!near->best)
        return "";
    snprintf(buf, cap, "; did you mean '%s'?", near->best);
    return buf;
}
