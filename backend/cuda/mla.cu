// mla.cu — multi-head latent attention at decode speed: all heads' small
// per-head projections in one launch (head_mv), and flash-decoding over
// the latent cache (attn_mla).

// y[m, h·yStride + n] = Σ_k W_h[n, k] · x[m, h·xStride + k] for every head
// h (dense row-major [N, K] weights of one format, one device pointer per
// head in wp). Grid (⌈N/(8·HR)⌉, heads, ⌈M/8⌉), 256 threads: warp w of
// block (bx, h, bz) computes outputs HR·(8·bx + w) … + HR−1 (their weight
// loads issued together) of rows 8·bz … 8·bz+7, lanes
// over k in 4-wide chunks (coalesced loads of the weight row), x staged in
// shared memory (dynamic: 8·K floats), float32 products and sums (one warp
// reduction per row). Requires K % 4 == 0.
#define HR 4  // output rows a warp
template <int F>
__device__ __forceinline__ void head_mv(const u64* __restrict__ wp, int N, int K, const float* __restrict__ x, int ldx,
                                        int xStride, float* __restrict__ y, int ldy, int yStride, int M) {
    extern __shared__ __align__(16) float hx[];
    const int h = blockIdx.y, m0 = blockIdx.z * 8, mr = min(8, M - m0);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n0 = (blockIdx.x * 8 + warp) * HR;  // this warp's HR output rows
    // HU chunks of 128 inputs at a time: their HR rows' loads are all issued
    // before the first sum (K ≤ 512, the MLA shapes, is one round trip)
    constexpr int HU = 4;
    float wv[HU][HR][4];
    auto loadw = [&](int k0) {
#pragma unroll
        for (int u = 0; u < HU; u++) {
            const int k = min(k0 + u * 128, K - 4);  // (past K: a valid address, not summed)
#pragma unroll
            for (int j = 0; j < HR; j++) {
                const int n = min(n0 + j, N - 1);
                if (F == FMT_F32) {
                    const V4f v = *(const V4f*)((const float*)wp[h] + (size_t)n * K + k);
                    wv[u][j][0] = v.x, wv[u][j][1] = v.y, wv[u][j][2] = v.z, wv[u][j][3] = v.w;
                } else {
                    const uint2 v = *(const uint2*)((const u16*)wp[h] + (size_t)n * K + k);
                    const u16 e[4] = {(u16)(v.x & 0xffffu), (u16)(v.x >> 16), (u16)(v.y & 0xffffu), (u16)(v.y >> 16)};
#pragma unroll
                    for (int q = 0; q < 4; q++) wv[u][j][q] = F == FMT_BF16 ? bf16_to_f32(e[q]) : f16_to_f32(e[q]);
                }
            }
        }
    };
    // the first chunk's weights before the wait (programmatic dependent
    // launch: the weights are constant, x is the previous kernel's)
    if (n0 < N) loadw(lane * 4);
    pdl_wait();
    pdl_trigger();
    for (int i0 = threadIdx.x; i0 < mr * K; i0 += 4 * blockDim.x) {  // four loads in flight
        float v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = i0 + u * blockDim.x, m = i / K, kk = i - m * K;
            v[u] = i < mr * K ? x[(size_t)(m0 + m) * ldx + (size_t)h * xStride + kk] : 0.f;
        }
#pragma unroll
        for (int u = 0; u < 4; u++)
            if (i0 + u * blockDim.x < mr * K) hx[i0 + u * blockDim.x] = v[u];
    }
    __syncthreads();
    if (n0 >= N) return;
    float acc[HR][8];
#pragma unroll
    for (int j = 0; j < HR; j++)
#pragma unroll
        for (int m = 0; m < 8; m++) acc[j][m] = 0.f;
    for (int k0 = lane * 4; k0 < K; k0 += HU * 128) {
        if (k0 != lane * 4) loadw(k0);
#pragma unroll
        for (int u = 0; u < HU; u++) {
            const int k = k0 + u * 128;
            if (k >= K) break;
#pragma unroll
            for (int m = 0; m < 8; m++) {
                if (m < mr) {
                    const V4f xv = *(const V4f*)(hx + m * K + k);
#pragma unroll
                    for (int j = 0; j < HR; j++)
                        acc[j][m] = fmaf(wv[u][j][3], xv.w,
                                         fmaf(wv[u][j][2], xv.z, fmaf(wv[u][j][1], xv.y, fmaf(wv[u][j][0], xv.x, acc[j][m]))));
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < HR; j++)
#pragma unroll
        for (int m = 0; m < 8; m++) {
            if (m < mr) {
                const float v = warp_sum(acc[j][m]);
                if (lane == 0 && n0 + j < N) y[(size_t)(m0 + m) * ldy + (size_t)h * yStride + n0 + j] = v;
            }
        }
}

#define HEAD_MV_KERNEL(NAME, F)                                                                                 \
    MARLIN_KERNEL void __launch_bounds__(256)                                                          \
        NAME(const u64* wp, int N, int K, const float* x, int ldx, int xStride, float* y, int ldy, int yStride, \
             int M) {                                                                                           \
        head_mv<F>(wp, N, K, x, ldx, xStride, y, ldy, yStride, M);                                              \
    }
HEAD_MV_KERNEL(head_mv_f32, FMT_F32)
HEAD_MV_KERNEL(head_mv_f16, FMT_F16)
HEAD_MV_KERNEL(head_mv_bf16, FMT_BF16)

// Flash-decoding over the latent cache of multi-head latent attention:
// one KV head whose key has dk numbers and whose value is the key's first
// dv, shared by every query head (MQA). Grid (P, rows, ⌈heads/GH⌉),
// MLA_WARPS warps. Block (p, r, hg) reads the positions of split p of row
// r — ⌈n/P⌉ of them, so the grid does not depend on the context length —
// once for the GH query heads hg·GH …: each warp takes every MLA_WARPS-th
// position, the next one's key loaded while the current one is used; a
// lane holds dims lane + 32e of the key (EK of them; one coalesced
// 128-byte load per e a warp), so that its first EV are the value's same
// dims and the value costs no load; the GH scores come from interleaved
// warp reductions, and each head keeps an online softmax (running max m,
// sum l, weighted value sum acc). The warps are merged in shared memory;
// with P > 1 the block writes (m, l, acc) records to ws and the last block
// of (r, hg) to finish merges the P splits (merge_splits, attention.cu).
// Decode (kn != nullptr: every row the one new token of its sequence)
// stores the rows' latent keys here, as attn_split does, instead of in
// kv_store: block (0, r, 0) writes kn[r] to the cache cell (stBlk[r],
// stSlot[r]), and every block reads position n − 1 from kn.
// Dynamic shared memory: acc [W][GH][32·EV], m and l [W][GH], factors
// [GH][SPLIT_PMAX] and L [GH] (P ≤ SPLIT_PMAX), the warps' factors [W][GH],
// M and L [GH].
#define MLA_WARPS 8
template <int EK, int EV, int GH, int KV>
__device__ __forceinline__ void attn_mla(float* __restrict__ out, const float* __restrict__ q, typename kv<KV>::t* __restrict__ kc,
                                         const int* __restrict__ rowN, const int* __restrict__ rowTab,
                                         const int* __restrict__ tables, int heads, int dk, int dv, int bs, float scale,
                                         float* ws, int* counters, const float* __restrict__ kn,
                                         const int* __restrict__ stBlk, const int* __restrict__ stSlot) {
    extern __shared__ __align__(16) float msm[];
    float* sm_acc = msm;                                  // [W][GH][32·EV]
    float* sm_m = sm_acc + MLA_WARPS * GH * 32 * EV;      // [W][GH]
    float* sm_l = sm_m + MLA_WARPS * GH;                  // [W][GH]
    float* sm_f = sm_l + MLA_WARPS * GH;                  // [GH][SPLIT_PMAX]
    float* sm_L = sm_f + GH * SPLIT_PMAX;                 // [GH]
    float* sm_wf = sm_L + GH;                             // [GH][W]: the warps' factors
    float* sm_wM = sm_wf + MLA_WARPS * GH;                // [GH]
    float* sm_wL = sm_wM + GH;                            // [GH]
    pdl_wait();  // (launched with programmatic dependent launch: nothing to prefetch)
    pdl_trigger();
    const int p = blockIdx.x, P = gridDim.x, r = blockIdx.y, hg = blockIdx.z, HG = gridDim.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n = rowN[r];
    const int* tab = tables + rowTab[r];
    const int ch = (n + P - 1) / P, t0 = p * ch, t1 = min(n, t0 + ch);
    const int h0 = hg * GH, gn = min(GH, heads - h0);
    // decode: block (0, r, 0) stores row r's new latent key in its cache
    // cell, and every block reads that position from kn instead
    if (kn != nullptr && p == 0 && hg == 0)
        for (int i = threadIdx.x; i < dk; i += MLA_WARPS * 32)
            kc[((size_t)stBlk[r] * bs + stSlot[r]) * dk + i] = kv<KV>::put(kn[(size_t)r * dk + i]);
    // this lane's dims of the key of position t, which is at block cb,
    // slot cs of the table (a cursor advanced by adding: no division a
    // position), as stored (the row's own new key from kn, rounded as the
    // cache holds it). They stay in the stored type until the position is
    // used: widened at the load, a 16-bit key's loads would be waited for
    // there and the prefetch of the next position lost (twice the time
    // of a float32 cache, H100).
    typedef typename kv<KV>::t T;
    auto key = [&](int t, int cb, int cs, T (&k)[EK]) {
        if (kn != nullptr && t == n - 1) {
            const float* kp = kn + (size_t)r * dk;
#pragma unroll
            for (int e = 0; e < EK; e++) k[e] = kv<KV>::put(lane + 32 * e < dk ? kp[lane + 32 * e] : 0.f);
        } else {
            const T* kp = kc + ((size_t)tab[cb] * bs + cs) * dk;
#pragma unroll
            for (int e = 0; e < EK; e++) k[e] = lane + 32 * e < dk ? kp[lane + 32 * e] : kv<KV>::put(0.f);
        }
    };

    float qv[GH][EK], m[GH], l[GH], acc[GH][EV];
#pragma unroll
    for (int gi = 0; gi < GH; gi++) {
        m[gi] = NEG_INF;
        l[gi] = 0.f;
#pragma unroll
        for (int e = 0; e < EV; e++) acc[gi][e] = 0.f;
#pragma unroll
        for (int e = 0; e < EK; e++) {
            const int d = lane + 32 * e;
            qv[gi][e] = gi < gn && d < dk ? q[((size_t)r * heads + h0 + gi) * dk + d] : 0.f;
        }
    }
    T knext[EK];
    int t = t0 + warp, cb = t / bs, cs = t - cb * bs;
    if (t < t1) key(t, cb, cs, knext);
    for (; t < t1; t += MLA_WARPS) {
        float kk[EK];
#pragma unroll
        for (int e = 0; e < EK; e++) kk[e] = kv<KV>::get(knext[e]);
        const int tn = t + MLA_WARPS;
        for (cs += MLA_WARPS; cs >= bs; cs -= bs) cb++;
        if (tn < t1) key(tn, cb, cs, knext);
        float d[GH];
#pragma unroll
        for (int gi = 0; gi < GH; gi++) {
            float s = 0.f;
#pragma unroll
            for (int e = 0; e < EK; e++) s = fmaf(qv[gi][e], kk[e], s);
            d[gi] = s;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int gi = 0; gi < GH; gi++) d[gi] += __shfl_xor_sync(0xffffffffu, d[gi], o);
#pragma unroll
        for (int gi = 0; gi < GH; gi++) {
            const float s = d[gi] * scale;
            const float mn = fmaxf(m[gi], s);
            const float corr = expf(m[gi] - mn);  // 0 for the first position (m = −∞)
            const float pr = expf(s - mn);
            l[gi] = l[gi] * corr + pr;
#pragma unroll
            for (int e = 0; e < EV; e++) acc[gi][e] = acc[gi][e] * corr + pr * kk[e];
            m[gi] = mn;
        }
    }
#pragma unroll
    for (int gi = 0; gi < GH; gi++) {
        if (lane == 0) {
            sm_m[warp * GH + gi] = m[gi];
            sm_l[warp * GH + gi] = l[gi];
        }
#pragma unroll
        for (int e = 0; e < EV; e++) sm_acc[(warp * GH + gi) * 32 * EV + lane + 32 * e] = acc[gi][e];
    }
    __syncthreads();
    // the warps' factors once a head (warp gi, lane w: warp w's state;
    // split_factors_of), then the outputs
    for (int gi = warp; gi < gn; gi += MLA_WARPS) {
        const float mw = lane < MLA_WARPS ? sm_m[lane * GH + gi] : NEG_INF, lw = lane < MLA_WARPS ? sm_l[lane * GH + gi] : 0.f;
        split_factors_of(mw, lw, NEG_INF, 0.f, MLA_WARPS, lane, sm_wf + gi * MLA_WARPS, &sm_wL[gi], &sm_wM[gi]);
    }
    __syncthreads();
    const size_t pitch = split_pitch(dv);  // ws records (merge_splits)
    for (int i = threadIdx.x; i < gn * dv; i += MLA_WARPS * 32) {
        const int gi = i / dv, dd = i - gi * dv;
        const float M = sm_wM[gi], L = sm_wL[gi];
        float A = 0.f;
        for (int w = 0; w < MLA_WARPS; w++) A += sm_acc[(w * GH + gi) * 32 * EV + dd] * sm_wf[gi * MLA_WARPS + w];
        const int h = h0 + gi;
        if (P == 1) {
            out[((size_t)r * heads + h) * dv + dd] = A / L;
        } else {
            float* rec = ws + (((size_t)r * heads + h) * P + p) * pitch;
            if (dd == 0) {
                rec[0] = M;
                rec[1] = L;
            }
            rec[4 + dd] = A;
        }
    }
    if (P == 1 || !last_split(&counters[r * HG + hg], P)) return;
    merge_splits(out, ws, r, heads, h0, gn, dv, P, sm_f, sm_L);
    if (threadIdx.x == 0) counters[r * HG + hg] = 0;
}

#define MLA_GH 4  // query heads per block
// attn_mla_{EK}_{EV}[_f16, _bf16]: the cache's number type a suffix (none
// for float32)
#define ATTN_MLA_KV(EK, EV, KV, SUFFIX)                                                                               \
    MARLIN_KERNEL void __launch_bounds__(MLA_WARPS * 32)                                                     \
        attn_mla_##EK##_##EV##SUFFIX(float* out, const float* q, kv<KV>::t* kc, const int* rowN, const int* rowTab,   \
                                     const int* tables, int heads, int dk, int dv, int bs, float scale, float* ws,   \
                                     int* counters, const float* kn, const int* stBlk, const int* stSlot) {          \
        attn_mla<EK, EV, MLA_GH, KV>(out, q, kc, rowN, rowTab, tables, heads, dk, dv, bs, scale, ws, counters, kn,  \
                                     stBlk, stSlot);                                                                 \
    }
#define ATTN_MLA(EK, EV)                  \
    ATTN_MLA_KV(EK, EV, KV_F32, )         \
    ATTN_MLA_KV(EK, EV, KV_F16, _f16)     \
    ATTN_MLA_KV(EK, EV, KV_BF16, _bf16)
ATTN_MLA(1, 1)
ATTN_MLA(2, 1)
ATTN_MLA(2, 2)
ATTN_MLA(3, 2)
ATTN_MLA(5, 4)
ATTN_MLA(9, 8)
ATTN_MLA(18, 16)

// The MLA prologue of a layer (DeepSeek.Forward's latent key and the
// queries' rotary parts) in one launch: grid (rows, heads + 1), blockDim
// a multiple of 32 (≤ 1024). Block (r, heads) writes the latent key
//   key[r, :lora]         = rmsnorm(kva[r, :lora]) · w     (as rms_norm)
//   key[r, lora:lora+rp]  = rope(kva[r, lora:lora+rp])     (as rope)
// and block (r, h < heads) the query's rotary part beside its latent query
//   qf[r, h·(lora+rp) + lora + i] = rope(q[r, h·hd + nope + i]), i < rp,
// the first 2·half of the rp values rotated, the rest copied. Same
// float operations as the separate kernels.
MARLIN_KERNEL void __launch_bounds__(1024)
    mla_prologue(float* __restrict__ key, float* __restrict__ qf, const float* __restrict__ kva, const float* __restrict__ q,
                 const float* __restrict__ w, float eps, int lora, int rp, int heads, int nope, const int* __restrict__ pos,
                 const float* __restrict__ cosT, const float* __restrict__ sinT, int half, int interleaved) {
    pdl_wait();
    pdl_trigger();
    const int r = blockIdx.x, h = blockIdx.y, kd = lora + rp, hd = nope + rp;
    const size_t p = (size_t)pos[r] * half;
    const float* src;
    float* dst;
    if (h == heads) {
        const float* x = kva + (size_t)r * kd;
        float* y = key + (size_t)r * kd;
        const int nt = blockDim.x;
        double ss = 0;
        for (int i = threadIdx.x; i < lora; i += nt) {
            double v = x[i];
            ss += v * v;
        }
        const float rr = rms_scale(ss, lora, eps);
        for (int i = threadIdx.x; i < lora; i += nt) y[i] = __fmul_rn(__fmul_rn(x[i], rr), w[i]);
        src = x + lora;
        dst = y + lora;
    } else {
        src = q + (size_t)r * heads * hd + (size_t)h * hd + nope;
        dst = qf + (size_t)r * heads * kd + (size_t)h * kd + lora;
    }
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        const int ia = interleaved ? 2 * j : j, ib = interleaved ? 2 * j + 1 : j + half;
        const float c = cosT[p + j], s = sinT[p + j];
        const float a = src[ia], b = src[ib];
        dst[ia] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        dst[ib] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
    for (int i = 2 * half + threadIdx.x; i < rp; i += blockDim.x) dst[i] = src[i];
}

// ldmatrix: four (or two) 8×8 matrices of 16-bit numbers from shared
// memory. Lane l gives the address of row l%8 of matrix l/8 (16 bytes a
// row, 16-byte aligned); register i receives the numbers (row l/4, columns
// 2(l%4), 2(l%4)+1) of matrix i — the layout of mma's operand fragments.
// .trans delivers each matrix transposed: (column l/4, rows 2(l%4), +1).
__device__ __forceinline__ void ldsm4(u32 a, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(a)
                 : "memory");
}
__device__ __forceinline__ void ldsm2t(u32 a, u32& r0, u32& r1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(a) : "memory");
}

// Flash-decoding over a bfloat16 latent cache on the tensor cores (the
// same attention as attn_mla, same grid of splits and the same records).
// Block (p, r, hg) takes the hpg ≤ R = 16·MT query heads hg·hpg … of row
// r (a head a row of the products; rows past the group's last head are
// zeros) and split p of the row's positions, MLA_TC_POS = 16 at a time:
//
//   S = Q·Kᵀ    [R × 16]: Q the heads' dk-number queries, K the 16 keys;
//   online softmax over S·scale, row by row (running max m, sum l);
//   O = O·e^(m_old − m_new) + P·V   [R × dv]: V the keys' first dv numbers.
//
// Both products are mma m16n8k16 in bf16 with float32 sums. The keys are
// exact in bf16 (the cache holds them so); the queries and the
// probabilities are not, so each is split in two bf16 parts, hi = bf16(x)
// and lo = bf16(x − hi), and multiplied twice: hi + lo carries 16 bits of
// x, so the products lose about what a float32 sum of them would (the
// results agree with the CPU's float32 attention to ~1e-5 relative).
//
// Layout (dynamic shared memory): Q's two parts [R][dk + 8] and four
// stages of 16 keys [16][dk + 8], rows padded by 16 bytes so that the 8
// row addresses of an ldmatrix fall in different banks (a row is
// 2·dk ≡ 0 mod 128 bytes at dk = 576); the warps' partial scores
// [W][R][16]; P's two parts [R][24] (48-byte rows: conflict-free);
// the tile's rescale factor, and the final m and l, [R] each.
//
// The keys' copies (cp.async, zero-filled past the split's end) run
// MLA_TC_ST tiles ahead: the first four tiles are requested at the start
// (at decode before the wait), with their block-table entries loaded
// together first; each later tile's entries are loaded a tile before its
// copies. (A tile costs ~3 µs at GLM's shape on the H100 with two stages
// or four, 8 warps or 16: its bound is not known, docs/cuda-kernels.md,
// twenty-first session.) A tile: warp w takes the k-steps w, w+16, …
// of S (a step: one ldmatrix of 16 keys × 16 dims, two of each query
// part, 8 mma) and leaves its partial S in shared memory; then a thread a
// score sums the partials in warp order, masks positions past the end
// (−∞), and runs the online softmax (maxima and sums by shuffles among a
// row's 16 threads, which all hold its m and l); then warp w rescales its
// part of O and adds P·V for the value columns 8(w + 16u) … (u < NV): a
// transposed ldmatrix of the 16 keys' 8 columns a tile of 8 columns.
// Three barriers a tile.
//
// Decode (kn != nullptr) as attn_mla: block (0, r, 0) writes the row's
// new latent key to its cache cell, and every block takes position n − 1
// from kn (rounded to bf16) instead; the keys of earlier positions, the
// row metadata and the block table are read before the wait (pdl_wait's
// contract, common.cu), so the first tile's copies overlap the previous
// kernel's tail. With P > 1 the block writes records (m, l, O) for every
// real head (a split without positions: m = −∞, l = 0, O = 0) and
// attn_merge (attention.cu), launched next, merges them; with P = 1 it
// writes O / l. Requires dk % 16 == 0, dk ≤ 640, dv % 8 == 0, dv ≤ dk
// and dv ≤ 128·NV. 16 warps, a thread a score in the softmax.
#define MLA_TC_WARPS 16
#define MLA_TC_POS 16
#define MLA_TC_PP 24  // P's row pitch (16-bit numbers)
#define MLA_TC_CH 3   // a thread's 16-byte chunks of a tile's keys: 16·dk/8 ≤ 3·512, dk ≤ 640
#define MLA_TC_ST 4   // stages of keys: at decode a split's first four tiles are copied before the wait
template <int MT, int NV>
__device__ __forceinline__ void attn_mla_tc(float* __restrict__ out, const float* __restrict__ q, u16* __restrict__ kc,
                                            const int* __restrict__ rowN, const int* __restrict__ rowTab,
                                            const int* __restrict__ tables, int heads, int dk, int dv, int bs, float scale,
                                            float* __restrict__ ws, const float* __restrict__ kn,
                                            const int* __restrict__ stBlk, const int* __restrict__ stSlot, int hpg) {
    constexpr int R = 16 * MT, W = MLA_TC_WARPS, NTH = 32 * W, TP = MLA_TC_POS;
    static_assert(R * TP <= NTH, "attn_mla_tc: a softmax thread a score");
    extern __shared__ __align__(16) unsigned char tsm[];
    const int kp = dk + 8;  // Q and K row pitch (16-bit numbers)
    u16* sQh = (u16*)tsm;                      // [R][kp]
    u16* sQl = sQh + R * kp;                   // [R][kp]
    u16* sK = sQl + R * kp;                    // [ST][TP][kp]
    float* sS = (float*)(sK + MLA_TC_ST * TP * kp);  // [W][R][TP]
    u16* sPh = (u16*)(sS + W * R * TP);        // [R][MLA_TC_PP]
    u16* sPl = sPh + R * MLA_TC_PP;            // [R][MLA_TC_PP]
    float* sC = (float*)(sPl + R * MLA_TC_PP); // [R]
    float* sM = sC + R;                        // [R]
    float* sL = sM + R;                        // [R]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int p = blockIdx.x, P = gridDim.x, r = blockIdx.y, h0 = blockIdx.z * hpg, gn = min(hpg, heads - h0);
    const bool dec = kn != nullptr;
    const int rc = dk / 8;  // 16-byte chunks of a key
    int n = 0, t0 = 0, t1 = 0;
    const int* tab = tables;
    auto span = [&]() {
        const int ch = (n + P - 1) / P;
        t0 = p * ch, t1 = min(n, t0 + ch);
    };
    // A thread's 16-byte chunks of a tile (the same every tile): chunk c =
    // tid + NTH·k is position cj[k] of the tile, bytes 16·ce[k] of its key
    // (cj = TP: none). fetch(i) reads, for tile i, the block-table entry
    // of each chunk's position (e) and notes its slot (es), from cursors
    // (cb: table index, cs: slot) advanced by adding — no division a tile
    // (divisions were ~40% of the kernel's instructions) — and is called for
    // tiles 0, 1, 2, … in order, a tile before their copies (load) need
    // the entries, so that the copies do not wait on the table.
    int cj[MLA_TC_CH], ce[MLA_TC_CH], cb[MLA_TC_CH], cs[MLA_TC_CH];
    int ent[MLA_TC_CH], es[MLA_TC_CH], pe[MLA_TC_ST][MLA_TC_CH], ps[MLA_TC_ST][MLA_TC_CH];
#pragma unroll
    for (int k = 0; k < MLA_TC_CH; k++) {
        const int c = tid + NTH * k;
        cj[k] = c < TP * rc ? c / rc : TP;
        ce[k] = c - cj[k] * rc;
    }
    auto fetch = [&](int i, int (&e)[MLA_TC_CH], int (&sl)[MLA_TC_CH]) {
#pragma unroll
        for (int k = 0; k < MLA_TC_CH; k++) {
            const int t = t0 + i * TP + cj[k];
            e[k] = cj[k] < TP && t < t1 ? ld_cg_i32(tab + cb[k]) : 0;
            sl[k] = cs[k];
            for (cs[k] += TP; cs[k] >= bs; cs[k] -= bs) cb[k]++;
        }
    };
    // the copies of tile i's keys into stage s (not position n − 1 at
    // decode: own() writes it); positions past the split zero-filled, so
    // that P·V meets zeros there, not stale numbers
    auto load = [&](int i, int s, const int (&e)[MLA_TC_CH], const int (&sl)[MLA_TC_CH]) {
        u16* dst = sK + s * TP * kp;
        if (t0 + i * TP >= t1) {  // past the split: an empty group
            cp_commit();
            return;
        }
#pragma unroll
        for (int k = 0; k < MLA_TC_CH; k++) {
            const int t = t0 + i * TP + cj[k];
            if (cj[k] >= TP || dec && t == n - 1 && t < t1) continue;
            const bool in = t < t1;
            const u16* src = in ? kc + ((size_t)e[k] * bs + sl[k]) * dk + 8 * ce[k] : kc;
            cp_async16_zfill(smem_addr(dst + cj[k] * kp + 8 * ce[k]), src, in ? 16 : 0);
        }
        cp_commit();
    };
    // the row's own new key (decode), as the cache will hold it
    auto own = [&](int i, int s) {
        const int j = n - 1 - (t0 + i * TP);
        if (!dec || j < 0 || j >= TP || n - 1 >= t1) return;
        const float* src = kn + (size_t)r * dk;
        for (int e = tid; e < rc; e += NTH) {
            const float4 a = *(const float4*)(src + 8 * e), b = *(const float4*)(src + 8 * e + 4);
            uint4 v;
            v.x = pack_bf16x2(a.x, a.y), v.y = pack_bf16x2(a.z, a.w), v.z = pack_bf16x2(b.x, b.y), v.w = pack_bf16x2(b.z, b.w);
            *(uint4*)(sK + s * TP * kp + j * kp + 8 * e) = v;
        }
    };

    // the copies of tiles 0 … ST − 1 (a commit group each, empty past the
    // split), their table entries loaded together first; tile ST's entries
    auto first = [&]() {
        span();
#pragma unroll
        for (int k = 0; k < MLA_TC_CH; k++) {
            const int t = t0 + min(cj[k], TP - 1);
            cb[k] = t / bs, cs[k] = t - cb[k] * bs;
        }
#pragma unroll
        for (int u = 0; u < MLA_TC_ST; u++) fetch(u, pe[u], ps[u]);
#pragma unroll
        for (int u = 0; u < MLA_TC_ST; u++) load(u, u, pe[u], ps[u]);
        fetch(MLA_TC_ST, ent, es);
    };
    if (dec) {
        n = ld_cg_i32(rowN + r), tab += ld_cg_i32(rowTab + r);
        first();
    }
    pdl_wait();
    pdl_trigger();
    if (!dec) {
        n = rowN[r], tab += rowTab[r];
        first();
    }
    if (dec && p == 0 && blockIdx.z == 0)
        for (int i = tid; i < dk; i += NTH) kc[((size_t)stBlk[r] * bs + stSlot[r]) * dk + i] = kv<KV_BF16>::put(kn[(size_t)r * dk + i]);
    const int tiles = t1 > t0 ? (t1 - t0 + TP - 1) / TP : 0;
#pragma unroll
    for (int u = 0; u < MLA_TC_ST; u++) own(u, u);
    // the queries in two bf16 parts (heads past the last: zeros), eight
    // 16-byte loads of a thread in flight at a time
    const int Q4 = R * (dk / 4);
    for (int base = tid; base < Q4; base += 8 * NTH) {
        float4 v[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int i = base + u * NTH, h = i / (dk / 4), d = 4 * (i - h * (dk / 4));
            v[u] = i < Q4 && h < gn ? *(const float4*)(q + ((size_t)r * heads + h0 + h) * dk + d) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int i = base + u * NTH, h = i / (dk / 4), d = 4 * (i - h * (dk / 4));
            if (i >= Q4) break;
            u32 hi0, lo0, hi1, lo1;
            split_bf16(v[u].x, v[u].y, hi0, lo0);
            split_bf16(v[u].z, v[u].w, hi1, lo1);
            *(uint2*)(sQh + h * kp + d) = make_uint2(hi0, hi1);
            *(uint2*)(sQl + h * kp + d) = make_uint2(lo0, lo1);
        }
    }

    const int g = lane >> 2, tq = lane & 3;            // mma fragment row and column pair
    const int srow = tid / TP, scol = tid % TP;  // softmax: this thread's score (tid < R·TP)
    float m = NEG_INF, l = 0.f;                  // the row's running max and sum (softmax threads)
    float o[MT][NV][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int u = 0; u < NV; u++) o[mt][u][0] = o[mt][u][1] = o[mt][u][2] = o[mt][u][3] = 0.f;
    // ldmatrix row offsets of this lane: A (Q, P) row (l%8) + 8·((l/8)%2),
    // column 8·(l/16); K for S (two n-tiles of positions) position (l%8) +
    // 8·(l/16), dim 8·((l/8)%2); V (transposed) position (l%8) + 8·((l/8)%2)
    const int ar = (lane & 7) + ((lane >> 3) & 1) * 8, ac = (lane >> 4) * 8;
    const int kr = (lane & 7) + (lane >> 4) * 8, kcol = ((lane >> 3) & 1) * 8;
    const int KS = dk / 16, NT = dv / 8;

    for (int i = 0; i < tiles; i++) {
        const int s = i % MLA_TC_ST, tb = t0 + i * TP;
        // tile k is commit group k: ST groups before the loop, one an
        // iteration from the second on
        if (i == 0)
            cp_wait<MLA_TC_ST - 1>();
        else
            cp_wait<MLA_TC_ST - 2>();
        __syncthreads();  // tile i (and Q) in place; every warp done with tile i − 1
        if (i > 0) {      // tile i − 1's stage to tile i + ST − 1
            const int k = i + MLA_TC_ST - 1;
            load(k, k % MLA_TC_ST, ent, es);
            own(k, k % MLA_TC_ST);
            fetch(k + 1, ent, es);
        }
        const u16* Kt = sK + s * TP * kp;
        // S: this warp's k-steps
        float sa[MT][2][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++) sa[mt][nt][0] = sa[mt][nt][1] = sa[mt][nt][2] = sa[mt][nt][3] = 0.f;
        for (int ks = warp; ks < KS; ks += W) {
            const int k0 = 16 * ks;
            u32 b0, b1, b2, b3;
            ldsm4(smem_addr(Kt + kr * kp + k0 + kcol), b0, b1, b2, b3);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                u32 h[4], lo[4];
                ldsm4(smem_addr(sQh + (16 * mt + ar) * kp + k0 + ac), h[0], h[1], h[2], h[3]);
                ldsm4(smem_addr(sQl + (16 * mt + ar) * kp + k0 + ac), lo[0], lo[1], lo[2], lo[3]);
                mma_bf16(sa[mt][0], h[0], h[1], h[2], h[3], b0, b1);
                mma_bf16(sa[mt][1], h[0], h[1], h[2], h[3], b2, b3);
                mma_bf16(sa[mt][0], lo[0], lo[1], lo[2], lo[3], b0, b1);
                mma_bf16(sa[mt][1], lo[0], lo[1], lo[2], lo[3], b2, b3);
            }
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                float* d = sS + (warp * R + 16 * mt + g) * TP + 8 * nt + 2 * tq;
                *(float2*)d = make_float2(sa[mt][nt][0], sa[mt][nt][1]);
                *(float2*)(d + 8 * TP) = make_float2(sa[mt][nt][2], sa[mt][nt][3]);
            }
        __syncthreads();
        // the online softmax of row srow over this tile's positions
        if (tid < R * TP) {
            float v = 0.f;
#pragma unroll
            for (int w = 0; w < W; w++) v += sS[(w * R + srow) * TP + scol];
            const float sv = tb + scol < t1 ? v * scale : NEG_INF;
            float mx = sv;
#pragma unroll
            for (int x = TP / 2; x > 0; x >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, x));
            const float mn = fmaxf(m, mx);    // finite: the tile has a position
            const float corr = expf(m - mn);  // 0 on the first tile (m = −∞)
            const float pr = expf(sv - mn);   // 0 past the end
            const u16 hi = kv<KV_BF16>::put(pr);
            sPh[srow * MLA_TC_PP + scol] = hi;
            sPl[srow * MLA_TC_PP + scol] = kv<KV_BF16>::put(pr - bf16_to_f32(hi));
            float sum = pr;
#pragma unroll
            for (int x = TP / 2; x > 0; x >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, x);
            l = l * corr + sum;
            m = mn;
            if (scol == 0) sC[srow] = corr;
        }
        __syncthreads();
        // O = O·corr + P·V for this warp's value columns
        u32 ph[MT][4], pl[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            const float c0 = sC[16 * mt + g], c1 = sC[16 * mt + g + 8];
#pragma unroll
            for (int u = 0; u < NV; u++) o[mt][u][0] *= c0, o[mt][u][1] *= c0, o[mt][u][2] *= c1, o[mt][u][3] *= c1;
            ldsm4(smem_addr(sPh + (16 * mt + ar) * MLA_TC_PP + ac), ph[mt][0], ph[mt][1], ph[mt][2], ph[mt][3]);
            ldsm4(smem_addr(sPl + (16 * mt + ar) * MLA_TC_PP + ac), pl[mt][0], pl[mt][1], pl[mt][2], pl[mt][3]);
        }
#pragma unroll
        for (int u = 0; u < NV; u++) {
            const int nt = warp + W * u;
            if (nt >= NT) break;
            u32 b0, b1;
            ldsm2t(smem_addr(Kt + ar * kp + 8 * nt), b0, b1);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16(o[mt][u], ph[mt][0], ph[mt][1], ph[mt][2], ph[mt][3], b0, b1);
                mma_bf16(o[mt][u], pl[mt][0], pl[mt][1], pl[mt][2], pl[mt][3], b0, b1);
            }
        }
    }
    if (tid < R * TP && scol == 0) sM[srow] = m, sL[srow] = l;
    __syncthreads();
    const size_t pitch = split_pitch(dv);
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int u = 0; u < NV; u++) {
            const int nt = warp + W * u;
            if (nt >= NT) break;
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int row = 16 * mt + g + 8 * hf, col = 8 * nt + 2 * tq;
                if (row >= gn) continue;
                const size_t h = (size_t)r * heads + h0 + row;
                float2 v = make_float2(o[mt][u][2 * hf], o[mt][u][2 * hf + 1]);
                if (P == 1) {
                    const float L = sL[row];
                    *(float2*)(out + h * dv + col) = make_float2(v.x / L, v.y / L);
                } else {
                    *(float2*)(ws + (h * P + p) * pitch + 4 + col) = v;
                }
            }
        }
    if (P > 1)
        for (int row = tid; row < gn; row += NTH) {
            float* rec = ws + (((size_t)r * heads + h0 + row) * P + p) * pitch;
            rec[0] = sM[row], rec[1] = sL[row];
        }
}

// attn_mla_tc_{MT}_{NV}: R = 16·MT heads a block, value columns ≤ 128·NV
#define ATTN_MLA_TC(MT, NV)                                                                                          \
    MARLIN_KERNEL void __launch_bounds__(MLA_TC_WARPS * 32)                                                 \
        attn_mla_tc_##MT##_##NV(float* out, const float* q, u16* kc, const int* rowN, const int* rowTab,            \
                                const int* tables, int heads, int dk, int dv, int bs, float scale, float* ws,       \
                                const float* kn, const int* stBlk, const int* stSlot, int hpg) {                    \
        attn_mla_tc<MT, NV>(out, q, kc, rowN, rowTab, tables, heads, dk, dv, bs, scale, ws, kn, stBlk, stSlot, hpg); \
    }
ATTN_MLA_TC(1, 1)
ATTN_MLA_TC(1, 2)
ATTN_MLA_TC(1, 4)
ATTN_MLA_TC(2, 1)
ATTN_MLA_TC(2, 2)
ATTN_MLA_TC(2, 4)
