// moe.cu — mixture-of-experts routing and the gather/scatter around the
// per-expert matmuls.

// Router: one single-thread block per row, which does exactly what the CPU
// backend's Route does, in the same precision:
//   softmax: m = max(logits) (float32); e_i = exp(double(l_i − m)); p_i =
//            float(float(e_i) / Σe) with the sum in double;
//   sigmoid: p_i = float(1/(1+exp(−double(l_i)))); rank_i = p_i + bias_i;
//   groups:  each group's score is the sum of its two best ranks (its best
//            alone for one-expert groups); all but the topGroups best-
//            scoring groups (ties: lower index first) get rank −∞ (or 0
//            with maskZero);
//   top-k:   the k best ranks, ties to the lower index (a stable sort);
//   weights: the chosen p, divided by (their float32 sum + 1e-20) when
//            normalize, times scale.
// Shared memory (dynamic): p [E], rank [E], group scores [G], then int
// flags for used experts [E] and kept groups [G].
MARLIN_KERNEL void route(int* __restrict__ ids, float* __restrict__ wts, const float* __restrict__ logits,
                                 const float* __restrict__ bias, int E, int topK, int sigmoid, int normalize, int groups,
                                 int topGroups, int maskZero, float scale) {
    extern __shared__ float sm[];
    float* p = sm;
    float* rank = p + E;
    float* gs = rank + E;
    int* used = (int*)(gs + groups);
    int* kept = used + E;
    const int r = blockIdx.x;
    const float* row = logits + (size_t)r * E;
    if (sigmoid) {
        for (int e = 0; e < E; e++) {
            p[e] = (float)(1.0 / (1.0 + exp(-(double)row[e])));
            rank[e] = bias ? p[e] + bias[e] : p[e];
        }
    } else {
        float m = NEG_INF;
        for (int e = 0; e < E; e++) m = fmaxf(m, row[e]);
        double sum = 0;
        for (int e = 0; e < E; e++) {
            double x = exp((double)(row[e] - m));
            p[e] = (float)x;
            sum += x;
        }
        for (int e = 0; e < E; e++) {
            p[e] = (float)((double)p[e] / sum);
            rank[e] = p[e];
        }
    }
    if (groups > 1) {
        const int per = E / groups;
        for (int g = 0; g < groups; g++) {
            float a = NEG_INF, b = NEG_INF;
            for (int e = g * per; e < (g + 1) * per; e++) {
                float v = rank[e];
                if (v > a) {
                    b = a;
                    a = v;
                } else if (v > b) {
                    b = v;
                }
            }
            if (per == 1) b = 0.f;
            gs[g] = a + b;
            kept[g] = 0;
        }
        for (int j = 0; j < topGroups; j++) {
            int best = -1;
            for (int g = 0; g < groups; g++)
                if (!kept[g] && (best < 0 || gs[g] > gs[best])) best = g;
            kept[best] = 1;
        }
        const float masked = maskZero ? 0.f : NEG_INF;
        for (int g = 0; g < groups; g++)
            if (!kept[g])
                for (int e = g * per; e < (g + 1) * per; e++) rank[e] = masked;
    }
    for (int e = 0; e < E; e++) used[e] = 0;
    int* id = ids + (size_t)r * topK;
    float* w = wts + (size_t)r * topK;
    float sum = 0.f;
    for (int j = 0; j < topK; j++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!used[e] && (best < 0 || rank[e] > rank[best])) best = e;
        used[best] = 1;
        id[j] = best;
        w[j] = p[best];
        sum += w[j];
    }
    for (int j = 0; j < topK; j++) {
        float v = w[j];
        if (normalize) v = v / (sum + 1e-20f);
        w[j] = v * scale;
    }
}

// dst row j = src row slots[j] / k (the token of selection slot j), cols
// values. One block per gathered row.
MARLIN_KERNEL void gather_rows(float* __restrict__ dst, const float* __restrict__ src, const int* __restrict__ slots, int k,
                                       int cols) {
    const float* s = src + (size_t)(slots[blockIdx.x] / k) * cols;
    float* d = dst + (size_t)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

// dst[slots[j] / k, :] += wts[slots[j]] · src[j, :]: one expert's outputs
// added to their tokens' rows, weighted. One block per row j; the rows of
// one launch are distinct tokens (an expert is chosen at most once per
// token), so no two blocks write the same row.
MARLIN_KERNEL void scatter_add(float* __restrict__ dst, const float* __restrict__ src, const int* __restrict__ slots,
                                       const float* __restrict__ wts, int k, int cols) {
    const int slot = slots[blockIdx.x];
    const float wt = wts[slot];
    float* d = dst + (size_t)(slot / k) * cols;
    const float* s = src + (size_t)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] += wt * s[c];
}

// The expert of a slot and the row of x it reads (ldx-strided): routed
// slots s < nr take the selection's expert and token row s / k (or their
// own row, xPerSlot); the shared expert's slots nr + r take expert se and
// token row r.
__device__ __forceinline__ int moe_expert(const int* ids, int slot, int nr, int se) { return slot < nr ? ids[slot] : se; }
__device__ __forceinline__ int moe_xrow(int slot, int k, int nr, int xPerSlot) {
    return xPerSlot ? slot : slot < nr ? slot / k : slot - nr;
}

// ---- device-side expert dispatch (decode-sized batches) ----
//
// A "job" is one matrix-vector product of one selection slot (row r,
// choice j: slot = r·k + j) with one matrix of its chosen expert. The
// expert id is read from the selection on the device, and the expert's
// weights through a table of WDesc (three per expert: gate, up, down) that
// the host uploads once per layer, so nothing is copied to the host and a
// decode step stays one capturable sequence of launches. Grid (blocks per
// job, jobs): the x-dimension is the stripe grid of the decode kernels of
// qmm.cu (qmv4 / dmv, M = 1), the y-dimension the job; each job has its
// own split-K slots in ws (wsPer floats) and counters (ctrPer).
//
//   gate+up: jobs = 2·nsel, job = 2·slot + which (0 gate, 1 up); x row
//            slot/k of x; output row which·nsel + slot of y [2·nsel, I]
//   down:    jobs = nsel, which = 0 with mat0 = 2; x row slot of h
//            [nsel, I] (xPerSlot); output row slot of y [nsel, H]. With
//            SILU (4-bit kernels) x is gate+up's y [2·nsel, I] itself and
//            the kernel forms silu(gate)·up of rows slot and nsel + slot
//            as it reads them (qmv4's SILU).
//
// Slots nr … nsel−1 (when nsel > nr) are the shared expert's, one a row:
// expert se (the table's entry after the routed ones), row slot − nr.
//
// The kernel of a product: qmv4 (packed 4-bit; KIND a PACK_* kind), dmv
// (DENSE: fp16 or bf16), or qmv8 (Q8: 8-bit GPTQ or FP8; KIND Q8_GPTQ or
// Q8_FP8, no SILU form: silu_mul runs before the down launch).
template <int KIND, bool ASYM, bool DENSE, bool BF16, bool SILU, bool Q8>
__device__ __forceinline__ void moe_mv(const WDesc* __restrict__ tab, const int* __restrict__ ids, int k, int nsel, int nr,
                                       int se, int mats, int mat0, const float* x, int ldx, int xPerSlot, float* y, int ldy,
                                       float* ws, int wsPer, int* counters, int ctrPer) {
    const int job = blockIdx.y, slot = job / mats, which = job - slot * mats;
    // The selection: in the gate/up launch the previous kernel's, so its
    // routed slots wait for it (the shared expert's weights stream in
    // first). The SILU kernels' down launch comes right after gate/up,
    // whose blocks all waited for the routing before this launch could
    // start (a dependent launch starts once every block of the previous
    // one has triggered or exited): it reads the selection at once,
    // through L2 (a finished grid's writes), so that its weights stream in
    // while gate/up ends (qmv4's prologue, before its own wait for x).
    int e;
    if (SILU) {
        e = slot < nr ? ld_cg_i32(ids + slot) : se;
    } else {
        if (slot < nr) pdl_wait();
        e = moe_expert(ids, slot, nr, se);
    }
    const WDesc w = tab[3 * e + mat0 + which];
    const float* xr = x + (size_t)moe_xrow(slot, k, nr, xPerSlot) * ldx;
    // a plain output (qmm.cu's YOut: every column to y0)
    YOut o{};
    o.y0 = y + (size_t)(which * nsel + slot) * ldy;
    o.ld0 = ldy;
    o.n1 = o.n2 = 0x7fffffff;
    if constexpr (Q8)
        qmv8<KIND, ASYM, false>(w, xr, ldx, o, 1, ws + (size_t)job * wsPer, counters + job * ctrPer);
    else if constexpr (DENSE)
        dmv<BF16, 8>(w, xr, ldx, o, 1, ws + (size_t)job * wsPer, counters + job * ctrPer);
    else
        qmv4<KIND, ASYM, 8, SILU>(w, xr, SILU ? nsel * ldx : ldx, o, 1, ws + (size_t)job * wsPer, counters + job * ctrPer);
}

#define MOE_MV_KERNEL(NAME, KIND, ASYM, DENSE, BF, SILU, Q8)                                                        \
    MARLIN_KERNEL void __launch_bounds__(QW * 32)                                                            \
        NAME(const WDesc* tab, const int* ids, int k, int nsel, int nr, int se, int mats, int mat0, const float* x,  \
             int ldx, int xPerSlot, float* y, int ldy, float* ws, int wsPer, int* counters, int ctrPer) {            \
        moe_mv<KIND, ASYM, DENSE, BF, SILU, Q8>(tab, ids, k, nsel, nr, se, mats, mat0, x, ldx, xPerSlot, y, ldy, ws, \
                                                wsPer, counters, ctrPer);                                            \
    }
MOE_MV_KERNEL(moe_qmv_int4, PACK_INT4, false, false, false, false, false)
MOE_MV_KERNEL(moe_qmv_int4_asym, PACK_INT4, true, false, false, false, false)
MOE_MV_KERNEL(moe_qmv_fp4, PACK_FP4, false, false, false, false, false)
MOE_MV_KERNEL(moe_dmv_f16, 0, false, true, false, false, false)
MOE_MV_KERNEL(moe_dmv_bf16, 0, false, true, true, false, false)
MOE_MV_KERNEL(moe_qmv_int4_silu, PACK_INT4, false, false, false, true, false)
MOE_MV_KERNEL(moe_qmv_int4_asym_silu, PACK_INT4, true, false, false, true, false)
MOE_MV_KERNEL(moe_qmv_fp4_silu, PACK_FP4, false, false, false, true, false)
MOE_MV_KERNEL(moe_qmv_fp4_g16, PACK_FP4G16, false, false, false, false, false)
MOE_MV_KERNEL(moe_qmv_fp4_g16_silu, PACK_FP4G16, false, false, false, true, false)
MOE_MV_KERNEL(moe_qmv_fp8, Q8_FP8, false, false, false, false, true)
MOE_MV_KERNEL(moe_qmv_gptq8, Q8_GPTQ, false, false, false, false, true)
MOE_MV_KERNEL(moe_qmv_gptq8_asym, Q8_GPTQ, true, false, false, false, true)

// dst[r, :] = Σ_j wts[r·k + j] · out[r·k + j, :], the k choices of row r
// taken in increasing expert id (the CPU's order of accumulation: it adds
// expert by expert), starting from zero. One block per row; k ≤ 32. With
// shared, the shared expert's output (row rows·k + r of out) is added to
// the sum; with accum, the sum is added to dst (h += experts + shared, in
// the order of the CPU backend's ExpertsAdd).
//
// Only out is the previous kernel's (the down products'): the choices, the
// weights (the routing's) and dst (the residual stream, last written by
// the attention block's output product) come from earlier launches, so
// they are read and the choices sorted before the wait (pdl_wait's
// contract, common.cu), leaving one round trip after it.
MARLIN_KERNEL void moe_combine(float* __restrict__ dst, const float* __restrict__ out, const int* __restrict__ ids,
                                       const float* __restrict__ wts, int k, int cols, int shared, int accum) {
    __shared__ int order[32], sid[32];
    __shared__ float sw[32];
    const int r = blockIdx.x;
    if (threadIdx.x < k) sid[threadIdx.x] = ld_cg_i32(ids + r * k + threadIdx.x), sw[threadIdx.x] = ld_cg(wts + r * k + threadIdx.x);
    __syncthreads();
    if (threadIdx.x == 0) {
        // insertion sort of the row's slots by expert id (ids are distinct)
        for (int j = 0; j < k; j++) {
            const int id = sid[j];
            int p = j;
            while (p > 0 && sid[order[p - 1]] > id) {
                order[p] = order[p - 1];
                p--;
            }
            order[p] = j;
        }
    }
    __syncthreads();
    // dst's values of the thread's first two columns before the wait
    const int c0 = threadIdx.x, c1 = threadIdx.x + blockDim.x;
    const float d00 = accum && c0 < cols ? ld_cg(dst + (size_t)r * cols + c0) : 0.f;
    const float d01 = accum && c1 < cols ? ld_cg(dst + (size_t)r * cols + c1) : 0.f;
    pdl_wait();
    pdl_trigger();
    // a column's loads (8 choices at a time, the shared expert's value) are
    // issued before its sums
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float sh = shared ? out[((size_t)gridDim.x * k + r) * cols + c] : 0.f;
        const float d0 = !accum ? 0.f : c == c0 ? d00 : c == c1 ? d01 : dst[(size_t)r * cols + c];
        float s = 0.f;
        for (int j0 = 0; j0 < k; j0 += 8) {
            float v[8];
#pragma unroll
            for (int u = 0; u < 8; u++) v[u] = j0 + u < k ? out[(size_t)(r * k + order[j0 + u]) * cols + c] : 0.f;
#pragma unroll
            for (int u = 0; u < 8; u++)
                if (j0 + u < k) s += sw[order[j0 + u]] * v[u];
        }
        if (shared) s += sh;
        if (accum) s = d0 + s;
        dst[(size_t)r * cols + c] = s;
    }
}

// route_row: routing without expert groups by one warp (the single-thread
// route above took ~27 µs a call for 64 experts): lane l holds experts l,
// l+32, … (E ≤ 256) of the logits row and computes p and the rank exactly
// as route does; each of the topK ≤ 32 picks is the warp's best unused
// rank, ties to the lower expert index (route's stable choice); the
// weights are normalised in pick order as route does, and written with the
// ids to ids[0…topK), wts[0…topK). The softmax's sums are warp reductions
// (route sums in expert order: the double sum may differ in its last bits,
// which float32 p rarely sees).
__device__ __forceinline__ void route_row(int* __restrict__ ids, float* __restrict__ wts, const float* row,
                                          const float* __restrict__ bias, int E, int topK, int sigmoid, int normalize,
                                          float scale) {
    const int lane = threadIdx.x & 31;
    float p[8], rank[8];
    if (sigmoid) {
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int e = lane + 32 * i;
            p[i] = rank[i] = NEG_INF;
            if (e < E) {
                p[i] = (float)(1.0 / (1.0 + exp(-(double)row[e])));
                rank[i] = bias ? p[i] + bias[e] : p[i];
            }
        }
    } else {
        float m = NEG_INF;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (lane + 32 * i < E) m = fmaxf(m, row[lane + 32 * i]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        double sum = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            p[i] = 0.f;
            if (lane + 32 * i < E) {
                const double x = exp((double)(row[lane + 32 * i] - m));
                p[i] = (float)x;
                sum += x;
            }
        }
        sum = warp_sum_d(sum);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            rank[i] = NEG_INF;
            if (lane + 32 * i < E) p[i] = rank[i] = (float)((double)p[i] / sum);
        }
    }
    unsigned used = 0;
    float w = 0.f, total = 0.f;
    int myId = 0;
    for (int j = 0; j < topK; j++) {
        int bi = -1;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (lane + 32 * i < E && !(used >> i & 1u) && (bi < 0 || rank[i] > rank[bi])) bi = i;
        float br = NEG_INF, bp = 0.f;
        int be = 0x7fffffff;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (i == bi) br = rank[i], bp = p[i], be = lane + 32 * i;
        for (int o = 16; o > 0; o >>= 1) {
            const float orr = __shfl_xor_sync(0xffffffffu, br, o), op = __shfl_xor_sync(0xffffffffu, bp, o);
            const int oe = __shfl_xor_sync(0xffffffffu, be, o);
            if (oe != 0x7fffffff && (be == 0x7fffffff || orr > br || (orr == br && oe < be))) br = orr, bp = op, be = oe;
        }
        if ((be & 31) == lane) used |= 1u << (be >> 5);
        if (lane == j) myId = be, w = bp;
        total += bp;  // every lane: the same sum in pick order
    }
    if (lane < topK) {
        float v = w;
        if (normalize) v = v / (total + 1e-20f);
        ids[lane] = myId;
        wts[lane] = v * scale;
    }
}

// route_warp: route_row for each row of the logits [rows, E], a warp a
// row, blocks of 4 warps.
MARLIN_KERNEL void route_warp(int* __restrict__ ids, float* __restrict__ wts, const float* __restrict__ logits,
                                      const float* __restrict__ bias, int rows, int E, int topK, int sigmoid,
                                      int normalize, float scale) {
    const int r = blockIdx.x * 4 + (threadIdx.x >> 5);
    if (r >= rows) return;
    route_row(ids + (size_t)r * topK, wts + (size_t)r * topK, logits + (size_t)r * E, bias, E, topK, sigmoid, normalize,
              scale);
}

// Four consecutive numbers of a dense row-major weight (float32, fp16 or
// bf16) from element off, which must be a multiple of 4.
template <int F>
__device__ __forceinline__ float4 dense4(const void* data, size_t off) {
    if (F == FMT_F32) return *(const float4*)((const float*)data + off);
    const uint2 v = *(const uint2*)((const u16*)data + off);
    const u16 e[4] = {(u16)(v.x & 0xffffu), (u16)(v.x >> 16), (u16)(v.y & 0xffffu), (u16)(v.y >> 16)};
    if (F == FMT_BF16) return make_float4(bf16_to_f32(e[0]), bf16_to_f32(e[1]), bf16_to_f32(e[2]), bf16_to_f32(e[3]));
    return make_float4(f16_to_f32(e[0]), f16_to_f32(e[1]), f16_to_f32(e[2]), f16_to_f32(e[3]));
}

// route_mv: a router in one launch — the logits product and route_row
// together (they were a dense matmul of E columns, whose fixed cost at
// decode is several times its 256 KB of weights at the GLM shape, and
// route_warp), with the block's RMSNorm folded in. W is the router [E, K]
// in float32, fp16 or bf16.
//
// Grid (nb, rows), RW warps a block: the row's experts are spread over nb
// blocks (one block a row read the GLM router's 256 KB through one
// multiprocessor: 11 µs), warp w of block b taking experts b·RW + w,
// b·RW + w + nb·RW, …. Launched with programmatic dependent launch: each
// warp loads its first expert's first RU·128 weights into registers
// before pdl_wait (the router is constant), so that they arrive while the
// previous kernel ends. Then x row r is staged in shared memory — with a
// norm (nw not null) as rms_norm forms it: the block sums the row's
// squares in float64, r = 1/√(mean + eps) rounded once, (x·r)·nw in
// float32, and block 0 writes the normed row to xn — each logit is a
// warp's float32 sum (lanes over k, 4 numbers a load, in k order, then a
// warp reduction; the same sums as before the split) into lg [rows, E],
// and the row's last block to finish (a counter per row, which it resets)
// routes them with route_row. Requires K % 4 == 0, ldx % 4 == 0, E ≤ 256,
// topK ≤ 32; dynamic shared memory (K + E) floats.
//
// CL (sm_90, nb ≤ 8, the row's blocks one thread-block cluster): the
// logits stay in each block's shared memory instead; after a cluster
// barrier block 0 gathers them through distributed shared memory and
// routes, and a second barrier keeps the others' shared memory until it
// has — no global logits, fence, counter or L2 read on the row's path.
#define RW 8
#define RU 16
template <int F, bool CL>
__device__ __forceinline__ void route_mv(int* __restrict__ ids, float* __restrict__ wts, const float* x, int ldx,
                                         float* xn, int ldxn, const float* __restrict__ nw, float eps, const WDesc& w,
                                         const float* __restrict__ bias, int topK, int sigmoid, int normalize,
                                         float scale, float* lg, int* counters) {
    extern __shared__ __align__(16) float rsm[];
    const int r = blockIdx.y, E = w.N, K = w.K, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nt = RW * 32, estep = gridDim.x * RW;
    float* xs = rsm;
    float4 wv[RU];
    auto load = [&](int e, int k0) {
#pragma unroll
        for (int u = 0; u < RU; u++) {
            const int k = k0 + 128 * u + 4 * lane;
            wv[u] = e < E && k < K ? dense4<F>(w.data, (size_t)e * K + k) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
    };
    int e = blockIdx.x * RW + warp;
    load(e, 0);
    // the norm weights of the block's first NWR·nt inputs (each thread
    // copies the ones it applies; the rest are read after the wait) and
    // the score biases for the routing (the barrier after the norm
    // publishes them), into shared memory: constant data, read before the
    // wait too, so that no DRAM round trip follows it
    constexpr int NWR = 8;
    __shared__ float snw[NWR * RW * 32], sbias[256];
    if (nw != nullptr)
        for (int i = threadIdx.x; i < min(K, NWR * nt); i += nt) snw[i] = nw[i];
    for (int i = threadIdx.x; i < E; i += nt) sbias[i] = bias != nullptr ? bias[i] : 0.f;  // (p + 0 is p)
    pdl_wait();
    pdl_trigger();

    // x row r into shared memory (four loads in flight a thread), and its
    // sum of squares
    const float* xr = x + (size_t)r * ldx;
    double ss = 0;
    for (int i0 = 4 * threadIdx.x; i0 < K; i0 += 4 * 4 * nt) {
        float4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = i0 + 4 * u * nt;
            v[u] = i < K ? *(const float4*)(xr + i) : make_float4(0.f, 0.f, 0.f, 0.f);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = i0 + 4 * u * nt;
            if (i < K) *(float4*)(xs + i) = v[u];
            if (nw) ss += (double)v[u].x * v[u].x + (double)v[u].y * v[u].y + (double)v[u].z * v[u].z + (double)v[u].w * v[u].w;
        }
    }
    if (nw) {
        const float rr = rms_scale(ss, K, eps);
        float* xo = xn + (size_t)r * ldxn;
        for (int i = threadIdx.x; i < K; i += nt) {
            const float v = __fmul_rn(__fmul_rn(xs[i], rr), i < NWR * nt ? snw[i] : nw[i]);
            xs[i] = v;
            if (blockIdx.x == 0) xo[i] = v;
        }
    }
    __syncthreads();

    // the logits of this warp's experts (the first chunk already loaded)
    for (; e < E; e += estep) {
        float s = 0.f;
        for (int k0 = 0; k0 < K; k0 += 128 * RU) {
            if (k0 > 0) load(e, k0);
#pragma unroll
            for (int u = 0; u < RU; u++) {
                const int k = k0 + 128 * u + 4 * lane;
                if (k < K) {
                    const float4 xv = *(const float4*)(xs + k);
                    s = fmaf(wv[u].w, xv.w, fmaf(wv[u].z, xv.z, fmaf(wv[u].y, xv.y, fmaf(wv[u].x, xv.x, s))));
                }
            }
        }
        s = warp_sum(s);
        if (lane == 0) {
            if (CL)
                rsm[K + e] = s;
            else
                lg[(size_t)r * E + e] = s;
        }
        if (e + estep < E) load(e + estep, 0);
    }

    float* lgs = rsm + K;
    if (CL) {
        // block 0 of the cluster gathers the row's logits (expert e was
        // computed by block (e mod estep) / RW) and routes
        cluster_sync();
        const bool first = blockIdx.x == 0;
        if (first)
            for (int i = threadIdx.x; i < E; i += nt) {
                const int b = (i % estep) / RW;
                if (b != 0) lgs[i] = ld_dsmem1(lgs + i, (u32)b);
            }
        cluster_sync();
        if (!first) return;
    } else {
        // the row's last block routes
        if (!last_split(&counters[r], gridDim.x)) return;
        for (int i = threadIdx.x; i < E; i += nt) lgs[i] = ld_cg(lg + (size_t)r * E + i);
        __syncthreads();
    }
    if (warp == 0) {
        route_row(ids + (size_t)r * topK, wts + (size_t)r * topK, lgs, sbias, E, topK, sigmoid, normalize, scale);
        if (lane == 0 && !CL) counters[r] = 0;
    }
}

#define ROUTE_MV_KERNEL(NAME, F, CL)                                                                                \
    MARLIN_KERNEL void __launch_bounds__(RW * 32)                                                                   \
        NAME(int* ids, float* wts, const float* x, int ldx, float* xn, int ldxn, const float* nw, float eps, WDesc w, \
             const float* bias, int topK, int sigmoid, int normalize, float scale, float* lg, int* counters) {      \
        route_mv<F, CL>(ids, wts, x, ldx, xn, ldxn, nw, eps, w, bias, topK, sigmoid, normalize, scale, lg, counters); \
    }
ROUTE_MV_KERNEL(route_mv_f32, FMT_F32, false)
ROUTE_MV_KERNEL(route_mv_f16, FMT_F16, false)
ROUTE_MV_KERNEL(route_mv_bf16, FMT_BF16, false)
// the same in a cluster a row (CL)
ROUTE_MV_KERNEL(route_mv_f32_cl, FMT_F32, true)
ROUTE_MV_KERNEL(route_mv_f16_cl, FMT_F16, true)
ROUTE_MV_KERNEL(route_mv_bf16_cl, FMT_BF16, true)
