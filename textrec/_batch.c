/*
 * textrec._batch: the per-document steps of a build that follow noun extraction, for many
 * documents in one call. Each has a Python path in textrec giving the same results.
 *
 * count_df(docs, df) -> int
 *
 *   Adds 1 to df[term] (a dict) for every term of every document (each an iterable of
 *   distinct terms: the keys of a dict of term counts, a set); returns the number of
 *   documents.
 *
 * simhash_many(docs, idf, unseen, digest) -> list[int] | None
 *
 *   docs    a list of dicts {term: value};
 *   idf     None: each value is the term's weight (a float or int);
 *           a dict {term: idf}: each value is a count (int), the weight is count * idf[term]
 *           (unseen for a term not in idf), and counts <= 0 are skipped, as
 *           textrec.tfidf.tfidf_weights does for the default weighting;
 *   digest  a callable from a term to its 64-byte SHA-512 digest.
 *
 * Steps 2-4 of the scheme follow simhash.py exactly: m = max weight; q = floor(w / m * 2^20 +
 * 0.5) in IEEE doubles (compiled with -ffp-contract=off, no fast-math); S_j = sum of
 * q * (2 b_j - 255) in 64-bit integers; bit j set when S_j > 0. It returns None, and the
 * caller uses the Python code (which raises the proper errors), as soon as a value is not
 * what the scheme accepts: a negative, NaN or infinite weight, a count that is not an int.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define QUANT 1048576.0 /* 2^20 */

typedef struct {
    PyObject *term; /* borrowed from the document's dict */
    double w;
} item_t;

/* 1: fingerprint in *out; 0: not for this code (caller falls back); -1: error set. */
static int one(PyObject *doc, PyObject *idf, double unseen, PyObject *digest, item_t **items,
               Py_ssize_t *cap, uint64_t *out) {
    if (!PyDict_Check(doc)) return 0;
    Py_ssize_t n = PyDict_GET_SIZE(doc);
    if (n > *cap) {
        item_t *bigger = (item_t *)PyMem_Realloc(*items, (size_t)n * sizeof(item_t));
        if (!bigger) {
            PyErr_NoMemory();
            return -1;
        }
        *items = bigger;
        *cap = n;
    }
    Py_ssize_t pos = 0, len = 0;
    PyObject *term, *value;
    double m = 0.0;
    while (PyDict_Next(doc, &pos, &term, &value)) {
        double w;
        if (idf == Py_None) {
            if (PyFloat_CheckExact(value)) {
                w = PyFloat_AS_DOUBLE(value);
            } else if (PyLong_CheckExact(value)) {
                w = PyLong_AsDouble(value);
                if (w == -1.0 && PyErr_Occurred()) {
                    PyErr_Clear();
                    return 0;
                }
            } else {
                return 0;
            }
            if (!(w >= 0.0 && w < INFINITY)) return 0; /* also NaN */
        } else {
            if (!PyLong_CheckExact(value)) return 0;
            int overflow = 0;
            long long c = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow || (c == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return 0;
            }
            if (c <= 0) continue;
            double x = unseen;
            PyObject *found = PyDict_GetItemWithError(idf, term); /* borrowed */
            if (found) {
                if (!PyFloat_CheckExact(found)) return 0;
                x = PyFloat_AS_DOUBLE(found);
            } else if (PyErr_Occurred()) {
                return -1;
            }
            w = (double)c * x; /* Python's int * float: the int converted exactly below 2^53 */
            if ((double)c > 9007199254740992.0 || !(w >= 0.0 && w < INFINITY)) return 0;
        }
        (*items)[len].term = term;
        (*items)[len].w = w;
        len++;
        if (w > m) m = w;
    }
    *out = 0;
    if (m == 0.0) return 1;
    int64_t sums[64];
    memset(sums, 0, sizeof sums);
    for (Py_ssize_t i = 0; i < len; i++) {
        double qd = floor((*items)[i].w / m * QUANT + 0.5);
        if (!(qd > 0.0)) continue;
        int64_t q = (int64_t)qd;
        PyObject *d = PyObject_CallOneArg(digest, (*items)[i].term);
        if (!d) return -1;
        if (!PyBytes_Check(d) || PyBytes_GET_SIZE(d) != 64) {
            Py_DECREF(d);
            PyErr_SetString(PyExc_ValueError, "digest must return 64 bytes");
            return -1;
        }
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(d);
        for (int j = 0; j < 64; j++) sums[j] += q * (2 * (int64_t)b[j] - 255);
        Py_DECREF(d);
    }
    uint64_t code = 0;
    for (int j = 0; j < 64; j++) code |= (uint64_t)(sums[j] > 0) << j; /* no branch */
    *out = code;
    return 1;
}

static PyObject *count_df(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyList_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "count_df(docs: list, df: dict)");
        return NULL;
    }
    PyObject *docs = args[0], *df = args[1];
    PyObject *one_ = PyLong_FromLong(1);
    if (!one_) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(docs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PyObject_GetIter(PyList_GET_ITEM(docs, i));
        if (!it) goto fail;
        PyObject *term;
        while ((term = PyIter_Next(it))) {
            PyObject *old = PyDict_GetItemWithError(df, term); /* borrowed */
            PyObject *value;
            if (old) {
                value = PyNumber_Add(old, one_);
            } else if (PyErr_Occurred()) {
                value = NULL;
            } else {
                value = Py_NewRef(one_);
            }
            int rc = value ? PyDict_SetItem(df, term, value) : -1;
            Py_XDECREF(value);
            Py_DECREF(term);
            if (rc < 0) {
                Py_DECREF(it);
                goto fail;
            }
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) goto fail;
    }
    Py_DECREF(one_);
    return PyLong_FromSsize_t(n);
fail:
    Py_DECREF(one_);
    return NULL;
}

static PyObject *simhash_many(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyList_Check(args[0]) || !(args[1] == Py_None || PyDict_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError,
                        "simhash_many(docs: list[dict], idf: dict | None, unseen: float, digest)");
        return NULL;
    }
    PyObject *docs = args[0], *idf = args[1], *digest = args[3];
    double unseen = PyFloat_AsDouble(args[2]);
    if (unseen == -1.0 && PyErr_Occurred()) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(docs);
    PyObject *result = PyList_New(n);
    if (!result) return NULL;
    item_t *items = NULL;
    Py_ssize_t cap = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t code;
        int rc = one(PyList_GET_ITEM(docs, i), idf, unseen, digest, &items, &cap, &code);
        if (rc <= 0) {
            PyMem_Free(items);
            Py_DECREF(result);
            if (rc == 0) Py_RETURN_NONE;
            return NULL;
        }
        PyObject *v = PyLong_FromUnsignedLongLong(code);
        if (!v) {
            PyMem_Free(items);
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, v);
    }
    PyMem_Free(items);
    return result;
}

static PyMethodDef methods[] = {
    {"count_df", (PyCFunction)(void (*)(void))count_df, METH_FASTCALL,
     "count_df(docs, df) -> int: document frequencies of many documents' terms "
     "(see textrec/_batch.c)."},
    {"simhash_many", (PyCFunction)(void (*)(void))simhash_many, METH_FASTCALL,
     "simhash_many(docs, idf, unseen, digest) -> list[int] | None: simhash64-v1 of many "
     "documents (see textrec/_batch.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "textrec._batch", "Build steps for many documents at once.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__batch(void) { return PyModule_Create(&module); }
