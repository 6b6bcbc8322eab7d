/*
 * textrec._mecab: the terms of a text straight from MeCab's best path.
 *
 * textrec.tokenize can read the terms out of the text that MeCab.Tagger.parse prints (as
 * KoNLPy does). This module gets the same terms without printing that text, decoding it into
 * a Python str and searching it again: it walks the nodes of MeCab's best path and keeps the
 * surface of every node whose feature (tag) starts with 'N' (KoNLPy's nouns: term scheme v1),
 * or whose tag is one of a given list (scheme v2: NNG, NNP, SL).
 *
 * It calls the very MeCab library that the mecab-python3 binding has loaded: find_library()
 * looks it up among the shared objects of the process (dl_iterate_phdr), and Tagger opens it
 * with RTLD_NOLOAD, so nothing is linked at build time and no second copy is loaded. The
 * node layout below is mecab.h's since MeCab 0.99; Tagger refuses other versions, and
 * textrec.tokenize checks on a probe text that both readings agree before using this one.
 *
 * A Tagger parses with the GIL released. It is not for several threads at once (MeCab's
 * tagger keeps one lattice): a second concurrent call raises RuntimeError.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__linux__) && defined(__GLIBC__)
#define TX_HAVE_DL 1
#include <dlfcn.h>
#include <link.h>
#else
#define TX_HAVE_DL 0
#endif

/* mecab.h, MeCab 0.996 (the layout has not changed since 0.99). */
typedef struct mecab_node_t mecab_node_t;
struct mecab_node_t {
    mecab_node_t *prev, *next, *enext, *bnext;
    void *rpath, *lpath;
    const char *surface;
    const char *feature;
    unsigned int id;
    unsigned short length, rlength, rcAttr, lcAttr, posid;
    unsigned char char_type, stat, isbest;
    float alpha, beta, prob;
    short wcost;
    long cost;
};

typedef void *(*new_fn)(int, char **);
typedef void (*destroy_fn)(void *);
typedef const mecab_node_t *(*tonode_fn)(void *, const char *, size_t);
typedef const char *(*strerror_fn)(void *);
typedef const char *(*version_fn)(void);

/* ---- finding the loaded library ------------------------------------------------------- */

#if TX_HAVE_DL
typedef struct {
    const char *needle;
    char *found;
} find_t;

static int find_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    find_t *f = (find_t *)data;
    const char *path = info->dlpi_name;
    if (!path || !*path) return 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strstr(base, f->needle) && !f->found) f->found = strdup(path);
    return f->found != NULL;
}
#endif

static PyObject *find_library(PyObject *self, PyObject *arg) {
    (void)self;
    const char *needle = PyUnicode_AsUTF8(arg);
    if (!needle) return NULL;
#if TX_HAVE_DL
    find_t f = {needle, NULL};
    dl_iterate_phdr(find_cb, &f);
    if (!f.found) Py_RETURN_NONE;
    PyObject *out = PyUnicode_DecodeFSDefault(f.found);
    free(f.found);
    return out;
#else
    Py_RETURN_NONE;
#endif
}

/* ---- Tagger ---------------------------------------------------------------------------- */

/* The term cache: a noun's UTF-8 surface -> its term (a str, or None for an empty term), so
 * that a repeated noun is neither decoded nor normalised again and every occurrence is the
 * same str object (later dict lookups in DF tables and digest caches then compare by
 * identity). Open addressing, linear probing; emptied when it reaches CACHE_MAX terms or
 * when a call brings another normalize function. */
typedef struct {
    uint64_t hash;
    char *key; /* NULL: free slot */
    Py_ssize_t len;
    PyObject *term;
} entry_t;

/* At most this many terms (about 40 MB with their keys and str objects): the nouns of a
 * corpus are Zipf-distributed, so the most frequent quarter million cover nearly every
 * occurrence, and a thread of a server keeps its memory bounded. */
#define CACHE_MAX (1u << 18)

typedef struct {
    PyObject_HEAD
    void *lib;
    void *mecab;
    destroy_fn destroy;
    tonode_fn tonode;
    strerror_fn strerror_;
    int busy;
    char version[32];
    PyObject *cache_fn; /* the normalize function the cache's terms come from */
    entry_t *table;
    size_t slots, used; /* slots: 0 or a power of two */
    size_t cache_max;
    /* Which nodes are terms: NULL, every node whose tag starts with 'N' (KoNLPy's nouns);
     * else the nodes whose tag (the feature up to its first ',') is one of these, stored
     * as ",TAG1,TAG2,...," so that a lookup is one strstr of ",TAG,". */
    char *tags;
} Tagger;

static void cache_clear(Tagger *self) {
    for (size_t i = 0; i < self->slots; i++) {
        if (self->table[i].key) {
            PyMem_Free(self->table[i].key);
            Py_DECREF(self->table[i].term);
        }
    }
    PyMem_Free(self->table);
    self->table = NULL;
    self->slots = self->used = 0;
    Py_CLEAR(self->cache_fn);
}

static void Tagger_dealloc(Tagger *self) {
    cache_clear(self);
    PyMem_Free(self->tags);
    if (self->mecab && self->destroy) self->destroy(self->mecab);
#if TX_HAVE_DL
    if (self->lib) dlclose(self->lib);
#endif
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#if TX_HAVE_DL
static int tagger_open(Tagger *self, const char *libpath, int argc, char **argv);
#endif

/* Keep `tags` (a sequence of str: tag names of ASCII letters) as ",T1,T2,...,". */
static int set_tags(Tagger *self, PyObject *tags_obj) {
    PyObject *seq = PySequence_Fast(tags_obj, "tags must be a sequence of str");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    size_t total = 2;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t len;
        const char *tag = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &len) : NULL;
        if (!tag) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "tags must be str");
            Py_DECREF(seq);
            return -1;
        }
        for (Py_ssize_t j = 0; j < len; j++) {
            char c = tag[j];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) len = 0;
        }
        if (len == 0) {
            PyErr_Format(PyExc_ValueError, "a tag is a word of ASCII letters, got %R", item);
            Py_DECREF(seq);
            return -1;
        }
        total += (size_t)len + 1;
    }
    char *buf = (char *)PyMem_Malloc(total + 1);
    if (!buf) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    char *p = buf;
    *p++ = ',';
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *tag = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len);
        memcpy(p, tag, (size_t)len);
        p += len;
        *p++ = ',';
    }
    *p = '\0';
    Py_DECREF(seq);
    PyMem_Free(self->tags);
    self->tags = buf;
    return 1;
}

/* Whether a node with this feature is a term (see Tagger.tags). */
static int is_term(const Tagger *self, const char *feature) {
    if (!feature) return 0;
    if (!self->tags) return feature[0] == 'N';
    size_t len = strcspn(feature, ",");
    if (len == 0 || len > 30) return 0;
    char key[34];
    key[0] = ',';
    memcpy(key + 1, feature, len);
    key[len + 1] = ',';
    key[len + 2] = '\0';
    return strstr(self->tags, key) != NULL;
}

static int Tagger_init(Tagger *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"library", "argv", "cache_size", "tags", NULL};
    PyObject *libpath_obj, *argv_obj, *tags_obj = Py_None;
    Py_ssize_t cache_size = CACHE_MAX;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O|$nO", kwlist, PyUnicode_FSConverter,
                                     &libpath_obj, &argv_obj, &cache_size, &tags_obj))
        return -1;
    if (cache_size < 1) {
        Py_DECREF(libpath_obj);
        PyErr_SetString(PyExc_ValueError, "cache_size must be at least 1");
        return -1;
    }
    self->cache_max = (size_t)cache_size;
    if (tags_obj != Py_None && set_tags(self, tags_obj) < 0) {
        Py_DECREF(libpath_obj);
        return -1;
    }
#if TX_HAVE_DL
    PyObject *argv_seq = PySequence_Fast(argv_obj, "argv must be a sequence of str");
    if (!argv_seq) {
        Py_DECREF(libpath_obj);
        return -1;
    }
    Py_ssize_t argc = PySequence_Fast_GET_SIZE(argv_seq);
    char **argv = (char **)PyMem_Calloc((size_t)argc + 1, sizeof(char *));
    if (!argv) {
        Py_DECREF(argv_seq);
        Py_DECREF(libpath_obj);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < argc; i++) {
        /* borrowed UTF-8 buffers, alive as long as argv_seq */
        argv[i] = (char *)PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(argv_seq, i));
        if (!argv[i]) {
            PyMem_Free(argv);
            Py_DECREF(argv_seq);
            Py_DECREF(libpath_obj);
            return -1;
        }
    }
    int rc = tagger_open(self, PyBytes_AS_STRING(libpath_obj), (int)argc, argv);
    PyMem_Free(argv);
    Py_DECREF(argv_seq);
    Py_DECREF(libpath_obj);
    return rc;
#else
    Py_DECREF(libpath_obj);
    (void)argv_obj;
    PyErr_SetString(PyExc_OSError, "direct MeCab calls need Linux with glibc");
    return -1;
#endif
}

#if TX_HAVE_DL
static int tagger_open(Tagger *self, const char *libpath, int argc, char **argv) {
    if (self->mecab) {
        PyErr_SetString(PyExc_RuntimeError, "this Tagger is already open");
        return -1;
    }
    /* RTLD_NOLOAD: only a library the MeCab binding already loaded, never a new copy. */
    void *lib = dlopen(libpath, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!lib) {
        const char *err = dlerror();
        PyErr_Format(PyExc_OSError, "MeCab library is not loaded: %s", err ? err : "?");
        return -1;
    }
    new_fn new_ = (new_fn)dlsym(lib, "mecab_new");
    version_fn version = (version_fn)dlsym(lib, "mecab_version");
    self->destroy = (destroy_fn)dlsym(lib, "mecab_destroy");
    self->tonode = (tonode_fn)dlsym(lib, "mecab_sparse_tonode2");
    self->strerror_ = (strerror_fn)dlsym(lib, "mecab_strerror");
    if (!new_ || !version || !self->destroy || !self->tonode || !self->strerror_) {
        dlclose(lib);
        PyErr_SetString(PyExc_OSError, "the library does not export MeCab's C API");
        return -1;
    }
    const char *v = version();
    if (!v || strncmp(v, "0.99", 4) != 0) {
        dlclose(lib);
        PyErr_Format(PyExc_OSError, "unsupported MeCab version %s (0.99x expected)",
                     v ? v : "?");
        return -1;
    }
    snprintf(self->version, sizeof self->version, "%s", v);
    void *m = new_(argc, argv);
    if (!m) {
        const char *err = self->strerror_(NULL);
        PyErr_Format(PyExc_RuntimeError, "MeCab: %s", err ? err : "cannot create a tagger");
        dlclose(lib);
        return -1;
    }
    self->lib = lib;
    self->mecab = m;
    return 0;
}
#endif

/* Line breaks of str.splitlines other than "\n" (in UTF-8): KoNLPy splits MeCab's output at
 * them too, so a text containing one is left to the Python reader, which splits as KoNLPy
 * does. */
static int has_other_line_break(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == 0x0d || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e)
            return 1;
        if (c == 0xc2 && i + 1 < n && s[i + 1] == 0x85) return 1;
        if (c == 0xe2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
            return 1;
    }
    return 0;
}

/* A surface that normalize_term leaves unchanged for sure: Hangul syllables (U+AC00..U+D7A3)
 * and printable ASCII other than capitals (NFKC-stable, no case, no white space). */
static int plain_surface(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c <= 0x20 || c == 0x7f || (c >= 'A' && c <= 'Z')) return 0;
            i++;
        } else if (c >= 0xea && c <= 0xed && i + 2 < n) {
            unsigned int cp = ((unsigned)(c & 0x0f) << 12) | ((unsigned)(s[i + 1] & 0x3f) << 6) |
                              (unsigned)(s[i + 2] & 0x3f);
            if (cp < 0xac00 || cp > 0xd7a3) return 0;
            i += 3;
        } else {
            return 0;
        }
    }
    return 1;
}

typedef struct {
    const char *ptr;
    Py_ssize_t len;
    const char *feature; /* the node's feature: its tag runs up to the first ',' */
} span_t;

/* Parse `text` and call `sink(spans)` with the surfaces of its nouns, in order.
 * Returns 1 on success, 0 when the text is for the Python reader (nothing was done),
 * -1 with an exception set. */
typedef int (*sink_fn)(void *ctx, const span_t *spans, Py_ssize_t n);

static int walk(Tagger *self, PyObject *text, sink_fn sink, void *ctx) {
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "a text (str) is expected, got %s", Py_TYPE(text)->tp_name);
        return -1;
    }
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (!utf8) { /* lone surrogates: the Python reader replaces them */
        PyErr_Clear();
        return 0;
    }
    /* MeCab.Tagger.parse passes a C string: the text ends at its first NUL. */
    size_t n = strlen(utf8);
    if (has_other_line_break((const unsigned char *)utf8, n)) return 0;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this MeCab tagger is in use by another thread; use one per thread");
        return -1;
    }
    self->busy = 1;
    Py_INCREF(text); /* keeps utf8 alive while the GIL is released */
    const mecab_node_t *bos;
    Py_BEGIN_ALLOW_THREADS
    bos = self->tonode(self->mecab, utf8, n);
    Py_END_ALLOW_THREADS
    int rc = 1;
    if (!bos) {
        const char *err = self->strerror_(self->mecab);
        PyErr_Format(PyExc_RuntimeError, "MeCab: %s", err ? err : "parse failed");
        rc = -1;
        goto done;
    }
    span_t local[64];
    span_t *spans = local;
    Py_ssize_t count = 0, cap = 64;
    /* The nodes MeCab prints: every node after BOS but the last (EOS). */
    for (const mecab_node_t *node = bos->next; node && node->next; node = node->next) {
        const char *s = node->surface;
        size_t len = node->length;
        /* A surface with a tab or a line break would change how the printed lines are
         * read; leave such a text to the Python reader. */
        if (memchr(s, '\t', len) || memchr(s, '\n', len)) {
            rc = 0;
            goto done_spans;
        }
        if (is_term(self, node->feature)) {
            if (count == cap) {
                Py_ssize_t ncap = cap * 2;
                span_t *bigger = (span_t *)PyMem_Malloc((size_t)ncap * sizeof(span_t));
                if (!bigger) {
                    PyErr_NoMemory();
                    rc = -1;
                    goto done_spans;
                }
                memcpy(bigger, spans, (size_t)count * sizeof(span_t));
                if (spans != local) PyMem_Free(spans);
                spans = bigger;
                cap = ncap;
            }
            spans[count].ptr = s;
            spans[count].len = (Py_ssize_t)len;
            spans[count].feature = node->feature;
            count++;
        }
    }
    if (sink(ctx, spans, count) < 0) rc = -1;
done_spans:
    if (spans != local) PyMem_Free(spans);
done:
    self->busy = 0;
    Py_DECREF(text);
    return rc;
}

/* A noun's term: the surface itself when plain, else normalize(surface); NULL on error,
 * Py_None (new reference) when the term is empty. */
static PyObject *make_term(const span_t *sp, PyObject *normalize) {
    PyObject *surface = PyUnicode_DecodeUTF8(sp->ptr, sp->len, "replace");
    if (!surface) return NULL;
    if (plain_surface((const unsigned char *)sp->ptr, (size_t)sp->len) && sp->len > 0)
        return surface;
    PyObject *term = PyObject_CallOneArg(normalize, surface);
    Py_DECREF(surface);
    if (!term) return NULL;
    if (!PyUnicode_Check(term)) {
        Py_DECREF(term);
        PyErr_SetString(PyExc_TypeError, "normalize must return a str");
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(term) == 0) {
        Py_DECREF(term);
        Py_RETURN_NONE;
    }
    return term;
}

static uint64_t hash_bytes(const char *p, Py_ssize_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static int cache_grow(Tagger *self) {
    size_t slots = self->slots ? self->slots * 2 : 1024;
    entry_t *table = (entry_t *)PyMem_Calloc(slots, sizeof(entry_t));
    if (!table) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < self->slots; i++) {
        entry_t *e = &self->table[i];
        if (!e->key) continue;
        size_t j = (size_t)e->hash & (slots - 1);
        while (table[j].key) j = (j + 1) & (slots - 1);
        table[j] = *e;
    }
    PyMem_Free(self->table);
    self->table = table;
    self->slots = slots;
    return 0;
}

/* term_of with the cache: a new reference (a str or None), or NULL on error. */
static PyObject *term_of(Tagger *self, const span_t *sp, PyObject *normalize) {
    if (self->cache_fn != normalize || self->used >= self->cache_max) {
        PyObject *fn = Py_NewRef(normalize);
        cache_clear(self);
        self->cache_fn = fn;
    }
    if (2 * (self->used + 1) > self->slots && cache_grow(self) < 0) return NULL;
    uint64_t h = hash_bytes(sp->ptr, sp->len);
    size_t j = (size_t)h & (self->slots - 1);
    for (;;) {
        entry_t *e = &self->table[j];
        if (!e->key) break;
        if (e->hash == h && e->len == sp->len && memcmp(e->key, sp->ptr, (size_t)sp->len) == 0)
            return Py_NewRef(e->term);
        j = (j + 1) & (self->slots - 1);
    }
    PyObject *term = make_term(sp, normalize);
    if (!term) return NULL;
    char *key = (char *)PyMem_Malloc((size_t)sp->len + 1);
    if (!key) return term; /* not cached; still correct */
    memcpy(key, sp->ptr, (size_t)sp->len);
    entry_t *e = &self->table[j];
    e->hash = h;
    e->key = key;
    e->len = sp->len;
    e->term = Py_NewRef(term);
    self->used++;
    return term;
}

typedef struct {
    Tagger *tagger;
    PyObject *normalize;
    PyObject *out; /* list or dict */
    PyObject *weight;
} sink_ctx;

static int list_sink(void *vctx, const span_t *spans, Py_ssize_t n) {
    sink_ctx *ctx = (sink_ctx *)vctx;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *term = term_of(ctx->tagger, &spans[i], ctx->normalize);
        if (!term) return -1;
        int rc = term == Py_None ? 0 : PyList_Append(ctx->out, term);
        Py_DECREF(term);
        if (rc < 0) return -1;
    }
    return 0;
}

static int count_sink(void *vctx, const span_t *spans, Py_ssize_t n) {
    sink_ctx *ctx = (sink_ctx *)vctx;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *term = term_of(ctx->tagger, &spans[i], ctx->normalize);
        if (!term) return -1;
        if (term == Py_None) {
            Py_DECREF(term);
            continue;
        }
        PyObject *old = PyDict_GetItemWithError(ctx->out, term); /* borrowed */
        PyObject *value;
        if (old) {
            value = PyNumber_Add(old, ctx->weight);
        } else if (PyErr_Occurred()) {
            value = NULL;
        } else {
            value = Py_NewRef(ctx->weight);
        }
        int rc = value ? PyDict_SetItem(ctx->out, term, value) : -1;
        Py_XDECREF(value);
        Py_DECREF(term);
        if (rc < 0) return -1;
    }
    return 0;
}

/* tagged(): (term, tag) pairs; the tag strings of one call are shared through a dict. */
typedef struct {
    sink_ctx base;
    PyObject *tags; /* dict: tag bytes -> str */
} tagged_ctx;

static int tagged_sink(void *vctx, const span_t *spans, Py_ssize_t n) {
    tagged_ctx *ctx = (tagged_ctx *)vctx;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *term = term_of(ctx->base.tagger, &spans[i], ctx->base.normalize);
        if (!term) return -1;
        if (term == Py_None) {
            Py_DECREF(term);
            continue;
        }
        const char *f = spans[i].feature;
        Py_ssize_t flen = (Py_ssize_t)strcspn(f, ",");
        PyObject *key = PyBytes_FromStringAndSize(f, flen);
        PyObject *tag = key ? PyDict_GetItemWithError(ctx->tags, key) : NULL; /* borrowed */
        if (tag) {
            Py_INCREF(tag);
        } else if (key && !PyErr_Occurred()) {
            tag = PyUnicode_DecodeUTF8(f, flen, "replace");
            if (tag && PyDict_SetItem(ctx->tags, key, tag) < 0) Py_CLEAR(tag);
        }
        Py_XDECREF(key);
        PyObject *pair = tag ? PyTuple_Pack(2, term, tag) : NULL;
        Py_XDECREF(tag);
        Py_DECREF(term);
        int rc = pair ? PyList_Append(ctx->base.out, pair) : -1;
        Py_XDECREF(pair);
        if (rc < 0) return -1;
    }
    return 0;
}

PyDoc_STRVAR(tagged_doc,
             "tagged(text, normalize) -> list[tuple[str, str]] | None\n\n"
             "The terms of text as nouns() gives them, each with the tag Mecab gave it (its\n"
             "feature up to the first comma); None when the text must be read from MeCab's\n"
             "printed output instead.");

static PyObject *Tagger_tagged(Tagger *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "tagged(text, normalize)");
        return NULL;
    }
    tagged_ctx ctx = {{self, args[1], PyList_New(0), NULL}, PyDict_New()};
    if (!ctx.base.out || !ctx.tags) {
        Py_XDECREF(ctx.base.out);
        Py_XDECREF(ctx.tags);
        return NULL;
    }
    int rc = walk(self, args[0], tagged_sink, &ctx);
    Py_DECREF(ctx.tags);
    if (rc == 1) return ctx.base.out;
    Py_DECREF(ctx.base.out);
    if (rc == 0) Py_RETURN_NONE;
    return NULL;
}

PyDoc_STRVAR(nouns_doc,
             "nouns(text, normalize) -> list[str] | None\n\n"
             "The nouns of text, each normalised (normalize(surface), or the surface itself\n"
             "when normalisation cannot change it), empty terms dropped; None when the text\n"
             "must be read from MeCab's printed output instead.");

static PyObject *Tagger_nouns(Tagger *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "nouns(text, normalize)");
        return NULL;
    }
    sink_ctx ctx = {self, args[1], PyList_New(0), NULL};
    if (!ctx.out) return NULL;
    int rc = walk(self, args[0], list_sink, &ctx);
    if (rc == 1) return ctx.out;
    Py_DECREF(ctx.out);
    if (rc == 0) Py_RETURN_NONE;
    return NULL;
}

PyDoc_STRVAR(count_doc,
             "count_nouns(text, counts, weight, normalize) -> bool\n\n"
             "Add weight to counts[term] for every noun of text (terms as nouns() gives\n"
             "them). Returns False, leaving counts untouched, when the text must be read from\n"
             "MeCab's printed output instead.");

static PyObject *Tagger_count_nouns(Tagger *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_Check(args[1]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "count_nouns(text, counts: dict, weight: int, normalize)");
        return NULL;
    }
    sink_ctx ctx = {self, args[3], args[1], args[2]};
    int rc = walk(self, args[0], count_sink, &ctx);
    if (rc < 0) return NULL;
    return PyBool_FromLong(rc);
}

static PyObject *Tagger_version(Tagger *self, void *closure) {
    (void)closure;
    return PyUnicode_FromString(self->version);
}

static PyMethodDef Tagger_methods[] = {
    {"nouns", (PyCFunction)(void (*)(void))Tagger_nouns, METH_FASTCALL, nouns_doc},
    {"count_nouns", (PyCFunction)(void (*)(void))Tagger_count_nouns, METH_FASTCALL, count_doc},
    {"tagged", (PyCFunction)(void (*)(void))Tagger_tagged, METH_FASTCALL, tagged_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Tagger_getset[] = {
    {"version", (getter)Tagger_version, NULL, "MeCab's version string", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TaggerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "textrec._mecab.Tagger",
    .tp_basicsize = sizeof(Tagger),
    .tp_dealloc = (destructor)Tagger_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tagger(library, argv, *, cache_size, tags=None): a MeCab tagger (mecab_new(argc,\n"
               "argv)) of an already loaded MeCab library; cache_size: how many distinct nouns'\n"
               "terms it keeps; tags: the tags (first feature) whose nodes are terms, or None\n"
               "for every node whose tag starts with N (KoNLPy's nouns).",
    .tp_methods = Tagger_methods,
    .tp_getset = Tagger_getset,
    .tp_init = (initproc)Tagger_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_methods[] = {
    {"find_library", find_library, METH_O,
     "find_library(name) -> str | None: path of a loaded shared object whose file name "
     "contains name."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "textrec._mecab",
    "Nouns straight from MeCab's best path (see textrec/_mecab.c).", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__mecab(void) {
    if (PyType_Ready(&TaggerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&TaggerType);
    if (PyModule_AddObject(m, "Tagger", (PyObject *)&TaggerType) < 0) {
        Py_DECREF(&TaggerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
