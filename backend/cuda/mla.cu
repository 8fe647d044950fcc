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
    float* sm_wf = sm_L + GH;                             // [W][GH] (warp_factors)
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
    // the warps' factors once a head (warp_factors), then the outputs
    if (threadIdx.x < gn) warp_factors(sm_m, sm_l, MLA_WARPS, GH, threadIdx.x, sm_wf, sm_wM, sm_wL);
    __syncthreads();
    const size_t pitch = split_pitch(dv);  // ws records (merge_splits)
    for (int i = threadIdx.x; i < gn * dv; i += MLA_WARPS * 32) {
        const int gi = i / dv, dd = i - gi * dv;
        const float M = sm_wM[gi], L = sm_wL[gi];
        float A = 0.f;
        for (int w = 0; w < MLA_WARPS; w++) A += sm_acc[(w * GH + gi) * 32 * EV + dd] * sm_wf[w * GH + gi];
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
