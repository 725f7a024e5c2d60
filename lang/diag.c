/* diag.c — the diagnostics sink (format in diag.h).
 *
 * Each located message is three lines: the header, the source line with one leading
 * space, and a caret line with one leading space that copies the tabs of the source
 * line before the column, so the caret lands under the right character in any tab
 * width. The caret line skips UTF-8 continuation bytes, so a character takes one
 * column there (SrcLoc columns themselves count bytes). Notes are printed the same way
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
    fprintf(diag->out, " %.*s\n ", (int)(eol - p), p);
    for (int col = 1; col < loc.col; col++) {
        const char *c = p + col - 1;
        if (c < eol && (*c & 0xC0) == 0x80)
            continue; /* a UTF-8 continuation byte: its character already has a column */
        fputc(c < eol && *c == '\t' ? '\t' : ' ', diag->out);
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
    char list[1024];
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof list; i++) {
        const char *name = *(const char *const *)((const char *)first + (size_t)i * stride);
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", name);
    }
    diag_note(diag, loc, "%s: %s", what, list);
}

void diag_error_noloc(Diag *diag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    SrcLoc none = {0};
    diag_vreport(diag, none, "error", fmt, ap);
    va_end(ap);
    diag->errors++;
}
