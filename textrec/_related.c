/*
 * textrec._related: the query kernels of textrec.content.related.RelatedIndex, and the
 * search of its term dictionary (textrec.content.lexicon).
 *
 * accumulate(q_terms, q_w, terms, ptr, widths, offsets, packed, impacts, lut, acc, touched,
 *            nt) -> nt
 *     For every query term t (int64) with weight w (float32), over its postings
 *     p in ptr[s]:ptr[s+1] (uint32 or int64) with impacts[p] (uint8): acc[row] += w * lut[impact]
 *     (float32 multiply, then float32 add: no fused multiply-add, -ffp-contract=off), noting
 *     in touched[nt++] (int64) each row whose accumulator was 0 before. The term's slot s is
 *     t itself when terms (uint32) is empty, else t's place in terms (ascending; a term not
 *     there, or beyond ptr, has no postings). Rows: the first posting's is its gap, each
 *     next one the previous + 1 + its gap; gaps bit-packed in blocks of 128 postings: block
 *     b at widths[b] bits (uint8, at most 32) from byte offsets[b] (int64) of packed (uint8,
 *     least significant bit first, 8 bytes of slack at the end).
 *
 * top_k(acc, touched, nt, exclude, dead, best_rows, best_scores) -> None
 *     Reads the touched accumulators (resetting them to 0 for the next query), skips the
 *     row `exclude` and rows marked in dead (uint8/bool), and keeps the k = len(best_rows)
 *     best by score descending then row ascending in best_rows (int64, pre-filled with
 *     2**62) and best_scores (float32, pre-filled with -1).
 *
 * lookup(blob, starts, n, block, terms, out) -> None
 *     The term dictionary's search (textrec.content.lexicon): blob (uint8) holds n terms,
 *     strictly ascending in byte order, front-coded in blocks of `block`: block b from byte
 *     starts[b] (uint32 or int64, one more than the blocks), each term as varint(bytes it
 *     shares with the term before), varint(length of the rest), the rest (LEB128 varints; a
 *     block's first term shares nothing). For each str in the list terms, out[j] (int64)
 *     becomes the index of the equal term, or -1.
 *
 * The same arithmetic in the same order as the Python fallback in related.py, so both give
 * identical scores. Every index is checked: a corrupt postings file raises ValueError rather
 * than touching memory it does not own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "the packed postings are read as little-endian 64-bit words"
#endif

/* itemsize 0: 4 or 8 bytes. */
static int getbuf(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable,
                  const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (itemsize == 0 ? view->itemsize != 4 && view->itemsize != 8 : view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes expected, got %zd", what, itemsize,
                     view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define BLOCK 128

static PyObject *accumulate(PyObject *self, PyObject *args) {
    (void)self;
    enum { N = 11 };
    PyObject *o[N];
    Py_ssize_t nt;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6], &o[7], &o[8], &o[9], &o[10], &nt))
        return NULL;
    static const Py_ssize_t sizes[N] = {8, 4, 4, 0, 1, 8, 1, 1, 4, 4, 8}; /* 0: 4 or 8 */
    static const int writable[N] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
    static const char *names[N] = {"q_terms", "q_w",    "terms",   "ptr", "widths", "offsets",
                                   "packed",  "impacts", "lut",    "acc", "touched"};
    Py_buffer b[N];
    int got = 0;
    for (; got < N; got++)
        if (getbuf(o[got], &b[got], sizes[got], writable[got], names[got]) < 0) goto fail;
    const int64_t *q_terms = (const int64_t *)b[0].buf;
    const float *q_w = (const float *)b[1].buf;
    const uint32_t *terms = (const uint32_t *)b[2].buf;
    Py_ssize_t ptr_size = b[3].itemsize;
    const int64_t *ptr64 = (const int64_t *)b[3].buf;
    const uint32_t *ptr32 = (const uint32_t *)b[3].buf;
    const uint8_t *widths = (const uint8_t *)b[4].buf;
    const int64_t *offsets = (const int64_t *)b[5].buf;
    const uint8_t *packed = (const uint8_t *)b[6].buf;
    const uint8_t *impacts = (const uint8_t *)b[7].buf;
    const float *lut = (const float *)b[8].buf;
    float *acc = (float *)b[9].buf;
    int64_t *touched = (int64_t *)b[10].buf;
    Py_ssize_t nq = b[0].len / 8, nw = b[1].len / 4, nterms = b[2].len / 4, nptr = b[3].len / ptr_size;
    Py_ssize_t nblocks = b[4].len, noff = b[5].len / 8, npacked = b[6].len, nimp = b[7].len;
    Py_ssize_t nlut = b[8].len / 4, nacc = b[9].len / 4, ntouch = b[10].len / 8;
    if (nw != nq || nptr < 1 || (nterms && nterms != nptr - 1) || noff != nblocks + 1 ||
        nblocks != (nimp + BLOCK - 1) / BLOCK || nlut != 256 || nt < 0 || nt > ntouch) {
        PyErr_SetString(PyExc_ValueError, "accumulate: inconsistent array sizes");
        goto fail;
    }
    if ((uint64_t)nacc > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "accumulate: more than 2**32 accumulators");
        goto fail;
    }
    int64_t n_slots = (int64_t)nptr - 1;
    const char *err = NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nq && !err; i++) {
        int64_t t = q_terms[i], slot = -1;
        if (!nterms) {
            if (t >= 0 && t < n_slots) slot = t;
        } else if (t >= 0 && t <= (int64_t)UINT32_MAX) {
            int64_t a = 0, z = nterms; /* the slot is in [a, z) */
            while (a < z) {
                int64_t mid = a + (z - a) / 2;
                if (terms[mid] == (uint32_t)t) {
                    slot = mid;
                    break;
                }
                if (terms[mid] < (uint32_t)t)
                    a = mid + 1;
                else
                    z = mid;
            }
        }
        if (slot < 0) continue;
        int64_t lo = ptr_size == 8 ? ptr64[slot] : (int64_t)ptr32[slot];
        int64_t hi = ptr_size == 8 ? ptr64[slot + 1] : (int64_t)ptr32[slot + 1];
        if (lo < 0 || hi < lo || hi > nimp) {
            err = "postings pointers out of range";
            break;
        }
        float w = q_w[i];
        /* A term's first posting holds its row as its gap: the row before it is -1
         * (unsigned: 2**64 - 1, which the first step wraps back). */
        uint64_t row = UINT64_MAX;
        for (int64_t p = lo; p < hi && !err;) {
            int64_t blk = p / BLOCK, end = (blk + 1) * BLOCK;
            if (end > hi) end = hi;
            unsigned width = widths[blk];
            int64_t off = offsets[blk];
            if (width > 32 || off < 0 || off + (int64_t)width * (BLOCK / 8) + 8 > npacked) {
                err = "packed postings out of range";
                break;
            }
            /* Decode the block's rows first, then add: two tight loops. */
            uint32_t rows[BLOCK];
            int64_t count = end - p;
            uint64_t mask = ((uint64_t)1 << width) - 1;
            uint64_t bit = (uint64_t)off * 8 + (uint64_t)(p % BLOCK) * width;
            for (int64_t j = 0; j < count; j++, bit += width) {
                uint64_t word;
                memcpy(&word, packed + (bit >> 3), 8); /* little-endian hosts */
                row += ((word >> (bit & 7)) & mask) + 1;
                rows[j] = (uint32_t)row;
            }
            if (row >= (uint64_t)nacc) { /* rows ascend: the last is the largest */
                err = "posting row out of range";
                break;
            }
            const uint8_t *imp = impacts + p;
            for (int64_t j = 0; j < count; j++) {
                uint32_t r = rows[j];
                if (acc[r] == 0.0f) {
                    if (nt >= ntouch) {
                        err = "more touched rows than accumulators";
                        break;
                    }
                    touched[nt++] = (int64_t)r;
                }
                float x = w * lut[imp[j]];
                acc[r] = acc[r] + x;
            }
            p = end;
        }
    }
    Py_END_ALLOW_THREADS
    for (int j = 0; j < N; j++) PyBuffer_Release(&b[j]);
    if (err) {
        PyErr_Format(PyExc_ValueError, "related index: %s (corrupt file?)", err);
        return NULL;
    }
    return PyLong_FromSsize_t(nt);
fail:
    for (int j = 0; j < got; j++) PyBuffer_Release(&b[j]);
    return NULL;
}

static PyObject *top_k(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_acc, *o_touched, *o_dead, *o_r, *o_s;
    Py_ssize_t nt;
    long long exclude;
    if (!PyArg_ParseTuple(args, "OOnLOOO", &o_acc, &o_touched, &nt, &exclude, &o_dead, &o_r,
                          &o_s))
        return NULL;
    Py_buffer acc_b, touched_b, dead_b, r_b, s_b;
    if (getbuf(o_acc, &acc_b, 4, 1, "acc") < 0) return NULL;
    if (getbuf(o_touched, &touched_b, 8, 0, "touched") < 0) goto f1;
    if (getbuf(o_dead, &dead_b, 1, 0, "dead") < 0) goto f2;
    if (getbuf(o_r, &r_b, 8, 1, "best_rows") < 0) goto f3;
    if (getbuf(o_s, &s_b, 4, 1, "best_scores") < 0) goto f4;
    float *acc = (float *)acc_b.buf;
    const int64_t *touched = (const int64_t *)touched_b.buf;
    const uint8_t *dead = (const uint8_t *)dead_b.buf;
    int64_t *best_r = (int64_t *)r_b.buf;
    float *best_s = (float *)s_b.buf;
    Py_ssize_t k = r_b.len / 8, nacc = acc_b.len / 4, ndead = dead_b.len;
    if (s_b.len / 4 != k || k < 1 || nt < 0 || nt > touched_b.len / 8) {
        PyErr_SetString(PyExc_ValueError, "top_k: inconsistent array sizes");
        goto f5;
    }
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < nt; j++) {
        int64_t r = touched[j];
        if (r < 0 || r >= nacc) {
            bad = 1;
            break;
        }
        float s = acc[r];
        acc[r] = 0.0f;
        if (r == exclude || (r < ndead && dead[r])) continue;
        if (s < best_s[k - 1] || (s == best_s[k - 1] && r > best_r[k - 1])) continue;
        Py_ssize_t i = k - 1;
        while (i > 0 && (s > best_s[i - 1] || (s == best_s[i - 1] && r < best_r[i - 1]))) {
            best_s[i] = best_s[i - 1];
            best_r[i] = best_r[i - 1];
            i--;
        }
        best_s[i] = s;
        best_r[i] = r;
    }
    Py_END_ALLOW_THREADS
    if (bad) PyErr_SetString(PyExc_ValueError, "related index: touched row out of range");
f5:
    PyBuffer_Release(&s_b);
f4:
    PyBuffer_Release(&r_b);
f3:
    PyBuffer_Release(&dead_b);
f2:
    PyBuffer_Release(&touched_b);
f1:
    PyBuffer_Release(&acc_b);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* Byte order of a and b, as Python compares bytes: memcmp, then the shorter first. */
static int compare_bytes(const uint8_t *a, size_t la, const uint8_t *b, size_t lb) {
    int r = memcmp(a, b, la < lb ? la : lb);
    if (r) return r;
    return la < lb ? -1 : la > lb;
}

/* A LEB128 varint at blob[*pos] before end: 0, or -1 if it runs past end or is too long. */
static int read_varint(const uint8_t *blob, int64_t *pos, int64_t end, uint64_t *value) {
    uint64_t v = 0;
    for (int shift = 0; shift < 63; shift += 7) {
        if (*pos >= end) return -1;
        uint8_t byte = blob[(*pos)++];
        v |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) {
            *value = v;
            return 0;
        }
    }
    return -1;
}

/* The term dictionary's blocks. */
typedef struct {
    const uint8_t *blob;
    int64_t nblob;
    const uint32_t *s32;
    const int64_t *s64;
    Py_ssize_t ssize;
    int64_t n_blocks, n, block;
} Dict;

static int64_t block_start(const Dict *d, int64_t b) {
    return d->ssize == 8 ? d->s64[b] : (int64_t)d->s32[b];
}

/* The next term's (shared, rest) at *pos, leaving *pos at its rest: 0, or -1 if corrupt. */
static int term_head(const Dict *d, int64_t *pos, int64_t end, uint64_t *shared, uint64_t *rest) {
    if (read_varint(d->blob, pos, end, shared) < 0 || read_varint(d->blob, pos, end, rest) < 0 ||
        *rest > (uint64_t)(end - *pos))
        return -1;
    return 0;
}

/* The id of key, or -1 if absent; -2 if the dictionary is corrupt. No term is rebuilt: m is
 * how many bytes the term just passed shares with the key (it is below the key), and a
 * term's shared prefix says how it compares with the key before its rest is read. */
static int64_t find_term(const Dict *d, const uint8_t *key, size_t nkey) {
    int64_t lo = 0, hi = d->n_blocks; /* blocks whose first term is <= key: [0, lo) */
    uint64_t shared, rest;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2, pos = block_start(d, mid), end = block_start(d, mid + 1);
        if (pos < 0 || end < pos || end > d->nblob) return -2;
        if (term_head(d, &pos, end, &shared, &rest) < 0 || shared != 0) return -2;
        int c = compare_bytes(d->blob + pos, (size_t)rest, key, nkey);
        if (c == 0) return mid * d->block;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return -1;
    int64_t b = lo - 1, pos = block_start(d, b), end = block_start(d, b + 1);
    int64_t count = d->n - b * d->block;
    if (count > d->block) count = d->block;
    uint64_t m = 0, last = 0; /* last: the length of the term before */
    for (int64_t j = 0; j < count; j++) {
        if (term_head(d, &pos, end, &shared, &rest) < 0 || shared > last) return -2;
        last = shared + rest;
        const uint8_t *r = d->blob + pos;
        pos += (int64_t)rest;
        if (j > 0 && shared < m) return -1; /* differs from the key where the last term matched it: above */
        if (shared > m) continue;           /* agrees with the last term where it was below the key */
        uint64_t left = (uint64_t)nkey - m, l = 0;
        while (l < rest && l < left && r[l] == key[m + l]) l++;
        if (l == rest && l == left) return b * d->block + j;
        if (l < rest && (l == left || r[l] > key[m + l])) return -1; /* above the key */
        m += l;                                                       /* below it */
    }
    return -1;
}

static PyObject *lookup(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_blob, *o_starts, *terms, *o_out;
    long long n, block;
    if (!PyArg_ParseTuple(args, "OOLLO!O", &o_blob, &o_starts, &n, &block, &PyList_Type, &terms,
                          &o_out))
        return NULL;
    Py_buffer bb, sb, ob;
    if (getbuf(o_blob, &bb, 1, 0, "blob") < 0) return NULL;
    if (getbuf(o_starts, &sb, 0, 0, "starts") < 0) goto f1;
    if (getbuf(o_out, &ob, 8, 1, "out") < 0) goto f2;
    Dict d = {(const uint8_t *)bb.buf, (int64_t)bb.len, (const uint32_t *)sb.buf,
              (const int64_t *)sb.buf, sb.itemsize, (int64_t)(sb.len / sb.itemsize) - 1,
              (int64_t)n, (int64_t)block};
    int64_t *out = (int64_t *)ob.buf;
    Py_ssize_t nk = PyList_GET_SIZE(terms);
    if (d.n_blocks < 0 || ob.len / 8 != nk || block < 1 || n < 0 ||
        d.n_blocks != (d.n + d.block - 1) / d.block) {
        PyErr_SetString(PyExc_ValueError, "lookup: inconsistent array sizes");
        goto f3;
    }
    if (block_start(&d, 0) != 0 || block_start(&d, d.n_blocks) != d.nblob) {
        PyErr_SetString(PyExc_ValueError, "term dictionary: block offsets do not span the terms");
        goto f3;
    }
    for (Py_ssize_t j = 0; j < nk; j++) {
        PyObject *term = PyList_GET_ITEM(terms, j);
        if (!PyUnicode_Check(term)) {
            PyErr_Format(PyExc_TypeError, "lookup: terms must be str, got %.50s",
                         Py_TYPE(term)->tp_name);
            goto f3;
        }
        PyObject *key = PyUnicode_AsEncodedString(term, "utf-8", "surrogatepass");
        if (!key) goto f3;
        int64_t id = find_term(&d, (const uint8_t *)PyBytes_AS_STRING(key),
                               (size_t)PyBytes_GET_SIZE(key));
        Py_DECREF(key);
        if (id == -2) {
            PyErr_SetString(PyExc_ValueError, "term dictionary: a block is corrupt");
            goto f3;
        }
        out[j] = id;
    }
f3:
    PyBuffer_Release(&ob);
f2:
    PyBuffer_Release(&sb);
f1:
    PyBuffer_Release(&bb);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"lookup", lookup, METH_VARARGS, "See textrec/_related.c."},
    {"accumulate", accumulate, METH_VARARGS, "See textrec/_related.c."},
    {"top_k", top_k, METH_VARARGS, "See textrec/_related.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "textrec._related", "Query kernels of textrec.related.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__related(void) { return PyModule_Create(&module); }
