/* near.h — "did you mean": the known name closest to a misspelt one. The language's
 * diagnostics use it (unknown layers, settings, projections, commands), and so do the
 * command-line options of nnqc and of standalone trainers: near.c is compiled into both
 * nnq_lang and the runtime (lang/CMakeLists.txt), which a trainer links alone.
 *
 * Start a DiagNear with the unknown name, offer it every name in sight; it keeps the
 * closest within (length + 2) / 3 edits (an insertion, a deletion, a substitution, or two
 * neighbours swapped), the first offered among equals. Names past 64 bytes get no
 * suggestion. No allocation, no failure. */
#ifndef NNQ_NEAR_H
#define NNQ_NEAR_H

#include <stddef.h>

typedef struct DiagNear {
    const char *name, *best;
    int dist;
} DiagNear;
DiagNear diag_near(const char *name);
void diag_near_offer(DiagNear *near, const char *candidate);
/* "; did you mean 'BEST'?" where a name was near, else "": in buf (cap bytes; 96 hold
 * any). */
const char *diag_near_hint(const DiagNear *near, char *buf, size_t cap);

#endif
