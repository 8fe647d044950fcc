// Token sampling on the device: one block per row of logits draws the row's
// next token as package sampling (backend/sampling) defines it, so that
// only the chosen ids travel to the host.
//
// Every pass walks the row in the same layout: thread t owns the
// contiguous ids [t·chunk, (t+1)·chunk), so "vocabulary order" is thread
// order, then order within a thread — which is what lets a block scan of
// per-thread counts give each token its rank among equal ones.
//
// The filters keep a token by comparing its unnormalised probability
// e = exp(l/T − max l/T) (the most likely token has e = 1) with thresholds
// found by bisection on the bits of a positive float (their order is the
// floats' order), each step one pass that counts or sums over the row:
//   top-k: τk is the k-th largest e (the largest τ with #(e ≥ τ) ≥ k); kept
//          are e > τk and the first k − #(e > τk) tokens with e = τk;
//   top-p: over those, τp is the largest τ with Σ(e ≥ τ) ≥ TopP·Σe; kept
//          are e > τp and, in id order, as many tokens with e = τp as the
//          sum needs to reach TopP·Σe (sampling accumulates the sorted
//          probabilities until it does);
//   min-p: e ≥ MinP (MinP times the largest e, which is 1).
// The draw is the first kept token, in id order, where the running sum of
// e exceeds U·Σ(kept e): a block scan of per-thread sums finds the thread,
// which walks its chunk. Sums are double; they differ from the CPU's
// sequential sums in the last bits, which changes a draw only when U·Σ
// falls within ~1e-15 of a boundary.

#define SAMPLE_THREADS 1024

struct SampleParams {  // sampling.Params as cuda.Sample stages it (24 bytes)
    float temperature;
    int top_k;
    float top_p;
    float min_p;
    double u;
};

template <typename T>
__device__ __forceinline__ T warp_total(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// block_sum returns the sum over the block of v (every thread gets it).
// It begins with a barrier, so a result may be read until the next call.
template <typename T>
__device__ T block_sum(T v) {
    __shared__ T part[32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_total(v);
    __syncthreads();
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        T s = lane < (int)(blockDim.x >> 5) ? part[lane] : T(0);
        s = warp_total(s);
        if (lane == 0) part[0] = s;
    }
    __syncthreads();
    return part[0];
}

// block_excl_scan_d returns the sum of v over the threads before this one
// (and, in *total, over all of them).
__device__ double block_excl_scan_d(double v, double* total) {
    __shared__ double part[32];
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    double inc = v;
    for (int o = 1; o < 32; o <<= 1) {
        const double n = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += n;
    }
    __syncthreads();
    if (lane == 31) part[w] = inc;
    __syncthreads();
    if (w == 0) {
        double s = lane < (int)(blockDim.x >> 5) ? part[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            const double n = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) s += n;
        }
        part[lane] = s;  // inclusive over warps
    }
    __syncthreads();
    *total = part[(blockDim.x >> 5) - 1];
    return (w > 0 ? part[w - 1] : 0) + inc - v;
}

__device__ __forceinline__ int block_excl_scan_i(int v, int* total) {
    double t;
    const double r = block_excl_scan_d((double)v, &t);  // exact for counts < 2^53
    *total = (int)t;
    return (int)r;
}

// sample_rows: out[r] = the token drawn from row r of logits [rows, V]
// with params[r]. Blocks of SAMPLE_THREADS, one per row.
MARLIN_KERNEL void sample_rows(int* __restrict__ out, const float* __restrict__ logits,
                                       const SampleParams* __restrict__ params, int V) {
    const int r = blockIdx.x, t = threadIdx.x;
    const float* row = logits + (size_t)r * V;
    const SampleParams p = params[r];
    const int chunk = (V + (int)blockDim.x - 1) / (int)blockDim.x;
    const int lo = min(t * chunk, V), hi = min(lo + chunk, V);
    __shared__ float s_best[32];
    __shared__ int s_idx[32];
    __shared__ int s_found;

    // argmax: the first index of the largest logit (NaN never wins; 0 when
    // nothing beats −Inf); whether a logit is +Inf or finite
    float best = NEG_INF;
    int bi = V, posinf = 0, finite = 0;
    for (int i = lo; i < hi; i++) {
        const float l = row[i];
        if (l > best) best = l, bi = i;
        if (isinf(l) && l > 0) posinf = 1;
        else if (isfinite(l)) finite = 1;
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
    }
    if ((t & 31) == 0) s_best[t >> 5] = best, s_idx[t >> 5] = bi;
    __syncthreads();
    best = s_best[0], bi = s_idx[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++)
        if (s_best[w] > best || (s_best[w] == best && s_idx[w] < bi)) best = s_best[w], bi = s_idx[w];
    if (best == NEG_INF) bi = 0;
    posinf = block_sum<int>(posinf);
    finite = block_sum<int>(finite);
    const float inv = 1.0f / p.temperature;
    if (!(p.temperature > 0) || isinf(inv) || posinf > 0 || finite == 0) {
        if (t == 0) out[r] = bi;
        return;
    }
    const float m = best * inv;  // = max(l·inv): multiplying by inv > 0 keeps the order
    auto ev = [&](int i) -> float {
        const float l = row[i];
        return (l != l || l == NEG_INF) ? 0.f : expf(l * inv - m);
    };

    // top-k
    float tauK = 0.f;  // 0: no top-k cut (every e > 0 passes it)
    int needK = 0, tieK = 0;
    {
        int npos = 0;
        for (int i = lo; i < hi; i++) npos += ev(i) > 0.f;
        npos = block_sum<int>(npos);
        if (p.top_k > 0 && p.top_k < npos) {
            unsigned a = 1u, b = __float_as_uint(1.0f);
            while (a < b) {
                const unsigned mid = a + (b - a + 1) / 2;
                const float v = __uint_as_float(mid);
                int c = 0;
                for (int i = lo; i < hi; i++) c += ev(i) >= v;
                if (block_sum<int>(c) >= p.top_k) a = mid;
                else b = mid - 1;
            }
            tauK = __uint_as_float(a);
            int gt = 0, eq = 0;
            for (int i = lo; i < hi; i++) {
                const float e = ev(i);
                gt += e > tauK;
                eq += e == tauK;
            }
            gt = block_sum<int>(gt);
            needK = p.top_k - gt;
            int total;
            tieK = block_excl_scan_i(eq, &total);  // ties with smaller ids
        }
    }
    // keptK walks the chunk in order: call with the running tie rank
    auto keptK = [&](float e, int& rank) -> bool {
        if (!(e > 0.f)) return false;
        if (tauK == 0.f || e > tauK) return true;
        if (e < tauK) return false;
        return rank++ < needK;
    };

    // top-p
    float tauP = 0.f;
    int needP = 0, tieP = 0;
    if (p.top_p > 0.f && p.top_p < 1.f) {
        double s = 0;
        int rk = tieK;
        for (int i = lo; i < hi; i++) {
            const float e = ev(i);
            if (keptK(e, rk)) s += e;
        }
        const double want = (double)p.top_p * block_sum<double>(s);
        unsigned a = 1u, b = __float_as_uint(1.0f);
        while (a < b) {
            const unsigned mid = a + (b - a + 1) / 2;
            const float v = __uint_as_float(mid);
            double c = 0;
            rk = tieK;
            for (int i = lo; i < hi; i++) {
                const float e = ev(i);
                if (keptK(e, rk) && e >= v) c += e;
            }
            if (block_sum<double>(c) >= want) a = mid;
            else b = mid - 1;
        }
        tauP = __uint_as_float(a);
        double gt = 0;
        int eq = 0;
        rk = tieK;
        for (int i = lo; i < hi; i++) {
            const float e = ev(i);
            if (keptK(e, rk)) {
                if (e > tauP) gt += e;
                else if (e == tauP) eq++;
            }
        }
        gt = block_sum<double>(gt);
        needP = max(1, (int)ceil((want - gt) / (double)tauP));
        int total;
        tieP = block_excl_scan_i(eq, &total);
    }
    // kept: every filter, walking the chunk in order
    auto kept = [&](float e, int& rk, int& rp) -> bool {
        if (!keptK(e, rk)) return false;
        if (tauP > 0.f) {
            if (e < tauP) return false;
            if (e == tauP && rp++ >= needP) return false;
        }
        return !(p.min_p > 0.f) || e >= p.min_p;  // min_p times the largest e, 1
    };

    // the draw
    double s = 0;
    int last = -1, rk = tieK, rp = tieP;
    for (int i = lo; i < hi; i++) {
        const float e = ev(i);
        if (kept(e, rk, rp)) s += e, last = i;
    }
    double total;
    const double base = block_excl_scan_d(s, &total);
    if (t == 0) s_found = V;
    __syncthreads();
    const double target = p.u * total;
    if (s > 0 && base <= target && target < base + s) {
        double x = target - base;
        rk = tieK, rp = tieP;
        for (int i = lo; i < hi; i++) {
            const float e = ev(i);
            if (kept(e, rk, rp)) {
                x -= e;
                if (x < 0) {
                    atomicMin(&s_found, i);
                    break;
                }
            }
        }
    }
    // the last kept token when rounding left the target past every sum
    for (int o = 16; o > 0; o >>= 1) last = max(last, __shfl_xor_sync(0xffffffffu, last, o));
    __syncthreads();
    if ((t & 31) == 0) s_idx[t >> 5] = last;
    __syncthreads();
    if (t == 0) {
        int l = -1;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) l = max(l, s_idx[w]);
        out[r] = s_found < V ? s_found : (l >= 0 ? l : bi);
    }
}
