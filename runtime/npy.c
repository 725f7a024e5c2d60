/* npy.c — reading files through zlib (gzip-compressed or plain) and the NumPy .npy
 * format: what data.c (data sets: IDX and .npy files) and init_from.c (initial weights
 * from .npy files, `init from`) share.
 *
 * Provides (rt_internal.h): RtZFile, a file read through zlib, and the .npy reader: the
 * preamble and the header dictionary (rt_npy_header), the size check of a plain file
 * (rt_npy_check_size) and the array read in chunks handed to the caller
 * (rt_npy_read_data). What each caller accepts (dtypes, shapes, values) it checks
 * itself.
 * Invariants: nothing here fails the run or allocates tracked memory: every error is
 * written to f->err and the function returns false, so that the caller closes the file
 * before it calls nnq_rt_fail. No message buffer is written past its size. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rt_internal.h"

/* ---- reading a file: gzip or plain, through zlib ----
 * A file that starts with gzip's magic (1f 8b) is inflated member by member (RFC 1952
 * allows members one after another, as `cat a.gz b.gz` writes them); any other file is
 * read as it is. Our own loop rather than zlib's gzread: gzread ignores whatever follows
 * the last member when it is not gzip data, silently, where a plain file's extra bytes
 * are an error. Here they are one too. */

#define ZF_IN (1u << 17)

/* "cannot read 'P': the system's reason" in f->err; false. */
static bool zf_read_error(RtZFile *f) {
    snprintf(f->err, f->errlen, "cannot read '%s': %s", f->path, strerror(errno));
    return false;
}

/* Reads more of the file into f->in after the avail_in bytes still unread there (moved
 * to its start). false on a read error. */
static bool zf_fill(RtZFile *f) {
    if (f->eof)
        return true;
    memmove(f->in, f->zs.next_in, f->zs.avail_in);
    size_t got = fread(f->in + f->zs.avail_in, 1, ZF_IN - f->zs.avail_in, f->fp);
    if (ferror(f->fp))
        return zf_read_error(f);
    if (got == 0 || feof(f->fp))
        f->eof = true;
    f->zs.next_in = f->in;
    f->zs.avail_in += (unsigned)got;
    return true;
}

/* Whether the unread bytes start a gzip member (its magic, 1f 8b), two of them read in
 * first where the file has them; *gz tells. false on a read error. */
static bool zf_at_member(RtZFile *f, bool *gz) {
    while (f->zs.avail_in < 2 && !f->eof)
        if (!zf_fill(f))
            return false;
    *gz = f->zs.avail_in >= 2 && f->zs.next_in[0] == 0x1f && f->zs.next_in[1] == 0x8b;
    return true;
}

/* After a member's end: true with *more when another member follows, true with !*more
 * at the end of the file, false (the message in f->err) when other bytes follow. */
static bool zf_next_member(RtZFile *f, bool *more) {
    if (!zf_at_member(f, more))
        return false;
    if (*more)
        return inflateReset(&f->zs) == Z_OK;
    if (f->zs.avail_in == 0)
        return true;
    /* the unread bytes start at the file position less those still in the buffer */
    unsigned long long extra = f->zs.avail_in;
    struct stat st;
    off_t at = ftello(f->fp);
    if (fstat(fileno(f->fp), &st) == 0 && S_ISREG(st.st_mode) && at >= (off_t)f->zs.avail_in && st.st_size >= at)
        extra = (unsigned long long)(st.st_size - at) + f->zs.avail_in;
    snprintf(f->err, f->errlen,
             "'%s' has %llu bytes after its gzip data that are not gzip data (a file appended "
             "to it, or padding)",
             f->path, extra);
    return false;
}

bool rt_zf_read(RtZFile *f, void *buf, size_t n, size_t *got) {
    size_t total = 0;
    unsigned char *out = buf;
    if (!f->gzip) {
        size_t have = f->zs.avail_in < n ? f->zs.avail_in : n; /* the bytes looked at */
        memcpy(out, f->zs.next_in, have);
        f->zs.next_in += have, f->zs.avail_in -= (unsigned)have;
        total = have;
        if (total < n)
            total += fread(out + total, 1, n - total, f->fp);
        *got = total;
        return ferror(f->fp) ? zf_read_error(f) : true;
    }
    while (total < n) {
        if (f->member_done) {
            bool more;
            if (!zf_next_member(f, &more))
                return false;
            if (!more)
                break;
            f->member_done = false;
        }
        if (f->zs.avail_in == 0 && !f->eof && !zf_fill(f))
            return false;
        size_t want = n - total;
        f->zs.next_out = out + total;
        f->zs.avail_out = want > (1u << 30) ? (1u << 30) : (unsigned)want;
        unsigned before = f->zs.avail_out;
        int r = inflate(&f->zs, Z_NO_FLUSH);
        total += before - f->zs.avail_out;
        if (r == Z_STREAM_END) {
            f->member_done = true;
        } else if (r == Z_BUF_ERROR) { /* no progress: the input is used up */
            if (f->eof)
                break; /* the stream stops early: the caller reports the truncation */
        } else if (r != Z_OK) {
            snprintf(f->err, f->errlen, "cannot read '%s': corrupt gzip data (%s)", f->path,
                     r == Z_MEM_ERROR ? "out of memory" : f->zs.msg ? f->zs.msg : "bad stream");
            return false;
        }
    }
    *got = total;
    return true;
}

bool rt_zf_holds(RtZFile *f, uint64_t offset, uint64_t want, const char *what) {
    struct stat st;
    if (fstat(fileno(f->fp), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0)
        return true; /* the read loop will tell */
    uint64_t size = (uint64_t)st.st_size, room = size;
    bool plain = !f->gzip;
    if (!plain)
        room = size > ((uint64_t)1 << 50) ? UINT64_MAX : size * 1032 + 1032;
    room = room > offset ? room - offset : 0;
    if (room >= want)
        return true;
    if (plain)
        return rt_zf_truncated(f, want, what, room);
    snprintf(f->err, f->errlen,
             "'%s' is truncated: expected %llu bytes of %s, more than its %llu compressed bytes can hold",
             f->path, (unsigned long long)want, what, (unsigned long long)size);
    return false;
}

bool rt_zf_truncated(RtZFile *f, uint64_t want, const char *what, uint64_t found) {
    snprintf(f->err, f->errlen, "'%s' is truncated: expected %llu bytes of %s, found %llu", f->path,
             (unsigned long long)want, what, (unsigned long long)found);
    return false;
}

bool rt_zf_expect_end(RtZFile *f, const char *what) {
    unsigned char buf[65536];
    size_t extra = 0, got;
    do {
        if (!rt_zf_read(f, buf, sizeof buf, &got))
            return false;
        extra += got;
    } while (got == sizeof buf);
    if (extra) {
        snprintf(f->err, f->errlen, "'%s' has %zu unexpected bytes after %s", f->path, extra, what);
        return false;
    }
    return true;
}

bool rt_zf_open(RtZFile *f, const char *what) {
    errno = 0;
    f->fp = fopen(f->path, "rb");
    f->in = f->fp ? malloc(ZF_IN) : NULL;
    if (!f->in) {
        snprintf(f->err, f->errlen, "cannot open %s '%s': %s", what, f->path,
                 errno ? strerror(errno) : "out of memory");
        if (f->fp)
            fclose(f->fp);
        f->fp = NULL;
        return false;
    }
    memset(&f->zs, 0, sizeof f->zs);
    f->zs.next_in = f->in;
    f->eof = f->gzip = f->member_done = false;
    bool gz;
    if (!zf_at_member(f, &gz)) {
        rt_zf_close(f);
        return false;
    }
    f->gzip = gz;
    if (f->gzip && inflateInit2(&f->zs, 16 + MAX_WBITS) != Z_OK) { /* 16: gzip only */
        snprintf(f->err, f->errlen, "cannot open %s '%s': out of memory", what, f->path);
        f->gzip = false;
        rt_zf_close(f);
        return false;
    }
    return true;
}

void rt_zf_close(RtZFile *f) {
    if (f->gzip)
        inflateEnd(&f->zs);
    if (f->fp)
        fclose(f->fp);
    free(f->in);
    f->fp = NULL, f->in = NULL, f->gzip = false;
}

/* ---- NumPy .npy ----
 * Layout: the magic "\x93NUMPY", a major and a minor version byte, the header length
 * (little-endian; 2 bytes in version 1.0, 4 bytes in 2.0 and 3.0), then the header: a
 * Python dict literal {'descr': <dtype string>, 'fortran_order': <bool>, 'shape':
 * <tuple of ints>}, padded with spaces and ended by a newline; then the raw array. The
 * header parser below accepts exactly that subset of Python literal syntax: quoted
 * strings without escapes, True/False, non-negative decimal integers (an old 'L'
 * suffix allowed), tuples with Python's one-element trailing-comma rule, the three
 * keys each once and nothing else. */

#define NPY_MAX_HEADER 65536 /* numpy itself refuses headers over 10000 bytes */
typedef struct NpyParser {
    const char *text, *p, *end;
    RtZFile *f;
} NpyParser;

/* Records "malformed header" with the reason and where; returns false. */
static bool npy_bad(NpyParser *ps, const char *why) {
    int shown = (int)(ps->end - ps->text);
    while (shown > 0 && isspace((unsigned char)ps->text[shown - 1]))
        shown--; /* numpy pads the header with spaces and a newline */
    snprintf(ps->f->err, ps->f->errlen,
             "'%s' has a malformed .npy header: %s at character %d of the header '%.*s%s'",
             ps->f->path, why, (int)(ps->p - ps->text), shown > 200 ? 200 : shown, ps->text,
             shown > 200 ? "..." : "");
    return false;
}

static void npy_ws(NpyParser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool npy_expect(NpyParser *ps, char c, const char *why) {
    npy_ws(ps);
    if (ps->p >= ps->end || *ps->p != c)
        return npy_bad(ps, why);
    ps->p++;
    return true;
}

/* A quoted string (' or "), no escapes, into out (cap bytes with the NUL). */
static bool npy_string(NpyParser *ps, char *out, size_t cap) {
    npy_ws(ps);
    if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
        return npy_bad(ps, "expected a quoted string");
    char q = *ps->p++;
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != q && *ps->p != '\n' && *ps->p != '\r') {
        if (*ps->p == '\\')
            return npy_bad(ps, "escape sequences in strings are not supported");
        if (n + 1 >= cap)
            return npy_bad(ps, "string too long");
        out[n++] = *ps->p++;
    }
    if (ps->p >= ps->end || *ps->p != q)
        return npy_bad(ps, "unterminated string");
    ps->p++;
    out[n] = 0;
    return true;
}

/* A Python name (True, False, ...) must end at a non-identifier character. */
static bool npy_word(NpyParser *ps, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
        return false;
    const char *after = ps->p + n;
    if (after < ps->end && (isalnum((unsigned char)*after) || *after == '_'))
        return false;
    ps->p = after;
    return true;
}

static bool npy_bool(NpyParser *ps, bool *out) {
    npy_ws(ps);
    if (npy_word(ps, "True"))
        *out = true;
    else if (npy_word(ps, "False"))
        *out = false;
    else
        return npy_bad(ps, "expected True or False");
    return true;
}

/* A non-negative decimal integer literal (no sign, no leading zeros), < 2^63. */
static bool npy_int(NpyParser *ps, int64_t *out) {
    npy_ws(ps);
    if (ps->p < ps->end && *ps->p == '-')
        return npy_bad(ps, "negative dimension");
    if (ps->p >= ps->end || !isdigit((unsigned char)*ps->p))
        return npy_bad(ps, "expected an integer");
    if (*ps->p == '0' && ps->p + 1 < ps->end && isdigit((unsigned char)ps->p[1]))
        return npy_bad(ps, "integer with a leading zero");
    uint64_t v = 0;
    while (ps->p < ps->end && isdigit((unsigned char)*ps->p)) {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return npy_bad(ps, "integer too large");
        v = v * 10 + d;
        ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'L' || *ps->p == 'l'))
        ps->p++; /* Python 2 long suffix, written by old numpy */
    if (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || *ps->p == '_' || *ps->p == '.'))
        return npy_bad(ps, "expected an integer");
    *out = (int64_t)v;
    return true;
}

/* (), (n,), (n, m), (n, m,) ...; (n) is an int in Python, not a tuple. */
static bool npy_shape(NpyParser *ps, RtNpyHeader *h) {
    if (!npy_expect(ps, '(', "expected a tuple for 'shape'"))
        return false;
    h->ndim = 0;
    bool comma = false; /* a comma followed the last element */
    for (;;) {
        npy_ws(ps);
        if (ps->p < ps->end && *ps->p == ')') {
            if (h->ndim == 1 && !comma)
                return npy_bad(ps, "'shape' is a parenthesized integer, not a tuple "
                                   "(a one-element tuple needs a trailing comma)");
            ps->p++;
            return true;
        }
        if (h->ndim > 0 && !comma)
            return npy_bad(ps, "expected ',' or ')' in 'shape'");
        if (h->ndim == RT_NPY_MAX_DIMS)
            return npy_bad(ps, "too many dimensions in 'shape'");
        if (!npy_int(ps, &h->shape[h->ndim]))
            return false;
        h->ndim++;
        npy_ws(ps);
        comma = ps->p < ps->end && *ps->p == ',';
        if (comma)
            ps->p++;
    }
}

/* The dict: each of the three keys exactly once, in any order, an optional trailing
 * comma, then only white space. */
static bool npy_dict(NpyParser *ps, RtNpyHeader *h) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    if (!npy_expect(ps, '{', "expected '{'"))
        return false;
    for (;;) {
        npy_ws(ps);
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        char key[32];
        if (!npy_string(ps, key, sizeof key))
            return false;
        bool *seen = strcmp(key, "descr") == 0           ? &have_descr
                     : strcmp(key, "fortran_order") == 0 ? &have_fortran
                     : strcmp(key, "shape") == 0         ? &have_shape
                                                         : NULL;
        if (!seen)
            return npy_bad(ps, "unexpected key (only 'descr', 'fortran_order' and 'shape' "
                               "are allowed)");
        if (*seen)
            return npy_bad(ps, "duplicate key");
        *seen = true;
        if (!npy_expect(ps, ':', "expected ':' after a key"))
            return false;
        if (seen == &have_descr) {
            npy_ws(ps);
            if (ps->p < ps->end && *ps->p == '[')
                return npy_bad(ps, "structured dtypes (a list 'descr') are not supported");
            if (!npy_string(ps, h->descr, sizeof h->descr))
                return false;
        } else if (seen == &have_fortran) {
            if (!npy_bool(ps, &h->fortran))
                return false;
        } else if (!npy_shape(ps, h)) {
            return false;
        }
        npy_ws(ps);
        if (ps->p < ps->end && *ps->p == ',')
            ps->p++;
        else if (ps->p >= ps->end || *ps->p != '}')
            return npy_bad(ps, "expected ',' or '}' after a value");
    }
    npy_ws(ps);
    if (ps->p != ps->end)
        return npy_bad(ps, "unexpected text after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return npy_bad(ps, !have_descr     ? "no 'descr' key"
                           : !have_fortran ? "no 'fortran_order' key"
                                           : "no 'shape' key");
    return true;
}

static bool host_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Splits h->descr ("<f4", "|u1", ...) into kind and size, and whether multi-byte
 * elements are stored other than little-endian; kind 0: not one of the integer and
 * float types (the caller says which it reads). */
static void npy_dtype(RtNpyHeader *h) {
    const char *d = h->descr;
    char order = '=';
    if (*d == '<' || *d == '>' || *d == '|' || *d == '=')
        order = *d++;
    char kind = *d ? *d++ : 0;
    int size = 0;
    while (isdigit((unsigned char)*d) && size < 100)
        size = size * 10 + (*d++ - '0');
    bool integer =
        (kind == 'u' || kind == 'i') && (size == 1 || size == 2 || size == 4 || size == 8);
    bool floating = kind == 'f' && (size == 4 || size == 8);
    bool known = *d == 0 && (integer || floating);
    /* byte order: irrelevant for one byte; '|' ("not applicable") only fits one byte;
     * '=' is native order */
    h->big = order == '>' || (order == '=' && !host_little_endian());
    h->kind = known ? kind : 0;
    h->size = known ? size : 0;
    h->swapped = known && size > 1 && (h->big || order == '|');
}

/* Reads magic, version, length and header; parses the header and decodes the dtype.
 * A Fortran-ordered array is refused. */
bool rt_npy_header(RtZFile *f, RtNpyHeader *h) {
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    unsigned char pre[12];
    size_t got;
    if (!rt_zf_read(f, pre, 8, &got))
        return false;
    if (got < 6 || memcmp(pre, magic, 6) != 0) {
        char seen[64] = "";
        for (size_t i = 0, len = 0; i < got && i < 6; i++)
            len += (size_t)snprintf(seen + len, sizeof seen - len, " %02x", pre[i]);
        bool zip = got >= 4 && memcmp(pre, "PK\x03\x04", 4) == 0;
        snprintf(f->err, f->errlen,
                 "'%s' is not a .npy file: it starts with%s, not the magic \"\\x93NUMPY\"%s",
                 f->path, got ? seen : " nothing (it is empty)",
                 zip ? " (it is a zip archive: an .npz? extract its arrays with np.load)" : "");
        return false;
    }
    if (got < 8) {
        snprintf(f->err, f->errlen, "'%s' is truncated: it ends inside the .npy preamble", f->path);
        return false;
    }
    int major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
        snprintf(f->err, f->errlen,
                 "'%s' has .npy format version %d.%d; supported are 1.0, 2.0 and 3.0", f->path,
                 major, minor);
        return false;
    }
    size_t lenbytes = major == 1 ? 2 : 4;
    if (!rt_zf_read(f, pre + 8, lenbytes, &got))
        return false;
    if (got < lenbytes) {
        snprintf(f->err, f->errlen, "'%s' is truncated: it ends inside the .npy preamble", f->path);
        return false;
    }
    uint32_t hlen = major == 1 ? (uint32_t)pre[8] | (uint32_t)pre[9] << 8 : rt_le32(pre + 8);
    if (hlen > NPY_MAX_HEADER) {
        snprintf(f->err, f->errlen, "'%s' has a .npy header of %u bytes (more than %d)", f->path,
                 hlen, NPY_MAX_HEADER);
        return false;
    }
    h->data_offset = 8 + (int64_t)lenbytes + hlen;
    char *text = malloc((size_t)hlen + 1);
    if (!text) {
        snprintf(f->err, f->errlen, "out of memory reading the header of '%s'", f->path);
        return false;
    }
    bool ok = rt_zf_read(f, text, hlen, &got);
    if (ok && got < hlen) {
        snprintf(f->err, f->errlen,
                 "'%s' is truncated: expected a %u-byte .npy header, found %zu bytes", f->path,
                 hlen, got);
        ok = false;
    }
    NpyParser ps = {text, text, text + hlen, f};
    for (uint32_t i = 0; ok && i < hlen; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x7f || (c < 0x20 && c != '\n' && c != '\t' && c != '\r')) {
            ps.p = text + i;
            text[i] = 0; /* the message quotes the header up to here */
            ps.end = text + i;
            char why[64];
            snprintf(why, sizeof why, "byte 0x%02x (the header must be ASCII)", c);
            ok = npy_bad(&ps, why);
        }
    }
    text[hlen] = 0;
    ok = ok && npy_dict(&ps, h);
    free(text);
    if (ok)
        npy_dtype(h);
    if (ok && h->fortran) {
        snprintf(f->err, f->errlen,
                 "'%s' is stored in Fortran (column-major) order, which is not supported; "
                 "save a C-ordered array, e.g. np.ascontiguousarray(a)",
                 f->path);
        ok = false;
    }
    return ok;
}

void rt_npy_shape_text(const RtNpyHeader *h, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < h->ndim && len < cap; i++)
        len +=
            (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)h->shape[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, h->ndim == 1 ? ",)" : ")");
}

/* What an array's data is, for messages: "data (shape S, dtype 'D') after the N-byte
 * header". */
static void npy_data_what(const RtNpyHeader *h, char *buf, size_t cap) {
    char shape[RT_NPY_SHAPE_TEXT];
    rt_npy_shape_text(h, shape, sizeof shape);
    snprintf(buf, cap, "data (shape %s, dtype '%s') after the %lld-byte header", shape, h->descr,
             (long long)h->data_offset);
}

bool rt_npy_check_size(RtZFile *f, const RtNpyHeader *h, uint64_t total) {
    char what[RT_NPY_SHAPE_TEXT + 96];
    npy_data_what(h, what, sizeof what);
    return rt_zf_holds(f, (uint64_t)h->data_offset, total * (uint64_t)h->size, what);
}

bool rt_npy_read_data(RtZFile *f, const RtNpyHeader *h, uint64_t total, const char *what,
                      RtNpyPut put, void *ctx) {
    unsigned char buf[65536]; /* a multiple of every element size */
    uint64_t want_bytes = total * (uint64_t)h->size, done = 0;
    while (done < want_bytes) {
        size_t want = want_bytes - done > sizeof buf ? sizeof buf : (size_t)(want_bytes - done);
        size_t got;
        if (!rt_zf_read(f, buf, want, &got))
            return false;
        if (!put(ctx, f, done / (uint64_t)h->size, buf, got / (size_t)h->size))
            return false;
        done += got;
        if (got < want) {
            char data[RT_NPY_SHAPE_TEXT + 96];
            npy_data_what(h, data, sizeof data);
            return rt_zf_truncated(f, want_bytes, data, done);
        }
    }
    return rt_zf_expect_end(f, what);
}
