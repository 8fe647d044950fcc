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

// Store each row's keys and values in the cache. One block per row,
// threads over kvHeads·dk (then kvHeads·dv) values.
extern "C" __global__ void kv_store(float* __restrict__ kc, float* __restrict__ vc, const float* __restrict__ k,
                                    const float* __restrict__ v, const int* __restrict__ stBlk,
                                    const int* __restrict__ stSlot, int kvHeads, int dk, int dv, int bs) {
    const int r = blockIdx.x, blk = stBlk[r], slot = stSlot[r];
    if (blk < 0) return;
    for (int i = threadIdx.x; i < kvHeads * dk; i += blockDim.x) {
        int h = i / dk, d = i % dk;
        kc[(((size_t)blk * kvHeads + h) * bs + slot) * dk + d] = k[(size_t)r * kvHeads * dk + i];
    }
    if (v == nullptr) return;
    for (int i = threadIdx.x; i < kvHeads * dv; i += blockDim.x) {
        int h = i / dv, d = i % dv;
        vc[(((size_t)blk * kvHeads + h) * bs + slot) * dv + d] = v[(size_t)r * kvHeads * dv + i];
    }
}

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
extern "C" __global__ void __launch_bounds__(128)
    attention(float* __restrict__ out, const float* __restrict__ q, const float* __restrict__ kc,
              const float* __restrict__ vc, const int* __restrict__ rowN, const int* __restrict__ rowTab,
              const int* __restrict__ tables, int heads, int kvHeads, int dk, int dv, int ldv, int bs, float scale) {
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
        const float* kp = kc + cell * dk;
        float d = 0.f;
        for (int i = lane; i < dk; i += 32) d = fmaf(qs[i], kp[i], d);
        d = warp_sum(d);
        const float s = d * scale;
        const float mn = fmaxf(m, s);
        const float corr = expf(m - mn);  // 0 for the first position (m = −∞)
        const float p = expf(s - mn);
        l = l * corr + p;
        const float* vp = vc + cell * ldv;
        for (int i = lane; i < dv; i += 32) a[i] = a[i] * corr + p * vp[i];
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
