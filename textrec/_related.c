/*
 * textrec._related: the two query kernels of textrec.related.RelatedIndex.
 *
 * accumulate(q_terms, q_w, ptr, rows, impacts, lut, acc, touched, nt) -> nt
 *     For every query term t (int64) with weight w (float32), over its postings
 *     rows[ptr[t]:ptr[t+1]] (uint32) with impacts (uint8): acc[row] += w * lut[impact]
 *     (float32 multiply, then float32 add: no fused multiply-add, -ffp-contract=off), noting
 *     in touched[nt++] (int64) each row whose accumulator was 0 before. Terms beyond the
 *     postings are skipped.
 *
 * top_k(acc, touched, nt, exclude, dead, best_rows, best_scores) -> None
 *     Reads the touched accumulators (resetting them to 0 for the next query), skips the
 *     row `exclude` and rows marked in dead (uint8/bool), and keeps the k = len(best_rows)
 *     best by score descending then row ascending in best_rows (int64, pre-filled with
 *     2**62) and best_scores (float32, pre-filled with -1).
 *
 * The same arithmetic in the same order as the Python fallback in related.py, so both give
 * identical scores. Every index is checked: a corrupt postings file raises ValueError rather
 * than touching memory it does not own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int getbuf(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable,
                  const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes expected, got %zd", what, itemsize,
                     view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *accumulate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[8];
    Py_ssize_t nt;
    if (!PyArg_ParseTuple(args, "OOOOOOOOn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &nt))
        return NULL;
    static const Py_ssize_t sizes[8] = {8, 4, 8, 4, 1, 4, 4, 8};
    static const int writable[8] = {0, 0, 0, 0, 0, 0, 1, 1};
    static const char *names[8] = {"q_terms", "q_w", "ptr", "rows",
                                   "impacts", "lut", "acc", "touched"};
    Py_buffer b[8];
    int got = 0;
    for (; got < 8; got++)
        if (getbuf(o[got], &b[got], sizes[got], writable[got], names[got]) < 0) goto fail;
    const int64_t *q_terms = (const int64_t *)b[0].buf;
    const float *q_w = (const float *)b[1].buf;
    const int64_t *ptr = (const int64_t *)b[2].buf;
    const uint32_t *rows = (const uint32_t *)b[3].buf;
    const uint8_t *impacts = (const uint8_t *)b[4].buf;
    const float *lut = (const float *)b[5].buf;
    float *acc = (float *)b[6].buf;
    int64_t *touched = (int64_t *)b[7].buf;
    Py_ssize_t nq = b[0].len / 8, nw = b[1].len / 4, nptr = b[2].len / 8, nrows = b[3].len / 4;
    Py_ssize_t nimp = b[4].len, nlut = b[5].len / 4, nacc = b[6].len / 4, ntouch = b[7].len / 8;
    if (nw != nq || nimp != nrows || nlut != 256 || nptr < 1 || nt < 0 || nt > ntouch) {
        PyErr_SetString(PyExc_ValueError, "accumulate: inconsistent array sizes");
        goto fail;
    }
    int64_t n_terms = (int64_t)nptr - 1;
    const char *err = NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < nq && !err; i++) {
        int64_t t = q_terms[i];
        if (t < 0 || t >= n_terms) continue;
        int64_t lo = ptr[t], hi = ptr[t + 1];
        if (lo < 0 || hi < lo || hi > nrows) {
            err = "postings pointers out of range";
            break;
        }
        float w = q_w[i];
        for (int64_t p = lo; p < hi; p++) {
            uint32_t r = rows[p];
            if ((Py_ssize_t)r >= nacc) {
                err = "posting row out of range";
                break;
            }
            if (acc[r] == 0.0f) {
                if (nt >= ntouch) {
                    err = "more touched rows than accumulators";
                    break;
                }
                touched[nt++] = r;
            }
            float x = w * lut[impacts[p]];
            acc[r] = acc[r] + x;
        }
    }
    Py_END_ALLOW_THREADS
    for (int j = 0; j < 8; j++) PyBuffer_Release(&b[j]);
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

static PyMethodDef methods[] = {
    {"accumulate", accumulate, METH_VARARGS, "See textrec/_related.c."},
    {"top_k", top_k, METH_VARARGS, "See textrec/_related.c."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "textrec._related", "Query kernels of textrec.related.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__related(void) { return PyModule_Create(&module); }
