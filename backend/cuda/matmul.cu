// matmul.cu — y[M, N] = x[M, K] · Wᵀ for W [N, K] in any stored format,
// and the embedding lookup (rows of W as float32).
//
// One templated tile kernel serves every format: the weight tile is
// dequantized element by element (wload<F>) while it is copied into shared
// memory, then multiplied in float32 with one fused multiply-add per
// product, summing k in increasing order. Correctness first; the fast
// paths (tensor cores, Marlin-style int4 decode) come later.
//
// Block: 256 threads. Tile: BM rows of x by BN output features, stepping
// BK inputs at a time. Grid: x = ⌈N/BN⌉, y = ⌈M/BM⌉.
//
//   loads  — the x tile [BM][BK] with consecutive threads on consecutive k
//            (coalesced rows of x); the weight tile [BN][BK] with
//            consecutive threads on consecutive k for row-major formats, or
//            on consecutive n for GPTQ (qweight words of one row are
//            consecutive in n). Out-of-range elements load as 0.
//   math   — thread t owns TM×TN outputs: rows tm + i·(BM/TM), columns
//            tn + j·(BN/TN) with tn = t mod (BN/TN), tm = t / (BN/TN), so a
//            warp reads BN/TN distinct weight rows per step (row pitch BK+1:
//            no bank conflicts) and broadcasts x, and stores coalesce in n.
//
// Two configurations: "small" (BM 8, BN 32, BK 128, one output a thread)
// for decode-sized M ≤ 8, which keeps ⌈N/32⌉ blocks busy; "large"
// (BM 64, BN 64, BK 32, 4×4 outputs a thread) for prefill.

template <int F, int BM, int BN, int BK, int TM, int TN>
__device__ __forceinline__ void matmul_tile(const WDesc& w, const float* __restrict__ x, int ldx,
                                            float* __restrict__ y, int ldy, int M) {
    __shared__ float xs[BM][BK + 1];
    __shared__ float ws[BN][BK + 1];
    const int tid = threadIdx.x;
    const int tn = tid % (BN / TN), tm = tid / (BN / TN);
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < w.K; k0 += BK) {
        for (int i = tid; i < BM * BK; i += 256) {
            int r = i / BK, kk = i % BK, m = m0 + r, k = k0 + kk;
            xs[r][kk] = (m < M && k < w.K) ? x[(size_t)m * ldx + k] : 0.f;
        }
        for (int i = tid; i < BN * BK; i += 256) {
            int nn, kk;
            if (KContiguous<F>::value) {
                nn = i / BK;
                kk = i % BK;
            } else {
                kk = i / BN;
                nn = i % BN;
            }
            int n = n0 + nn, k = k0 + kk;
            ws[nn][kk] = (n < w.N && k < w.K) ? wload<F>(w, n, k) : 0.f;
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < BK; kk++) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = xs[tm + i * (BM / TM)][kk];
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = ws[tn + j * (BN / TN)][kk];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int m = m0 + tm + i * (BM / TM);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int n = n0 + tn + j * (BN / TN);
            if (n < w.N) y[(size_t)m * ldy + n] = acc[i][j];
        }
    }
}

// Embedding: y[i, :] = W[tokens[i], :] as float32. One block per row i,
// threads over the K values.
template <int F>
__device__ __forceinline__ void embed_rows(const WDesc& w, const int* __restrict__ tokens, float* __restrict__ y, int ldy) {
    const int i = blockIdx.x, tok = tokens[i];
    // packed formats with act-order store input perm[p] at position p
    const bool perm = (F == FMT_PINT4 || F == FMT_PFP4) && w.gidx != nullptr;
    for (int k = threadIdx.x; k < w.K; k += blockDim.x) y[(size_t)i * ldy + (perm ? w.gidx[k] : k)] = wload<F>(w, tok, k);
}

#define MATMUL_KERNELS(F, NAME)                                                                              \
    MARLIN_KERNEL void __launch_bounds__(256)                                                        \
        mm_small_##NAME(WDesc w, const float* x, int ldx, float* y, int ldy, int M) {                        \
        matmul_tile<F, 8, 32, 128, 1, 1>(w, x, ldx, y, ldy, M);                                              \
    }                                                                                                        \
    MARLIN_KERNEL void __launch_bounds__(256)                                                        \
        mm_large_##NAME(WDesc w, const float* x, int ldx, float* y, int ldy, int M) {                        \
        matmul_tile<F, 64, 64, 32, 4, 4>(w, x, ldx, y, ldy, M);                                              \
    }                                                                                                        \
    MARLIN_KERNEL void embed_##NAME(WDesc w, const int* tokens, float* y, int ldy) {                 \
        embed_rows<F>(w, tokens, y, ldy);                                                                    \
    }

// dequant_rows writes W as fp16 for the cuBLAS path (cublas.go's
// gemmLarge) of the formats without a packed layout: [N, K] row-major for
// those whose rows run along K, [K, N] for GPTQ (qweight runs along N), so
// that consecutive threads read and write consecutive addresses either way.
// Each value is wload's float32 (FP8 and 8-bit GPTQ: the same values from
// vector loads), rounded to fp16 once. A thread writes 8
// consecutive values with one 16-byte store (the first version, one 2-byte
// store a value, ran at ~0.5 TB/s of output: 230 µs for 4096×14336 FP8 on
// the H100); rows whose length is not a multiple of 8 store value by value.
// Grid: x over chunks of 8 of the contiguous dimension, y (grid-stride)
// over the other.
template <int F>
__device__ __forceinline__ void dequant_rows(u16* __restrict__ w16, const WDesc& w) {
    const bool kc = KContiguous<F>::value;
    const int outer = kc ? w.N : w.K, inner = kc ? w.K : w.N, chunks = (inner + 7) / 8;
    for (int r = blockIdx.y; r < outer; r += gridDim.y)
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
            const int i0 = 8 * c;
            float v[8];
            if (F == FMT_FP8 && inner % 8 == 0) {
                // the 8 codes lie together in one row's 32 bytes of a step:
                // one 8-byte load (wload's address arithmetic a value made
                // this 15% slower than the row-major layout's)
                const u64 q = *(const u64*)((const u8*)w.data + fp8_offset(w, r, i0));
                const float s = ((const float*)w.scales)[r];
#pragma unroll
                for (int j = 0; j < 8; j++) v[j] = e4m3_to_f32((u32)(q >> (8 * j)) & 0xffu) * s;
            } else if (F == FMT_GPTQ && w.bits == 8 && inner % 8 == 0) {
                // input r of columns i0 … i0+7: byte r%4 of 8 consecutive
                // qweight words, their fp16 scales (16 bytes) and, with
                // zero points, 8 consecutive qzeros bytes; symmetric: 128
                const u32* q = (const u32*)w.data + (size_t)(r >> 2) * w.N + i0;
                const V4u q0 = *(const V4u*)q, q1 = *(const V4u*)(q + 4);
                const int g = w.gidx ? w.gidx[r] : r / w.group;
                const V4u sc = *(const V4u*)((const u16*)w.scales + (size_t)g * w.N + i0);
                const u64 zb = w.zeros ? *(const u64*)((const u8*)w.zeros + (size_t)g * 4 * w.zcols + i0) : 0x8080808080808080ull;
                const int zoff = w.zeros ? w.zoff : 0, sh = 8 * (r & 3);
                const u32 qs[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w}, ss[4] = {sc.x, sc.y, sc.z, sc.w};
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const int z = (int)((zb >> (8 * j)) & 255u) + zoff;
                    v[j] = (float)((int)((qs[j] >> sh) & 255u) - z) * f16_to_f32((u16)(ss[j / 2] >> (16 * (j % 2))));
                }
            } else {
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const int i = min(i0 + j, inner - 1); // past the end: a repeat, not stored
                    v[j] = kc ? wload<F>(w, r, i) : wload<F>(w, i, r);
                }
            }
            u16* dst = w16 + (size_t)r * inner + i0;
            const V4u h = {pack_f16x2(v[0], v[1]), pack_f16x2(v[2], v[3]), pack_f16x2(v[4], v[5]), pack_f16x2(v[6], v[7])};
            if (inner % 8 == 0) {
                *(V4u*)dst = h;
            } else {
                const u32 hw[4] = {h.x, h.y, h.z, h.w};
                for (int j = 0; j < 8 && i0 + j < inner; j++) dst[j] = (u16)(hw[j / 2] >> (16 * (j % 2)));
            }
        }
}
#define DEQUANT_KERNEL(F, NAME) \
    MARLIN_KERNEL void dequant_##NAME(u16* w16, WDesc w) { dequant_rows<F>(w16, w); }
DEQUANT_KERNEL(FMT_FP8, fp8)
DEQUANT_KERNEL(FMT_FP4, fp4)
DEQUANT_KERNEL(FMT_MXFP4, mxfp4)
DEQUANT_KERNEL(FMT_NVFP4, nvfp4)
DEQUANT_KERNEL(FMT_GPTQ, gptq)

MATMUL_KERNELS(FMT_F32, f32)
MATMUL_KERNELS(FMT_F16, f16)
MATMUL_KERNELS(FMT_BF16, bf16)
MATMUL_KERNELS(FMT_FP8, fp8)
MATMUL_KERNELS(FMT_FP4, fp4)
MATMUL_KERNELS(FMT_MXFP4, mxfp4)
MATMUL_KERNELS(FMT_NVFP4, nvfp4)
MATMUL_KERNELS(FMT_GPTQ, gptq)
MATMUL_KERNELS(FMT_PINT4, pint4)
MATMUL_KERNELS(FMT_PFP4, pfp4)
