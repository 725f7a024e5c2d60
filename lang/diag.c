/* diag.c — the diagnostics sink (format in diag.h).
 *
 * Each located message is three lines: the header, the source line with one leading
 * space, and a caret line with one leading space that copies the tabs of the source
 * line before the column, so the caret lands under the right character in any tab
 * width. The caret line skips UTF-8 continuation bytes, so a character takes one
 * column there (SrcLoc columns themselves count bytes). A line longer than EXCERPT_MAX
 * bytes is shown cut around the column, a control character as '?'. Notes are printed the same way
 * and do not count as errors. Output is flushed after each message so it interleaves
 * sanely with other writers of `out`. */
#include "diag.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct Diag {
    FILE *out;
    int errors;
};

Diag *diag_new(FILE *out) {
    assert(out);
    Diag *diag = calloc(1, sizeof(Diag));
    assert(diag);
    diag->out = out;
    return diag;
}

void diag_free(Diag *diag) {
    free(diag);
}

int diag_error_count(const Diag *diag) {
    return diag->errors;
}

/* The most of a source line an excerpt shows: a longer line is cut to this many bytes
 * around the column, each cut end marked "...". */
#define EXCERPT_MAX 160

/* Prints the source line of `loc` and a caret under its column. */
static void diag_print_excerpt(Diag *diag, SrcLoc loc) {
    const SourceFile *src = loc.file;
    const char *p = src->text, *end = src->text + src->len;
    for (int line = 1; line < loc.line; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return; /* a location past the last line: no excerpt */
        p = nl + 1;
    }
    const char *eol = p;
    while (eol < end && *eol != '\n' && *eol != '\0')
        eol++;
    if (eol > p && eol[-1] == '\r')
        eol--;
    const char *at = p + (loc.col - 1 < eol - p ? loc.col - 1 : eol - p);
    const char *from = p, *to = eol; /* the part shown, whole UTF-8 characters */
    if (to - from > EXCERPT_MAX) {
        from = at - from > EXCERPT_MAX / 2 ? at - EXCERPT_MAX / 2 : p;
        while (from < at && (*from & 0xC0) == 0x80)
            from++;
        to = eol - from > EXCERPT_MAX ? from + EXCERPT_MAX : eol;
        while (to > at && to < eol && (*to & 0xC0) == 0x80)
            to--;
    }
    /* control characters (an escape sequence would act on the terminal) as '?', one
     * column each like every other byte */
    fputs(from > p ? " ..." : " ", diag->out);
    for (const char *c = from; c < to; c++)
        fputc((unsigned char)*c < 0x20 && *c != '\t' ? '?' : *c == 0x7f ? '?' : *c, diag->out);
    fputs(to < eol ? "...\n " : "\n ", diag->out);
    if (from > p)
        fputs("   ", diag->out);
    for (const char *c = from; c < p + loc.col - 1; c++) {
        if (c < to && (*c & 0xC0) == 0x80)
            continue; /* a UTF-8 continuation byte: its character already has a column */
        fputc(c < to && *c == '\t' ? '\t' : ' ', diag->out);
    }
    fputs("^\n", diag->out);
}

static void diag_vreport(Diag *diag, SrcLoc loc, const char *severity, const char *fmt,
                         va_list ap) {
    if (loc.file)
        fprintf(diag->out, "%s:%d:%d: %s: ", loc.file->path, loc.line, loc.col, severity);
    else
        fprintf(diag->out, "nnqc: %s: ", severity);
    vfprintf(diag->out, fmt, ap);
    fputc('\n', diag->out);
    if (loc.file)
        diag_print_excerpt(diag, loc);
    fflush(diag->out);
}

void diag_error(Diag *diag, SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(diag, loc, "error", fmt, ap);
    va_end(ap);
    diag->errors++;
}

void diag_note(Diag *diag, SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_vreport(diag, loc, "note", fmt, ap);
    va_end(ap);
}

void diag_note_names(Diag *diag, SrcLoc loc, const char *what, const char *const *first, int n, size_t stride) {
    char list[1024] = "";
    size_t len = 0;
    int i = 0;
    for (; i < n; i++) { /* whole names only; the rest, if they do not fit, as ", ..." */
        const char *name = *(const char *const *)((const char *)first + (size_t)i * stride);
        if (len + strlen(name) + 2 + 5 >= sizeof list) break;
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", name);
    }
    diag_note(diag, loc, "%s: %s%s", what, list, i == n ? "" : i ? ", ..." : "...");
}

void diag_error_noloc(Diag *diag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    SrcLoc none = {0};
    diag_vreport(diag, none, "error", fmt, ap);
    va_end(ap);
    diag->errors++;
}

void diag_unknown(Diag *diag, SrcLoc loc, const char *what, const DiagNear *near, const char *tail) {
    char hint[96];
    diag_error(diag, loc, "unknown %s '%s'%s%s%s", what, near->name, tail ? " " : "", tail ? tail : "",
               diag_near_hint(near, hint, sizeof hint));
}
