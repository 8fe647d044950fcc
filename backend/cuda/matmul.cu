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

// ---- 8-bit GPTQ decode (M ≤ 8 rows) ----
//
// qmv_gptq8: y[M, N] = x·Wᵀ for a GPTQ 8-bit weight in its stored layout
// (qweight [K/4, N] u32, four consecutive inputs of one column a word, byte
// j = input 4i + j; scales [G, N] fp16; qzeros [G, N/4] u32, four columns'
// zero points a word; g_idx optional), with the arithmetic of wload:
// each weight is (q − z)·s rounded once, then one fused multiply-add per
// product in float32.
//
// Thread t of block (bx, sp) owns columns n0 = 4·(128·bx + t) … n0 + 3
// and the word rows of split sp (rows [sp·per, (sp+1)·per) of K/4): one
// 16-byte load a row brings its four columns' sixteen weights, a warp's
// loads are 512 contiguous bytes, and GQ rows are requested before the
// first is used. A byte q becomes the float 2^23 + q by one byte permute
// (exponent bits 0x4B), so q − z is one subtraction of 2^23 + z (exact).
// The scale and zero points of the four columns are reloaded where an
// input's group changes (found by one division a group, or read from
// act-order's g_idx for every input). x's inputs
// of the split are staged in shared memory (M·4·per floats).
//
// With one split the sums go to y; otherwise each split stores its partial
// sums in ws [S][M][N] and the last block of a column tile to finish (a
// counter per tile, which it resets) adds them in split order and writes
// y: deterministic. Requires N % 4 == 0 (16-byte rows); bits 8.
#define G8T 128  // threads a block
#define GQ 4     // word rows in flight a thread
MARLIN_KERNEL void __launch_bounds__(G8T)
    qmv_gptq8(WDesc w, const float* __restrict__ x, int ldx, float* __restrict__ y, int ldy, int M, int per,
              float* __restrict__ ws, int* __restrict__ counters) {
    extern __shared__ float xs8[];  // [M][4·per]
    const int t = threadIdx.x, n0 = 4 * (blockIdx.x * G8T + t), S = gridDim.y, sp = blockIdx.y;
    const int rows = w.K >> 2, i0 = sp * per, i1 = min(rows, i0 + per), kn = 4 * (i1 - i0);
    for (int e = t; e < M * kn; e += G8T) {
        const int m = e / kn, kk = e - m * kn;
        xs8[m * 4 * per + kk] = x[(size_t)m * ldx + 4 * i0 + kk];
    }
    __syncthreads();
    const bool live = n0 < w.N;
    float acc[8][4];
#pragma unroll
    for (int m = 0; m < 8; m++) acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = 0.f;
    const V4u* q = (const V4u*)w.data + (n0 >> 2);
    const size_t pitch = (size_t)w.N >> 2;  // uint4 a row
    int gcur = -1, gnext = 0;  // the current group; without g_idx the first input of the next
    float s[4], zb[4];         // the group's scales, and 2^23 + its zero points
    for (int i = i0; live && i < i1; i += GQ) {
        V4u v[GQ];
#pragma unroll
        for (int u = 0; u < GQ; u++) v[u] = i + u < i1 ? ld_stream(q + (size_t)(i + u) * pitch) : V4u{0u, 0u, 0u, 0u};
#pragma unroll
        for (int u = 0; u < GQ; u++) {
            if (i + u >= i1) break;
            const u32 col[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int k = 4 * (i + u) + j;
                int g = gcur;
                if (w.gidx)
                    g = w.gidx[k];
                else if (k >= gnext)
                    g = k / w.group, gnext = (g + 1) * w.group;
                if (g != gcur) {
                    gcur = g;
                    const uint2 sv = *(const uint2*)((const u16*)w.scales + (size_t)g * w.N + n0);
                    s[0] = f16_to_f32((u16)(sv.x & 0xffffu)), s[1] = f16_to_f32((u16)(sv.x >> 16));
                    s[2] = f16_to_f32((u16)(sv.y & 0xffffu)), s[3] = f16_to_f32((u16)(sv.y >> 16));
                    const u32 zw = w.zeros ? ((const u32*)w.zeros)[(size_t)g * w.zcols + (n0 >> 2)] : 0x80808080u;
                    const int zo = w.zeros ? w.zoff : 0;
#pragma unroll
                    for (int c = 0; c < 4; c++) zb[c] = 8388608.f + (float)((int)((zw >> (8 * c)) & 255u) + zo);
                }
                const int kk = k - 4 * i0;
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const float wv = (__uint_as_float(__byte_perm(col[c], 0x4B000000u, 0x7540 + j)) - zb[c]) * s[c];
#pragma unroll
                    for (int m = 0; m < 8; m++)
                        if (m < M) acc[m][c] = fmaf(xs8[m * 4 * per + kk], wv, acc[m][c]);
                }
            }
        }
    }
    // (rows m < M, unrolled so that acc stays in registers; y may be
    // unaligned: scalar stores)
    if (S == 1) {
        if (live)
#pragma unroll
            for (int m = 0; m < 8; m++)
                if (m < M)
#pragma unroll
                    for (int c = 0; c < 4; c++) y[(size_t)m * ldy + n0 + c] = acc[m][c];
        return;
    }
    if (live)
#pragma unroll
        for (int m = 0; m < 8; m++)
            if (m < M) *(float4*)(ws + ((size_t)sp * M + m) * w.N + n0) = make_float4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
    if (!last_split(&counters[blockIdx.x], S)) return;
    if (live)
        for (int m = 0; m < M; m++) {
            float4 r = ld_cg4(ws + (size_t)m * w.N + n0);
            for (int p = 1; p < S; p++) add4(r, ld_cg4(ws + ((size_t)p * M + m) * w.N + n0));
            y[(size_t)m * ldy + n0] = r.x, y[(size_t)m * ldy + n0 + 1] = r.y;
            y[(size_t)m * ldy + n0 + 2] = r.z, y[(size_t)m * ldy + n0 + 3] = r.w;
        }
    if (t == 0) counters[blockIdx.x] = 0;
}
