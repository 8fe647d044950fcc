// qmm.cu — tensor-core decode kernels (M ≤ 16 rows of x) for the packed
// 4-bit layout (GPTQ int4, FP4; see pack.go for the layout) and for dense
// fp16/bf16 weights, plus the generic accessors of the packed layout that
// the tile kernels of matmul.cu use for larger M.
//
// Why tensor cores for a matrix-vector product: at M = 1 the work is
// bound by reading the weights, but dequantizing 4-bit codes and doing the
// multiply-adds in fp32 SIMT costs more issue slots than the memory system
// leaves (8·K·N weights at 3 TB/s); mma.m16n8k16 does 2048 multiply-adds
// per instruction, so the arithmetic nearly vanishes and M up to 16 costs
// the same as M = 1. Rows of the 16-row A fragment past M are zero.
//
// Precision: x enters the tensor cores as two fp16 (bf16 for bf16 weights)
// parts, hi + lo (split_f16), so it is carried to ~22 (16) bits;
// dequantized 4-bit weights are (q − z)·s rounded once to fp16 (int4: q − z
// is exact, then one multiply; FP4: e2m1 is exact in fp16, then one
// multiply), dense fp16/bf16 weights are exact; products and sums are
// fp32. So a product's relative error is at most ~2^-11 for 4-bit weights
// and ~2^-16 for dense ones, against the CPU's exact float32 dequantization.
// x must stay below 65504 in magnitude for the fp16 kernels.

#define QW 4  // warps per block
#define QU 6  // steps (2 loads a lane each) of weights in flight per warp (4-bit kernel)
#define DU 2  // steps in flight per warp (dense kernel; a step is 8 loads)

// 16-byte vectors (own types: the program is compiled without CUDA headers)
struct alignas(16) V4u {
    u32 x, y, z, w;
};
struct alignas(16) V4f {
    float x, y, z, w;
};

#define PACK_INT4 1
#define PACK_FP4 2
#define PACK_FP4G16 3  // qmv4 and wg_qgemm (hopper.cu): FP4 with groups of 16, two a step

__device__ __forceinline__ u32 pack_f16x2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
__device__ __forceinline__ u32 hsub2(u32 a, u32 b) {
    u32 r;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
__device__ __forceinline__ u32 hmul2(u32 a, u32 b) {
    u32 r;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
// d += A·B on the tensor cores: A 16×16 (4 registers of f16x2), B 16×8
// (2 registers), D 16×8 fp32 (lane l: rows l/4 and l/4+8, columns 2(l%4),
// 2(l%4)+1).
__device__ __forceinline__ void mma_f16(float* d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_bf16(float* d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// 16-byte load of streamed weights: read once, so "cache streaming"
// (evict-first in L1 and L2), leaving the caches to x and the scales.
__device__ __forceinline__ V4u ld_stream(const V4u* p) {
    V4u v;
    asm volatile("ld.global.cs.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}
// Load bypassing L1 (the split-K partial sums other blocks wrote).
__device__ __forceinline__ float ld_cg(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}
__device__ __forceinline__ int ld_cg_i32(const int* p) {
    int v;
    asm volatile("ld.global.cg.s32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}

// Element (n, k) of a packed 4-bit weight (k in the packed input order),
// for the generic tile and embedding kernels: the inverse of the mapping
// described in pack.go.
template <int KIND>
__device__ __forceinline__ float pload(const WDesc& w, int n, int k) {
    const int nt = n >> 6, s = k >> 4, kk = k & 15, j8 = (n & 63) >> 3, c = n & 7;
    const int t = kk >> 2, r = kk & 3, lane = 4 * c + t;
    const int j = 2 * (j8 & 1) + (r >> 1), i = j + 4 * (r & 1);
    const int steps = w.K >> 4, groups = w.K / w.group;
    const u32 word = ((const u32*)w.data)[((size_t)(nt * steps + s) * 32 + lane) * 4 + (j8 >> 1)];
    const u32 code = (word >> (4 * i)) & 15u;
    const size_t off = (size_t)(nt * groups + k / w.group) * 64 + 8 * c + j8;
    const float sc = f16_to_f32(((const u16*)w.scales)[off]);
    if (KIND == PACK_FP4) return e2m1_to_f32(code) * sc;
    const float z = w.zeros ? -f16_to_f32(((const u16*)w.zeros)[2 * off]) - 1024.0f : 8.0f;
    return ((float)code - z) * sc;
}
template <> __device__ __forceinline__ float wload<FMT_PINT4>(const WDesc& w, int n, int k) { return pload<PACK_INT4>(w, n, k); }
template <> __device__ __forceinline__ float wload<FMT_PFP4>(const WDesc& w, int n, int k) { return pload<PACK_FP4>(w, n, k); }

// xp[m, p] = x[m, perm[p]]: the inputs in the packed (act-order) order.
MARLIN_KERNEL void permute_cols(float* __restrict__ xp, const float* __restrict__ x, int ldx,
                                        const int* __restrict__ perm, int K) {
    const int m = blockIdx.x;
    for (int p = threadIdx.x; p < K; p += blockDim.x) xp[(size_t)m * K + p] = x[(size_t)m * ldx + perm[p]];
}

// Where a product's outputs go (mirrored by type yout in matrix.go): the
// columns n of y = x·Wᵀ for a weight W that may be several weights stored
// together (LoadMatrices):
//   mode 0: segments: n < n1 → y0[m, n], n < n2 → y1[m, n − n1], else
//           y2[m, n − n2] (one plain output: n1 = n2 = N);
//   mode 1: a pair of weights with interleaved rows: even n → y0[m, n/2],
//           odd n → y1[m, n/2];
//   mode 2: SwiGLU of an interleaved (gate, up) pair:
//           y0[m, n/2] = silu(y[m, n])·y[m, n+1] for even n.
// accum (modes 0 and 1) adds to what y holds instead of storing. Every
// output element is written by exactly one thread.
struct YOut {
    float *y0, *y1, *y2;
    int ld0, ld1, ld2;
    int n1, n2;
    int mode, accum;
    int pad_;
};

__device__ __forceinline__ void yput(const YOut& o, int m, int n, float v) {
    float* p;
    if (o.mode == 1) {
        p = (n & 1) ? o.y1 + (size_t)m * o.ld1 + (n >> 1) : o.y0 + (size_t)m * o.ld0 + (n >> 1);
    } else if (n < o.n1) {
        p = o.y0 + (size_t)m * o.ld0 + n;
    } else if (n < o.n2) {
        p = o.y1 + (size_t)m * o.ld1 + (n - o.n1);
    } else {
        p = o.y2 + (size_t)m * o.ld2 + (n - o.n2);
    }
    if (o.accum) v += *p;
    *p = v;
}
// The outputs of columns n (even) and n + 1 of row m (those < N).
__device__ __forceinline__ void yput2(const YOut& o, int m, int n, float a, float b, int N) {
    if (o.mode == 2) {
        // as silu_mul (ops.cu) and the CPU's vkernels.SiLUMul
        if (n + 1 < N) o.y0[(size_t)m * o.ld0 + (n >> 1)] = a / (1.0f + expf(-a)) * b;
        return;
    }
    if (n < N) yput(o, m, n, a);
    if (n + 1 < N) yput(o, m, n + 1, b);
}

// y = src [M, N] (row-major) sent through o: the fused outputs of the
// paths that produce a plain product first (M > 16, unaligned x). One
// thread per pair of columns, grid-stride.
MARLIN_KERNEL void yout_apply(YOut o, const float* __restrict__ src, int M, int N) {
    const int pairs = (N + 1) >> 1;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < (long)M * pairs; i += (long)gridDim.x * blockDim.x) {
        const int m = (int)(i / pairs), n = 2 * (int)(i % pairs);
        const float* r = src + (size_t)m * N;
        yput2(o, m, n, r[n], n + 1 < N ? r[n + 1] : 0.f, N);
    }
}

__device__ __forceinline__ float4 ld_cg4(const float* p) {
    float4 v;
    asm volatile("ld.global.cg.v4.f32 {%0,%1,%2,%3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p));
    return v;
}
__device__ __forceinline__ void add4(float4& s, const float4& v) {
    s.x += v.x, s.y += v.y, s.z += v.z, s.w += v.w;
}

// Thread-block clusters (sm_90): the block's rank in its cluster, the
// cluster's size, a barrier of all the cluster's threads (arrive releases,
// wait acquires by default:
// shared-memory writes before it are visible after it in every block),
// and two or four floats of another block's shared memory (distributed
// shared memory: the address mapped to block rank's copy). Below sm_90 the
// kernels that use them are not launched (the host checks the device).
__device__ __forceinline__ u32 cluster_ctarank() {
    u32 r = 0;
#if __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return r;
}
__device__ __forceinline__ u32 cluster_nctarank() {
    u32 r = 1;
#if __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
#endif
    return r;
}
__device__ __forceinline__ void cluster_sync() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
#else
    __syncthreads();
#endif
}
__device__ __forceinline__ float ld_dsmem1(const float* p, u32 rank) {
    float v = 0.f;
#if __CUDA_ARCH__ >= 900
    u32 a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"((u32)__cvta_generic_to_shared(p)), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(a));
#endif
    return v;
}
__device__ __forceinline__ float2 ld_dsmem2(const float* p, u32 rank) {
    float2 v = make_float2(0.f, 0.f);
#if __CUDA_ARCH__ >= 900
    u32 a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"((u32)__cvta_generic_to_shared(p)), "r"(rank));
    asm volatile("ld.shared::cluster.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(a));
#endif
    return v;
}

__device__ __forceinline__ float4 ld_dsmem4(const float* p, u32 rank) {  // four floats, 16-byte aligned
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#if __CUDA_ARCH__ >= 900
    u32 a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"((u32)__cvta_generic_to_shared(p)), "r"(rank));
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(a));
#endif
    return v;
}

// cluster_store ends a decode product run over tile clusters (qmv4's TCL):
// the C blocks of a thread-block cluster (blockIdx.x / C = the column tile)
// and their QW warps each hold the sums of one contiguous part of the
// tile's steps (t8 in stripe_store's order). The warps leave them in
// shared memory (the ring's, free after the loop) and the block adds its
// four in warp order; after a cluster barrier block 0 of the cluster adds
// the blocks' sums in rank order through distributed shared memory and
// writes y; a last barrier keeps every block's shared memory alive until
// then. No global partial sums, fences or atomics (the stripes' tail),
// and one fixed order: deterministic. Needs 5 KB of shared memory a warp
// (the ring has more).
__device__ __forceinline__ void cluster_store(const float t8[8][4], int tile, int N, const YOut& o, int M, unsigned char* smem) {
    const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2, warp = threadIdx.x >> 5;
    float* P = (float*)smem;        // [QW][16 rows][64 columns]: the warps' sums
    float* B = P + QW * 16 * 64;    // [16][64]: the block's
    __syncthreads();                // every warp is done with its ring
    float* mine = P + warp * 1024;
#pragma unroll
    for (int j8 = 0; j8 < 8; j8++) {
        const int col = 8 * j8 + 2 * t;
        if (c < M) *(float2*)(mine + c * 64 + col) = make_float2(t8[j8][0], t8[j8][1]);
        if (c + 8 < M) *(float2*)(mine + (c + 8) * 64 + col) = make_float2(t8[j8][2], t8[j8][3]);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < M * 64; e += blockDim.x) {
        float s = P[e];
#pragma unroll
        for (int q = 1; q < QW; q++) s += P[q * 1024 + e];
        B[e] = s;
    }
    cluster_sync();
    if (cluster_ctarank() == 0) {
        const u32 C = cluster_nctarank();
        for (int e2 = threadIdx.x; e2 < M * 32; e2 += blockDim.x) {
            const int m = e2 >> 5, n2 = 2 * (e2 & 31);
            float2 s = *(const float2*)(B + m * 64 + n2);
            for (u32 r = 1; r < C; r++) {
                const float2 v = ld_dsmem2(B + m * 64 + n2, r);
                s.x += v.x, s.y += v.y;
            }
            yput2(o, m, tile * 64 + n2, s.x, s.y, N);
        }
    }
    cluster_sync();
}

// Work split of the decode kernels ("stripes"). A step is 32 inputs of one
// 64-column tile; the steps are numbered tile-major, i = tile·spt + s with
// spt = K/32, which for the packed layout is also memory order (step i is
// the 512-byte tiles 2i and 2i+1). Every warp of the grid is an
// independent worker that takes an equal, contiguous range of steps,
// [w·per, (w+1)·per): all warps get the same amount of work whatever N
// and K (no partial waves), and a warp's weights are one contiguous
// stream. A range may start or end inside a column tile: the warps that
// share a tile (w_first … w_last) each leave their 16×64 partial sum in
// ws (slot tile + w, unique per pair), and the last one to arrive (an
// atomic counter per tile, which it resets) adds them in warp order and
// writes y — deterministic whatever the timing. A tile inside one warp's
// range is written directly.
//
// stripe_store writes a tile's sums (or its partial) at the end of the
// warp's part of it and reports whether this warp arrived last, so that
// it must add the partials; the kernels do that (stripe_reduce) after
// their loop, when the loop's registers are free: done inside the loop,
// the sum's loads in flight added to the loop's registers. Only the first
// and the last tile of a range can be shared, so a warp defers at most
// two sums.
__device__ __forceinline__ bool stripe_store(float acc[8][4], int tile, int gw, int W, int per, int spt, int N, const YOut& o,
                                             int M, float* ws, int* counters) {
    const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2;
    const int wf = (tile * spt) / per, wl = min(W - 1, ((tile + 1) * spt - 1) / per);
    const int n0 = tile * 64 + 2 * t;
    if (wf == wl) {
#pragma unroll
        for (int j8 = 0; j8 < 8; j8++) {
            const int n = n0 + 8 * j8;
            if (c < M) yput2(o, c, n, acc[j8][0], acc[j8][1], N);
            if (c + 8 < M) yput2(o, c + 8, n, acc[j8][2], acc[j8][3], N);
        }
        return false;
    }
    float* slot = ws + (size_t)(tile + gw) * 1024;
#pragma unroll
    for (int j8 = 0; j8 < 8; j8++) {
        const int col = 8 * j8 + 2 * t;
        if (c < M) *(float2*)(slot + c * 64 + col) = make_float2(acc[j8][0], acc[j8][1]);
        if (c + 8 < M) *(float2*)(slot + (c + 8) * 64 + col) = make_float2(acc[j8][2], acc[j8][3]);
    }
    fence_gpu();
    __syncwarp();
    int last = 0;
    if (lane == 0) last = atomicAdd(&counters[tile], 1) == wl - wf;
    last = __shfl_sync(0xffffffffu, last, 0);
    if (last) fence_gpu();
    return last;
}

// stripe_reduce adds the partial sums of a shared tile (slots tile + wf …
// tile + wl, row m at float 64m) in a fixed order and writes y; the warp
// that stripe_store found last calls it. At M = 1 the two half-warps take
// the even and odd partials, 16 loads in flight, and meet through a
// shuffle; above, a lane's
// float4 chunks (it = lane, lane + 32, …: row it/16) are taken SI at a time
// with all their loads of a round in flight together (one chunk at a
// time, a lane made ⌈np/4⌉ dependent round trips per chunk, up to 8 chunks
// at M = 16), each chunk's sum in one fixed order (even partials in s, odd
// in s2, the tail in s).
__device__ __forceinline__ void stripe_reduce(int tile, int W, int per, int spt, int N, const YOut& o, int M, const float* ws,
                                              int* counters) {
    const int lane = threadIdx.x & 31;
    const int wf = (tile * spt) / per, wl = min(W - 1, ((tile + 1) * spt - 1) / per);
    const int np = wl - wf + 1;
    const float* base = ws + (size_t)(tile + wf) * 1024;
    if (M == 1) {
        // 16 partials a half-warp in flight at once (the loop's registers
        // are free here): one round trip for up to 32 partials, where four
        // at a time made it four (the 8B down product's 32 a tile)
        const int q = lane & 15, h = lane >> 4;
        float4 s = make_float4(0.f, 0.f, 0.f, 0.f), s2 = s;
        for (int w = h; w < np; w += 32) {
            float4 v[16];
#pragma unroll
            for (int u = 0; u < 16; u++)
                v[u] = w + 2 * u < np ? ld_cg4(base + (size_t)(w + 2 * u) * 1024 + 4 * q) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < 16; u += 2) add4(s, v[u]), add4(s2, v[u + 1]);
        }
        add4(s, s2);
        s.x += __shfl_xor_sync(0xffffffffu, s.x, 16);
        s.y += __shfl_xor_sync(0xffffffffu, s.y, 16);
        s.z += __shfl_xor_sync(0xffffffffu, s.z, 16);
        s.w += __shfl_xor_sync(0xffffffffu, s.w, 16);
        if (h == 0) {
            const int n = tile * 64 + 4 * q;
            yput2(o, 0, n, s.x, s.y, N);
            yput2(o, 0, n + 2, s.z, s.w, N);
        }
    } else {
        constexpr int SI = 2;
        for (int i0 = lane; i0 < M * 16; i0 += 32 * SI) {
            const float* p[SI];
            bool ok[SI];
            float4 s[SI], s2[SI];
#pragma unroll
            for (int k = 0; k < SI; k++) {
                const int it = i0 + 32 * k;
                ok[k] = it < M * 16;
                p[k] = base + (ok[k] ? 64 * (it >> 4) + 4 * (it & 15) : 0);
                s[k] = s2[k] = make_float4(0.f, 0.f, 0.f, 0.f);
            }
            int w = 0;
            for (; w + 3 < np; w += 4) {
                float4 a[SI], b[SI], d[SI], e[SI];
#pragma unroll
                for (int k = 0; k < SI; k++)
                    if (ok[k]) {
                        a[k] = ld_cg4(p[k] + (size_t)w * 1024), b[k] = ld_cg4(p[k] + (size_t)(w + 1) * 1024);
                        d[k] = ld_cg4(p[k] + (size_t)(w + 2) * 1024), e[k] = ld_cg4(p[k] + (size_t)(w + 3) * 1024);
                    }
#pragma unroll
                for (int k = 0; k < SI; k++)
                    if (ok[k]) add4(s[k], a[k]), add4(s2[k], b[k]), add4(s[k], d[k]), add4(s2[k], e[k]);
            }
            for (; w < np; w++)
#pragma unroll
                for (int k = 0; k < SI; k++)
                    if (ok[k]) add4(s[k], ld_cg4(p[k] + (size_t)w * 1024));
#pragma unroll
            for (int k = 0; k < SI; k++)
                if (ok[k]) {
                    add4(s[k], s2[k]);
                    const int it = i0 + 32 * k, n = tile * 64 + 4 * (it & 15);
                    yput2(o, it >> 4, n, s[k].x, s[k].y, N);
                    yput2(o, it >> 4, n + 2, s[k].z, s[k].w, N);
                }
        }
    }
    if (lane == 0) counters[tile] = 0;
}

// Shared-memory address of a generic pointer to shared memory.
__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
// 16-byte asynchronous copy global → shared, cached in L2 only (.cg).
__device__ __forceinline__ void cp_async16(u32 dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src));
}
// The same with src_bytes (0 or 16) read and the rest of the 16 zeroed:
// 0 reads nothing (rows past the end). Many lanes of a warp copying one
// address instead made tc_qgemm 2–10× slower at M < 64 (docs/cuda-kernels.md).
__device__ __forceinline__ void cp_async16_zfill(u32 dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

// x in two fp16 (or bf16) parts: hi = round(x), lo = round(x − hi), so that
// hi + lo carries ~22 (16) bits of x and the products with exact weights
// lose nothing a float32 sum would keep; the tensor cores do the two
// products at no cost that matters at decode sizes.
__device__ __forceinline__ void split_f16(float a, float b, u32& hi, u32& lo) {
    hi = pack_f16x2(a, b);
    float ha, hb;
    asm("{ .reg .f16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }" : "=f"(ha), "=f"(hb) : "r"(hi));
    lo = pack_f16x2(a - ha, b - hb);
}
__device__ __forceinline__ void split_bf16(float a, float b, u32& hi, u32& lo) {
    hi = pack_bf16x2(a, b);
    lo = pack_bf16x2(a - __uint_as_float(hi << 16), b - __uint_as_float(hi & 0xffff0000u));
}

#define DD 4   // pipeline stages of the dense kernel
#define DDW 3  // and of its wide order (dmv)

// Pipeline stages of the 4-bit kernel (per warp): 6 for M ≤ 8 and 4 for
// M ≤ 16 keep four blocks of QW warps resident per multiprocessor.
__host__ __device__ constexpr int qstages(int mr) { return mr == 8 ? 6 : 4; }
// Bytes of one warp's pipeline stage. 4-bit: the two 512-byte weight tiles
// of the step ([j][lane] 16 bytes each), x rows 0…MR−1 (32 floats each),
// the step's scales [c][j8] (128 bytes: a step lies in one group; groups
// of 16: 256, the two halves' groups), zero pairs [c][j8] (256 bytes,
// asymmetric weights) and the step's 32 weights of the input's RMS norm
// (128 bytes). Dense: the 64 rows' 64 bytes ([j8][lane] 16 bytes each)
// and x.
__host__ __device__ constexpr int qstage_bytes(int mr, bool asym, bool norm = false, bool g16 = false) {
    return 1024 + 128 * mr + (g16 ? 256 : 128) + (asym ? 256 : 0) + (norm ? 128 : 0);
}
__host__ __device__ constexpr int dstage_bytes(int mr) { return 4096 + 128 * mr; }
// The wide dense order's stage: 16 rows' 256 bytes and 128 inputs of x.
__host__ __device__ constexpr int dstage_bytes_wide(int mr) { return 4096 + 512 * mr; }

__device__ __forceinline__ u32 lop_and_or(u32 a, u32 b, u32 c) {  // (a & b) | c
    u32 r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
__device__ __forceinline__ u32 hadd2(u32 a, u32 b) {
    u32 r;
    asm("add.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
__device__ __forceinline__ u32 hfma2(u32 a, u32 b, u32 c) {
    u32 r;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
// e4m3x2_f16: two e4m3 codes in the high bytes of the halves of p (s eeee
// mmm in bits 15…8 and 31…24) as fp16 bits s0eeeemmm0000000: each value
// times 2^-8, exactly (qmv8).
__device__ __forceinline__ u32 e4m3x2_f16(u32 p) { return ((p >> 1) & 0x3F803F80u) | (p & 0x80008000u); }
__device__ __forceinline__ float2 h2_to_f2(u32 h) {
    float2 f;
    asm("{ .reg .f16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }" : "=f"(f.x), "=f"(f.y) : "r"(h));
    return f;
}

// dequant_int4 unpacks one 32-bit word of the packed layout (8 codes,
// pack.go) into the fp16 pairs b[0…3] of exact integers q − z: b[0] codes
// (0, 4), b[1] (1, 5) of the word's first column, b[2] (2, 6), b[3] (3, 7)
// of its second. Two lop3 make 1024+q of codes (0, 4) and 1024+16q of
// codes (1, 5) in the halves of fp16x2 registers, a shift by 8 and two
// more lop3 do codes (2, 6), (3, 7); one add (low nibbles) or fma with
// 1/16 (high nibbles) against the zero pair leaves q − z exactly. zl, zh:
// the pairs −(1024+z), −(64+z) of the two columns (low half: the first),
// 0xE408E408 and 0xD480D480 for symmetric weights (z = 8).
__device__ __forceinline__ void dequant_int4(u32 v, u32 zl, u32 zh, u32 (&b)[4]) {
    const u32 zl0 = __byte_perm(zl, 0, 0x1010), zl1 = __byte_perm(zl, 0, 0x3232);
    const u32 zh0 = __byte_perm(zh, 0, 0x1010), zh1 = __byte_perm(zh, 0, 0x3232);
    const u32 v8 = v >> 8;
    b[0] = hadd2(lop_and_or(v, 0x000F000Fu, 0x64006400u), zl0);
    b[1] = hfma2(lop_and_or(v, 0x00F000F0u, 0x64006400u), 0x2C002C00u, zh0);  // ×1/16
    b[2] = hadd2(lop_and_or(v8, 0x000F000Fu, 0x64006400u), zl1);
    b[3] = hfma2(lop_and_or(v8, 0x00F000F0u, 0x64006400u), 0x2C002C00u, zh1);
}

// dequant_fp4 unpacks one word of packed FP4 codes into the fp16 pairs
// b[0…3] (the codes of dequant_int4's b[0…3]): e2m1 s·e1e0·m becomes the
// fp16 bits s000·e1e0m0…, the value ×2^-14, exactly.
__device__ __forceinline__ void dequant_fp4(u32 v, u32 (&b)[4]) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const u32 u = v >> (4 * q);
        b[q] = ((u & 0x00070007u) << 9) | ((u & 0x00080008u) << 12);
    }
}

// aop_fragments converts the accumulators of the decode kernels' A-operand
// role (M ≤ 8: weights as the mma's A, x as B; acc[wd] = D of row tile wd:
// d0, d1 at column 16wd + c, tokens 2t, 2t+1; d2, d3 at column 16wd + 8 + c)
// into stripe_store's order (t8[j8]: token c at columns 8j8 + 2t, 8j8 + 2t +
// 1; tokens c + 8 zero): column 8j8 + 2t + e of token c is d[2(j8&1) +
// (c&1)] of row tile j8/2 in lane 4(2t + e) + c/2. 32 shuffles.
__device__ __forceinline__ void aop_fragments(const float acc[4][4], float t8[8][4]) {
    const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2;
#pragma unroll
    for (int j8 = 0; j8 < 8; j8++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int src = 4 * (2 * t + e) + (c >> 1);
            const float lo = __shfl_sync(0xffffffffu, acc[j8 >> 1][2 * (j8 & 1)], src);
            const float hi = __shfl_sync(0xffffffffu, acc[j8 >> 1][2 * (j8 & 1) + 1], src);
            t8[j8][e] = c & 1 ? hi : lo;
        }
        t8[j8][2] = t8[j8][3] = 0.f;
    }
}

// stripe_end is a decode kernel's end of its part of a tile: the sums
// (acc: [4][4] in the A-operand role, else [8][4]) in stripe_store's order
// stored, the tile noted in pend0 or pend1 when this warp must add the
// partials after its loop (stripe_finish), and acc zeroed for the next.
template <bool AOP, int NA>
__device__ __forceinline__ void stripe_end(float (&acc)[NA][4], int tile, int gw, int W, int per, int spt, int N, const YOut& o,
                                           int M, float* ws, int* counters, int& pend0, int& pend1) {
    bool last;
    if (AOP) {
        float t8[8][4];
        aop_fragments(acc, t8);
        last = stripe_store(t8, tile, gw, W, per, spt, N, o, M, ws, counters);
    } else {
        last = stripe_store(acc, tile, gw, W, per, spt, N, o, M, ws, counters);
    }
    if (last) (pend0 < 0 ? pend0 : pend1) = tile;
#pragma unroll
    for (int j = 0; j < NA; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
}

// stripe_finish adds, after a warp's loop, the partial sums of the shared
// tiles it arrived last at (stripe_end's pend0, pend1; −1: none).
__device__ __forceinline__ void stripe_finish(int pend0, int pend1, int W, int per, int spt, int N, const YOut& o, int M,
                                              float* ws, int* counters) {
    if (pend0 >= 0) stripe_reduce(pend0, W, per, spt, N, o, M, ws, counters);
    if (pend1 >= 0) stripe_reduce(pend1, W, per, spt, N, o, M, ws, counters);
}

// stage_x copies rows 0 … rows−1 of x at the 32 inputs of step s of a
// column tile (8 chunks of 16 bytes a row, lanes in turn) to the ring slot
// address dst: a decode kernel's x for one step (qmv4, qmv8).
__device__ __forceinline__ void stage_x(u32 dst, const float* x, int ldx, int rows, int s) {
    for (int q = threadIdx.x & 31; q < rows * 8; q += 32) cp_async16(dst + 16 * q, x + (size_t)(q >> 3) * ldx + 32 * s + 4 * (q & 7));
}

// ring_prologue fills the first QD − 1 stages of a decode warp's ring
// (qmv4, qmv8: stages of SB bytes at ring_s, x at offset XO, the warp's
// steps [i0, i1)). The constant data of those steps (issue(false), which
// advances the issue cursor ii) are requested before waiting for the
// previous kernel (programmatic dependent launch: they stream in while it
// finishes), then x for each of those steps in a group of its own. Groups
// in commit order: W0…W(QD−2), X0…X(QD−2), then one per step; at step k
// the groups after the ones it needs (Wk and Xk, or its own) are always
// QD−1, so every step waits with cp.async.wait_group QD−1.
template <int QD, typename Issue>
__device__ __forceinline__ void ring_prologue(Issue& issue, const int& ii, int i0, int i1, u32 ring_s, int SB, int XO,
                                              const float* x, int ldx, int rows, int spt) {
#pragma unroll
    for (int u = 0; u < QD - 1; u++) {
        if (ii < i1) issue(false);
        cp_commit();
    }
    pdl_wait();
    pdl_trigger();
    int js = i0 % spt;
#pragma unroll
    for (int u = 0; u < QD - 1; u++) {
        if (i0 + u < i1) {
            stage_x(ring_s + (u32)(((i0 + u) % QD) * SB) + XO, x, ldx, rows, js);
            if (++js == spt) js = 0;
        }
        cp_commit();
    }
}

// The 4-bit decode kernel: grid of QW-warp blocks, each warp a stripe
// worker (above) with a private ring of qstages(MR) steps in shared
// memory, filled by cp.async that many steps ahead: each lane copies its
// 16-byte share of the weight tiles, x and the scales (zero points), so
// nothing in flight occupies registers and x and the scales arrive as
// early as the weights. Per step: wait for the oldest stage, __syncwarp
// (the other lanes' copies are visible), read, __syncwarp (the slot may be
// refilled).
//
// Arithmetic per 32-bit word of codes (8 weights), as few instructions as
// the profile asked for (the first versions were issue-bound): two lop3
// make 1024+q of codes (0,4) and 1024+16q of codes (1,5) in the halves of
// fp16x2 registers, a shift by 8 and two more lop3 do codes (2,6), (3,7);
// one add (low) or fma with 1/16 (high) against the zero pair leaves q − z
// exactly. FP4: the e2m1 bits moved into an fp16 (value ×2^-14, exact).
// The tensor cores multiply these exact integers (e2m1 values) by x in
// fp16 into a per-group fp32 partial sum, which is scaled (fp32) into the
// accumulator when the group ends: the weights are exact, x is rounded to
// fp16 once (relative error ≤ 2^-11 a product; |x| must stay below 65504).
// Operand roles. At MR = 16 x is the mma's A (rows: tokens c and c + 8)
// and the weights its B (16 mma a 1 KB step). At MR = 8 (AOP) the roles
// swap: a lane's word of one tile already holds what an A fragment wants
// — columns 16wd + c and 16wd + 8 + c (A's rows g and g + 8) at inputs
// 4t…4t+3 (its k slots, relabelled as below) — so the dequantised b[0],
// b[2], b[1], b[3] are A's a0…a3 and x row c is B's column c: 8 mma a step,
// half the tensor-core work and accumulators. The result fragment (rows:
// columns, cols: tokens) is shuffled into stripe_store's order at the
// tile's end.
// MR = 8 or 16 rows of x (M ≤ MR). Requires K % 32 == 0, group % 32 == 0
// (KIND PACK_FP4G16: FP4 with groups of exactly 16, each half step its own
// group, scaled as the half ends; no zero points, no norm), ldx % 4 == 0
// and x 16-byte aligned (the host checks; otherwise it uses the tile
// kernels).
//
// SILU (M = 1 only: the experts' down products, moe.cu): the input is
// silu(g)·u of two rows, g at x and u at x + ldx, staged as rows 0 and 1
// of the ring's x and combined where x is converted, with the float
// operations of silu_mul — the SwiGLU activation without its own launch.
//
// NORM (M ≤ 4, not SILU, tile clusters only; kernels of their own, so that
// the others keep their registers): the input is rmsnorm(x) with weights
// nw (backend.Norm), the RMSNorm launch before the product folded into it
// (where that pays: matrix.go normInput).
// Once x is ready the block sums each row's squares (float64, as rms_norm)
// and finds r = 1/√(mean(x²) + eps); the ring stages the step's 32 norm
// weights beside x and the conversion forms (x·r)·nw, rounded as rms_norm
// rounds it, so the product sees the same fp32 inputs as after rms_norm.
template <int KIND, bool ASYM, int MR, bool SILU = false, bool NORM = false, bool TCL = false>
__device__ __forceinline__ void qmv4(const WDesc& w, const float* __restrict__ x, int ldx, const YOut& o, int M, float* ws,
                                     int* counters, const float* __restrict__ nw = nullptr, float eps = 0.f) {
    extern __shared__ __align__(16) unsigned char qsm[];
    constexpr bool G16 = KIND == PACK_FP4G16, FP4 = KIND != PACK_INT4;
    static_assert(!G16 || (!ASYM && !NORM), "groups of 16: FP4 only, no norm");
    static_assert(!NORM || TCL, "the norm on tile clusters only (matrix.go normInput)");
    constexpr int SB = qstage_bytes(MR, ASYM, NORM, G16), QD = qstages(MR);
    constexpr int XO = 1024, SO = 1024 + 128 * MR, ZO = SO + (G16 ? 256 : 128), NO = ZO + (ASYM ? 256 : 0);
    const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2, warp = threadIdx.x >> 5;
    // steps of 32 per group (G16: one, and the step's first group is 2·step)
    const int spt = w.K >> 5, groups = w.K / w.group, gsteps = G16 ? 1 : w.group >> 5;
    const int XR = SILU ? 2 : M;                                               // rows of x staged
    const int ntiles = (w.N + 63) >> 6, T = ntiles * spt;
    // the warp's steps: its stripe, or (TCL) its part of its cluster's tile
    const int gw = blockIdx.x * QW + warp, W = gridDim.x * QW, per = (T + W - 1) / W;
    int i0 = gw * per, i1 = min(T, i0 + per);
    if (TCL) {
        const int C = (int)cluster_nctarank(), tile = blockIdx.x / C, part = (int)cluster_ctarank() * QW + warp;
        i0 = tile * spt + part * spt / (C * QW), i1 = tile * spt + (part + 1) * spt / (C * QW);
    }
    if (i0 >= i1 && !TCL) return;  // (TCL: every warp meets the barriers, and with a norm helps find r first)
    unsigned char* ring = qsm + (size_t)warp * QD * SB;
    const u32 ring_s = smem_addr(ring);
    const V4u* wt = (const V4u*)w.data + lane;

    // the issue cursor: step ii, its tile, step within the tile, and group
    int ii = i0, itl = i0 / spt, is = i0 - itl * spt;
    int ig = itl * groups + (G16 ? 2 * is : is / gsteps), igk = is % gsteps;
    // Also the addresses it copies from and to, advanced step by step
    // (strength-reduced: the loop is issue-bound, and forming them from ii
    // each step — a modulo by QD, 64-bit products, a divergent loop over
    // x's rows — took ~70 instructions of a one-row step where this takes
    // ~40, NVRTC 11.8's SASS of qmv_int4): the step's ring slot (byte offset
    // iso) and its weights (wp); at MR = 8 (SR) also the group's scales
    // (sp) and zero points (zp), and the sources xp[k] of the lane's x
    // chunks q = lane + 32k (< XR·8 ≤ 64: row q/8, 16 bytes q%8). MR = 16
    // forms those from ii as before: held across the loop they took its
    // kernels past 128 registers.
    constexpr bool SR = MR == 8;
    u32 iso = (u32)((i0 % QD) * SB);
    const V4u* wp = wt + (size_t)(2 * i0) * 32;
    const V4u* sp = (const V4u*)w.scales + (size_t)ig * 8 + lane;
    const V4u* zp = ASYM ? (const V4u*)w.zeros + (size_t)ig * 16 + lane : nullptr;
    const float* xp[2];
#pragma unroll
    for (int k = 0; k < 2; k++) xp[k] = x + ((lane + 32 * k) >> 3) * ldx + 4 * ((lane + 32 * k) & 7) + 32 * is;
    // the copies of step ii: weights, scales and zero points (constant
    // data), and, with_x, the step's inputs x (the previous kernel's output)
    auto issue = [&](bool with_x) {
        const u32 slot = ring_s + iso;
        cp_async16(slot + 16 * lane, wp);
        cp_async16(slot + 512 + 16 * lane, wp + 32);
        if constexpr (SR) {
            // x: rows < M (SILU: g and u), 8 chunks of 16 bytes a row
            if (with_x) {
#pragma unroll
                for (int k = 0; k < 2; k++)
                    if (lane + 32 * k < XR * 8) cp_async16(slot + XO + 16 * (lane + 32 * k), xp[k]);
            }
            if (NORM && lane < 8) cp_async16(slot + NO + 16 * lane, nw + 32 * is + 4 * lane);
            if (lane < (G16 ? 16 : 8)) cp_async16(slot + SO + 16 * lane, sp);
            if (ASYM && lane < 16) cp_async16(slot + ZO + 16 * lane, zp);
            const int dx = is + 1 == spt ? 32 - 32 * spt : 32;  // the next step's x, or a tile's first
#pragma unroll
            for (int k = 0; k < 2; k++) xp[k] += dx;
            if (igk + 1 == gsteps) {
                sp += G16 ? 16 : 8;
                if (ASYM) zp += 16;
            }
        } else {
            if (with_x) stage_x(slot + XO, x, ldx, XR, is);
            if (NORM && lane < 8) cp_async16(slot + NO + 16 * lane, nw + 32 * is + 4 * lane);
            if (lane < (G16 ? 16 : 8)) cp_async16(slot + SO + 16 * lane, (const V4u*)w.scales + (size_t)ig * 8 + lane);
            if (ASYM && lane < 16) cp_async16(slot + ZO + 16 * lane, (const V4u*)w.zeros + (size_t)ig * 16 + lane);
        }
        wp += 64;
        iso = iso + SB == QD * SB ? 0u : iso + SB;
        ii++;
        if (++is == spt) is = 0;
        if (++igk == gsteps) igk = 0, ig += G16 ? 2 : 1;  // groups end at tile ends too
    };

    // AOP (M ≤ 8): the weights are the mma's A operand and x its B (see
    // above): acc and part are [row tile wd][d0…d3], 16 floats each; at
    // MR = 16 x is A and the weights B: [column tile j8][c0…c3], 32 each.
    constexpr bool AOP = MR == 8;
    constexpr int NA = AOP ? 4 : 8;
    float acc[NA][4], part[NA][4];
#pragma unroll
    for (int j = 0; j < NA; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[j][e] = part[j][e] = 0.f;
    ring_prologue<QD>(issue, ii, i0, i1, ring_s, SB, XO, x, ldx, XR, spt);
    // the input's RMS norm: r of row c (lanes c < M) while the copies fly
    float ra = 0.f;
    if (NORM) {
        __shared__ double nsum[QW][4];
        __shared__ float nr[4];
        double ss[4] = {0.0, 0.0, 0.0, 0.0};
        const int n4 = w.K >> 2;
#pragma unroll
        for (int m = 0; m < 4; m++) {
            if (m >= M) break;
            const V4f* xr = (const V4f*)(x + (size_t)m * ldx);
            // eight loads in flight before the sums (one round trip for K ≤ 4096;
            // a plain loop waited for each load in turn)
            for (int q0 = threadIdx.x; q0 < n4; q0 += 8 * QW * 32) {
                V4f v[8];
#pragma unroll
                for (int u = 0; u < 8; u++) {
                    const int q = q0 + u * QW * 32;
                    v[u] = q < n4 ? xr[q] : V4f{0.f, 0.f, 0.f, 0.f};
                }
#pragma unroll
                for (int u = 0; u < 8; u++)
                    ss[m] += (double)v[u].x * v[u].x + (double)v[u].y * v[u].y + (double)v[u].z * v[u].z + (double)v[u].w * v[u].w;
            }
            ss[m] = warp_sum_d(ss[m]);
            if (lane == 0) nsum[warp][m] = ss[m];
        }
        __syncthreads();
        if (threadIdx.x < M) {
            double t = 0.0;
#pragma unroll
            for (int q = 0; q < QW; q++) t += nsum[q][threadIdx.x];
            nr[threadIdx.x] = (float)(1.0 / sqrt(t / w.K + (double)eps));
        }
        __syncthreads();
        if (c < M) ra = nr[c];
    }
    // scale_part adds a group's sums (part) times its scales ([c][j8] fp16
    // at scl) to acc and clears part: where a group ends, or the warp's range
    // (G16: after each half step). FP4's weights are their values ×2^-14
    // (dequant_fp4): acc holds the sums ×2^-14 until to_out multiplies them
    // by 2^14 where they leave the warp — the same numbers bit for bit as
    // scaling each group's scales (a power of two commutes with rounding),
    // one multiply a tile instead of two a scale pair.
    auto to_out = [&]() {
        if (FP4) {
#pragma unroll
            for (int j = 0; j < NA; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[j][e] *= 16384.f;
        }
    };
    auto scale_part = [&](const unsigned char* scl) {
        if (AOP) {
            // the group's scales of this lane's columns 16wd + c (d0, d1) and
            // 16wd + 8 + c (d2, d3): scales [c][j8], j8 = 2wd and 2wd + 1
            const V4u sc = *(const V4u*)(scl + 16 * c);
            const u32 sv[4] = {sc.x, sc.y, sc.z, sc.w};
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                const float2 f = h2_to_f2(sv[wd]);
                acc[wd][0] = fmaf(part[wd][0], f.x, acc[wd][0]);
                acc[wd][1] = fmaf(part[wd][1], f.x, acc[wd][1]);
                acc[wd][2] = fmaf(part[wd][2], f.y, acc[wd][2]);
                acc[wd][3] = fmaf(part[wd][3], f.y, acc[wd][3]);
                part[wd][0] = part[wd][1] = part[wd][2] = part[wd][3] = 0.f;
            }
        } else {
            // the group's scales for this lane's output columns 2t, 2t+1
            const V4u s0 = *(const V4u*)(scl + 16 * (2 * t)), s1 = *(const V4u*)(scl + 16 * (2 * t + 1));
            const u32 sa[4] = {s0.x, s0.y, s0.z, s0.w}, sb[4] = {s1.x, s1.y, s1.z, s1.w};
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                const float2 fa = h2_to_f2(sa[wd]), fb = h2_to_f2(sb[wd]);  // tiles 2wd, 2wd+1 of columns 2t and 2t+1
                acc[2 * wd][0] = fmaf(part[2 * wd][0], fa.x, acc[2 * wd][0]);
                acc[2 * wd][1] = fmaf(part[2 * wd][1], fb.x, acc[2 * wd][1]);
                acc[2 * wd][2] = fmaf(part[2 * wd][2], fa.x, acc[2 * wd][2]);
                acc[2 * wd][3] = fmaf(part[2 * wd][3], fb.x, acc[2 * wd][3]);
                acc[2 * wd + 1][0] = fmaf(part[2 * wd + 1][0], fa.y, acc[2 * wd + 1][0]);
                acc[2 * wd + 1][1] = fmaf(part[2 * wd + 1][1], fb.y, acc[2 * wd + 1][1]);
                acc[2 * wd + 1][2] = fmaf(part[2 * wd + 1][2], fa.y, acc[2 * wd + 1][2]);
                acc[2 * wd + 1][3] = fmaf(part[2 * wd + 1][3], fb.y, acc[2 * wd + 1][3]);
            }
#pragma unroll
            for (int jj = 0; jj < 8; jj++) part[jj][0] = part[jj][1] = part[jj][2] = part[jj][3] = 0.f;
        }
    };
    // the compute cursor: step within the tile
    int cs = i0 % spt, cgk = cs % gsteps;
    int pend0 = -1, pend1 = -1;  // shared tiles whose sums this warp adds after the loop
    u32 cso = (u32)((i0 % QD) * SB);  // the compute step's ring slot (byte offset)
    for (int i = i0; i < i1; i++) {
        if (ii < i1) issue(true);
        cp_commit();
        cp_wait<QD - 1>();
        __syncwarp();
        const unsigned char* sl = ring + cso;
        cso = cso + SB == QD * SB ? 0u : cso + SB;
        u32 zlo[4], zhi[4];  // per word: −(1024+z), −(64+z) of tiles 2wd (low) and 2wd+1 (high)
        if (ASYM) {
            const V4u z0 = *(const V4u*)(sl + ZO + 32 * c), z1 = *(const V4u*)(sl + ZO + 32 * c + 16);
            const u32 zp[8] = {z0.x, z0.y, z0.z, z0.w, z1.x, z1.y, z1.z, z1.w};
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                zlo[wd] = __byte_perm(zp[2 * wd], zp[2 * wd + 1], 0x5410);
                zhi[wd] = __byte_perm(zp[2 * wd], zp[2 * wd + 1], 0x7632);
            }
        }
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const V4u cw = *(const V4u*)(sl + 512 * j + 16 * lane);
            V4f xa = V4f{0.f, 0.f, 0.f, 0.f}, xb = xa;
            if (c < M) xa = *(const V4f*)(sl + XO + 128 * c + 16 * (4 * j + t));
            if (SILU && c < M) {
                const V4f u = *(const V4f*)(sl + XO + 128 * (c + 1) + 16 * (4 * j + t));
                xa.x = xa.x / (1.0f + expf(-xa.x)) * u.x, xa.y = xa.y / (1.0f + expf(-xa.y)) * u.y;
                xa.z = xa.z / (1.0f + expf(-xa.z)) * u.z, xa.w = xa.w / (1.0f + expf(-xa.w)) * u.w;
            }
            if (MR == 16 && c + 8 < M) xb = *(const V4f*)(sl + XO + 128 * (c + 8) + 16 * (4 * j + t));
            if (NORM) {  // rms_norm's (x·r)·w (rows ≥ M stay 0; M ≤ 4 < 8)
                const V4f g = *(const V4f*)(sl + NO + 16 * (4 * j + t));
                xa.x = __fmul_rn(__fmul_rn(xa.x, ra), g.x), xa.y = __fmul_rn(__fmul_rn(xa.y, ra), g.y);
                xa.z = __fmul_rn(__fmul_rn(xa.z, ra), g.z), xa.w = __fmul_rn(__fmul_rn(xa.w, ra), g.w);
            }
            const u32 a0 = pack_f16x2(xa.x, xa.y), a2 = pack_f16x2(xa.z, xa.w);
            const u32 a1 = MR == 16 ? pack_f16x2(xb.x, xb.y) : 0u, a3 = MR == 16 ? pack_f16x2(xb.z, xb.w) : 0u;
            const u32 wv[4] = {cw.x, cw.y, cw.z, cw.w};
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                u32 b[4];
                if (KIND == PACK_INT4) {
                    // b[0]: codes 0,4 (tile 2wd, inputs 4t, 4t+1); b[1]: codes 1,5
                    // (tile 2wd, 4t+2, 4t+3); b[2], b[3]: codes 2,6 and 3,7 (tile 2wd+1)
                    dequant_int4(wv[wd], ASYM ? zlo[wd] : 0xE408E408u, ASYM ? zhi[wd] : 0xD480D480u, b);  // z = 8: −1032, −72
                } else {
                    dequant_fp4(wv[wd], b);  // the value ×2^-14
                }
                if (AOP) {
                    // A: rows g, g+8 = columns 16wd + c, 16wd + 8 + c (b[0], b[1]
                    // and b[2], b[3] of the word); B: x row c (token c)
                    mma_f16(part[wd], b[0], b[2], b[1], b[3], a0, a2);
                } else {
                    mma_f16(part[2 * wd], a0, a1, a2, a3, b[0], b[1]);
                    mma_f16(part[2 * wd + 1], a0, a1, a2, a3, b[2], b[3]);
                }
            }
            if (G16) scale_part(sl + SO + 128 * j);  // half j is group 2·step + j
        }
        const bool tile_end = ++cs == spt;
        const bool group_end = ++cgk == gsteps;
        if (group_end) cgk = 0;
        if (!G16 && (group_end || i + 1 == i1)) scale_part(sl + SO);
        __syncwarp();
        if (!TCL && (tile_end || i + 1 == i1)) {
            to_out();
            stripe_end<AOP>(acc, i / spt, gw, W, per, spt, w.N, o, M, ws, counters, pend0, pend1);
            if (tile_end) cs = 0;
        }
    }
    cp_wait<0>();
    trace_mark(1);
    if (TCL) {
        to_out();
        float t8[8][4];
        if (AOP) {
            aop_fragments(acc, t8);
        } else {
#pragma unroll
            for (int jj = 0; jj < 8; jj++) t8[jj][0] = acc[jj % NA][0], t8[jj][1] = acc[jj % NA][1], t8[jj][2] = acc[jj % NA][2], t8[jj][3] = acc[jj % NA][3];
        }
        cluster_store(t8, blockIdx.x / (int)cluster_nctarank(), w.N, o, M, qsm);
        trace_mark(2);
        return;
    }
    stripe_finish(pend0, pend1, W, per, spt, w.N, o, M, ws, counters);
    trace_mark(2);
}

#define QMV_KERNEL(NAME, KIND, ASYM, MR)                                                                  \
    MARLIN_KERNEL void __launch_bounds__(QW * 32)                                                 \
        NAME(WDesc w, const float* x, int ldx, YOut o, int M, float* ws, int* counters) {                 \
        qmv4<KIND, ASYM, MR>(w, x, ldx, o, M, ws, counters);                                              \
    }
QMV_KERNEL(qmv_int4, PACK_INT4, false, 8)
QMV_KERNEL(qmv_int4_m16, PACK_INT4, false, 16)
QMV_KERNEL(qmv_int4_asym, PACK_INT4, true, 8)
QMV_KERNEL(qmv_int4_asym_m16, PACK_INT4, true, 16)
QMV_KERNEL(qmv_fp4, PACK_FP4, false, 8)
QMV_KERNEL(qmv_fp4_m16, PACK_FP4, false, 16)
QMV_KERNEL(qmv_fp4_g16, PACK_FP4G16, false, 8)
QMV_KERNEL(qmv_fp4_g16_m16, PACK_FP4G16, false, 16)
// the same over tile clusters (TCL: see cluster_store)
#define QMV_TC_KERNEL(NAME, KIND, ASYM, MR)                                                               \
    MARLIN_KERNEL void __launch_bounds__(QW * 32)                                                 \
        NAME(WDesc w, const float* x, int ldx, YOut o, int M, float* ws, int* counters) {                 \
        qmv4<KIND, ASYM, MR, false, false, true>(w, x, ldx, o, M, ws, counters);                          \
    }
#define QMV_NORM_TC_KERNEL(NAME, KIND, ASYM)                                                              \
    MARLIN_KERNEL void __launch_bounds__(QW * 32)                                                 \
        NAME(WDesc w, const float* x, int ldx, YOut o, int M, float* ws, int* counters, const float* nw,   \
             float eps) {                                                                                 \
        qmv4<KIND, ASYM, 8, false, true, true>(w, x, ldx, o, M, ws, counters, nw, eps);                   \
    }
// kernels: qmv_tc
QMV_TC_KERNEL(qmv_int4_tc, PACK_INT4, false, 8)
QMV_TC_KERNEL(qmv_int4_m16_tc, PACK_INT4, false, 16)
QMV_TC_KERNEL(qmv_int4_asym_tc, PACK_INT4, true, 8)
QMV_TC_KERNEL(qmv_int4_asym_m16_tc, PACK_INT4, true, 16)
QMV_TC_KERNEL(qmv_fp4_tc, PACK_FP4, false, 8)
QMV_TC_KERNEL(qmv_fp4_m16_tc, PACK_FP4, false, 16)
QMV_NORM_TC_KERNEL(qmv_int4_norm_tc, PACK_INT4, false)
QMV_NORM_TC_KERNEL(qmv_int4_asym_norm_tc, PACK_INT4, true)
QMV_NORM_TC_KERNEL(qmv_fp4_norm_tc, PACK_FP4, false)

// ---- 8-bit decode (M ≤ 8 rows a launch): GPTQ INT8, FP8 ----
//
// qmv8 multiplies x by an 8-bit weight on the tensor cores, with the
// stripes (or tile clusters) and the per-warp cp.async ring of qmv4.
// GPTQ INT8 is read as the checkpoint stores it (its 256-byte rows stream
// well); FP8 in 2 KB steps that pack.go writes at load. Two layouts:
//
//   Q8_GPTQ  qweight [K/4, N] u32, byte j of word (r, n) = input 4r + j of
//            column n; scales [G, N] fp16; qzeros [G, N/4] u32 (byte n of a
//            row = column n's zero point, plus zoff) or none (symmetric:
//            128). A step (32 inputs of a 64-column tile) is 8 word rows of
//            256 contiguous bytes (16 lanes a row), staged with a row pitch
//            of Q8P = 72 words so that the lanes (t, c) reading word
//            (4j + t, 16wd + c) hit 32 different banks.
//   Q8_FP8   e4m3 bytes in pack.go's tiled layout: step i (tile-major, as
//            the stripes number them) is 2048 contiguous bytes at 2048·i,
//            the 64 rows' 32 bytes at its inputs (rows past N zero); one
//            float32 scale a row. Staged at a row pitch of 8 words with the
//            two 16-byte chunks of rows whose bit 2 is set swapped, so that
//            the lanes' words (16wd + c, 4j + t) again hit 32 different
//            banks. (Read from the stored [N, K] rows instead, 32 bytes of
//            64 rows a step, it ran at 51–59% of a device copy, H100.)
//
// Operands as qmv4 at MR = 8 (AOP): the weights are the mma's A — rows g
// and g + 8 of row tile wd are columns 16wd + c and 16wd + 8 + c — and x
// row c is B's column c. Either layout gives a lane a 32-bit word with
// inputs 4t…4t+3 of one column, exactly its four k slots 2t, 2t+1, 2t+8,
// 2t+9 relabelled (x is loaded in the same order), so a word is two A
// registers after a byte permute each:
//
//   GPTQ  1024 + q under the fp16 exponent 0x64, then one f16x2
//         subtraction of 1024 + z: q − z in [−256, 255], exact;
//   FP8   the byte under the high byte of each half, then one shift and
//         one lop3: s eeee mmm → fp16 s0eeeemmm0000000, the e4m3 value
//         times 2^-8, exactly (subnormals too; the NaN codes 0x7F/0xFF
//         become ±480, which no checkpoint holds).
//
// x is rounded to fp16 once (|x| < 65504, relative error 2^-11 a product);
// each group's sums (FP8: the tile's) are fp32 and scaled (fp32) when it
// ends.
//
// Requires K % 32 == 0, x 16-byte aligned with ldx % 4 == 0; GPTQ: group
// % 32 == 0 (and K % group == 0), N % 8 == 0 (16 with zero points: the
// scales' and zeros' 16-byte copies), no g_idx; FP8: K % 16 == 0 follows.
// The host checks (fastKernel).
#define Q8_GPTQ 1
#define Q8_FP8 2
#define Q8D 4   // ring stages a warp (2 KB of weights each)
#define Q8P 72  // words a staged GPTQ row of 64 columns (64 + 8: no bank conflicts)
__host__ __device__ constexpr int q8weight_bytes(int kind) { return kind == Q8_GPTQ ? 8 * Q8P * 4 : 64 * 32; }
__host__ __device__ constexpr int q8stage_bytes(int kind, bool asym) {
    return q8weight_bytes(kind) + 128 * 8 + (kind == Q8_GPTQ ? 128 : 0) + (asym ? 64 : 0);
}

template <int KIND, bool ASYM, bool TCL>
__device__ __forceinline__ void qmv8(const WDesc& w, const float* __restrict__ x, int ldx, const YOut& o, int M, float* ws,
                                     int* counters) {
    extern __shared__ __align__(16) unsigned char qsm[];
    constexpr bool GPTQ = KIND == Q8_GPTQ;
    constexpr int SB = q8stage_bytes(KIND, ASYM), XO = q8weight_bytes(KIND), SO = XO + 128 * 8, ZO = SO + 128;
    const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2, warp = threadIdx.x >> 5;
    const int spt = w.K >> 5, gsteps = GPTQ ? w.group >> 5 : spt, ntiles = (w.N + 63) >> 6, T = ntiles * spt;
    const int gw = blockIdx.x * QW + warp, W = gridDim.x * QW, per = (T + W - 1) / W;
    int i0 = gw * per, i1 = min(T, i0 + per);
    if (TCL) {
        const int C = (int)cluster_nctarank(), tile = blockIdx.x / C, part = (int)cluster_ctarank() * QW + warp;
        i0 = tile * spt + part * spt / (C * QW), i1 = tile * spt + (part + 1) * spt / (C * QW);
    }
    if (i0 >= i1 && !TCL) return;
    unsigned char* ring = qsm + (size_t)warp * Q8D * SB;
    const u32 ring_s = smem_addr(ring);

    // the issue cursor: step ii, its column tile and step within the tile
    int ii = i0, itl = i0 / spt, is = i0 - itl * spt;
    // the copies of step ii: weights (and GPTQ's zero points) every step,
    // GPTQ's scales where a group ends (or the warp's range), and, with_x, x
    auto issue = [&](bool with_x) {
        const u32 slot = ring_s + (u32)((ii % Q8D) * SB);
        const int n0 = itl * 64, g = is / gsteps;
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int q = lane + 32 * u;
            if (GPTQ) {  // word row r = q/16, columns n0 + 4(q%16) … +3
                const int r = q >> 4, col = n0 + 4 * (q & 15);
                const bool in = col < w.N;
                const u32* src = (const u32*)w.data + (in ? (size_t)(8 * is + r) * w.N + col : 0);
                cp_async16_zfill(slot + (u32)(4 * Q8P * r + 16 * (q & 15)), src, in ? 16 : 0);
            } else {  // row n0 + q/2, chunk q%2 of its 32 bytes (swapped where bit 2 of the row is set)
                const int r = q >> 1, h = q & 1;
                const u8* src = (const u8*)w.data + ((size_t)ii << 11) + 16 * q;  // the step's 2 KB (rows past N: zero)
                cp_async16(slot + (u32)(32 * r + 16 * (h ^ ((r >> 2) & 1))), src);
            }
        }
        if (with_x) stage_x(slot + XO, x, ldx, M, is);
        if (GPTQ && lane < 8 && ((is + 1) % gsteps == 0 || ii + 1 == i1)) {
            const int col = n0 + 8 * lane;
            const bool in = col < w.N;
            cp_async16_zfill(slot + SO + 16 * lane, (const u16*)w.scales + (in ? (size_t)g * w.N + col : 0), in ? 16 : 0);
        }
        if (ASYM && lane < 4) {
            const int col = n0 + 16 * lane;
            const bool in = col < w.N;
            cp_async16_zfill(slot + ZO + 16 * lane, (const u8*)w.zeros + (in ? (size_t)g * 4 * w.zcols + col : 0), in ? 16 : 0);
        }
        ii++;
        if (++is == spt) is = 0, itl++;
    };

    float acc[4][4], part[4][4];  // [row tile wd][d0…d3]
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[j][e] = part[j][e] = 0.f;
    ring_prologue<Q8D>(issue, ii, i0, i1, ring_s, SB, XO, x, ldx, M, spt);
    int cs = i0 % spt, cgk = cs % gsteps;
    int pend0 = -1, pend1 = -1;
    for (int i = i0; i < i1; i++) {
        if (ii < i1) issue(true);
        cp_commit();
        cp_wait<Q8D - 1>();
        __syncwarp();
        const unsigned char* sl = ring + (i % Q8D) * SB;
        // GPTQ: 1024 + z of columns 16wd + c (A's row g) and 16wd + 8 + c (g + 8), as f16x2 pairs
        u32 zl[4], zh[4];
#pragma unroll
        for (int wd = 0; wd < 4; wd++) {
            if (ASYM) {
                zl[wd] = (0x6400u + sl[ZO + 16 * wd + c] + w.zoff) * 0x10001u;
                zh[wd] = (0x6400u + sl[ZO + 16 * wd + 8 + c] + w.zoff) * 0x10001u;
            } else {
                zl[wd] = zh[wd] = 0x64806480u;  // z = 128
            }
        }
#pragma unroll
        for (int j = 0; j < 2; j++) {
            // x row c at inputs 16j + 4t … 16j + 4t + 3: B's k slots 2t, 2t+1 (b0), 2t+8, 2t+9 (b1)
            V4f xa = V4f{0.f, 0.f, 0.f, 0.f};
            if (c < M) xa = *(const V4f*)(sl + XO + 128 * c + 16 * (4 * j + t));
            const u32 b0 = pack_f16x2(xa.x, xa.y), b1 = pack_f16x2(xa.z, xa.w);
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                u32 lo, hi;  // inputs 16j + 4t … +3 of columns 16wd + c and 16wd + 8 + c
                if (GPTQ) {
                    const u32* row = (const u32*)sl + Q8P * (4 * j + t);
                    lo = row[16 * wd + c], hi = row[16 * wd + 8 + c];
                } else {
                    // row 16wd + c (+ 8: the same bit 2), word 4j + t of its 32 bytes, chunk j swapped where c & 4
                    const int wi = 4 * (j ^ ((c >> 2) & 1)) + t;
                    lo = ((const u32*)sl)[8 * (16 * wd + c) + wi], hi = ((const u32*)sl)[8 * (16 * wd + 8 + c) + wi];
                }
                u32 a0, a1, a2, a3;
                if (GPTQ) {
                    a0 = hsub2(__byte_perm(lo, 0x64646464u, 0x4140), zl[wd]);
                    a2 = hsub2(__byte_perm(lo, 0x64646464u, 0x4342), zl[wd]);
                    a1 = hsub2(__byte_perm(hi, 0x64646464u, 0x4140), zh[wd]);
                    a3 = hsub2(__byte_perm(hi, 0x64646464u, 0x4342), zh[wd]);
                } else {
                    a0 = e4m3x2_f16(__byte_perm(lo, 0u, 0x1404)), a2 = e4m3x2_f16(__byte_perm(lo, 0u, 0x3424));
                    a1 = e4m3x2_f16(__byte_perm(hi, 0u, 0x1404)), a3 = e4m3x2_f16(__byte_perm(hi, 0u, 0x3424));
                }
                mma_f16(part[wd], a0, a1, a2, a3, b0, b1);
            }
        }
        const bool tile_end = ++cs == spt;
        const bool group_end = ++cgk == gsteps;
        if (group_end) cgk = 0;
        if (group_end || i + 1 == i1) {
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                float s0, s1;
                if (GPTQ) {
                    const u16* sc = (const u16*)(sl + SO);
                    s0 = f16_to_f32(sc[16 * wd + c]), s1 = f16_to_f32(sc[16 * wd + 8 + c]);
                } else {  // the rows' float32 scales ×2^8 (the fp16 codes are the values ×2^-8)
                    const int n = (i / spt) * 64 + 16 * wd + c;
                    const float* sc = (const float*)w.scales;
                    s0 = n < w.N ? 256.f * sc[n] : 0.f, s1 = n + 8 < w.N ? 256.f * sc[n + 8] : 0.f;
                }
                acc[wd][0] = fmaf(part[wd][0], s0, acc[wd][0]);
                acc[wd][1] = fmaf(part[wd][1], s0, acc[wd][1]);
                acc[wd][2] = fmaf(part[wd][2], s1, acc[wd][2]);
                acc[wd][3] = fmaf(part[wd][3], s1, acc[wd][3]);
                part[wd][0] = part[wd][1] = part[wd][2] = part[wd][3] = 0.f;
            }
        }
        __syncwarp();
        if (!TCL && (tile_end || i + 1 == i1)) {
            stripe_end<true>(acc, i / spt, gw, W, per, spt, w.N, o, M, ws, counters, pend0, pend1);
            if (tile_end) cs = 0;
        }
        if (TCL && tile_end) cs = 0;
    }
    cp_wait<0>();
    if (TCL) {
        float t8[8][4];
        aop_fragments(acc, t8);
        cluster_store(t8, blockIdx.x / (int)cluster_nctarank(), w.N, o, M, qsm);
        trace_mark(2);
        return;
    }
    stripe_finish(pend0, pend1, W, per, spt, w.N, o, M, ws, counters);
    trace_mark(2);
}

#define QMV8_KERNEL(NAME, KIND, ASYM, TCL)                                                                \
    MARLIN_KERNEL void __launch_bounds__(QW * 32)                                                 \
        NAME(WDesc w, const float* x, int ldx, YOut o, int M, float* ws, int* counters) {                 \
        qmv8<KIND, ASYM, TCL>(w, x, ldx, o, M, ws, counters);                                             \
    }
// kernels: qmv8
QMV8_KERNEL(qmv_gptq8, Q8_GPTQ, false, false)
QMV8_KERNEL(qmv_gptq8_asym, Q8_GPTQ, true, false)
QMV8_KERNEL(qmv_fp8, Q8_FP8, false, false)
QMV8_KERNEL(qmv_gptq8_tc, Q8_GPTQ, false, true)
QMV8_KERNEL(qmv_gptq8_asym_tc, Q8_GPTQ, true, true)
QMV8_KERNEL(qmv_fp8_tc, Q8_FP8, false, true)

// The dense 16-bit decode kernel (fp16 or bf16 weights, row-major [N, K]),
// stripe workers with a shared-memory ring as qmv4: a column tile is 64
// weight rows, and its K/32 steps of 4 KB are read in one of two orders.
//
// Narrow (WIDE = false; 4 stages; any K % 32 == 0): step s is the 64
// rows' inputs 32s…32s+31. Lane (t, c) copies, for each j8, the 8
// consecutive weights (16 bytes) of row 64·tile + 8·j8 + c at inputs
// 8t…8t+7, which are the fragments of two mma steps (inputs 8t…8t+3 and
// 8t+4…8t+7, with the slot relabelling of the packed kernel); the four
// lanes t = 0…3 of a row copy its 64 consecutive bytes.
//
// Wide (WIDE = true; M ≤ 8, K % 128 == 0, 3 stages): step s is the 16
// rows 16q…16q+15 of the tile, q = s / (K/128), at inputs 128b…128b+127,
// b = s mod (K/128): every row is read 256 contiguous bytes at a time.
// Rows read 64 bytes at a time stream at about 2/3 of the rate (the read
// probe, 1 GiB on the H100: 1981 against 2927 GB/s). Lane (t, c) copies,
// for u = 0…3 and h = 0, 1, the 8 weights of row 16q + c + 8h at inputs
// 32u + 8t…+7 to [2u + h][lane]: the same fragments as four narrow steps
// of one m16 row block, so a row's products and their order are those of
// the narrow kernel; x's 128 inputs of each row ride in the stage.
// Requires the alignment of qmv4.
template <bool BF16, int MR, bool WIDE = false>
__device__ __forceinline__ void dmv(const WDesc& w, const float* __restrict__ x, int ldx, const YOut& o, int M, float* ws,
                                    int* counters) {
    extern __shared__ __align__(16) unsigned char qsm[];
    constexpr int SB = WIDE ? dstage_bytes_wide(MR) : dstage_bytes(MR), D = WIDE ? DDW : DD;
    constexpr int XI = WIDE ? 128 : 32;  // inputs of x a step
    const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2, warp = threadIdx.x >> 5;
    const int gw = blockIdx.x * QW + warp, W = gridDim.x * QW;
    const int spt = w.K >> 5, sq = w.K >> 7, ntiles = (w.N + 63) >> 6, T = ntiles * spt;
    const int per = (T + W - 1) / W, i0 = gw * per, i1 = min(T, i0 + per);
    if (i0 >= i1) return;
    unsigned char* ring = qsm + (size_t)warp * D * SB;
    const u32 ring_s = smem_addr(ring);
    const u16* wbase = (const u16*)w.data + 8 * t;

    // the inputs k0 of step is of a tile, and (wide) its row block
    auto step_k0 = [&](int is) { return WIDE ? 128 * (is % sq) : 32 * is; };
    auto issue_x = [&](u32 slot, int k0) {
        for (int q = lane; q < M * (XI / 4); q += 32)
            cp_async16(slot + 4096 + 16 * q, x + (size_t)(q / (XI / 4)) * ldx + k0 + 4 * (q % (XI / 4)));
    };
    int itl = i0 / spt, is = i0 - itl * spt;  // the issue cursor's tile and step within it
    auto issue = [&](int i, bool with_x) {
        const u32 slot = ring_s + (u32)((i % D) * SB);
        const int tl = itl, k0 = step_k0(is), qb = WIDE ? is / sq : 0;
        if (++is == spt) is = 0, itl++;
#pragma unroll
        for (int j8 = 0; j8 < 8; j8++) {
            // rows past N copy row N−1 (never stored)
            const int r = WIDE ? 16 * qb + c + 8 * (j8 & 1) : 8 * j8 + c;
            const int n = min(tl * 64 + r, w.N - 1);
            cp_async16(slot + 512 * j8 + 16 * lane, wbase + (size_t)n * w.K + k0 + (WIDE ? 32 * (j8 >> 1) : 0));
        }
        if (with_x) issue_x(slot, k0);
    };

    // AOP (M ≤ 8) as in qmv4: the weights are the mma's A — rows 16w + c
    // and 16w + 8 + c are column tiles 2w and 2w + 1 of the lane's copies,
    // each 8 inputs 8t…8t+7 — and x (hi, lo) its B: 16 mma a 4 KB step
    // instead of 32
    constexpr bool AOP = MR == 8;
    static_assert(AOP || !WIDE, "the wide order is for M ≤ 8");
    constexpr int NA = AOP ? 4 : 8;
    float acc[NA][4];
#pragma unroll
    for (int j = 0; j < NA; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    // prologue as in qmv4: weights before waiting for the previous kernel
#pragma unroll
    for (int u = 0; u < D - 1; u++) {
        if (i0 + u < i1) issue(i0 + u, false);
        cp_commit();
    }
    pdl_wait();
    pdl_trigger();
    {
        int js = i0 % spt;
#pragma unroll
        for (int u = 0; u < D - 1; u++) {
            if (i0 + u < i1) {
                issue_x(ring_s + (u32)(((i0 + u) % D) * SB), step_k0(js));
                if (++js == spt) js = 0;
            }
            cp_commit();
        }
    }
    // x's fragments (hi, lo) of inputs 8t…8t+7 of rows c and c + 8 at
    // offset xo of the stage's x rows
    auto x_frags = [&](const unsigned char* sl, int xo, u32 (&a)[2][4], u32 (&l)[2][4]) {
        V4f xa0 = V4f{0.f, 0.f, 0.f, 0.f}, xa1 = xa0, xb0 = xa0, xb1 = xa0;
        if (c < M) {
            xa0 = *(const V4f*)(sl + 4096 + 4 * XI * c + xo + 32 * t);
            xa1 = *(const V4f*)(sl + 4096 + 4 * XI * c + xo + 32 * t + 16);
        }
        if (MR == 16 && c + 8 < M) {
            xb0 = *(const V4f*)(sl + 4096 + 4 * XI * (c + 8) + xo + 32 * t);
            xb1 = *(const V4f*)(sl + 4096 + 4 * XI * (c + 8) + xo + 32 * t + 16);
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const V4f ra = h == 0 ? xa0 : xa1, rb = h == 0 ? xb0 : xb1;
            a[h][1] = a[h][3] = l[h][1] = l[h][3] = 0u;
            if (BF16) {
                split_bf16(ra.x, ra.y, a[h][0], l[h][0]);
                split_bf16(ra.z, ra.w, a[h][2], l[h][2]);
                if (MR == 16) {
                    split_bf16(rb.x, rb.y, a[h][1], l[h][1]);
                    split_bf16(rb.z, rb.w, a[h][3], l[h][3]);
                }
            } else {
                split_f16(ra.x, ra.y, a[h][0], l[h][0]);
                split_f16(ra.z, ra.w, a[h][2], l[h][2]);
                if (MR == 16) {
                    split_f16(rb.x, rb.y, a[h][1], l[h][1]);
                    split_f16(rb.z, rb.w, a[h][3], l[h][3]);
                }
            }
        }
    };
    // the four mma of rows 16·blk… (A: the copies w0 = rows c, w1 = rows
    // c + 8) against x inputs 8t…8t+3 and 8t+4…8t+7
    auto mma4 = [&](float (&d)[4], const V4u& w0, const V4u& w1, const u32 (&a)[2][4], const u32 (&l)[2][4]) {
        if (BF16) {
            mma_bf16(d, w0.x, w1.x, w0.y, w1.y, a[0][0], a[0][2]);
            mma_bf16(d, w0.x, w1.x, w0.y, w1.y, l[0][0], l[0][2]);
            mma_bf16(d, w0.z, w1.z, w0.w, w1.w, a[1][0], a[1][2]);
            mma_bf16(d, w0.z, w1.z, w0.w, w1.w, l[1][0], l[1][2]);
        } else {
            mma_f16(d, w0.x, w1.x, w0.y, w1.y, a[0][0], a[0][2]);
            mma_f16(d, w0.x, w1.x, w0.y, w1.y, l[0][0], l[0][2]);
            mma_f16(d, w0.z, w1.z, w0.w, w1.w, a[1][0], a[1][2]);
            mma_f16(d, w0.z, w1.z, w0.w, w1.w, l[1][0], l[1][2]);
        }
    };
    int pend0 = -1, pend1 = -1;  // shared tiles whose sums this warp adds after the loop
    // the compute cursor: step cs of the tile and (wide) step cq of row
    // block qb. A stripe meets each row block of a tile in one run of
    // steps, so the run's mma go to accq (a fixed register set: indexing
    // acc by the run-time qb made every step issue all four blocks' mma
    // under predicates) and accq lands in acc[qb] — still zero — at the
    // run's end: the same sums, bit for bit
    int cs = i0 % spt, cq = cs % sq, qb = cs / sq;
    float accq[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = i0; i < i1; i++) {
        if (i + D - 1 < i1) issue(i + D - 1, true);
        cp_commit();
        cp_wait<D - 1>();  // as qmv4: W/X groups of the prologue, then one a step
        __syncwarp();
        const unsigned char* sl = ring + (i % D) * SB;
        const bool tile_end = ++cs == spt;
        if (WIDE) {
            // row block qb of the tile, four 32-input chunks
#pragma unroll
            for (int u = 0; u < 4; u++) {
                u32 a[2][4], l[2][4];
                x_frags(sl, 128 * u, a, l);
                const V4u w0 = *(const V4u*)(sl + 512 * (2 * u) + 16 * lane), w1 = *(const V4u*)(sl + 512 * (2 * u + 1) + 16 * lane);
                mma4(accq, w0, w1, a, l);
            }
            const bool run_end = ++cq == sq;
            if (run_end || i + 1 == i1) {
#pragma unroll
                for (int b = 0; b < 4; b++)
                    if (b == qb)
#pragma unroll
                        for (int e = 0; e < 4; e++) acc[b][e] += accq[e];
                accq[0] = accq[1] = accq[2] = accq[3] = 0.f;
            }
            if (run_end) cq = 0, qb = tile_end ? 0 : qb + 1;
        } else {
            u32 a[2][4], l[2][4];
            x_frags(sl, 0, a, l);
#pragma unroll
            for (int wr = 0; wr < 4 && AOP; wr++) {
                const V4u w0 = *(const V4u*)(sl + 512 * (2 * wr) + 16 * lane), w1 = *(const V4u*)(sl + 512 * (2 * wr + 1) + 16 * lane);
                mma4(acc[wr], w0, w1, a, l);
            }
#pragma unroll
            for (int j8 = 0; j8 < 8 && !AOP; j8++) {
                const V4u cw = *(const V4u*)(sl + 512 * j8 + 16 * lane);
                if (BF16) {
                    mma_bf16(acc[j8], a[0][0], a[0][1], a[0][2], a[0][3], cw.x, cw.y);
                    mma_bf16(acc[j8], l[0][0], l[0][1], l[0][2], l[0][3], cw.x, cw.y);
                    mma_bf16(acc[j8], a[1][0], a[1][1], a[1][2], a[1][3], cw.z, cw.w);
                    mma_bf16(acc[j8], l[1][0], l[1][1], l[1][2], l[1][3], cw.z, cw.w);
                } else {
                    mma_f16(acc[j8], a[0][0], a[0][1], a[0][2], a[0][3], cw.x, cw.y);
                    mma_f16(acc[j8], l[0][0], l[0][1], l[0][2], l[0][3], cw.x, cw.y);
                    mma_f16(acc[j8], a[1][0], a[1][1], a[1][2], a[1][3], cw.z, cw.w);
                    mma_f16(acc[j8], l[1][0], l[1][1], l[1][2], l[1][3], cw.z, cw.w);
                }
            }
        }
        __syncwarp();
        if (tile_end || i + 1 == i1)
            stripe_end<AOP>(acc, i / spt, gw, W, per, spt, w.N, o, M, ws, counters, pend0, pend1);
        if (tile_end) cs = 0;
    }
    cp_wait<0>();
    stripe_finish(pend0, pend1, W, per, spt, w.N, o, M, ws, counters);
}

#define DMV_KERNEL(NAME, BF, MR, WIDE)                                                                    \
    MARLIN_KERNEL void __launch_bounds__(QW * 32)                                                 \
        NAME(WDesc w, const float* x, int ldx, YOut o, int M, float* ws, int* counters) {                 \
        dmv<BF, MR, WIDE>(w, x, ldx, o, M, ws, counters);                                                 \
    }
// kernels: dmv
DMV_KERNEL(dmv_f16, false, 8, false)
DMV_KERNEL(dmv_f16_m16, false, 16, false)
DMV_KERNEL(dmv_bf16, true, 8, false)
DMV_KERNEL(dmv_bf16_m16, true, 16, false)
DMV_KERNEL(dmv_f16_wide, false, 8, true)
DMV_KERNEL(dmv_bf16_wide, true, 8, true)

// kernels: gemm
// ---- the large-M path: dequantize, then cuBLAS (cublas.go) ----

// x16[m, p] = half(x[m, perm ? perm[p] : p]) (fp16, or bf16 for bf16
// weights): the activations in the GEMM's input type and, for act-order
// weights, in the packed input order. Grid (⌈K/256⌉, M), 256 threads.
MARLIN_KERNEL void x_to_half(u16* __restrict__ x16, const float* __restrict__ x, int ldx, const int* __restrict__ perm,
                                     int K, int bf16) {
    const int m = blockIdx.y, p = blockIdx.x * 256 + threadIdx.x;
    if (p >= K) return;
    const float v = x[(size_t)m * ldx + (perm ? perm[p] : p)];
    u32 h = bf16 ? pack_bf16x2(v, 0.f) : pack_f16x2(v, 0.f);
    x16[(size_t)m * K + p] = (u16)(h & 0xffffu);
}

// W16[n, k] = fp16((q − z)·s) of a packed 4-bit weight, row-major [N, K]
// (k in the packed input order). One warp per 16×64 tile: lane (t, c)
// holds codes of inputs 4t…4t+3 of column 64·nt + 8·j8 + c for j8 = 0…7
// (pack.go) and writes them as 8 bytes; the four lanes of a column write 32
// consecutive bytes. Grid ⌈tiles/8⌉ blocks of 256 threads.
template <int KIND>
__device__ __forceinline__ void dequant4(u16* __restrict__ w16, const WDesc& w) {
    const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2;
    const int steps = w.K >> 4, ntiles = (w.N + 63) >> 6, groups = w.K / w.group;
    const long tile = (long)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (tile >= (long)ntiles * steps) return;
    const int nt = (int)(tile / steps), s = (int)(tile % steps);
    const V4u q4 = ((const V4u*)w.data)[tile * 32 + lane];
    const u32 wv[4] = {q4.x, q4.y, q4.z, q4.w};
    const int g = (16 * s) / w.group;
    const u16* sc = (const u16*)w.scales + ((size_t)nt * groups + g) * 64;
    const u16* zr = (const u16*)w.zeros + ((size_t)nt * groups + g) * 128;
#pragma unroll
    for (int j8 = 0; j8 < 8; j8++) {
        const int n = 64 * nt + 8 * j8 + c;
        if (n >= w.N) continue;
        const u32 word = wv[j8 >> 1];
        const float scale = f16_to_f32(sc[8 * c + j8]);
        float z = 8.f;
        if (KIND == PACK_INT4 && w.zeros) z = -f16_to_f32(zr[2 * (8 * c + j8)]) - 1024.f;
        float v[4];
#pragma unroll
        for (int r = 0; r < 4; r++) {
            // input 4t + r of tile j8: code i = 2(j8&1) + (r>>1) + 4(r&1) (pack.go)
            const int i = 2 * (j8 & 1) + (r >> 1) + 4 * (r & 1);
            const u32 code = (word >> (4 * i)) & 15u;
            v[r] = KIND == PACK_FP4 ? e2m1_to_f32(code) * scale : ((float)code - z) * scale;
        }
        u32 lo = pack_f16x2(v[0], v[1]), hi = pack_f16x2(v[2], v[3]);
        *(uint2*)(w16 + (size_t)n * w.K + 16 * s + 4 * t) = make_uint2(lo, hi);
    }
}
MARLIN_KERNEL void dequant_pint4(u16* w16, WDesc w) { dequant4<PACK_INT4>(w16, w); }
MARLIN_KERNEL void dequant_pfp4(u16* w16, WDesc w) { dequant4<PACK_FP4>(w16, w); }

// ---- prefill-sized products of packed INT4 weights on the tensor cores ----
//
// tc_qgemm: y[M, N] = x[M, K]·Wᵀ for packed INT4 weights (symmetric or with
// zero points; act-order through x16 already in the packed input order) and
// FP4 (e2m1, fp16 scales), the weights dequantised on load into the mma's A
// operand — the packed layout holds A fragments as stored (see qmv4's
// "Operand roles") — and x, in fp16 (x_to_half, once a call), as its B.
// Each product (q − z)·s is rounded once to fp16, as the cuBLAS path's fp16
// scratch rounds it.
//
// Block: TG_WARPS = 8 warps, a tile of 128 columns (packed column tiles
// nt0 = 2·blockIdx.x and nt0 + 1) × 64 rows of x (blockIdx.y); warp (wf,
// wm) = (warp & 3, warp >> 2) owns columns 32wf … 32wf + 31 — words
// 2(wf & 1) and 2(wf & 1) + 1 of column tile wf/2's lane words, row tiles
// of 16 — × rows 32wm … 32wm + 31 (4 n8 tiles). K is cut into steps of 32
// inputs, blockIdx.z taking steps [z·spt/S, (z+1)·spt/S) (split-K for
// grids of few column tiles). Per step, everything by cp.async into a ring
// of TG_STAGES stages, TG_STAGES − 1 steps ahead: the two column tiles' 2
// KB of codes (threads 0…127), their 256 B of scales (128…143) and 512 B
// of zero pairs (144…175), and the 64 rows × 32 inputs of x16 (4 KB, every
// thread 16 bytes: row tid/4, inputs 8(tid & 3) … +7; rows past M are
// zero-filled without a read). x rows lie TG_XP·2 = 96 bytes apart
// in the stage: a lane's B fragment, inputs 4t … 4t+3 of a 16-input half,
// is one 8-byte load and the 16 lanes of a half-warp hit distinct banks.
// One barrier a step; 16 mma a warp a step.
//
// (The first version loaded x as fp32 into registers one step ahead and
// converted it into a double buffer: 8 KB of x a block a step from L2
// against 2 KB of codes, waited for each step, made the kernel take the
// same time at 32 and 64 rows — latency-bound. This one is bound by
// issuing instructions, ~120 SASS a step for 16 mma; a warp tile of all 64
// rows (more mma per dequantised fragment, 128 registers) and dequantising
// once a block behind a second barrier were both slower:
// docs/cuda-kernels.md, fifth session.)
//
// With S > 1 each block leaves its 64×128 partial sums in ws (slot
// (tile, z)) and the last of the S blocks of a tile to arrive (counter per
// tile, reset by it) adds them in z order and writes y: deterministic.
// Requires K % 32 == 0, group % 32 == 0, x16 rows of K fp16 (16-byte
// aligned: K % 8 == 0); dynamic shared memory tg_smem(ASYM).
#define TG_STAGES 5
#define TG_WARPS 8
#define TG_XP 48  // x row pitch in fp16 (32 used)
__host__ __device__ constexpr int tg_xo(bool asym) { return 2048 + 256 + (asym ? 512 : 0); }
__host__ __device__ constexpr int tg_stage(bool asym) { return tg_xo(asym) + 64 * TG_XP * 2; }
__host__ __device__ constexpr int tg_smem(bool asym) { return TG_STAGES * tg_stage(asym); }

template <int KIND, bool ASYM>
__device__ __forceinline__ void tc_qgemm(const WDesc& w, const u16* __restrict__ x16, float* __restrict__ y, int ldy, int M,
                                         float* ws, int* counters) {
    extern __shared__ __align__(16) unsigned char gsm[];
    constexpr int SB = tg_stage(ASYM), SCO = 2048, ZO = 2048 + 256, XO = tg_xo(ASYM);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, t = lane & 3, c = lane >> 2;
    const int wf = warp & 3, wm = warp >> 2;
    const int spt = w.K >> 5, ntiles = (w.N + 63) >> 6, groups = w.K / w.group, gsteps = w.group >> 5;
    const int nt0 = 2 * blockIdx.x, m0 = 64 * blockIdx.y, S = gridDim.z, z = blockIdx.z;
    const int s0 = (int)((long long)spt * z / S), s1 = (int)((long long)spt * (z + 1) / S);
    const u32 ring_s = smem_addr(gsm);

    // Each thread's copy of a step's weights, from a source of its own:
    // codes (threads 0…127) base + 1024·s, scales (128…143) base + 128·g,
    // zero pairs (144…175) base + 256·g, for step s of group g (the column
    // tile past the last is read as the last: its outputs are not stored);
    // threads 176… copy no weights. In the loop the sources, x's and the
    // ring slots advance by adding: no multiplication or division there
    // (the first version's 64-bit address arithmetic was a third of the
    // loop's instructions).
    const unsigned char* wsrc = (const unsigned char*)w.data;
    int wdst = 0, wstep = 0, wgrp = 0;
    const bool hasw = tid < (ASYM ? 176 : 144);
    if (tid < 128) {
        const int nt = min(nt0 + (tid >> 6), ntiles - 1);
        wsrc += (size_t)nt * spt * 1024 + 16 * (tid & 63), wdst = 16 * tid, wstep = 1024;
    } else if (tid < 144) {
        const int nt = min(nt0 + ((tid - 128) >> 3), ntiles - 1);
        wsrc = (const unsigned char*)w.scales + (size_t)nt * groups * 128 + 16 * ((tid - 128) & 7), wdst = SCO + 16 * (tid - 128), wgrp = 128;
    } else if (ASYM && tid < 176) {
        const int nt = min(nt0 + ((tid - 144) >> 4), ntiles - 1);
        wsrc = (const unsigned char*)w.zeros + (size_t)nt * groups * 256 + 16 * ((tid - 144) & 15), wdst = ZO + 16 * (tid - 144), wgrp = 256;
    }
    // x16's copy of a step: thread tid's 8 inputs of row m0 + tid/4 (zeros
    // past row M − 1)
    const int xbytes = m0 + (tid >> 2) < M ? 16 : 0;
    const u16* xrow = x16 + (size_t)min(m0 + (tid >> 2), M - 1) * w.K + 8 * (tid & 3);
    const u32 xdst = (u32)(XO + (tid >> 2) * TG_XP * 2 + 16 * (tid & 3));

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

    // prologue: the weights of the first TG_STAGES − 1 steps (slots 0 …)
    // before the wait for the previous kernel (they do not depend on it), x
    // after it; one commit group a step (the first also holds all prologue
    // weights)
#pragma unroll
    for (int u = 0; u < TG_STAGES - 1; u++)
        if (hasw && s0 + u < s1)
            cp_async16(ring_s + (u32)(u * SB + wdst), wsrc + (size_t)(s0 + u) * wstep + (size_t)((s0 + u) / gsteps) * wgrp);
    pdl_wait();
    pdl_trigger();
#pragma unroll
    for (int u = 0; u < TG_STAGES - 1; u++) {
        if (s0 + u < s1) cp_async16_zfill(ring_s + (u32)(u * SB) + xdst, xrow + 32 * (s0 + u), xbytes);
        cp_commit();
    }
    // the next step to prefetch, ps: its sources (wp, xp), its slot's
    // address (pslot) and its place in its group (pgs)
    int ps = s0 + TG_STAGES - 1, pgs = ps % gsteps;
    const unsigned char* wp = wsrc + (size_t)ps * wstep + (size_t)(ps / gsteps) * wgrp;
    const u16* xp = xrow + 32 * ps;
    const u32 ring_end = ring_s + (u32)(TG_STAGES * SB);
    u32 pslot = ring_s + (u32)((TG_STAGES - 1) * SB);
    const unsigned char* sl = gsm;  // step s's slot
#pragma unroll 2
    for (int s = s0; s < s1; s++) {
        cp_wait<TG_STAGES - 2>();  // step s landed (this thread's copies)
        __syncthreads();           // … everyone's; and step s − 1's slot is free
        if (ps < s1) {
            if (hasw) cp_async16(pslot + wdst, wp);
            cp_async16_zfill(pslot + xdst, xp, xbytes);
        }
        cp_commit();
        ps++, wp += wstep, xp += 32;
        if (++pgs == gsteps) pgs = 0, wp += wgrp;
        pslot += SB;
        if (pslot == ring_end) pslot = ring_s;

        const u16* xs = (const u16*)(sl + XO);
        const int q = wf >> 1, wd0 = 2 * (wf & 1);
        // scales of this lane's columns 16wd + c and 16wd + 8 + c, wd = wd0,
        // wd0 + 1: [c][j8 = 2wd, 2wd + 1] of column tile q
        const uint2 sp = *(const uint2*)(sl + SCO + 128 * q + 16 * c + 4 * wd0);
        u32 zl[2], zh[2];  // per row tile: −(1024+z) and −(64+z) pairs of its two columns
        if (ASYM) {
            const uint4 zp = *(const uint4*)(sl + ZO + 256 * q + 32 * c + 8 * wd0);
            zl[0] = __byte_perm(zp.x, zp.y, 0x5410), zh[0] = __byte_perm(zp.x, zp.y, 0x7632);
            zl[1] = __byte_perm(zp.z, zp.w, 0x5410), zh[1] = __byte_perm(zp.z, zp.w, 0x7632);
        }
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const uint2 cw = *(const uint2*)(sl + 1024 * q + 512 * j + 16 * lane + 8 * (wf & 1));
            u32 bx[4][2];  // B fragments of the 4 n8 tiles: x rows 32wm + 8nn + c
#pragma unroll
            for (int nn = 0; nn < 4; nn++) {
                const uint2 v = *(const uint2*)(xs + (32 * wm + 8 * nn + c) * TG_XP + 16 * j + 4 * t);
                bx[nn][0] = v.x, bx[nn][1] = v.y;
            }
#pragma unroll
            for (int rt = 0; rt < 2; rt++) {
                const u32 v = rt == 0 ? cw.x : cw.y;
                const u32 zlr = ASYM ? zl[rt] : 0xE408E408u, zhr = ASYM ? zh[rt] : 0xD480D480u;
                const u32 s2 = rt == 0 ? sp.x : sp.y;  // (scale of column 16wd + c, of 16wd + 8 + c)
                const u32 sf0 = __byte_perm(s2, 0, 0x1010), sf1 = __byte_perm(s2, 0, 0x3232);
                u32 q4[4];
                if (KIND == PACK_INT4) {
                    dequant_int4(v, zlr, zhr, q4);
                } else {
                    // value·2^-14 times 2^14, exactly: the value itself, then the scale
                    dequant_fp4(v, q4);
#pragma unroll
                    for (int qq = 0; qq < 4; qq++) q4[qq] = hmul2(q4[qq], 0x74007400u);
                }
                u32 b0 = q4[0], b1 = q4[1], b2 = q4[2], b3 = q4[3];
                b0 = hmul2(b0, sf0), b1 = hmul2(b1, sf0), b2 = hmul2(b2, sf1), b3 = hmul2(b3, sf1);
#pragma unroll
                for (int nn = 0; nn < 4; nn++) mma_f16(acc[rt][nn], b0, b2, b1, b3, bx[nn][0], bx[nn][1]);
            }
        }
        sl += SB;
        if (sl == gsm + TG_STAGES * SB) sl = gsm;
    }
    cp_wait<0>();

    // acc[rt][nn]: d0, d1 at column f = 128·bx + 32wf + 16rt + c, rows
    // m0 + 32wm + 8nn + 2t, +1; d2, d3 at column f + 8
    auto put = [&](const float (&a)[2][4][4]) {
#pragma unroll
        for (int rt = 0; rt < 2; rt++)
#pragma unroll
            for (int nn = 0; nn < 4; nn++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int f = 128 * blockIdx.x + 32 * wf + 16 * rt + c + 8 * (e >> 1);
                    const int r = m0 + 32 * wm + 8 * nn + 2 * t + (e & 1);
                    if (f < w.N && r < M) y[(size_t)r * ldy + f] = a[rt][nn][e];
                }
    };
    if (S == 1) {
        put(acc);
        return;
    }
    // split-K: partials [tile][z][tid][32], the last block adds them in z order
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    float* part = ws + (((size_t)tile * S + z) * (TG_WARPS * 32) + tid) * 32;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) *(V4f*)(part + 16 * i + 4 * j) = V4f{acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3]};
    if (!last_split(&counters[tile], S)) return;
    float sum[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) sum[i][j][0] = sum[i][j][1] = sum[i][j][2] = sum[i][j][3] = 0.f;
    for (int zz = 0; zz < S; zz++) {
        const float* p = ws + (((size_t)tile * S + zz) * (TG_WARPS * 32) + tid) * 32;
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float4 v = ld_cg4(p + 16 * i + 4 * j);
                sum[i][j][0] += v.x, sum[i][j][1] += v.y, sum[i][j][2] += v.z, sum[i][j][3] += v.w;
            }
    }
    put(sum);
    if (tid == 0) counters[tile] = 0;
}

#define TC_QGEMM_KERNEL(NAME, KIND, ASYM)                                                                  \
    MARLIN_KERNEL void __launch_bounds__(TG_WARPS * 32)                                            \
        NAME(WDesc w, const u16* x16, float* y, int ldy, int M, float* ws, int* counters) {                \
        tc_qgemm<KIND, ASYM>(w, x16, y, ldy, M, ws, counters);                                             \
    }
TC_QGEMM_KERNEL(tc_qgemm_int4, PACK_INT4, false)
TC_QGEMM_KERNEL(tc_qgemm_int4_asym, PACK_INT4, true)
TC_QGEMM_KERNEL(tc_qgemm_fp4, PACK_FP4, false)
