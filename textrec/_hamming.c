/*
 * textrec._hamming: fused Hamming-distance kernels for textrec.content.hamming.
 *
 * Everything here works on positions into a uint64 array of fingerprints. A result is a
 * "packed key" (distance << 56) | position, so sorting keys sorts by (distance, position),
 * which is (distance, id) because the index keeps its arrays in id order.
 *
 * topk:   one pass over the codes; XOR, popcount and selection fused. Per query it keeps a
 *         65-bin histogram of accepted candidates and a bound `lim` (accept only distances
 *         < lim) that drops as soon as k accepted codes make a later one useless (accept()).
 *         With AVX-512 a single query over many codes scans four parts of them at once, each
 *         with its own state, prefetched ahead, and merges them (scan_avx512).
 *         A batch streams the array once, in L1-sized blocks, and runs every query over each
 *         block, so memory is read once per batch; with AVX-512 up to 17 queries share each
 *         loaded vector of 8 codes, grouped by their bounds (scan_avx512_group). Batches of
 *         at least SLICED_MIN queries instead transpose each block into bit planes once and
 *         test every query with carry-save adders, without popcount (sl_transpose, sl_run).
 * within: every position at distance <= r, linear scan (in four parts at once with AVX-512).
 * mih_*:  multi-index hashing (Norouzi, Punjani & Fleet): three tables keyed by 21, 21 and
 *         22-bit substrings, each a counting-sorted array of uint32 positions.
 *
 * The popcount kernels are compiled for four targets (AVX-512 VPOPCNTDQ, AVX2, POPCNT, plain
 * C) with GCC/Clang target attributes and chosen at import time from what the CPU supports, so
 * the module is built with portable flags and runs on any x86-64 (or other) machine. The AVX2
 * kernels (Muła's nibble lookup, and the bit-sliced batch with five-op full adders) have the
 * AVX-512 ones' structure on 256-bit vectors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TX_X86 1
#include <immintrin.h>
#else
#define TX_X86 0
#endif

#define POS_BITS 56
#define POS_MASK ((((uint64_t)1) << POS_BITS) - 1)
#define BLOCK 4096 /* codes per block in a batch: 32 KiB, stays in L1/L2 */
/* a single AVX-512 query over at least this many codes runs as parallel streams (scan_avx512) */
static size_t STREAMS_MIN = 4096;

/* ---- selection state ----------------------------------------------------------------- */

typedef struct {
    uint64_t q;
    uint64_t k;
    uint64_t *buf; /* packed keys of accepted candidates, in position order */
    size_t len, cap;
    uint64_t live; /* accepted candidates with distance < lim */
    int lim;       /* accept a code only if its distance is < lim */
    uint64_t hist[65];
} state_t;

static void compact(state_t *s) {
    size_t j = 0;
    uint64_t lim = (uint64_t)s->lim;
    for (size_t i = 0; i < s->len; i++) {
        if ((s->buf[i] >> POS_BITS) <= lim) s->buf[j++] = s->buf[i];
    }
    s->len = j;
}

/* Accept a code at distance d < lim. Invariant: live = #accepted with distance < lim, and
 * live < k. When live reaches k, k codes at smaller positions are strictly nearer than lim-1
 * or tied at it, so any later code at distance >= lim-1 ranks after k others: lower lim. The
 * candidates with distance <= lim never exceed k (each accept adds one), so a buffer of 2k
 * entries compacts to at most k. */
static inline void accept(state_t *s, uint64_t d, uint64_t pos) {
    if (s->len == s->cap) compact(s);
    s->buf[s->len++] = (d << POS_BITS) | pos;
    s->hist[d]++;
    s->live++;
    while (s->live >= s->k) {
        s->lim--;
        s->live -= s->hist[s->lim];
    }
}

static int state_init(state_t *s, uint64_t q, uint64_t k, uint64_t n) {
    memset(s, 0, sizeof(*s));
    s->q = q;
    s->k = k;
    s->lim = 65;
    size_t cap = (size_t)(2 * k + 64);
    if (cap > n) cap = (size_t)n;
    if (cap == 0) cap = 1;
    s->cap = cap;
    s->buf = (uint64_t *)malloc(cap * sizeof(uint64_t));
    return s->buf != NULL;
}

/* Write the min(k, accepted) nearest keys, sorted by (distance, position), into out. */
static uint64_t state_finish(state_t *s, uint64_t *out) {
    uint64_t lim = (uint64_t)s->lim;
    uint64_t start[66];
    uint64_t total = 0;
    for (uint64_t d = 0; d <= 64; d++) {
        start[d] = total;
        if (d <= lim) total += s->hist[d];
    }
    /* counting sort by distance; stable, so positions stay ascending within a distance */
    uint64_t take = total < s->k ? total : s->k;
    for (size_t i = 0; i < s->len; i++) {
        uint64_t d = s->buf[i] >> POS_BITS;
        if (d > lim) continue;
        uint64_t at = start[d]++;
        if (at < take) out[at] = s->buf[i];
    }
    free(s->buf);
    s->buf = NULL;
    return take;
}

/* ---- scan kernels, one per instruction set ---------------------------------------------- */

static inline int popcount_generic(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}

/* the largest bound of a group of queries: a code at a distance >= it is useless to all */
static inline int group_lim(state_t *const *s, int g) {
    int lim = 0;
    for (int j = 0; j < g; j++)
        if (s[j]->lim > lim) lim = s[j]->lim;
    return lim;
}

#define GROUP 17 /* queries per call of a batch kernel (per loaded vector with AVX-512) */

/* code c[i] of one query's scan, in a scalar kernel (q, lim: the query and its bound) */
#define SCALAR_STEP(POPCNT, i)                                                             \
    do {                                                                                   \
        int d_ = POPCNT(c[i] ^ q);                                                         \
        if (d_ < lim) {                                                                    \
            accept(s, (uint64_t)d_, base + (i));                                           \
            lim = s->lim;                                                                  \
        }                                                                                  \
    } while (0)

#define SCALAR_SCAN(NAME, POPCNT, ATTR)                                                    \
    /* one query over codes in cache (a block of a batch) */                              \
    ATTR static void NAME##_block(state_t *s, const uint64_t *c, size_t n, uint64_t base) { \
        uint64_t q = s->q;                                                                 \
        int lim = s->lim;                                                                  \
        for (size_t i = 0; i < n; i++) SCALAR_STEP(POPCNT, i);                             \
    }                                                                                      \
    /* one query over codes in memory: the same, 8 codes a step with a prefetch ahead, in \
     * its own loop (calling NAME##_block per step is slower) */                           \
    ATTR static void NAME(state_t *s, const uint64_t *c, size_t n, uint64_t base) {       \
        uint64_t q = s->q;                                                                 \
        int lim = s->lim;                                                                  \
        size_t i = 0;                                                                      \
        for (; i + 8 <= n; i += 8) {                                                       \
            __builtin_prefetch(c + i + 2048); /* 16 KiB ahead, as within_stream */          \
            for (size_t t = i; t < i + 8; t++) SCALAR_STEP(POPCNT, t);                     \
        }                                                                                  \
        NAME##_block(s, c + i, n - i, base + i);                                           \
    }                                                                                      \
    /* a batch: each query in turn over the block, which is in L1 after the first (a     \
     * scalar loop is bound by its instruction count: sharing loads between queries does   \
     * not pay) */                                                                         \
    ATTR static void NAME##_group(state_t **s, int g, const uint64_t *c, size_t n,         \
                                  uint64_t base, const uint64_t *next) {                   \
        (void)next;                                                                        \
        for (int j = 0; j < g; j++) NAME##_block(s[j], c, n, base);                        \
    }                                                                                      \
    ATTR static size_t NAME##_within(const uint64_t *c, size_t n, uint64_t q, int r,      \
                                     uint64_t **buf, size_t *cap, size_t len) {            \
        for (size_t i = 0; i < n; i++) {                                                   \
            int d = POPCNT(c[i] ^ q);                                                      \
            if (d <= r) {                                                                  \
                if (len == *cap) {                                                         \
                    size_t nc = *cap * 2 + 1024;                                           \
                    uint64_t *nb = (uint64_t *)realloc(*buf, nc * sizeof(uint64_t));       \
                    if (!nb) return (size_t)-1;                                            \
                    *buf = nb;                                                             \
                    *cap = nc;                                                             \
                }                                                                          \
                (*buf)[len++] = ((uint64_t)d << POS_BITS) | i;                             \
            }                                                                              \
        }                                                                                  \
        return len;                                                                        \
    }

SCALAR_SCAN(scan_generic, popcount_generic, )

#if TX_X86
#define POPCNT_HW(x) ((int)__builtin_popcountll(x))
SCALAR_SCAN(scan_popcnt, POPCNT_HW, __attribute__((target("popcnt"))))

/* The codes of mask m (bit j: code c[j]) whose distance is below the bound, in position order;
 * kept out of line so that the hot loop below stays short. */
__attribute__((noinline, target("popcnt"))) static void accept_mask(state_t *s, const uint64_t *c,
                                                                  uint32_t m, uint64_t base) {
    while (m) {
        unsigned j = (unsigned)__builtin_ctz(m);
        m &= m - 1;
        int d = __builtin_popcountll(c[j] ^ s->q);
        if (d < s->lim) accept(s, (uint64_t)d, base + j);
    }
}

/* The distances of 32 codes to the query qv in d[0..3], and their lane-wise unsigned min. */
__attribute__((target("avx512f,avx512vpopcntdq"))) static inline __m512i dist32(
    const uint64_t *c, __m512i qv, __m512i *d) {
    for (int t = 0; t < 4; t++)
        d[t] = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(c + 8 * t), qv));
    return _mm512_min_epu64(_mm512_min_epu64(d[0], d[1]), _mm512_min_epu64(d[2], d[3]));
}

/* the 32 codes (four cache lines) at c into L1 */
static inline void prefetch32(const uint64_t *c) {
    for (int t = 0; t < 4; t++) _mm_prefetch((const char *)(c + 8 * t), _MM_HINT_T0);
}

/* One step of one query: the distances of 32 codes (positions from base) reduced by an unsigned
 * min to one vector and compared once with the bound limv; a step with a code below it (rare
 * once the bound has fallen) is redone per code, and limv follows the new bound. */
__attribute__((target("avx512f,avx512vpopcntdq,popcnt"), always_inline)) static inline void
step32(state_t *s, const uint64_t *c, __m512i qv, __m512i *limv, uint64_t base) {
    __m512i d[4], mn = dist32(c, qv, d);
    if (__builtin_expect(!_mm512_cmplt_epu64_mask(mn, *limv), 1)) return;
    uint32_t m = 0;
    for (int t = 0; t < 4; t++) m |= (uint32_t)_mm512_cmplt_epu64_mask(d[t], *limv) << (8 * t);
    accept_mask(s, c, m, base);
    *limv = _mm512_set1_epi64(s->lim);
}

/* One query, one stream of 32-code steps. */
__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) static void scan_avx512_stream(
    state_t *s, const uint64_t *c, size_t n, uint64_t base) {
    const __m512i qv = _mm512_set1_epi64((long long)s->q);
    __m512i limv = _mm512_set1_epi64(s->lim);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) step32(s, c + i, qv, &limv, base + i);
    int lim = s->lim;
    for (; i < n; i++) {
        int d = __builtin_popcountll(c[i] ^ s->q);
        if (d < lim) {
            accept(s, (uint64_t)d, base + i);
            lim = s->lim;
        }
    }
}

/* One query over STREAMS contiguous parts of the codes at once, each part with its own
 * selection state, plus a software prefetch PREFETCH codes ahead in every part, because a
 * single sequential stream leaves the memory system idle on some CPUs. Each part's state accepts
 * its codes in position order; then the candidates of parts 1.. are fed to part 0's state in
 * position order, which is exactly the order a single stream would have offered them in, so
 * the result is the same (a code of the global top k is in its own part's top k). */
#define STREAMS 4
#define PREFETCH 512 /* codes: 4 KiB ahead in each part */

__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) static void scan_avx512(
    state_t *s, const uint64_t *c, size_t n, uint64_t base) {
    state_t part[STREAMS];
    size_t len = n / STREAMS / 32 * 32; /* codes of each part run in the interleaved loop */
    /* a k near n would make every part keep most of its codes: one stream, one buffer */
    int ok = n >= STREAMS_MIN && len > 0 && 2 * s->k + 64 <= len;
    part[0] = *s;
    for (int p = 1; p < STREAMS && ok; p++) {
        if (!state_init(&part[p], s->q, s->k, n)) {
            for (int x = 1; x < p; x++) free(part[x].buf);
            ok = 0;
        }
    }
    if (!ok) {
        scan_avx512_stream(s, c, n, base);
        return;
    }
    const __m512i qv = _mm512_set1_epi64((long long)s->q);
    __m512i limv[STREAMS];
    for (int p = 0; p < STREAMS; p++) limv[p] = _mm512_set1_epi64(part[p].lim);
    for (size_t i = 0; i < len; i += 32) {
        for (int p = 0; p < STREAMS; p++) {
            const uint64_t *cp = c + (size_t)p * len + i;
            prefetch32(cp + PREFETCH);
            step32(&part[p], cp, qv, &limv[p], base + (size_t)p * len + i);
        }
    }
    /* the last part also takes the codes after STREAMS * len */
    scan_avx512_stream(&part[STREAMS - 1], c + STREAMS * len, n - STREAMS * len,
                       base + STREAMS * len);
    *s = part[0];
    for (int p = 1; p < STREAMS; p++) {
        for (size_t j = 0; j < part[p].len; j++) {
            uint64_t key = part[p].buf[j], d = key >> POS_BITS;
            if (d < (uint64_t)s->lim) accept(s, d, key & POS_MASK);
        }
        free(part[p].buf);
    }
}

/* A batch: GROUP queries against the same 8 codes, so each code vector is loaded once per
 * group. Branch-free filter: XOR + VPOPCNTQ for the first nv queries, a running unsigned min
 * over them (two chains), and one compare of the 8 minima with the group's largest bound; only
 * when a lane is below it (rare once the bounds have shrunk) are the 8 codes redone per query
 * with its own bound. The vector popcount is the limit (one VPOPCNTQ per 8 distance checks), so
 * in a full group the last query runs on the scalar POPCNT unit in the same loop, which has
 * room for it. A smaller group runs nv = 2, 4 or 8 vector queries (the fewest that hold it,
 * repeating its first query, which changes no minimum) and no scalar one, so that a small
 * batch costs no more than its single queries. */
#define GROUP_VEC 16
__attribute__((target("avx512f,avx512vpopcntdq,popcnt"), always_inline)) static inline void
group_run(state_t **s, int g, const uint64_t *c, size_t n, uint64_t base, const uint64_t *next,
          const int nv, const int scalar) {
    __m512i qv[GROUP_VEC];
    for (int j = 0; j < nv; j++) qv[j] = _mm512_set1_epi64((long long)s[j < g ? j : 0]->q);
    const uint64_t qs = s[scalar ? nv : 0]->q;
    int lim = group_lim(s, g);
    __m512i limv = _mm512_set1_epi64(lim);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i x = _mm512_loadu_si512(c + i);
        if (next) _mm_prefetch((const char *)(next + i), _MM_HINT_T0);
        __m512i lo = _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[0]));
        __m512i hi = _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[1]));
#pragma GCC unroll 8
        for (int j = 2; j < nv; j += 2) {
            lo = _mm512_min_epu64(lo, _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[j])));
            hi = _mm512_min_epu64(hi, _mm512_popcnt_epi64(_mm512_xor_si512(x, qv[j + 1])));
        }
        int sm = 64;
        if (scalar) {
#pragma GCC unroll 8
            for (int t = 0; t < 8; t++) {
                int d = __builtin_popcountll(c[i + t] ^ qs);
                sm = d < sm ? d : sm;
            }
        }
        if (__builtin_expect(
                !_mm512_cmplt_epu64_mask(_mm512_min_epu64(lo, hi), limv) && sm >= lim, 1))
            continue;
        /* redo per query: a mask of the codes below its own bound (clustered codes hit this
         * often, so it stays vectorised), then the exact scalar check on those */
        for (int j = 0; j < g; j++) {
            state_t *st = s[j];
            unsigned mm = 0xFF;
            if (j < nv)
                mm = _mm512_cmplt_epu64_mask(_mm512_popcnt_epi64(_mm512_xor_si512(x, qv[j])),
                                             _mm512_set1_epi64(st->lim));
            if (mm) accept_mask(st, c + i, mm, base + i);
        }
        lim = group_lim(s, g);
        limv = _mm512_set1_epi64(lim);
    }
    for (int j = 0; j < g; j++) {
        state_t *st = s[j];
        for (size_t t = i; t < n; t++) {
            int d = __builtin_popcountll(c[t] ^ st->q);
            if (d < st->lim) accept(st, (uint64_t)d, base + t);
        }
    }
}

__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) static void scan_avx512_group(
    state_t **s, int g, const uint64_t *c, size_t n, uint64_t base, const uint64_t *next) {
    if (g <= 2)
        group_run(s, g, c, n, base, next, 2, 0);
    else if (g <= 4)
        group_run(s, g, c, n, base, next, 4, 0);
    else if (g <= 8)
        group_run(s, g, c, n, base, next, 8, 0);
    else if (g <= GROUP_VEC)
        group_run(s, g, c, n, base, next, GROUP_VEC, 0);
    else
        group_run(s, g, c, n, base, next, GROUP_VEC, 1);
}

/* One step of within: the codes among the 32 at c within r of q appended to buf, at positions
 * from offset; the new length, or -1 when out of memory. */
__attribute__((target("avx512f,avx512vpopcntdq,popcnt"), always_inline)) static inline size_t
within32(const uint64_t *c, __m512i qv, __m512i rv, uint64_t q, int r, uint64_t **buf,
         size_t *cap, size_t len, size_t offset) {
    __m512i d[4], mn = dist32(c, qv, d);
    if (__builtin_expect(!_mm512_cmple_epu64_mask(mn, rv), 1)) return len;
    size_t got = scan_popcnt_within(c, 32, q, r, buf, cap, len);
    if (got == (size_t)-1) return got;
    for (size_t t = len; t < got; t++) (*buf)[t] += offset; /* they are relative to c */
    return got;
}

__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) static size_t within_stream(
    const uint64_t *c, size_t n, uint64_t q, int r, uint64_t **buf, size_t *cap, size_t len) {
    const __m512i qv = _mm512_set1_epi64((long long)q);
    const __m512i rv = _mm512_set1_epi64(r);
    size_t i = 0;
    for (; i + 32 <= n && len != (size_t)-1; i += 32) {
        prefetch32(c + i + 2048); /* 16 KiB ahead: the hardware prefetcher alone falls behind */
        len = within32(c + i, qv, rv, q, r, buf, cap, len, i);
    }
    if (len == (size_t)-1) return len;
    size_t got = scan_popcnt_within(c + i, n - i, q, r, buf, cap, len);
    if (got == (size_t)-1) return got;
    for (size_t t = len; t < got; t++) (*buf)[t] += i;
    return got;
}

/* Every code within r of q, in four parts at once as scan_avx512 does (each part prefetched and
 * collected in its own buffer, then the buffers joined in part order, so matches stay in
 * position order). */
__attribute__((target("avx512f,avx512vpopcntdq,popcnt"))) static size_t scan_avx512_within(
    const uint64_t *c, size_t n, uint64_t q, int r, uint64_t **buf, size_t *cap, size_t len) {
    size_t plen = n / STREAMS / 32 * 32;
    if (n < STREAMS_MIN || plen == 0) return within_stream(c, n, q, r, buf, cap, len);
    const __m512i qv = _mm512_set1_epi64((long long)q);
    const __m512i rv = _mm512_set1_epi64(r);
    uint64_t *pb[STREAMS] = {*buf};
    size_t pcap[STREAMS] = {*cap}, pl[STREAMS] = {len}, got = 0;
    int ok = 1;
    for (size_t i = 0; i < plen && ok; i += 32) {
        for (int p = 0; p < STREAMS; p++) {
            const uint64_t *cp = c + (size_t)p * plen + i;
            prefetch32(cp + PREFETCH);
            got = within32(cp, qv, rv, q, r, &pb[p], &pcap[p], pl[p], (size_t)p * plen + i);
            if (got == (size_t)-1) {
                ok = 0;
                break;
            }
            pl[p] = got;
        }
    }
    if (ok) { /* the last part also takes the codes after STREAMS * plen */
        size_t tail = STREAMS * plen;
        got = within_stream(c + tail, n - tail, q, r, &pb[STREAMS - 1], &pcap[STREAMS - 1],
                            pl[STREAMS - 1]);
        if (got == (size_t)-1) ok = 0;
        for (size_t t = pl[STREAMS - 1]; ok && t < got; t++) pb[STREAMS - 1][t] += tail;
        if (ok) pl[STREAMS - 1] = got;
    }
    size_t total = 0;
    for (int p = 0; p < STREAMS; p++) total += pl[p];
    if (ok && total > pcap[0]) {
        uint64_t *nb = (uint64_t *)realloc(pb[0], total * sizeof(uint64_t));
        if (nb) {
            pb[0] = nb;
            pcap[0] = total;
        } else {
            ok = 0;
        }
    }
    for (int p = 1; p < STREAMS; p++) {
        if (ok) memcpy(pb[0] + pl[0], pb[p], pl[p] * sizeof(uint64_t));
        pl[0] += pl[p];
        free(pb[p]);
    }
    *buf = pb[0];
    *cap = pcap[0];
    return ok ? total : (size_t)-1;
}

/* ---- bit-sliced batch kernel (AVX-512) -------------------------------------------------------
 *
 * For a batch of many queries the popcount kernel above is bound by VPOPCNTQ and the min that
 * follows it (both run on only two of a core's vector pipes: one check per pair per 8 lanes).
 * This kernel does without popcount. Each sub-block of 512 codes is transposed once per batch
 * into 64 bit planes (plane b, a 512-bit vector, holds bit b of every code), plus the
 * popcounts px of the codes as 8 planes (of px + 64) and a zero plane. For a query q with
 * pq = popcount(q), the distance to a code x is
 *     ones mode  (pq <= 32): d = pq + px - 2 S,  S = sum of the planes where q has a 1;
 *     zeros mode (pq > 32):  d = pq - px + 2 S,  S = sum of the planes where q has a 0;
 * so d < lim is a comparison of px + 64 with W = 2 S + K for a per-query constant K. S + K/2
 * is summed by a carry-save tree of 31 full adders (VPTERNLOGQ: XOR3 and majority) over the
 * <= 32 selected planes (padded with the zero plane) and the 7 bits of K/2; an 8-bit
 * bit-sliced comparison with px + 64 leaves the 512-bit mask of the codes below the query's own
 * bound. Only those codes are checked again with POPCNT and passed to accept(), in position
 * order, so results are the same as every other kernel's. The transposition is shared by the
 * batch but costs several queries' work, so a batch of up to 17 queries (one group of the
 * popcount kernel) runs that kernel and this one runs for at least SLICED_MIN_AVX512 = 18
 * queries (sliced_min() sets it for tests and benchmarks; the crossover is in bench/README.md). */
#define SB 512     /* codes per sub-block */
#define SLOTS 73   /* vectors per sub-block: planes 0-63, px + 64 in 64-71, zero in 72 */
#define SB_PER_BLOCK (BLOCK / SB)

typedef struct {
    int pq, zeros;
    uint64_t off[8]; /* the 32 selected planes as byte offsets, four 16-bit fields per word */
} slq_t;

static void slq_init(slq_t *a, uint64_t q) {
    a->pq = __builtin_popcountll(q);
    a->zeros = a->pq > 32;
    int n = 0;
    memset(a->off, 0, sizeof(a->off));
    for (int b = 0; b < 64 || n < 32; b++) {
        int plane = b;
        if (b >= 64)
            plane = SLOTS - 1; /* pad with the zero plane */
        else if ((((q >> b) & 1) != 0) == a->zeros)
            continue;
        a->off[n / 4] |= (uint64_t)(plane * 64) << (16 * (n % 4));
        n++;
    }
}

#define XOR3(a, b, c) _mm512_ternarylogic_epi64(a, b, c, 0x96)
#define MAJ(a, b, c) _mm512_ternarylogic_epi64(a, b, c, 0xE8)
/* (a < b) over one more bit, from the lower bits' result c: (~a & b) | (~(a ^ b) & c) */
#define LT(a, b, c) _mm512_ternarylogic_epi64(a, b, c, 0x8E)

/* One step of the transposition below on the pair (a, b), m the low j bits of each 2j: a takes
 * b's bits ~m shifted down by j into its bits m, b takes a's bits m shifted up into its bits ~m
 * (m << j == ~m); both are a select by m (VPTERNLOGQ 0xAC: m ? third : second). */
#define SWAP(a, b, j, m)                                                                      \
    do {                                                                                      \
        __m512i a_ = (a), b_ = (b);                                                           \
        (a) = _mm512_ternarylogic_epi64(m, a_, _mm512_srli_epi64(b_, j), 0xAC);               \
        (b) = _mm512_ternarylogic_epi64(m, _mm512_slli_epi64(a_, j), b_, 0xAC);               \
    } while (0)

/* 512 codes -> planes P[0..72]. The 64x64 bit-matrix transpose of Hacker's Delight (7-3),
 * run on 8 matrices at once (one per 64-bit lane): register i holds codes 8(63-i)..8(63-i)+7,
 * and afterwards lane l, bit r of plane b is bit b of code 8r + l. Its six steps pair
 * registers i and i + j for j = 32, 16, ..., 1; they run in two register-resident passes,
 * j = 32 and 16 on groups of four registers (i, i + 16, i + 32, i + 48), then j = 8 to 1 on
 * groups of sixteen (one loop over the steps keeps its 64 registers in memory). */
__attribute__((target("avx512f"))) static void sl_transpose(const uint64_t *c, __m512i *P) {
    __m512i T[64];
    const __m512i m32 = _mm512_set1_epi64(0x00000000FFFFFFFFLL);
    const __m512i m16 = _mm512_set1_epi64(0x0000FFFF0000FFFFLL);
    for (int g = 0; g < 16; g++) {
        __m512i a0 = _mm512_loadu_si512(c + 8 * (63 - g));
        __m512i a1 = _mm512_loadu_si512(c + 8 * (47 - g));
        __m512i a2 = _mm512_loadu_si512(c + 8 * (31 - g));
        __m512i a3 = _mm512_loadu_si512(c + 8 * (15 - g));
        SWAP(a0, a2, 32, m32);
        SWAP(a1, a3, 32, m32);
        SWAP(a0, a1, 16, m16);
        SWAP(a2, a3, 16, m16);
        T[g] = a0;
        T[g + 16] = a1;
        T[g + 32] = a2;
        T[g + 48] = a3;
    }
    const __m512i m8 = _mm512_set1_epi64(0x00FF00FF00FF00FFLL);
    const __m512i m4 = _mm512_set1_epi64(0x0F0F0F0F0F0F0F0FLL);
    const __m512i m2 = _mm512_set1_epi64(0x3333333333333333LL);
    const __m512i m1 = _mm512_set1_epi64(0x5555555555555555LL);
    for (int h = 0; h < 64; h += 16) {
        __m512i B[16];
        for (int i = 0; i < 16; i++) B[i] = T[h + i];
        for (int k = 0; k < 8; k++) SWAP(B[k], B[k + 8], 8, m8);
        for (int k = 0; k < 16; k = ((k | 4) + 1) & ~4) SWAP(B[k], B[k + 4], 4, m4);
        for (int k = 0; k < 16; k = ((k | 2) + 1) & ~2) SWAP(B[k], B[k + 2], 2, m2);
        for (int k = 0; k < 16; k += 2) SWAP(B[k], B[k + 1], 1, m1);
        for (int i = 0; i < 16; i++) P[63 - h - i] = B[i];
    }
#undef SWAP
    /* px, the popcount of each code: Harley-Seal carry-save adders over the 64 planes */
    const __m512i zero = _mm512_setzero_si512();
    __m512i bit[7], twosA, twosB, foursA, foursB, eightsA, eightsB, sixteens;
    for (int w = 0; w < 7; w++) bit[w] = zero;
#define CSA(h, l, b, c)                                                                      \
    do {                                                                                      \
        __m512i b_ = (b), c_ = (c);                                                           \
        h = MAJ(l, b_, c_);                                                                   \
        l = XOR3(l, b_, c_);                                                                  \
    } while (0)
    for (int i = 0; i < 64; i += 16) {
        const __m512i *x = P + i;
        CSA(twosA, bit[0], x[0], x[1]);
        CSA(twosB, bit[0], x[2], x[3]);
        CSA(foursA, bit[1], twosA, twosB);
        CSA(twosA, bit[0], x[4], x[5]);
        CSA(twosB, bit[0], x[6], x[7]);
        CSA(foursB, bit[1], twosA, twosB);
        CSA(eightsA, bit[2], foursA, foursB);
        CSA(twosA, bit[0], x[8], x[9]);
        CSA(twosB, bit[0], x[10], x[11]);
        CSA(foursA, bit[1], twosA, twosB);
        CSA(twosA, bit[0], x[12], x[13]);
        CSA(twosB, bit[0], x[14], x[15]);
        CSA(foursB, bit[1], twosA, twosB);
        CSA(eightsB, bit[2], foursA, foursB);
        CSA(sixteens, bit[3], eightsA, eightsB);
        for (int w = 4; w < 7; w++) { /* add the carry of weight 16 */
            __m512i nb = _mm512_xor_si512(bit[w], sixteens);
            sixteens = _mm512_and_si512(bit[w], sixteens);
            bit[w] = nb;
        }
    }
#undef CSA
    /* px + 64 for px in 0..64: bits 0-5 of px, then ~px6 at weight 64 and px6 at weight 128 */
    for (int w = 0; w < 6; w++) P[64 + w] = bit[w];
    P[70] = _mm512_ternarylogic_epi64(bit[6], bit[6], bit[6], 0x55);
    P[71] = bit[6];
    P[72] = zero;
}

/* The seven bits of S + K2, S the sum of the 32 planes at byte offsets `off` from P and K2 a
 * constant given as seven all-zero or all-one vectors kb[]. A carry-save tree, each full adder
 * taking the three earliest-ready bits of one weight (depth 10 adders; sums stay below 128, so
 * the carry out of weight 64 is always zero and is dropped). */
__attribute__((target("avx512f"))) static inline void sl_sum(const __m512i *P,
                                                            const uint64_t *off,
                                                            const __m512i *kb, __m512i *v) {
    uint64_t o[8];
    for (int i = 0; i < 8; i++) o[i] = off[i];
    /* full adder: sum s and carry c of three bits of one weight */
#define FA(s, c, a, b, d) __m512i s = XOR3(a, b, d), c = MAJ(a, b, d)
#define X(i) _mm512_load_si512((const char *)P + ((o[(i) >> 2] >> (16 * ((i) & 3))) & 0xFFFF))
    FA(t0, t1, X(0), X(1), X(10));
    FA(t2, t3, X(11), X(12), X(13));
    FA(t4, t5, X(14), X(15), X(16));
    FA(t6, t7, X(17), X(18), X(19));
    FA(t8, t9, X(2), X(20), X(21));
    FA(t10, t11, X(22), X(23), X(24));
    FA(t12, t13, X(25), X(26), X(27));
    FA(t14, t15, X(28), X(29), X(3));
    FA(t16, t17, X(30), X(31), X(4));
    FA(t18, t19, X(5), X(6), X(7));
    FA(t20, t21, X(8), X(9), kb[0]);
#undef X
    FA(t22, t23, t0, t10, t12);
    FA(t24, t25, t14, t16, t18);
    FA(t26, t27, t2, t20, t4);
    FA(t28, t29, t6, t8, t22);
    v[0] = XOR3(t24, t26, t28);
    __m512i t31 = MAJ(t24, t26, t28);
    FA(t32, t33, kb[1], t1, t11);
    FA(t34, t35, t13, t15, t17);
    FA(t36, t37, t19, t21, t3);
    FA(t38, t39, t5, t7, t9);
    FA(t40, t41, t23, t25, t27);
    FA(t42, t43, t32, t34, t36);
    FA(t44, t45, t38, t29, t40);
    v[1] = XOR3(t42, t31, t44);
    __m512i t47 = MAJ(t42, t31, t44);
    FA(t48, t49, kb[2], t33, t35);
    FA(t50, t51, t37, t39, t41);
    FA(t52, t53, t43, t48, t45);
    v[2] = XOR3(t50, t47, t52);
    __m512i t55 = MAJ(t50, t47, t52);
    FA(t56, t57, kb[3], t49, t51);
    v[3] = XOR3(t53, t56, t55);
    __m512i t59 = MAJ(t53, t56, t55);
    v[4] = XOR3(kb[4], t57, t59);
    __m512i t61 = MAJ(kb[4], t57, t59);
    v[5] = _mm512_xor_si512(kb[5], t61);
    v[6] = _mm512_xor_si512(kb[6], _mm512_and_si512(kb[5], t61));
#undef FA
}

/* One query over nsb transposed sub-blocks (codes c, positions from base). */
__attribute__((target("avx512f,popcnt"))) static void sl_run(state_t *s, const slq_t *a,
                                                             const __m512i *P0, int nsb,
                                                             const uint64_t *c, uint64_t base) {
    __m512i kb[7], w0 = _mm512_setzero_si512();
    for (int i = 0; i < 7; i++) kb[i] = w0; /* set at the first sub-block (lim = -1 differs) */
    int lim = -1;
    const uint64_t *off = a->off;
    for (int sb = 0; sb < nsb; sb++) {
        if (s->lim != lim) {
            lim = s->lim;
            /* ones mode: d < lim <=> px + 64 < 2S + (64 - pq + lim); zeros mode:
             * d < lim <=> 2S + (pq - lim + 64) < px + 64. K is in 31..129 either way. */
            int K = a->zeros ? a->pq - lim + 64 : 64 - a->pq + lim;
            for (int i = 0; i < 7; i++)
                kb[i] = _mm512_set1_epi64(-(long long)((K >> (i + 1)) & 1));
            w0 = _mm512_set1_epi64(-(long long)(K & 1));
        }
        const __m512i *P = P0 + SLOTS * sb;
        /* keep the offsets in memory: hoisted out of this loop they spill */
        __asm__("" : "+r"(off));
        __m512i v[7];
        sl_sum(P, off, kb, v);
        __m512i lt;
        if (a->zeros) {
            lt = LT(w0, P[64], _mm512_setzero_si512());
            for (int i = 0; i < 7; i++) lt = LT(v[i], P[65 + i], lt);
        } else {
            lt = LT(P[64], w0, _mm512_setzero_si512());
            for (int i = 0; i < 7; i++) lt = LT(P[65 + i], v[i], lt);
        }
        if (__builtin_expect(_mm512_test_epi64_mask(lt, lt) == 0, 1)) continue;
        /* candidates in position order: code 8r + l is bit r of lane l */
        uint64_t w[8];
        _mm512_storeu_si512(w, lt);
        uint64_t any = w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
        const uint64_t *cs = c + (size_t)sb * SB;
        while (any) {
            unsigned r = (unsigned)__builtin_ctzll(any);
            any &= any - 1;
            for (unsigned l = 0; l < 8; l++) {
                if (!((w[l] >> r) & 1)) continue;
                unsigned pos = 8 * r + l;
                int d = __builtin_popcountll(cs[pos] ^ s->q);
                if (d < s->lim) accept(s, (uint64_t)d, base + (uint64_t)sb * SB + pos);
            }
        }
    }
}
#undef XOR3
#undef MAJ
#undef LT

/* ---- AVX2 kernels ----------------------------------------------------------------------------
 *
 * For CPUs with AVX2 but not AVX-512 VPOPCNTDQ. The distance of 4 codes in one 256-bit vector
 * is Muła's nibble lookup (VPSHUFB) summed per code by one VPSADBW: the low nibbles look up
 * popcount + 4 and the high nibbles 4 - popcount, so that |a - b| of each byte is the byte's
 * popcount and the sum of absolute differences over 8 bytes is the code's distance, with no
 * add between the two lookups. The single query, the radius scan and the small-batch group
 * follow the AVX-512 kernels' structure (32-code steps, four prefetched parts, a min over a
 * group's queries); batches of at least SLICED_MIN_AVX2 queries run a bit-sliced kernel on
 * 256-code sub-blocks whose full adders take five AVX2 logic ops each (no VPTERNLOGQ). */
#define AVX2_ATTR __attribute__((target("avx2,bmi2,popcnt")))

/* the distances of the 4 codes of x to the query whose low and high nibbles are ql, qh (each
 * byte's nibble in its low 4 bits), given the code's nibbles xl, xh; one per 64-bit lane */
AVX2_ATTR static inline __m256i nib_dist(__m256i xl, __m256i xh, __m256i ql, __m256i qh) {
    const __m256i plus4 = _mm256_setr_epi8(4, 5, 5, 6, 5, 6, 6, 7, 5, 6, 6, 7, 6, 7, 7, 8, 4, 5, 5,
                                           6, 5, 6, 6, 7, 5, 6, 6, 7, 6, 7, 7, 8);
    const __m256i minus4 = _mm256_setr_epi8(4, 3, 3, 2, 3, 2, 2, 1, 3, 2, 2, 1, 2, 1, 1, 0, 4, 3,
                                            3, 2, 3, 2, 2, 1, 3, 2, 2, 1, 2, 1, 1, 0);
    return _mm256_sad_epu8(_mm256_shuffle_epi8(plus4, _mm256_xor_si256(xl, ql)),
                           _mm256_shuffle_epi8(minus4, _mm256_xor_si256(xh, qh)));
}

AVX2_ATTR static inline __m256i lo_nib(__m256i x) {
    return _mm256_and_si256(x, _mm256_set1_epi8(0x0F));
}

AVX2_ATTR static inline __m256i hi_nib(__m256i x) {
    return _mm256_and_si256(_mm256_srli_epi16(x, 4), _mm256_set1_epi8(0x0F));
}

/* the distances of the 4 codes at c to the query qv */
AVX2_ATTR static inline __m256i dist4(const uint64_t *c, __m256i qv) {
    __m256i y = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)c), qv);
    const __m256i zero = _mm256_setzero_si256();
    return nib_dist(lo_nib(y), hi_nib(y), zero, zero);
}

/* the lane-wise min of the distances of the 32 codes at c to qv (distances fit the low 32-bit
 * half of each lane, whose high half is 0, so a signed 32-bit min is the 64-bit one) */
AVX2_ATTR static inline __m256i dist32_min(const uint64_t *c, __m256i qv) {
    __m256i a = _mm256_min_epi32(dist4(c, qv), dist4(c + 4, qv));
    __m256i b = _mm256_min_epi32(dist4(c + 8, qv), dist4(c + 12, qv));
    __m256i e = _mm256_min_epi32(dist4(c + 16, qv), dist4(c + 20, qv));
    __m256i f = _mm256_min_epi32(dist4(c + 24, qv), dist4(c + 28, qv));
    return _mm256_min_epi32(_mm256_min_epi32(a, b), _mm256_min_epi32(e, f));
}

/* any lane of d below the bound limv (bounds 0..65 as 64-bit lanes) */
AVX2_ATTR static inline int any_below(__m256i d, __m256i limv) {
    __m256i lt = _mm256_cmpgt_epi64(limv, d);
    return !_mm256_testz_si256(lt, lt);
}

/* One step of one query: the 32 codes at c compared once, by their min, with the bound; a step
 * with a code below it is redone per code with scalar POPCNT (rare once the bound has fallen). */
AVX2_ATTR static inline void step32_avx2(state_t *s, const uint64_t *c, __m256i qv, __m256i *limv,
                                         uint64_t base) {
    if (__builtin_expect(!any_below(dist32_min(c, qv), *limv), 1)) return;
    accept_mask(s, c, 0xFFFFFFFFu, base);
    *limv = _mm256_set1_epi64x(s->lim);
}

AVX2_ATTR static void scan_avx2_stream(state_t *s, const uint64_t *c, size_t n, uint64_t base) {
    const __m256i qv = _mm256_set1_epi64x((long long)s->q);
    __m256i limv = _mm256_set1_epi64x(s->lim);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) step32_avx2(s, c + i, qv, &limv, base + i);
    scan_popcnt_block(s, c + i, n - i, base + i);
}

/* One query in STREAMS parts at once, as scan_avx512 (the same split, prefetch and merge). */
AVX2_ATTR static void scan_avx2(state_t *s, const uint64_t *c, size_t n, uint64_t base) {
    state_t part[STREAMS];
    size_t len = n / STREAMS / 32 * 32;
    int ok = n >= STREAMS_MIN && len > 0 && 2 * s->k + 64 <= len;
    part[0] = *s;
    for (int p = 1; p < STREAMS && ok; p++) {
        if (!state_init(&part[p], s->q, s->k, n)) {
            for (int x = 1; x < p; x++) free(part[x].buf);
            ok = 0;
        }
    }
    if (!ok) {
        scan_avx2_stream(s, c, n, base);
        return;
    }
    const __m256i qv = _mm256_set1_epi64x((long long)s->q);
    __m256i limv[STREAMS];
    for (int p = 0; p < STREAMS; p++) limv[p] = _mm256_set1_epi64x(part[p].lim);
    for (size_t i = 0; i < len; i += 32) {
        for (int p = 0; p < STREAMS; p++) {
            const uint64_t *cp = c + (size_t)p * len + i;
            prefetch32(cp + PREFETCH);
            step32_avx2(&part[p], cp, qv, &limv[p], base + (size_t)p * len + i);
        }
    }
    scan_avx2_stream(&part[STREAMS - 1], c + STREAMS * len, n - STREAMS * len,
                     base + STREAMS * len);
    *s = part[0];
    for (int p = 1; p < STREAMS; p++) {
        for (size_t j = 0; j < part[p].len; j++) {
            uint64_t key = part[p].buf[j], d = key >> POS_BITS;
            if (d < (uint64_t)s->lim) accept(s, d, key & POS_MASK);
        }
        free(part[p].buf);
    }
}

/* A batch group: up to GROUP queries against each loaded pair of code vectors, whose nibbles
 * are split once for all of them; a running min over the queries is compared once with the
 * group's largest bound, and only a pair with a lane below it is redone per query. */
AVX2_ATTR static void scan_avx2_group(state_t **s, int g, const uint64_t *c, size_t n,
                                      uint64_t base, const uint64_t *next) {
    __m256i ql[GROUP], qh[GROUP];
    for (int j = 0; j < g; j++) {
        __m256i q = _mm256_set1_epi64x((long long)s[j]->q);
        ql[j] = lo_nib(q);
        qh[j] = hi_nib(q);
    }
    int lim = group_lim(s, g);
    __m256i limv = _mm256_set1_epi64x(lim);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (next) _mm_prefetch((const char *)(next + i), _MM_HINT_T0);
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(c + i));
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(c + i + 4));
        __m256i l0 = lo_nib(x0), h0 = hi_nib(x0), l1 = lo_nib(x1), h1 = hi_nib(x1);
        __m256i m0 = nib_dist(l0, h0, ql[0], qh[0]), m1 = nib_dist(l1, h1, ql[0], qh[0]);
        for (int j = 1; j < g; j++) {
            m0 = _mm256_min_epi32(m0, nib_dist(l0, h0, ql[j], qh[j]));
            m1 = _mm256_min_epi32(m1, nib_dist(l1, h1, ql[j], qh[j]));
        }
        if (__builtin_expect(!any_below(_mm256_min_epi32(m0, m1), limv), 1)) continue;
        for (int j = 0; j < g; j++) {
            __m256i lj = _mm256_set1_epi64x(s[j]->lim);
            unsigned mm = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(
                              _mm256_cmpgt_epi64(lj, nib_dist(l0, h0, ql[j], qh[j])))) |
                          (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(
                              _mm256_cmpgt_epi64(lj, nib_dist(l1, h1, ql[j], qh[j]))))
                              << 4;
            if (mm) accept_mask(s[j], c + i, mm, base + i);
        }
        lim = group_lim(s, g);
        limv = _mm256_set1_epi64x(lim);
    }
    for (int j = 0; j < g; j++) scan_popcnt_block(s[j], c + i, n - i, base + i);
}

/* One step of within: as within32, with the AVX2 distances (lim = r + 1, clamped to 0..65). */
AVX2_ATTR static inline size_t within32_avx2(const uint64_t *c, __m256i qv, __m256i limv,
                                             uint64_t q, int r, uint64_t **buf, size_t *cap,
                                             size_t len, size_t offset) {
    if (__builtin_expect(!any_below(dist32_min(c, qv), limv), 1)) return len;
    size_t got = scan_popcnt_within(c, 32, q, r, buf, cap, len);
    if (got == (size_t)-1) return got;
    for (size_t t = len; t < got; t++) (*buf)[t] += offset;
    return got;
}

static inline long long within_lim(int r) { return r < 0 ? 0 : r > 64 ? 65 : r + 1; }

AVX2_ATTR static size_t within_avx2_stream(const uint64_t *c, size_t n, uint64_t q, int r,
                                           uint64_t **buf, size_t *cap, size_t len) {
    const __m256i qv = _mm256_set1_epi64x((long long)q);
    const __m256i limv = _mm256_set1_epi64x(within_lim(r));
    size_t i = 0;
    for (; i + 32 <= n && len != (size_t)-1; i += 32) {
        prefetch32(c + i + 2048);
        len = within32_avx2(c + i, qv, limv, q, r, buf, cap, len, i);
    }
    if (len == (size_t)-1) return len;
    size_t got = scan_popcnt_within(c + i, n - i, q, r, buf, cap, len);
    if (got == (size_t)-1) return got;
    for (size_t t = len; t < got; t++) (*buf)[t] += i;
    return got;
}

/* Every code within r of q, in STREAMS parts at once as scan_avx512_within. */
AVX2_ATTR static size_t scan_avx2_within(const uint64_t *c, size_t n, uint64_t q, int r,
                                         uint64_t **buf, size_t *cap, size_t len) {
    size_t plen = n / STREAMS / 32 * 32;
    if (n < STREAMS_MIN || plen == 0) return within_avx2_stream(c, n, q, r, buf, cap, len);
    const __m256i qv = _mm256_set1_epi64x((long long)q);
    const __m256i limv = _mm256_set1_epi64x(within_lim(r));
    uint64_t *pb[STREAMS] = {*buf};
    size_t pcap[STREAMS] = {*cap}, pl[STREAMS] = {len}, got = 0;
    int ok = 1;
    for (size_t i = 0; i < plen && ok; i += 32) {
        for (int p = 0; p < STREAMS; p++) {
            const uint64_t *cp = c + (size_t)p * plen + i;
            prefetch32(cp + PREFETCH);
            got = within32_avx2(cp, qv, limv, q, r, &pb[p], &pcap[p], pl[p], (size_t)p * plen + i);
            if (got == (size_t)-1) {
                ok = 0;
                break;
            }
            pl[p] = got;
        }
    }
    if (ok) {
        size_t tail = STREAMS * plen;
        got = within_avx2_stream(c + tail, n - tail, q, r, &pb[STREAMS - 1], &pcap[STREAMS - 1],
                                 pl[STREAMS - 1]);
        if (got == (size_t)-1) ok = 0;
        for (size_t t = pl[STREAMS - 1]; ok && t < got; t++) pb[STREAMS - 1][t] += tail;
        if (ok) pl[STREAMS - 1] = got;
    }
    size_t total = 0;
    for (int p = 0; p < STREAMS; p++) total += pl[p];
    if (ok && total > pcap[0]) {
        uint64_t *nb = (uint64_t *)realloc(pb[0], total * sizeof(uint64_t));
        if (nb) {
            pb[0] = nb;
            pcap[0] = total;
        } else {
            ok = 0;
        }
    }
    for (int p = 1; p < STREAMS; p++) {
        if (ok) memcpy(pb[0] + pl[0], pb[p], pl[p] * sizeof(uint64_t));
        pl[0] += pl[p];
        free(pb[p]);
    }
    *buf = pb[0];
    *cap = pcap[0];
    return ok ? total : (size_t)-1;
}

/* ---- bit-sliced batch kernel (AVX2) ----------------------------------------------------------
 *
 * The AVX-512 bit-sliced kernel above on 256-bit vectors: sub-blocks of SB2 = 256 codes, 73
 * planes of 4 lanes (lane l, bit r of plane b is bit b of code 4r + l), the same per-query
 * selection of 32 planes (slq_t, its offsets halved) and the same adder tree and comparison,
 * each full adder five logic ops instead of two VPTERNLOGQ. */
#define SB2 256
#define SB2_PER_BLOCK (BLOCK / SB2)

/* a ^ b ^ c and the majority of a, b, c, sharing a ^ b */
#define FA2(s, c, a, b, d)                                                                    \
    __m256i s, c;                                                                             \
    do {                                                                                      \
        __m256i a_ = (a), b_ = (b), d_ = (d), t_ = _mm256_xor_si256(a_, b_);                 \
        s = _mm256_xor_si256(t_, d_);                                                         \
        c = _mm256_or_si256(_mm256_and_si256(a_, b_), _mm256_and_si256(t_, d_));              \
    } while (0)
/* (a < b) over one more bit, from the lower bits' result c: (~a & b) | (~(a ^ b) & c) */
#define LT2(a, b, c)                                                                          \
    _mm256_or_si256(_mm256_andnot_si256(a, b), _mm256_andnot_si256(_mm256_xor_si256(a, b), c))

/* 256 codes -> planes P[0..72], as sl_transpose (register i holds codes 4(63-i)..4(63-i)+3);
 * the six steps run in three passes of two, each on groups of four registers, the first
 * reading the codes and the last writing the planes. */
#define SWAP2(a, b, j, m)                                                                     \
    do {                                                                                      \
        __m256i t_ = _mm256_and_si256(_mm256_xor_si256(a, _mm256_srli_epi64(b, j)), m);       \
        (a) = _mm256_xor_si256(a, t_);                                                        \
        (b) = _mm256_xor_si256(b, _mm256_slli_epi64(t_, j));                                  \
    } while (0)
/* one pass: steps j1 and j1 / 2 on the four registers (k, k + j1 / 2, k + j1, k + 3 j1 / 2) of
 * each group, read by LD(i) and written by ST(i, v) */
#define SL2_PASS(j1, mask1, mask2, LD, ST)                                                    \
    do {                                                                                      \
        const int j2_ = (j1) / 2;                                                             \
        const __m256i m1_ = _mm256_set1_epi64x((long long)(mask1));                           \
        const __m256i m2_ = _mm256_set1_epi64x((long long)(mask2));                           \
        _Pragma("GCC unroll 16") for (int g_ = 0; g_ < 16; g_++) {                            \
            const int k = (g_ % j2_) + (g_ / j2_) * 2 * (j1);                                 \
            __m256i a0 = LD(k), a1 = LD(k + j2_), a2 = LD(k + (j1)), a3 = LD(k + (j1) + j2_);  \
            SWAP2(a0, a2, j1, m1_);                                                           \
            SWAP2(a1, a3, j1, m1_);                                                           \
            SWAP2(a0, a1, j2_, m2_);                                                          \
            SWAP2(a2, a3, j2_, m2_);                                                          \
            ST(k, a0);                                                                        \
            ST(k + j2_, a1);                                                                  \
            ST(k + (j1), a2);                                                                 \
            ST(k + (j1) + j2_, a3);                                                           \
        }                                                                                     \
    } while (0)
AVX2_ATTR static void sl2_transpose(const uint64_t *c, __m256i *P) {
    __m256i A[64];
#define LD_C(i) _mm256_loadu_si256((const __m256i *)(c + 4 * (63 - (i))))
#define LD_A(i) A[i]
#define ST_A(i, v) A[i] = (v)
#define ST_P(i, v) P[63 - (i)] = (v)
    SL2_PASS(32, 0x00000000FFFFFFFFULL, 0x0000FFFF0000FFFFULL, LD_C, ST_A);
    SL2_PASS(8, 0x00FF00FF00FF00FFULL, 0x0F0F0F0F0F0F0F0FULL, LD_A, ST_A);
    SL2_PASS(2, 0x3333333333333333ULL, 0x5555555555555555ULL, LD_A, ST_P);
#undef LD_C
#undef LD_A
#undef ST_A
#undef ST_P
    /* px, the popcount of each code: carry-save adders over the 64 planes, as sl_transpose */
    const __m256i zero = _mm256_setzero_si256();
    __m256i bit[7];
    for (int w = 0; w < 7; w++) bit[w] = zero;
#define CSA2(h, l, b, c)                                                                      \
    do {                                                                                      \
        FA2(s_, c_, l, b, c);                                                                 \
        h = c_;                                                                               \
        l = s_;                                                                               \
    } while (0)
    for (int i = 0; i < 64; i += 16) {
        const __m256i *x = P + i;
        __m256i twosA, twosB, foursA, foursB, eightsA, eightsB, sixteens;
        CSA2(twosA, bit[0], x[0], x[1]);
        CSA2(twosB, bit[0], x[2], x[3]);
        CSA2(foursA, bit[1], twosA, twosB);
        CSA2(twosA, bit[0], x[4], x[5]);
        CSA2(twosB, bit[0], x[6], x[7]);
        CSA2(foursB, bit[1], twosA, twosB);
        CSA2(eightsA, bit[2], foursA, foursB);
        CSA2(twosA, bit[0], x[8], x[9]);
        CSA2(twosB, bit[0], x[10], x[11]);
        CSA2(foursA, bit[1], twosA, twosB);
        CSA2(twosA, bit[0], x[12], x[13]);
        CSA2(twosB, bit[0], x[14], x[15]);
        CSA2(foursB, bit[1], twosA, twosB);
        CSA2(eightsB, bit[2], foursA, foursB);
        CSA2(sixteens, bit[3], eightsA, eightsB);
        for (int w = 4; w < 7; w++) {
            __m256i nb = _mm256_xor_si256(bit[w], sixteens);
            sixteens = _mm256_and_si256(bit[w], sixteens);
            bit[w] = nb;
        }
    }
#undef CSA2
    for (int w = 0; w < 6; w++) P[64 + w] = bit[w];
    P[70] = _mm256_xor_si256(bit[6], _mm256_set1_epi64x(-1));
    P[71] = bit[6];
    P[72] = zero;
}
#undef SL2_PASS
#undef SWAP2

/* The seven bits of S + K2, as sl_sum (the same tree, off holding offsets of 32-byte planes). */
__attribute__((target("avx2,bmi2,popcnt"), always_inline)) static inline void sl2_sum(
    const __m256i *P, const uint16_t *o, const __m256i *kb, __m256i *v) {
#define X(i) _mm256_load_si256((const __m256i *)((const char *)P + o[i]))
    FA2(t0, t1, X(0), X(1), X(10));
    FA2(t2, t3, X(11), X(12), X(13));
    FA2(t4, t5, X(14), X(15), X(16));
    FA2(t6, t7, X(17), X(18), X(19));
    FA2(t8, t9, X(2), X(20), X(21));
    FA2(t10, t11, X(22), X(23), X(24));
    FA2(t12, t13, X(25), X(26), X(27));
    FA2(t14, t15, X(28), X(29), X(3));
    FA2(t16, t17, X(30), X(31), X(4));
    FA2(t18, t19, X(5), X(6), X(7));
    FA2(t20, t21, X(8), X(9), kb[0]);
#undef X
    FA2(t22, t23, t0, t10, t12);
    FA2(t24, t25, t14, t16, t18);
    FA2(t26, t27, t2, t20, t4);
    FA2(t28, t29, t6, t8, t22);
    FA2(u0, t31, t24, t26, t28);
    v[0] = u0;
    FA2(t32, t33, kb[1], t1, t11);
    FA2(t34, t35, t13, t15, t17);
    FA2(t36, t37, t19, t21, t3);
    FA2(t38, t39, t5, t7, t9);
    FA2(t40, t41, t23, t25, t27);
    FA2(t42, t43, t32, t34, t36);
    FA2(t44, t45, t38, t29, t40);
    FA2(u1, t47, t42, t31, t44);
    v[1] = u1;
    FA2(t48, t49, kb[2], t33, t35);
    FA2(t50, t51, t37, t39, t41);
    FA2(t52, t53, t43, t48, t45);
    FA2(u2, t55, t50, t47, t52);
    v[2] = u2;
    FA2(t56, t57, kb[3], t49, t51);
    FA2(u3, t59, t53, t56, t55);
    v[3] = u3;
    FA2(u4, t61, kb[4], t57, t59);
    v[4] = u4;
    v[5] = _mm256_xor_si256(kb[5], t61);
    v[6] = _mm256_xor_si256(kb[6], _mm256_and_si256(kb[5], t61));
}

/* One query over nsb transposed sub-blocks, as sl_run. */
AVX2_ATTR static void sl2_run(state_t *s, const slq_t *a, const __m256i *P0, int nsb,
                              const uint64_t *c, uint64_t base) {
    __m256i kb[7], w0 = _mm256_setzero_si256();
    for (int i = 0; i < 7; i++) kb[i] = w0;
    int lim = -1;
    uint16_t o16[32]; /* byte offsets of the 32 selected 32-byte planes, one load each */
    for (int i = 0; i < 32; i++)
        o16[i] = (uint16_t)(((a->off[i >> 2] >> (16 * (i & 3))) & 0xFFFF) >> 1);
    const uint16_t *off = o16;
    for (int sb = 0; sb < nsb; sb++) {
        if (s->lim != lim) {
            lim = s->lim;
            int K = a->zeros ? a->pq - lim + 64 : 64 - a->pq + lim;
            for (int i = 0; i < 7; i++)
                kb[i] = _mm256_set1_epi64x(-(long long)((K >> (i + 1)) & 1));
            w0 = _mm256_set1_epi64x(-(long long)(K & 1));
        }
        const __m256i *P = P0 + SLOTS * sb;
        __asm__("" : "+r"(off));
        __m256i v[7];
        sl2_sum(P, off, kb, v);
        __m256i lt;
        if (a->zeros) {
            lt = LT2(w0, P[64], _mm256_setzero_si256());
            for (int i = 0; i < 7; i++) lt = LT2(v[i], P[65 + i], lt);
        } else {
            lt = LT2(P[64], w0, _mm256_setzero_si256());
            for (int i = 0; i < 7; i++) lt = LT2(P[65 + i], v[i], lt);
        }
        if (__builtin_expect(_mm256_testz_si256(lt, lt), 1)) continue;
        uint64_t w[4];
        _mm256_storeu_si256((__m256i *)w, lt);
        uint64_t any = w[0] | w[1] | w[2] | w[3];
        const uint64_t *cs = c + (size_t)sb * SB2;
        while (any) {
            unsigned r = (unsigned)__builtin_ctzll(any);
            any &= any - 1;
            for (unsigned l = 0; l < 4; l++) {
                if (!((w[l] >> r) & 1)) continue;
                unsigned pos = 4 * r + l;
                int d = __builtin_popcountll(cs[pos] ^ s->q);
                if (d < s->lim) accept(s, (uint64_t)d, base + (uint64_t)sb * SB2 + pos);
            }
        }
    }
}
#undef FA2
#undef LT2
#endif

typedef void (*scan_fn)(state_t *, const uint64_t *, size_t, uint64_t);
typedef void (*group_fn)(state_t **, int, const uint64_t *, size_t, uint64_t,
                         const uint64_t *);
typedef size_t (*within_fn)(const uint64_t *, size_t, uint64_t, int, uint64_t **, size_t *,
                            size_t);
static scan_fn SCAN = scan_generic;
static group_fn GROUP_RUN = scan_generic_group;
static within_fn WITHIN = scan_generic_within;
static const char *KERNEL = "generic";
/* with the AVX-512 or AVX2 kernel chosen, batches of at least this many queries run the
 * bit-sliced one: where it overtakes the popcount group on each (bench/README.md); 0 in
 * SLICED_MIN means each kernel's own, another value is set by sliced_min() */
#define SLICED_MIN_AVX512 18
#define SLICED_MIN_AVX2 22
static size_t SLICED_MIN = 0;

#if TX_X86
static int has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
           __builtin_cpu_supports("popcnt");
}
#endif

static void choose_kernel(void) {
#if TX_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vpopcntdq") &&
        __builtin_cpu_supports("popcnt")) {
        SCAN = scan_avx512;
        GROUP_RUN = scan_avx512_group;
        WITHIN = scan_avx512_within;
        KERNEL = "avx512-vpopcntdq";
    } else if (has_avx2()) {
        SCAN = scan_avx2;
        GROUP_RUN = scan_avx2_group;
        WITHIN = scan_avx2_within;
        KERNEL = "avx2";
    } else if (__builtin_cpu_supports("popcnt")) {
        SCAN = scan_popcnt;
        GROUP_RUN = scan_popcnt_group;
        WITHIN = scan_popcnt_within;
        KERNEL = "popcnt";
    }
#endif
}

/* ---- buffers ----------------------------------------------------------------------------- */

static int get_u64(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != 8 || view->len % 8 != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous array of 8-byte integers", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int get_u32(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != 4 || view->len % 4 != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous array of 4-byte integers", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* keys = sort of packed keys by value (distance, position) */
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* ---- topk(codes, queries, k, out) -> filled ------------------------------------------- */

static PyObject *py_topk(PyObject *self, PyObject *args) {
    PyObject *codes_obj, *queries_obj, *out_obj;
    unsigned long long k;
    if (!PyArg_ParseTuple(args, "OOKO", &codes_obj, &queries_obj, &k, &out_obj)) return NULL;
    Py_buffer cb, qb, ob;
    if (get_u64(codes_obj, &cb, 0, "codes") < 0) return NULL;
    if (get_u64(queries_obj, &qb, 0, "queries") < 0) {
        PyBuffer_Release(&cb);
        return NULL;
    }
    if (get_u64(out_obj, &ob, 1, "out") < 0) {
        PyBuffer_Release(&cb);
        PyBuffer_Release(&qb);
        return NULL;
    }
    const uint64_t *c = (const uint64_t *)cb.buf;
    const uint64_t *qs = (const uint64_t *)qb.buf;
    uint64_t *out = (uint64_t *)ob.buf;
    size_t n = (size_t)(cb.len / 8), m = (size_t)(qb.len / 8);
    uint64_t kk = k < n ? k : n;
    PyObject *result = NULL;
    state_t *st = NULL;
    if (k == 0 || (size_t)(ob.len / 8) < m * k) {
        PyErr_SetString(PyExc_ValueError, "k must be >= 1 and out must hold len(queries)*k keys");
        goto done;
    }
    if ((uint64_t)n > POS_MASK) {
        PyErr_SetString(PyExc_ValueError, "too many codes for the kernel");
        goto done;
    }
    st = (state_t *)calloc(m ? m : 1, sizeof(state_t));
    if (!st) {
        PyErr_NoMemory();
        goto done;
    }
    int ok = 1;
    uint64_t filled = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (size_t j = 0; j < m; j++) {
        if (!state_init(&st[j], qs[j], k, n)) ok = 0;
    }
    if (ok && n) {
        if (m == 1) {
            SCAN(&st[0], c, n, 0);
        } else {
            /* every query of the batch passes over one block of the codes (in L1/L2) before
             * the next block is read: the array is read from memory once per batch */
            group_fn run = GROUP_RUN;
            /* queries in order of their bound, so that a group's largest bound (its filter) is
             * close to each member's own: with clustered codes some bounds fall to 0-2 while
             * others stay above 10. Re-sorted after every block (insertion sort: the order
             * rarely changes); results do not depend on the grouping. */
            state_t **order = (state_t **)malloc(m * sizeof(state_t *));
#if TX_X86
            int avx2 = GROUP_RUN == scan_avx2_group;
            size_t smin = SLICED_MIN ? SLICED_MIN : avx2 ? SLICED_MIN_AVX2 : SLICED_MIN_AVX512;
            int sliced = (GROUP_RUN == scan_avx512_group || avx2) && m >= smin;
            size_t sb = avx2 ? SB2 : SB; /* codes per sub-block */
            slq_t *aux = sliced ? (slq_t *)malloc(m * sizeof(slq_t)) : NULL;
            __m512i *planes = NULL;
            if (sliced && aux &&
                posix_memalign((void **)&planes, 64, SB_PER_BLOCK * SLOTS * sizeof(__m512i)))
                planes = NULL;
            if (sliced && (!aux || !planes)) ok = 0;
            if (sliced && ok)
                for (size_t j = 0; j < m; j++) slq_init(&aux[j], st[j].q);
#endif
            if (!order || !ok) {
                ok = 0;
            } else {
                for (size_t j = 0; j < m; j++) order[j] = &st[j];
                for (size_t b = 0; b < n; b += BLOCK) {
                    size_t len = n - b < BLOCK ? n - b : BLOCK;
                    size_t done = 0; /* codes of this block already run by the sliced kernel */
#if TX_X86
                    if (sliced) {
                        int nsb = (int)(len / sb);
                        for (int t = 0; t < nsb; t++) {
                            if (avx2)
                                sl2_transpose(c + b + (size_t)t * SB2,
                                              (__m256i *)planes + t * SLOTS);
                            else
                                sl_transpose(c + b + (size_t)t * SB, planes + t * SLOTS);
                        }
                        /* prefetch the next block while the queries run, a share per query */
                        size_t rest = b + BLOCK < n ? n - b - BLOCK : 0;
                        size_t lines = (rest < BLOCK ? rest : BLOCK) / 8;
                        for (size_t j = 0; j < m; j++) {
                            for (size_t x = j * lines / m; x < (j + 1) * lines / m; x++)
                                _mm_prefetch((const char *)(c + b + BLOCK + 8 * x), _MM_HINT_T0);
                            if (avx2)
                                sl2_run(&st[j], &aux[j], (const __m256i *)planes, nsb, c + b, b);
                            else
                                sl_run(&st[j], &aux[j], planes, nsb, c + b, b);
                        }
                        done = (size_t)nsb * sb;
                        if (done == len) continue;
                    }
#endif
                    for (size_t j = 0; j < m; j += GROUP) {
                        int g = m - j < GROUP ? (int)(m - j) : GROUP;
                        /* the first group prefetches the next block, a cache line per 8 codes */
                        const uint64_t *next =
                            j == 0 && b + 2 * BLOCK <= n ? c + b + BLOCK : NULL;
                        run(order + j, g, c + b + done, len - done, b + done, done ? NULL : next);
                    }
                    for (size_t j = 1; j < m; j++) {
                        state_t *x = order[j];
                        size_t t = j;
                        for (; t > 0 && order[t - 1]->lim > x->lim; t--) order[t] = order[t - 1];
                        order[t] = x;
                    }
                }
            }
            free(order);
#if TX_X86
            free(aux);
            free(planes);
#endif
        }
    }
    for (size_t j = 0; j < m; j++) {
        if (st[j].buf) {
            if (ok)
                filled = state_finish(&st[j], out + j * k);
            else
                free(st[j].buf);
        }
    }
    Py_END_ALLOW_THREADS;
    if (!ok) {
        PyErr_NoMemory();
        goto done;
    }
    (void)kk;
    result = PyLong_FromUnsignedLongLong(filled);
done:
    free(st);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&ob);
    return result;
}

/* counting sort of packed keys by distance, stable (keeps position order within a distance) */
static void sort_by_distance(uint64_t *keys, size_t len, uint64_t *tmp) {
    size_t start[66] = {0};
    for (size_t i = 0; i < len; i++) start[(keys[i] >> POS_BITS) + 1]++;
    for (int d = 1; d <= 65; d++) start[d] += start[d - 1];
    for (size_t i = 0; i < len; i++) tmp[start[keys[i] >> POS_BITS]++] = keys[i];
    memcpy(keys, tmp, len * sizeof(uint64_t));
}

/* ---- within(codes, q, r) -> bytes of packed keys sorted by (distance, position) --------- */

static PyObject *py_within(PyObject *self, PyObject *args) {
    PyObject *codes_obj;
    unsigned long long q;
    int r;
    if (!PyArg_ParseTuple(args, "OKi", &codes_obj, &q, &r)) return NULL;
    Py_buffer cb;
    if (get_u64(codes_obj, &cb, 0, "codes") < 0) return NULL;
    size_t n = (size_t)(cb.len / 8);
    size_t cap = 1024, len = 0;
    uint64_t *buf = (uint64_t *)malloc(cap * sizeof(uint64_t));
    uint64_t *tmp = NULL;
    int ok = buf != NULL;
    Py_BEGIN_ALLOW_THREADS;
    if (ok) {
        len = WITHIN((const uint64_t *)cb.buf, n, (uint64_t)q, r, &buf, &cap, 0);
        if (len == (size_t)-1) ok = 0;
    }
    if (ok && len) {
        tmp = (uint64_t *)malloc(len * sizeof(uint64_t));
        if (tmp)
            sort_by_distance(buf, len, tmp);
        else
            ok = 0;
    }
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&cb);
    PyObject *res = ok ? PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)(len * 8))
                       : PyErr_NoMemory();
    free(buf);
    free(tmp);
    return res;
}

/* ---- multi-index hashing ----------------------------------------------------------------- */

#define MIH_TABLES 3
static const int MIH_SHIFT[MIH_TABLES] = {0, 21, 42};
static const int MIH_WIDTH[MIH_TABLES] = {21, 21, 22};

static size_t mih_offsets_len(void) {
    size_t total = 0;
    for (int t = 0; t < MIH_TABLES; t++) total += ((size_t)1 << MIH_WIDTH[t]) + 1;
    return total;
}

static inline uint32_t sub_key(uint64_t x, int t) {
    return (uint32_t)((x >> MIH_SHIFT[t]) & ((((uint64_t)1) << MIH_WIDTH[t]) - 1));
}

/* mih_build(codes, positions[3n] uint32, offsets[sum(2^w+1)] uint32) */
static PyObject *py_mih_build(PyObject *self, PyObject *args) {
    PyObject *codes_obj, *pos_obj, *off_obj;
    if (!PyArg_ParseTuple(args, "OOO", &codes_obj, &pos_obj, &off_obj)) return NULL;
    Py_buffer cb, pb, ob;
    if (get_u64(codes_obj, &cb, 0, "codes") < 0) return NULL;
    if (get_u32(pos_obj, &pb, 1, "positions") < 0) {
        PyBuffer_Release(&cb);
        return NULL;
    }
    if (get_u32(off_obj, &ob, 1, "offsets") < 0) {
        PyBuffer_Release(&cb);
        PyBuffer_Release(&pb);
        return NULL;
    }
    size_t n = (size_t)(cb.len / 8);
    PyObject *res = NULL;
    if ((size_t)(pb.len / 4) != MIH_TABLES * n || (size_t)(ob.len / 4) != mih_offsets_len() ||
        n >= 0xFFFFFFFFu) {
        PyErr_SetString(PyExc_ValueError, "bad multi-index table sizes");
        goto done;
    }
    const uint64_t *c = (const uint64_t *)cb.buf;
    uint32_t *pos = (uint32_t *)pb.buf;
    uint32_t *off = (uint32_t *)ob.buf;
    Py_BEGIN_ALLOW_THREADS;
    for (int t = 0; t < MIH_TABLES; t++) {
        size_t buckets = (size_t)1 << MIH_WIDTH[t];
        memset(off, 0, (buckets + 1) * sizeof(uint32_t));
        for (size_t i = 0; i < n; i++) off[sub_key(c[i], t) + 1]++;
        for (size_t b = 0; b < buckets; b++) off[b + 1] += off[b];
        /* fill using off[b] as a cursor, then shift back */
        for (size_t i = 0; i < n; i++) pos[off[sub_key(c[i], t)]++] = (uint32_t)i;
        for (size_t b = buckets; b > 0; b--) off[b] = off[b - 1];
        off[0] = 0;
        pos += n;
        off += buckets + 1;
    }
    Py_END_ALLOW_THREADS;
    res = Py_None;
    Py_INCREF(res);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&ob);
    return res;
}

typedef struct {
    const uint64_t *c;
    const uint32_t *pos;
    const uint32_t *off;
    uint64_t q;
    int r;
    int t;
    int radius[MIH_TABLES];
    uint64_t *buf;
    size_t len, cap;
    int oom;
} mih_query_t;

static inline int sub_dist(uint64_t x, int t) {
    return popcount_generic(x & ((((uint64_t)1) << MIH_WIDTH[t]) - 1) << MIH_SHIFT[t]);
}

static void mih_bucket(mih_query_t *mq, uint32_t key) {
    const uint32_t *p = mq->pos + mq->off[key];
    const uint32_t *e = mq->pos + mq->off[key + 1];
    for (; p < e; p++) {
        uint64_t x = mq->c[*p] ^ mq->q;
        int d = popcount_generic(x);
        if (d > mq->r) continue;
        /* report a code from the first table whose probe radius covers it, only */
        int dup = 0;
        for (int u = 0; u < mq->t; u++) {
            if (sub_dist(x, u) <= mq->radius[u]) {
                dup = 1;
                break;
            }
        }
        if (dup) continue;
        if (mq->len == mq->cap) {
            size_t nc = mq->cap * 2 + 256;
            uint64_t *nb = (uint64_t *)realloc(mq->buf, nc * sizeof(uint64_t));
            if (!nb) {
                mq->oom = 1;
                return;
            }
            mq->buf = nb;
            mq->cap = nc;
        }
        mq->buf[mq->len++] = ((uint64_t)d << POS_BITS) | *p;
    }
}

/* visit every key within `left` more bit flips of key, flipping bits >= from */
static void mih_probe(mih_query_t *mq, uint32_t key, int from, int left) {
    mih_bucket(mq, key);
    if (left == 0) return;
    for (int b = from; b < MIH_WIDTH[mq->t]; b++) mih_probe(mq, key ^ (1u << b), b + 1, left - 1);
}

/* mih_within(codes, positions, offsets, q, r) -> bytes of packed keys, sorted */
static PyObject *py_mih_within(PyObject *self, PyObject *args) {
    PyObject *codes_obj, *pos_obj, *off_obj;
    unsigned long long q;
    int r;
    if (!PyArg_ParseTuple(args, "OOOKi", &codes_obj, &pos_obj, &off_obj, &q, &r)) return NULL;
    Py_buffer cb, pb, ob;
    if (get_u64(codes_obj, &cb, 0, "codes") < 0) return NULL;
    if (get_u32(pos_obj, &pb, 0, "positions") < 0) {
        PyBuffer_Release(&cb);
        return NULL;
    }
    if (get_u32(off_obj, &ob, 0, "offsets") < 0) {
        PyBuffer_Release(&cb);
        PyBuffer_Release(&pb);
        return NULL;
    }
    size_t n = (size_t)(cb.len / 8);
    PyObject *res = NULL;
    if ((size_t)(pb.len / 4) != MIH_TABLES * n || (size_t)(ob.len / 4) != mih_offsets_len() ||
        r < 0 || r > 64) {
        PyErr_SetString(PyExc_ValueError, "bad multi-index table sizes or radius");
        goto done;
    }
    mih_query_t mq;
    memset(&mq, 0, sizeof(mq));
    mq.c = (const uint64_t *)cb.buf;
    mq.q = (uint64_t)q;
    mq.r = r;
    /* r = 3s + a: some table among the first a+1 is within s, or one of the rest within s-1 */
    int s = r / MIH_TABLES, a = r % MIH_TABLES;
    for (int t = 0; t < MIH_TABLES; t++) mq.radius[t] = t <= a ? s : s - 1;
    Py_BEGIN_ALLOW_THREADS;
    const uint32_t *pos = (const uint32_t *)pb.buf;
    const uint32_t *off = (const uint32_t *)ob.buf;
    for (int t = 0; t < MIH_TABLES && !mq.oom; t++) {
        mq.t = t;
        mq.pos = pos;
        mq.off = off;
        if (mq.radius[t] >= 0) mih_probe(&mq, sub_key(mq.q, t), 0, mq.radius[t]);
        pos += n;
        off += ((size_t)1 << MIH_WIDTH[t]) + 1;
    }
    if (!mq.oom && mq.len) qsort(mq.buf, mq.len, sizeof(uint64_t), cmp_u64);
    Py_END_ALLOW_THREADS;
    res = mq.oom ? PyErr_NoMemory()
                 : PyBytes_FromStringAndSize((const char *)mq.buf, (Py_ssize_t)(mq.len * 8));
    free(mq.buf);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&ob);
    return res;
}

static PyObject *py_kernel(PyObject *self, PyObject *args) { return PyUnicode_FromString(KERNEL); }

/* use_kernel(name): switch to a named kernel ("best" re-detects); for tests and benchmarks */
static PyObject *py_use_kernel(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    if (strcmp(name, "best") == 0) {
        choose_kernel();
    } else if (strcmp(name, "generic") == 0) {
        SCAN = scan_generic;
        GROUP_RUN = scan_generic_group;
        WITHIN = scan_generic_within;
        KERNEL = "generic";
#if TX_X86
    } else if (strcmp(name, "popcnt") == 0 && __builtin_cpu_supports("popcnt")) {
        SCAN = scan_popcnt;
        GROUP_RUN = scan_popcnt_group;
        WITHIN = scan_popcnt_within;
        KERNEL = "popcnt";
    } else if (strcmp(name, "avx2") == 0 && has_avx2()) {
        SCAN = scan_avx2;
        GROUP_RUN = scan_avx2_group;
        WITHIN = scan_avx2_within;
        KERNEL = "avx2";
    } else if (strcmp(name, "avx512-vpopcntdq") == 0) {
        choose_kernel();
        if (SCAN != scan_avx512) {
            PyErr_SetString(PyExc_ValueError, "this CPU lacks AVX-512 VPOPCNTDQ");
            return NULL;
        }
#endif
    } else {
        PyErr_Format(PyExc_ValueError, "unknown or unsupported kernel %s", name);
        return NULL;
    }
    return PyUnicode_FromString(KERNEL);
}

/* Set one of the kernel's size thresholds from args (a single integer >= lowest) and return
 * its previous value; for tests and benchmarks (a huge value turns the path off). */
static PyObject *set_threshold(PyObject *args, size_t *threshold, Py_ssize_t lowest,
                               const char *name) {
    Py_ssize_t v;
    if (!PyArg_ParseTuple(args, "n", &v)) return NULL;
    if (v < lowest) {
        PyErr_Format(PyExc_ValueError, "%s must be >= %zd", name, lowest);
        return NULL;
    }
    size_t prev = *threshold;
    *threshold = (size_t)v;
    return PyLong_FromSize_t(prev);
}

/* streams_min(n) -> previous: a single AVX-512 query over at least n codes scans several parts
 * of them at once */
static PyObject *py_streams_min(PyObject *self, PyObject *args) {
    return set_threshold(args, &STREAMS_MIN, 1, "streams_min");
}

/* sliced_min(n) -> previous: batches of >= n queries use the bit-sliced kernel where the
 * AVX-512 or AVX2 kernel is chosen; 0: each kernel's own threshold */
static PyObject *py_sliced_min(PyObject *self, PyObject *args) {
    Py_ssize_t v;
    if (!PyArg_ParseTuple(args, "n", &v)) return NULL;
    if (v == 0) {
        size_t prev = SLICED_MIN;
        SLICED_MIN = 0;
        return PyLong_FromSize_t(prev);
    }
    return set_threshold(args, &SLICED_MIN, 2, "sliced_min");
}

static PyObject *py_mih_layout(PyObject *self, PyObject *args) {
    return Py_BuildValue("(i(iii)(iii)n)", MIH_TABLES, MIH_SHIFT[0], MIH_SHIFT[1], MIH_SHIFT[2],
                         MIH_WIDTH[0], MIH_WIDTH[1], MIH_WIDTH[2], (Py_ssize_t)mih_offsets_len());
}

static PyMethodDef methods[] = {
    {"topk", py_topk, METH_VARARGS,
     "topk(codes, queries, k, out) -> n: packed (distance << 56 | position) keys of the k "
     "nearest codes per query, row j of out (len(queries) x k), sorted; returns min(k, n)."},
    {"within", py_within, METH_VARARGS,
     "within(codes, q, r) -> bytes of sorted packed keys of every code within distance r."},
    {"mih_build", py_mih_build, METH_VARARGS,
     "mih_build(codes, positions, offsets): fill the multi-index tables."},
    {"mih_within", py_mih_within, METH_VARARGS,
     "mih_within(codes, positions, offsets, q, r) -> bytes of sorted packed keys."},
    {"kernel", py_kernel, METH_NOARGS, "The instruction set chosen for this CPU."},
    {"use_kernel", py_use_kernel, METH_VARARGS,
     "use_kernel(name): use the generic, popcnt, avx2 or avx512-vpopcntdq kernel, or the best "
     "one."},
    {"sliced_min", py_sliced_min, METH_VARARGS,
     "sliced_min(n) -> previous n: batches of at least n queries use the bit-sliced kernel "
     "(0: each kernel's own threshold, 18 with AVX-512 and 22 with AVX2)."},
    {"streams_min", py_streams_min, METH_VARARGS,
     "streams_min(n) -> previous n: single queries over at least n codes scan parallel streams."},
    {"mih_layout", py_mih_layout, METH_NOARGS,
     "(tables, shifts, widths, offsets length) of the multi-index tables."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hamming",
    "Fused Hamming-distance kernels for textrec.content.hamming.", -1, methods};

PyMODINIT_FUNC PyInit__hamming(void) {
    choose_kernel();
    return PyModule_Create(&module);
}
