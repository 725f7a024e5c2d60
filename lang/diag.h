/* diag.h — the diagnostics sink. Passes report user errors here and return false, so
 * one run can report several errors. Output format (golden-tested):
 *
 *   file:line:col: error: message
 *    <the source line, tabs kept>
 *    <spaces (tabs where the line has tabs) then ^>
 *   file:line:col: note: message        (notes attach to the preceding error)
 *
 * Errors without a location print "nnqc: error: message". The sink owns nothing it is
 * given beyond the call; `out` is borrowed (usually stderr). */
#ifndef NNQ_DIAG_H
#define NNQ_DIAG_H

#include <stdio.h>

#include "near.h"
#include "source.h"

typedef struct Diag Diag;

Diag *diag_new(FILE *out);
void diag_free(Diag *diag);
void diag_error(Diag *diag, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_note(Diag *diag, SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A note "WHAT: a, b, c" listing the names of a table: n rows of `stride` bytes, the
 * first row's name at *first (the vocabularies' "layers:", "settings:" notes). */
void diag_note_names(Diag *diag, SrcLoc loc, const char *what, const char *const *first, int n, size_t stride);
void diag_error_noloc(Diag *diag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The error "unknown WHAT 'NAME'", then " TAIL" where tail is not NULL, then the hint. */
void diag_unknown(Diag *diag, SrcLoc loc, const char *what, const DiagNear *near, const char *tail);
int diag_error_count(const Diag *diag);

#endif
