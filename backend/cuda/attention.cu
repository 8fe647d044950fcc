// attention.cu — the paged KV cache and causal attention over it.
//
// Cache layout (one layer's slab; the backend passes the layer's base):
//   keys   [block][kvHead][slot][ldk]   (ldk = KeyDim)
//   values [block][kvHead][slot][ldv]   (ldv = ValueDim), or, for a
//          values-in-keys (MLA latent) cache, the keys themselves with
//          ldv = KeyDim: a value is the first ValueDim numbers of its key.
//
// Per-row metadata (int32, uploaded by the host each call):
//   rowN[r]    number of positions row r attends to (its position + 1)
//   rowTab[r]  offset of its sequence's block table in `tables`
//   stBlk[r]   cache block that receives row r's key/value (−1: none)
//   stSlot[r]  slot within that block

// The cache's numbers (KVSpec.DType): float32 (KV_F32), or IEEE binary16
// (KV_F16) or bfloat16 (KV_BF16) kept as u16, rounded to nearest-even on
// the way in as the CPU's cache rounds them (dtype.F32ToF16, F32ToBF16).
// kv<KV>::t is the stored type, put rounds a number into it, get widens
// one back (exactly). A row's own new key and value, which the decode
// kernels read from their inputs rather than from the cache, go through
// kv_round first: every position is attended to as stored, as on the CPU
// (which stores a batch's keys before it attends).
#define KV_F32 0
#define KV_F16 1
#define KV_BF16 2
template <int KV> struct kv;
template <> struct kv<KV_F32> {
    typedef float t;
    static __device__ __forceinline__ float get(float v) { return v; }
    static __device__ __forceinline__ float put(float v) { return v; }
};
// (put: the low half of qmm.cu's pack_f16x2 / pack_bf16x2, cvt.rn)
template <> struct kv<KV_F16> {
    typedef u16 t;
    static __device__ __forceinline__ float get(u16 h) { return f16_to_f32(h); }
    static __device__ __forceinline__ u16 put(float v) { return (u16)pack_f16x2(v, 0.f); }
};
template <> struct kv<KV_BF16> {
    typedef u16 t;
    static __device__ __forceinline__ float get(u16 h) { return bf16_to_f32(h); }
    static __device__ __forceinline__ u16 put(float v) { return (u16)pack_bf16x2(v, 0.f); }
};
template <int KV> __device__ __forceinline__ float kv_round(float v) { return kv<KV>::get(kv<KV>::put(v)); }

// kv_loadn widens the N (1, 2 or 4) consecutive cache numbers at p into
// v with one load of their 4, 8 or 16 bytes (p aligned to them); CG loads
// through L2 (ld.global.cg), for the reads a kernel makes before its
// pdl_wait (common.cu).
template <int KV, int N, bool CG = false>
__device__ __forceinline__ void kv_loadn(const typename kv<KV>::t* p, float (&v)[N]) {
    constexpr int W = N * (int)sizeof(typename kv<KV>::t) / 4;  // 32-bit words
    static_assert(W == 1 || W == 2 || W == 4, "kv_loadn: 4, 8 or 16 bytes");
    u32 w[W];
    if constexpr (CG && W == 4) {
        asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3]) : "l"(p));
    } else if constexpr (CG && W == 2) {
        asm volatile("ld.global.cg.v2.u32 {%0, %1}, [%2];" : "=r"(w[0]), "=r"(w[1]) : "l"(p));
    } else if constexpr (CG) {
        asm volatile("ld.global.cg.u32 %0, [%1];" : "=r"(w[0]) : "l"(p));
    } else if constexpr (W == 4) {
        const uint4 u = *(const uint4*)p;
        w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
    } else if constexpr (W == 2) {
        const uint2 u = *(const uint2*)p;
        w[0] = u.x, w[1] = u.y;
    } else {
        w[0] = *(const u32*)p;
    }
#pragma unroll
    for (int e = 0; e < N; e++) {
        if constexpr (KV == KV_F32)
            v[e] = __uint_as_float(w[e]);
        else
            v[e] = kv<KV>::get((u16)(w[e >> 1] >> (16 * (e & 1))));
    }
}

// Store each row's keys and values in the cache. One block per row,
// threads over kvHeads·dk (then kvHeads·dv) values.
template <int KV>
__device__ __forceinline__ void kv_store(typename kv<KV>::t* __restrict__ kc, typename kv<KV>::t* __restrict__ vc,
                                         const float* __restrict__ k, const float* __restrict__ v,
                                         const int* __restrict__ stBlk, const int* __restrict__ stSlot, int kvHeads, int dk,
                                         int dv, int bs) {
    const int r = blockIdx.x, blk = stBlk[r], slot = stSlot[r];
    if (blk < 0) return;
    for (int i = threadIdx.x; i < kvHeads * dk; i += blockDim.x) {
        int h = i / dk, d = i % dk;
        kc[(((size_t)blk * kvHeads + h) * bs + slot) * dk + d] = kv<KV>::put(k[(size_t)r * kvHeads * dk + i]);
    }
    if (v == nullptr) return;
    for (int i = threadIdx.x; i < kvHeads * dv; i += blockDim.x) {
        int h = i / dv, d = i % dv;
        vc[(((size_t)blk * kvHeads + h) * bs + slot) * dv + d] = kv<KV>::put(v[(size_t)r * kvHeads * dv + i]);
    }
}
#define KV_STORE(NAME, KV)                                                                                           \
    MARLIN_KERNEL void NAME(kv<KV>::t* kc, kv<KV>::t* vc, const float* k, const float* v, const int* stBlk,          \
                            const int* stSlot, int kvHeads, int dk, int dv, int bs) {                                \
        kv_store<KV>(kc, vc, k, v, stBlk, stSlot, kvHeads, dk, dv, bs);                                              \
    }
KV_STORE(kv_store, KV_F32)
KV_STORE(kv_store_f16, KV_F16)
KV_STORE(kv_store_bf16, KV_BF16)

#define ATT_WARPS 4

// Causal attention of one query head of one row: grid (rows, heads), 128
// threads (ATT_WARPS warps). Query head h reads KV head h / (heads/kvHeads).
//
// Warp w takes positions t = w, w+4, w+8, … < n. For each, the warp
// computes the score q·k_t (lanes split the dk products, a shuffle sums
// them) times scale, and folds it into an online softmax: running max m,
// running sum l, and a running weighted sum of values acc[dv] (lanes split
// dv) rescaled by e^(m_old − m_new) when the maximum grows. At the end the
// four warps' (m, l, acc) are merged: out = Σ_w acc_w·e^(m_w−M) / Σ_w
// l_w·e^(m_w−M), M = max_w m_w.
//
// Shared memory (dynamic): q [dk], acc [ATT_WARPS][dv], m and l
// [ATT_WARPS] each.
template <int KV>
__device__ __forceinline__ void attention(float* __restrict__ out, const float* __restrict__ q,
                                          const typename kv<KV>::t* __restrict__ kc, const typename kv<KV>::t* __restrict__ vc,
                                          const int* __restrict__ rowN, const int* __restrict__ rowTab,
                                          const int* __restrict__ tables, int heads, int kvHeads, int dk, int dv, int ldv,
                                          int bs, float scale) {
    extern __shared__ float sm[];
    float* qs = sm;
    float* acc = sm + dk;
    float* ms = acc + ATT_WARPS * dv;
    float* ls = ms + ATT_WARPS;
    const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31;
    const int kh = h / (heads / kvHeads);
    const int n = rowN[r];
    const int* tab = tables + rowTab[r];

    const float* qr = q + ((size_t)r * heads + h) * dk;
    for (int i = tid; i < dk; i += 128) qs[i] = qr[i];
    for (int i = tid; i < ATT_WARPS * dv; i += 128) acc[i] = 0.f;
    __syncthreads();

    float* a = acc + warp * dv;
    float m = NEG_INF, l = 0.f;
    for (int t = warp; t < n; t += ATT_WARPS) {
        const size_t cell = ((size_t)tab[t / bs] * kvHeads + kh) * bs + (t % bs);
        const typename kv<KV>::t* kp = kc + cell * dk;
        float d = 0.f;
        for (int i = lane; i < dk; i += 32) d = fmaf(qs[i], kv<KV>::get(kp[i]), d);
        d = warp_sum(d);
        const float s = d * scale;
        const float mn = fmaxf(m, s);
        const float corr = expf(m - mn);  // 0 for the first position (m = −∞)
        const float p = expf(s - mn);
        l = l * corr + p;
        const typename kv<KV>::t* vp = vc + cell * ldv;
        for (int i = lane; i < dv; i += 32) a[i] = a[i] * corr + p * kv<KV>::get(vp[i]);
        m = mn;
    }
    if (lane == 0) {
        ms[warp] = m;
        ls[warp] = l;
    }
    __syncthreads();
    float M = ms[0];
    for (int w = 1; w < ATT_WARPS; w++) M = fmaxf(M, ms[w]);
    float L = 0.f, f[ATT_WARPS];
    for (int w = 0; w < ATT_WARPS; w++) {
        f[w] = ms[w] == NEG_INF ? 0.f : expf(ms[w] - M);  // warps that saw no position
        L += ls[w] * f[w];
    }
    const float inv = 1.0f / L;
    float* o = out + ((size_t)r * heads + h) * dv;
    for (int i = tid; i < dv; i += 128) {
        float s = 0.f;
        for (int w = 0; w < ATT_WARPS; w++) s += acc[w * dv + i] * f[w];
        o[i] = s * inv;
    }
}
#define ATTENTION(NAME, KV)                                                                                          \
    MARLIN_KERNEL void __launch_bounds__(128)                                                                \
        NAME(float* out, const float* q, const kv<KV>::t* kc, const kv<KV>::t* vc, const int* rowN, const int* rowTab, \
             const int* tables, int heads, int kvHeads, int dk, int dv, int ldv, int bs, float scale) {              \
        attention<KV>(out, q, kc, vc, rowN, rowTab, tables, heads, kvHeads, dk, dv, ldv, bs, scale);                 \
    }
ATTENTION(attention, KV_F32)
ATTENTION(attention_f16, KV_F16)
ATTENTION(attention_bf16, KV_BF16)

// Split-K attention (flash-decoding: attn_split, attn_mla) writes one
// record a (row, head, split) to ws, at ((r·heads + h)·P + p)·pitch: m (the
// split's running max of the scores), l (its Σ e^(s−m)), two unused
// floats, then acc[D] (Σ e^(s−m)·v), the record padded to
// split_pitch(D) = 4 + 4⌈D/4⌉ floats so that every acc is 16-byte aligned.
__host__ __device__ constexpr int split_pitch(int D) { return 4 + 4 * ((D + 3) / 4); }
#define SPLIT_PMAX 64  // splits merge_splits handles (two a lane)

// split_factors_of: one warp forms the factors of one head's P ≤
// SPLIT_PMAX splits (or warps), lane s holding split s's (m0, l0) and
// split s + 32's (m1, l1) (m = −∞, l = 0 past P): M = max_p m_p, f_p =
// e^(m_p − M) (0 for a split without positions, m = −∞) into f[p], L =
// Σ_p l_p·f_p into *L and, if asked, M into *Mo; shuffles make M and L.
__device__ __forceinline__ void split_factors_of(float m0, float l0, float m1, float l1, int P, int lane, float* f,
                                                 float* L, float* Mo = nullptr) {
    float mx = fmaxf(m0, m1);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float f0 = m0 == NEG_INF ? 0.f : expf(m0 - mx), f1 = m1 == NEG_INF ? 0.f : expf(m1 - mx);
    const float sum = warp_sum(l0 * f0 + l1 * f1);
    if (lane < P) f[lane] = f0;
    if (lane + 32 < P) f[lane + 32] = f1;
    if (lane == 0) {
        *L = sum;
        if (Mo != nullptr) *Mo = mx;
    }
}
// split_factors is split_factors_of for the split records at rec (pitch
// floats apart, in L2: ld_cg).
__device__ __forceinline__ void split_factors(const float* rec, int pitch, int P, int lane, float* f, float* L) {
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;
    if (lane < P) m0 = ld_cg(rec + (size_t)lane * pitch), l0 = ld_cg(rec + (size_t)lane * pitch + 1);
    if (lane + 32 < P) m1 = ld_cg(rec + (size_t)(lane + 32) * pitch), l1 = ld_cg(rec + (size_t)(lane + 32) * pitch + 1);
    split_factors_of(m0, l0, m1, l1, P, lane, f, L);
}

// merge_splits: the last block of a split attention merges the P ≤
// SPLIT_PMAX splits of heads h0 … h0+g−1 of row r into out[r, h, :D]:
//   out = Σ_p acc_p·f_p / L,  f_p = e^(m_p − M),  M = max_p m_p,
//   L = Σ_p l_p·f_p           (a split without positions: m = −∞, f = 0).
// Every load is independent of the others, so they go out together (a
// serial chain of them once cost ~15 µs a layer): warp w forms the factors
// of heads w, w + warps, … (split_factors); then a thread takes 4 dims of a
// head and sums its splits
// sixteen float4 loads at a time, in split order. sm_f holds [g][SPLIT_PMAX]
// factors, sm_L [g]; ws must be 16-byte aligned.
__device__ __forceinline__ void merge_splits(float* __restrict__ out, const float* ws, int r, int heads, int h0, int g,
                                             int D, int P, float* sm_f, float* sm_L) {
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int pitch = split_pitch(D);
    for (int gi = warp; gi < g; gi += warps)
        split_factors(ws + ((size_t)r * heads + h0 + gi) * P * pitch, pitch, P, lane, sm_f + gi * SPLIT_PMAX, sm_L + gi);
    __syncthreads();
    const int D4 = (D + 3) / 4;
    for (int i = threadIdx.x; i < g * D4; i += blockDim.x) {
        const int gi = i / D4, d = 4 * (i - gi * D4);
        const float* rec = ws + ((size_t)r * heads + h0 + gi) * P * pitch + 4 + d;
        const float* f = sm_f + gi * SPLIT_PMAX;
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int s = 0; s < P; s += 16) {
            float4 v[16];
#pragma unroll
            for (int u = 0; u < 16; u++) v[u] = s + u < P ? ld_cg4(rec + (size_t)(s + u) * pitch) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < 16; u++) {
                const float fu = s + u < P ? f[s + u] : 0.f;
                a.x = fmaf(v[u].x, fu, a.x), a.y = fmaf(v[u].y, fu, a.y);
                a.z = fmaf(v[u].z, fu, a.z), a.w = fmaf(v[u].w, fu, a.w);
            }
        }
        const float L = sm_L[gi];
        float* o = out + ((size_t)r * heads + h0 + gi) * D + d;
        o[0] = a.x / L;
        if (d + 1 < D) o[1] = a.y / L;
        if (d + 2 < D) o[2] = a.z / L;
        if (d + 3 < D) o[3] = a.w / L;
    }
}

// attn_merge merges the records of a split attention in a launch of its
// own (attn_mla_tc's: one a (row, head, split), P ≤ SPLIT_PMAX) into
// out[r, h, :D], the sums of merge_splits:
//   out = Σ_p acc_p·f_p / L,  f_p = e^(m_p − M),  M = max_p m_p,  L = Σ_p l_p·f_p.
// Grid (heads, rows, ⌈D/128⌉), 4 warps: lane i of warp s loads dims
// 4(32z + i) … +3 of splits s, s + 4, … (≤ 16) at once, before the
// factors are known — one round trip to L2 for the records, overlapping
// warp 0's for every split's m and l (split_factors) —, then the four
// warps' sums are added in warp order. A head's records are spread over
// ⌈D/128⌉ blocks and the heads over the multiprocessors, instead of one
// block merging a head group's records while the others idle (attn_mla's
// tail).
MARLIN_KERNEL void __launch_bounds__(128) attn_merge(float* __restrict__ out, const float* __restrict__ ws, int heads, int D,
                                                      int P) {
    __shared__ float sm_f[SPLIT_PMAX], sm_L;
    __shared__ float4 sm_a[3][32];
    pdl_wait();
    pdl_trigger();
    const int h = blockIdx.x, r = blockIdx.y, pitch = split_pitch(D), D4 = (D + 3) / 4;
    const int sg = threadIdx.x >> 5, lane = threadIdx.x & 31, it = 32 * blockIdx.z + lane;
    const float* rec = ws + ((size_t)r * heads + h) * P * pitch;
    float4 v[16];
#pragma unroll
    for (int u = 0; u < 16; u++) {
        const int p = sg + 4 * u;
        v[u] = p < P && it < D4 ? ld_cg4(rec + (size_t)p * pitch + 4 + 4 * it) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (sg == 0) split_factors(rec, pitch, P, lane, sm_f, &sm_L);
    __syncthreads();
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int u = 0; u < 16; u++) {
        const int p = sg + 4 * u;
        const float f = p < P ? sm_f[p] : 0.f;
        a.x = fmaf(v[u].x, f, a.x), a.y = fmaf(v[u].y, f, a.y), a.z = fmaf(v[u].z, f, a.z), a.w = fmaf(v[u].w, f, a.w);
    }
    if (sg > 0) sm_a[sg - 1][lane] = a;
    __syncthreads();
    if (sg > 0 || it >= D4) return;
    add4(a, sm_a[0][lane]);
    add4(a, sm_a[1][lane]);
    add4(a, sm_a[2][lane]);
    const float L = sm_L;
    const int d = 4 * it;
    float* o = out + ((size_t)r * heads + h) * D + d;
    o[0] = a.x / L;
    if (d + 1 < D) o[1] = a.y / L;
    if (d + 2 < D) o[2] = a.z / L;
    if (d + 3 < D) o[3] = a.w / L;
}

// Rotary embedding of single dims, as the rope kernel (ops.cu) rotates
// them, with the same float operations: pair j of dims (j, j+half) or,
// interleaved, (2j, 2j+1), by the angle whose cos and sin are cosT[p + j],
// sinT[p + j] (p = position·half); dims past 2·half, or all of them
// without tables, stay as they are. rope_cs reads dim d's cos and sin
// (constant data: a kernel may read them before its wait), rope_with
// rotates dim d of the head at v with them (rot: there are tables).
__device__ __forceinline__ void rope_cs(int d, const float* cosT, const float* sinT, size_t p, int half, int inter, float& c,
                                        float& s) {
    c = s = 0.f;
    if (cosT == nullptr || d >= 2 * half) return;
    const int j = inter ? d >> 1 : d < half ? d : d - half;
    c = cosT[p + j], s = sinT[p + j];
}
__device__ __forceinline__ float rope_with(const float* v, int d, float c, float s, int half, int inter, bool rot) {
    if (!rot || d >= 2 * half) return v[d];
    const bool first = inter ? (d & 1) == 0 : d < half;
    const int o = inter ? d ^ 1 : first ? d + half : d - half;  // the other dim of the pair
    const float a = v[d], b = v[o];
    return first ? __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)) : __fadd_rn(__fmul_rn(a, c), __fmul_rn(b, s));
}

// Decode-friendly attention (split-K flash-decoding), for heads of D = 64
// or 128 key and value dims and G ≤ 8 query heads per KV head. Grid
// (kvHeads, rows, P), W warps (4, or 16 in the wide form; W·G·D floats of
// the warps' sums must fit the static shared memory). Block (kh, r,
// p) reads the positions of split p of row r — ⌈n/P⌉ of them, so the grid
// does not depend on the context length (a captured graph replays for any
// n) — once for all G query heads that share KV head kh: warp w takes
// positions w, w + W, …; per position a lane holds D/32 dims of the key
// and of the value (one 16- or 8-byte load each, coalesced: 512 bytes a
// warp for D = 128), the G scores come from warp shuffles, and each head
// keeps an online softmax (running max m, sum l, weighted value sum acc).
// The W warps are merged in shared memory. With P = 1 the block writes
// the output; with P > 1 it writes (m, l, acc) to ws and the last block of
// (r, kh) to finish (atomic counter, reset by it) merges the P splits in
// order: out = Σ_p acc_p·e^(m_p−M) / Σ_p l_p·e^(m_p−M), M = max_p m_p.
//
// Why two forms. A decode row's attention reads little (2 MB a layer for
// Llama-3-8B at 512 positions); its time is a chain of round trips after
// the wait. The narrow form (4 warps, P = 64 at one row) keeps each
// block's chain short, but its last block then merges 64 records a head
// in four rounds of loads. The wide form (16 warps, P = 16) gives a warp
// the same positions, merges four times as many warps in shared memory
// instead, and leaves 16 records a head: one round of loads in the merge.
// Each warp loads its first NPRE positions before the wait.
//
// Decode (every row the only new token of its sequence) stores the rows'
// keys and values here instead of in kv_store: with kn != nullptr each
// row's own position (its last, n − 1) is read from kn/vn [rows, kvHeads,
// D], and block (kh, r, 0) writes that head's key and value to the cache
// cell (stBlk[r], stSlot[r]); no other block of the launch reads that cell.
// With cosT != nullptr (decode only) q and the new keys are rotated here
// as the rope kernel would first (rope_cs, rope_with; the tables' values
// read before the wait), and the cache gets the rotated keys.
template <int D, int G, int KV, int W, int NPRE>
__device__ __forceinline__ void attn_split(float* __restrict__ out, const float* __restrict__ q,
                                           typename kv<KV>::t* __restrict__ kc, typename kv<KV>::t* __restrict__ vc,
                                           const int* __restrict__ rowN,
                                           const int* __restrict__ rowTab, const int* __restrict__ tables, int heads,
                                           int kvHeads, int ldv, int bs, float scale, float* ws, int* counters,
                                           const float* __restrict__ kn, const float* __restrict__ vn,
                                           const int* __restrict__ stBlk, const int* __restrict__ stSlot,
                                           const float* __restrict__ cosT, const float* __restrict__ sinT, int half,
                                           int inter) {
    constexpr int E = D / 32;
    __shared__ float sm_m[W][G], sm_l[W][G], sm_acc[W][G][D];
    const int kh = blockIdx.x, r = blockIdx.y, p = blockIdx.z, P = gridDim.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = heads / kvHeads;
    // Decode reads before its wait (pdl_wait's contract, common.cu): the
    // row metadata, which the host staged before the previous kernel
    // (graph.go's arena is uploaded at a segment's start; outside graphs a
    // copy precedes this launch), and the keys and values of each warp's
    // first NPRE positions — written by earlier steps (the row's own new
    // position n − 1, from kn/vn, is the only one this step writes) — all
    // through L2, so that their round trips overlap the previous kernel's
    // tail instead of following it (Llama-3-8B INT4 decode +1.7%, H100);
    // and the rotary tables' values at n − 1 (constant data).
    // Prefill (kn null: kv_store, the launch before, wrote the cache) reads
    // everything after the wait, with plain loads, as before.
    int n = 0;
    const int* tab = tables;
    if (kn != nullptr) n = ld_cg_i32(rowN + r), tab += ld_cg_i32(rowTab + r);
    int ch = (n + P - 1) / P, t0 = p * ch, t1 = min(n, t0 + ch);
    int tf = t0 + warp;  // the warp's first position
    float kf[NPRE][E], vf[NPRE][E];
    bool pre[NPRE];
#pragma unroll
    for (int j = 0; j < NPRE; j++) {
        const int t = tf + j * W;
        pre[j] = kn != nullptr && t < t1 && t != n - 1;
        if (pre[j]) {
            const size_t cell = ((size_t)ld_cg_i32(tab + t / bs) * kvHeads + kh) * bs + (t % bs);
            kv_loadn<KV, E, true>(kc + cell * D + lane * E, kf[j]);
            kv_loadn<KV, E, true>(vc + cell * ldv + lane * E, vf[j]);
        }
    }
    // the rotary tables' cos and sin at the row's position n − 1 (decode
    // only) for the thread's dim dq = threadIdx.x mod D: the block's 32·W
    // threads are a multiple of D, so a thread keeps that dim of q in the
    // staging loop below, and threads i < D (dq = i) rotate dim i of the
    // new key with the same values
    const bool rot = cosT != nullptr && kn != nullptr;
    const float* cosR = rot ? cosT : nullptr;
    const size_t rp = rot ? (size_t)(n - 1) * half : 0;
    static_assert((W * 32) % D == 0, "attn_split: a thread stages one dim of q");
    const int dq = threadIdx.x % D;
    float cq, sq;
    rope_cs(dq, cosR, sinT, rp, half, inter, cq, sq);
    // the cache cell of the row's new key and value (host-staged, as rowN)
    const int sb = kn != nullptr && p == 0 ? ld_cg_i32(stBlk + r) : -1;
    const int ss = sb >= 0 ? ld_cg_i32(stSlot + r) : 0;
    pdl_wait();
    trace_mark_after(1, pre[0] ? kf[0][0] + vf[0][0] : 0.f);  // the first position's key and value are here
    if (kn == nullptr) {
        n = rowN[r], tab += rowTab[r];
        ch = (n + P - 1) / P, t0 = p * ch, t1 = min(n, t0 + ch), tf = t0 + warp;
    }
    const size_t own = ((size_t)r * kvHeads + kh) * D;  // this row's new key/value of head kh in kn, vn
    static_assert(D <= W * 32, "attn_split: a thread a dim of the new key");
    const int i = threadIdx.x;
    if (sb >= 0 && i < D) {
        const size_t cell = ((size_t)sb * kvHeads + kh) * bs + ss;
        kc[cell * D + i] = kv<KV>::put(rope_with(kn + own, i, cq, sq, half, inter, rot));
        vc[cell * ldv + i] = kv<KV>::put(vn[own + i]);
    }

    // The new key of head kh, rotated, for the split that reads it, and
    // the g query heads of kh, rotated, staged in shared memory once a
    // block. (Each warp reading q itself took 32 scattered 4-byte loads a
    // lane — its E dims and their rotary partners, for each head — ~1M L2
    // requests a Llama-3-8B layer for 16 KB, which kept q ~3 µs after the
    // wait; staged, a thread loads one dim and its partner, coalesced.)
    __shared__ float sm_kn[D], sm_q[G][D];
    if (rot && t1 == n && i < D) sm_kn[i] = rope_with(kn + own, i, cq, sq, half, inter, true);
    const float* qr = q + ((size_t)r * heads + kh * g) * D;  // the g heads of kh, one after the other
    for (int j = threadIdx.x; j < g * D; j += W * 32) sm_q[j / D][dq] = rope_with(qr + (j / D) * D, dq, cq, sq, half, inter, rot);
    __syncthreads();

    float qv[G][E], m[G], l[G], acc[G][E];
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
        m[gi] = NEG_INF;
        l[gi] = 0.f;
#pragma unroll
        for (int e = 0; e < E; e++) {
            acc[gi][e] = 0.f;
            qv[gi][e] = gi < g ? sm_q[gi][lane * E + e] : 0.f;
        }
    }
    trace_mark_after(2, qv[0][0]);  // q is here
    // fold folds position t's key and value into the G heads' softmax
    // states
    auto fold = [&](const float (&kk)[E], const float (&vv)[E]) {
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            if (gi >= g) break;
            float d = 0.f;
#pragma unroll
            for (int e = 0; e < E; e++) d = fmaf(qv[gi][e], kk[e], d);
            d = warp_sum(d);
            const float s = d * scale;
            const float mn = fmaxf(m[gi], s);
            const float corr = expf(m[gi] - mn);
            const float pr = expf(s - mn);
            l[gi] = l[gi] * corr + pr;
#pragma unroll
            for (int e = 0; e < E; e++) acc[gi][e] = acc[gi][e] * corr + pr * vv[e];
            m[gi] = mn;
        }
    };
    // load reads position t: its key and value from the cache, or the
    // row's own new ones as the cache holds them
    auto load = [&](int t, float (&kk)[E], float (&vv)[E]) {
        if (kn != nullptr && t == n - 1) {
            const float* kp = (cosT != nullptr ? sm_kn : kn + own) + lane * E;
#pragma unroll
            for (int e = 0; e < E; e++) kk[e] = kv_round<KV>(kp[e]), vv[e] = kv_round<KV>(vn[own + lane * E + e]);
        } else {
            const size_t cell = ((size_t)tab[t / bs] * kvHeads + kh) * bs + (t % bs);
            kv_loadn<KV, E>(kc + cell * D + lane * E, kk);
            kv_loadn<KV, E>(vc + cell * ldv + lane * E, vv);
        }
    };
    // the warp's positions in order: the first NPRE (loaded before the
    // wait unless one is the row's own), then the rest
#pragma unroll
    for (int j = 0; j < NPRE; j++) {
        const int t = tf + j * W;
        if (t >= t1) break;
        if (pre[j]) {
            fold(kf[j], vf[j]);
        } else {
            float kk[E], vv[E];
            load(t, kk, vv);
            fold(kk, vv);
        }
    }
#pragma unroll 2
    for (int t = tf + NPRE * W; t < t1; t += W) {
        float kk[E], vv[E];
        load(t, kk, vv);
        fold(kk, vv);
    }
    // The next launch's blocks become resident (and start their weight
    // prefetches) once this block has folded its positions, not while its
    // own loads are in flight: Llama-3-8B INT4 decode +1.1% against a
    // trigger right after the wait (2026-11-29, H200, third session).
    pdl_trigger();
    trace_mark(3);  // the warp's positions folded
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
        if (lane == 0) {
            sm_m[warp][gi] = m[gi];
            sm_l[warp][gi] = l[gi];
        }
#pragma unroll
        for (int e = 0; e < E; e++) sm_acc[warp][gi][lane * E + e] = acc[gi][e];
    }
    __syncthreads();
    // merge the warps: the factors once a head — warp gi's lane w takes
    // warp w's state (split_factors_of: shuffles, not one thread's chain
    // of W exponentials) — then thread i handles (head gi, dim d) pairs
    __shared__ float sm_wf[G][W], sm_wM[G], sm_wL[G];
    for (int gi = warp; gi < g; gi += W) {
        const float mw = lane < W ? sm_m[lane][gi] : NEG_INF, lw = lane < W ? sm_l[lane][gi] : 0.f;
        split_factors_of(mw, lw, NEG_INF, 0.f, W, lane, sm_wf[gi], &sm_wL[gi], &sm_wM[gi]);
    }
    __syncthreads();
    const size_t pitch = split_pitch(D);  // ws records (merge_splits)
    for (int i = threadIdx.x; i < g * D; i += W * 32) {
        const int gi = i / D, d = i % D;
        const float M = sm_wM[gi], L = sm_wL[gi];
        float A = 0.f;
        for (int w = 0; w < W; w++) A += sm_acc[w][gi][d] * sm_wf[gi][w];
        const int h = kh * g + gi;
        if (P == 1) {
            out[((size_t)r * heads + h) * D + d] = A / L;
        } else {
            float* rec = ws + (((size_t)r * heads + h) * P + p) * pitch;
            if (d == 0) {
                rec[0] = M;
                rec[1] = L;
            }
            rec[4 + d] = A;
        }
    }
    if (P == 1 || !last_split(&counters[r * kvHeads + kh], P)) return;
    __shared__ float sm_f[G * SPLIT_PMAX], sm_L[G];
    merge_splits(out, ws, r, heads, kh * g, g, D, P, sm_f, sm_L);
    if (threadIdx.x == 0) counters[r * kvHeads + kh] = 0;
    trace_mark(4);
}

// attn_split_{D}_{G}[_f16, _bf16] (narrow: 4 warps, one position loaded
// before the wait) and attn_split_wide_{D}_4[_f16, _bf16] (16 warps, three
// positions before the wait: the 48 positions a split of up to 768; G = 4
// only, the form measured and tested on the device): the cache's number
// type a suffix (none for float32).
#define ATTN_SPLIT_KV(NAME, D, G, KV, W, NPRE)                                                                         \
    MARLIN_KERNEL void __launch_bounds__(W * 32)                                                                       \
        NAME(float* out, const float* q, kv<KV>::t* kc, kv<KV>::t* vc, const int* rowN, const int* rowTab,             \
             const int* tables, int heads, int kvHeads, int ldv, int bs, float scale, float* ws, int* counters,        \
             const float* kn, const float* vn, const int* stBlk, const int* stSlot, const float* cosT,                 \
             const float* sinT, int half, int inter) {                                                                 \
        attn_split<D, G, KV, W, NPRE>(out, q, kc, vc, rowN, rowTab, tables, heads, kvHeads, ldv, bs, scale, ws,       \
                                      counters, kn, vn, stBlk, stSlot, cosT, sinT, half, inter);                       \
    }
#define ATTN_SPLIT(D, G)                                                       \
    ATTN_SPLIT_KV(attn_split_##D##_##G, D, G, KV_F32, ATT_WARPS, 1)            \
    ATTN_SPLIT_KV(attn_split_##D##_##G##_f16, D, G, KV_F16, ATT_WARPS, 1)      \
    ATTN_SPLIT_KV(attn_split_##D##_##G##_bf16, D, G, KV_BF16, ATT_WARPS, 1)
#define ATTN_SPLIT_WIDE(D)                                                     \
    ATTN_SPLIT_KV(attn_split_wide_##D##_4, D, 4, KV_F32, 16, 3)                \
    ATTN_SPLIT_KV(attn_split_wide_##D##_4_f16, D, 4, KV_F16, 16, 3)            \
    ATTN_SPLIT_KV(attn_split_wide_##D##_4_bf16, D, 4, KV_BF16, 16, 3)
ATTN_SPLIT(64, 1)
ATTN_SPLIT(64, 2)
ATTN_SPLIT(64, 4)
ATTN_SPLIT(64, 8)
ATTN_SPLIT(128, 1)
ATTN_SPLIT(128, 2)
ATTN_SPLIT(128, 4)
ATTN_SPLIT(128, 8)
ATTN_SPLIT_WIDE(64)
ATTN_SPLIT_WIDE(128)
