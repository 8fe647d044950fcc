// ops.cu — element-wise and row-wise operations. Unless noted, a kernel
// runs a grid-stride loop over its n elements with 256-thread blocks, one
// element per thread per step.

// dst[i] += x[i]
MARLIN_KERNEL void add_f32(float* __restrict__ dst, const float* __restrict__ x, u64 n) {
    pdl_trigger();
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) dst[i] += x[i];
}

// dst[r, c] += b[c] for a [rows, cols] tensor (n = rows·cols).
MARLIN_KERNEL void add_bias(float* __restrict__ dst, const float* __restrict__ b, int cols, u64 n) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) dst[i] += b[i % cols];
}

// dst = silu(g)·u = g/(1+e^-g)·u, in that order in float32 (as the CPU's
// vkernels.SiLUMul). dst may be g or u.
MARLIN_KERNEL void silu_mul(float* dst, const float* g, const float* u, u64 n) {
    pdl_trigger();
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        float x = g[i];
        dst[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

// RMS normalisation of consecutive chunks of n values: one block per
// chunk, blockDim.x threads (a multiple of 32, at most 1024: the host picks
// about one per 4 values, so that a 4096-wide row is one short pass). The
// sum of squares is accumulated in float64 (each thread a strided partial
// sum, its loads four at a time, then warp shuffles and one shared array),
// r = 1/√(Σx²/n + eps) is rounded once to float32, and each output is
// (x·r)·w in float32 — the CPU reference's order. dst may be x (every load
// of the block precedes rms_scale's barriers). The first pass's four
// values a thread stay in registers, and their weights are read before the
// wait (constant data), so that a row of up to 4·blockDim.x values takes
// one round trip after it.
MARLIN_KERNEL void __launch_bounds__(1024) rms_norm(float* dst, const float* x, const float* __restrict__ w, int n, float eps) {
    const int nt = blockDim.x;
    float w0[4];
#pragma unroll
    for (int u = 0; u < 4; u++) w0[u] = threadIdx.x + u * nt < n ? w[threadIdx.x + u * nt] : 0.f;
    pdl_wait();
    pdl_trigger();
    const size_t base = (size_t)blockIdx.x * n;
    double ss = 0;
    float x0[4];
    for (int i0 = threadIdx.x; i0 < n; i0 += 4 * nt) {  // four loads in flight, then the sums
        float v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) v[u] = i0 + u * nt < n ? x[base + i0 + u * nt] : 0.f;
#pragma unroll
        for (int u = 0; u < 4; u++) {
            ss += (double)v[u] * v[u];
            if (i0 == (int)threadIdx.x) x0[u] = v[u];
        }
    }
    const float r = rms_scale(ss, n, eps);
    trace_mark(1);
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const int i = threadIdx.x + u * nt;
        if (i < n) dst[base + i] = __fmul_rn(__fmul_rn(x0[u], r), w0[u]);
    }
    for (int i = threadIdx.x + 4 * nt; i < n; i += nt) dst[base + i] = __fmul_rn(__fmul_rn(x[base + i], r), w[i]);
    trace_mark(2);
}

// Rotary embedding, in place. One block per row, threads over (head, pair)
// items: pair j of head h rotates dims (a, b) = (j, j+half) ("rotate
// half") or (2j, 2j+1) (interleaved), offset by `offset` inside the head,
// by the angle of position pos[row]: a' = a·c − b·s, b' = b·c + a·s with
// (c, s) = tables[pos][j] (cos and sin, already times Rope.Scale, computed
// on the host like the CPU backend's).
MARLIN_KERNEL void rope(float* x, int ldx, const int* __restrict__ pos, const float* __restrict__ cosT,
                                const float* __restrict__ sinT, int half, int heads, int headDim, int offset,
                                int interleaved) {
    const int row = blockIdx.x;
    const size_t p = (size_t)pos[row] * half;
    float* xr = x + (size_t)row * ldx;
    for (int it = threadIdx.x; it < heads * half; it += blockDim.x) {
        int h = it / half, j = it % half;
        float* v = xr + h * headDim + offset;
        int ia = interleaved ? 2 * j : j, ib = interleaved ? 2 * j + 1 : j + half;
        float c = cosT[p + j], s = sinT[p + j];
        float a = v[ia], b = v[ib];
        v[ia] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        v[ib] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

// dst row i = src row rows[i] (cols values). One block per row.
MARLIN_KERNEL void copy_rows(float* __restrict__ dst, const float* __restrict__ src, const int* __restrict__ rows, int cols) {
    pdl_trigger();
    const float* s = src + (size_t)rows[blockIdx.x] * cols;
    float* d = dst + (size_t)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

// For each row and head h: n values from src[h·srcStride + srcOff] to
// dst[h·dstStride + dstOff]. One block per row, threads over heads·n.
MARLIN_KERNEL void copy_cols(float* __restrict__ dst, int ldd, const float* __restrict__ src, int lds, int heads, int n,
                                     int dstStride, int dstOff, int srcStride, int srcOff) {
    const float* s = src + (size_t)blockIdx.x * lds;
    float* d = dst + (size_t)blockIdx.x * ldd;
    for (int it = threadIdx.x; it < heads * n; it += blockDim.x) {
        int h = it / n, i = it % n;
        d[h * dstStride + dstOff + i] = s[h * srcStride + srcOff + i];
    }
}

// probe_ring: read_probe's stripes through a per-warp ring of 6 shared-
// memory stages filled by cp.async 5 chunks ahead, as qmm.cu's qmv4
// streams its weights (dynamic shared memory: 6 KB a warp), with WORK per
// 1 KB chunk: 0 none (the words are XORed); 1 the 4-bit dequantisation
// of qmv4 (lop3, add, fma per word; the results XORed); 2 the chunk's 16
// mma.m16n8k16 with the raw words as the B fragments (no dequantisation);
// 3 both, as qmv4's inner loop (less its scales, x and split-K tail); 4
// the dequantisation with each word's 8 weights as the A fragment of one
// mma (weight rows as the mma's 16 rows, x as its B: 8 mma a chunk, the
// layout a next kernel version could use).
template <int WORK>
__device__ __forceinline__ u32 probe_ring(const V4u* __restrict__ p, u64 n) {
    extern __shared__ __align__(16) unsigned char probe_sm[];
    const u64 nt = (u64)gridDim.x * blockDim.x, tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u64 W = nt >> 5, w = tid >> 5, chunks = n / 64, per = (chunks + W - 1) / W;
    const u64 c0 = w * per, c1 = min(chunks, c0 + per);
    unsigned char* ring = probe_sm + warp * 6 * 1024;
    const u32 rs = smem_addr(ring);
    u32 acc = 0;
    float part[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) part[j][0] = part[j][1] = part[j][2] = part[j][3] = 0.f;
    const u32 a0 = pack_f16x2(1.f, 0.5f), a2 = pack_f16x2(0.25f, 2.f);  // x's fragment (row 0; rows 8-15 zero)
    u64 ci = c0;
    auto issue = [&]() {
        if (ci < c1) {
            const u32 slot = rs + (u32)((ci - c0) % 6) * 1024;
            cp_async16(slot + 16 * lane, p + ci * 64 + lane);
            cp_async16(slot + 512 + 16 * lane, p + ci * 64 + 32 + lane);
        }
        cp_commit();
        ci++;
    };
    for (int u = 0; u < 5; u++) issue();
    for (u64 c = c0; c < c1; c++) {
        issue();
        cp_wait<5>();
        __syncwarp();
        const unsigned char* sl = ring + ((c - c0) % 6) * 1024;
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const V4u cw = *(const V4u*)(sl + 512 * j + 16 * lane);
            const u32 wv[4] = {cw.x, cw.y, cw.z, cw.w};
#pragma unroll
            for (int wd = 0; wd < 4; wd++) {
                u32 b[4];
                if (WORK == 1 || WORK >= 3) {
                    dequant_int4(wv[wd], 0xE408E408u, 0xD480D480u, b);
                } else {
                    b[0] = b[1] = wv[wd], b[2] = b[3] = wv[wd] >> 8;
                }
                if (WORK == 4) {  // the weights as A (16 rows × 16 inputs), x as B
                    mma_f16(part[4 * j + wd], b[0], b[1], b[2], b[3], a0, a2);
                } else if (WORK >= 2) {
                    mma_f16(part[2 * wd], a0, 0u, a2, 0u, b[0], b[1]);
                    mma_f16(part[2 * wd + 1], a0, 0u, a2, 0u, b[2], b[3]);
                } else {
                    acc ^= b[0] ^ b[1] ^ b[2] ^ b[3];
                }
            }
        }
        __syncwarp();
    }
    cp_wait<0>();
#pragma unroll
    for (int j = 0; j < 8; j++) acc ^= __float_as_uint(part[j][0] + part[j][1] + part[j][2] + part[j][3]);
    return acc;
}

// read_probe reads the n 16-byte words at p, for TestReadPatternSpeed: is
// the decode kernels' order of reading (each warp its own contiguous
// stretch, qmm.cu's stripes) slower for the memory than a copy's (the
// whole grid on one window at a time), and which part of the decode
// kernels' per-step work keeps them from reading at the memory's pace?
// mode 0: the grid strides over the words, four loads a thread in flight;
// mode 1: warp w reads 1 KB chunks [w·per, (w+1)·per) in order, four
// chunks (two loads a lane each) in flight; modes 2–6: the same chunks
// through qmv4's cp.async ring with probe_ring's WORK 0–4; modes 7 and 8
// a row-major 16-bit matrix in dmv's order and in 16-row steps. A result
// (XOR of the words or sums) is stored only if it equals a constant, so
// that the work is not dead code.
MARLIN_KERNEL void read_probe(const V4u* __restrict__ p, u64 n, int mode, u32* sink) {
    const u64 nt = (u64)gridDim.x * blockDim.x, tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    u32 acc = 0;
    auto eat = [&](const V4u& v) { acc ^= v.x ^ v.y ^ v.z ^ v.w; };
    if (mode == 0) {
        u64 i = tid;
        for (; i + 3 * nt < n; i += 4 * nt) {
            const V4u a = ld_stream(p + i), b = ld_stream(p + i + nt), c = ld_stream(p + i + 2 * nt), d = ld_stream(p + i + 3 * nt);
            eat(a), eat(b), eat(c), eat(d);
        }
        for (; i < n; i += nt) eat(ld_stream(p + i));
    } else if (mode == 2) {
        acc = probe_ring<0>(p, n);
    } else if (mode == 3) {
        acc = probe_ring<1>(p, n);
    } else if (mode == 4) {
        acc = probe_ring<2>(p, n);
    } else if (mode == 5) {
        acc = probe_ring<3>(p, n);
    } else if (mode == 6) {
        acc = probe_ring<4>(p, n);
    } else if (mode == 7 || mode == 8) {
        // a row-major 16-bit matrix of 4096-byte rows (K = 2048), read in
        // 4 KB warp steps: mode 7 as dmv (64 rows × 64 bytes a step, a
        // lane 16 bytes of rows 8·j + c), mode 8 as 16 rows × 256 bytes
        // (a lane 16 bytes of rows c and c + 8 at 64-byte offsets u)
        const int lane = threadIdx.x & 31, t = lane & 3, c = lane >> 2;
        const u64 rowW = 256, rows = n / rowW;  // 16-byte words a row
        const u64 R = mode == 7 ? 64 : 16, spt = rowW / (256 / R), T = (rows / R) * spt;
        const u64 W = nt >> 5, w = tid >> 5, per = (T + W - 1) / W, s0 = w * per, s1 = min(T, s0 + per);
        for (u64 s = s0; s < s1; s++) {
            const u64 tl = s / spt, st = s - tl * spt;
            V4u v[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                u64 row, col;
                if (mode == 7) row = tl * 64 + 8 * j + c, col = st * 4 + t;
                else row = tl * 16 + c + 8 * (j & 1), col = st * 16 + 4 * (j >> 1) + t;
                v[j] = ld_stream(p + row * rowW + col);
            }
#pragma unroll
            for (int j = 0; j < 8; j++) eat(v[j]);
        }
    } else {
        const int lane = threadIdx.x & 31;
        const u64 W = nt >> 5, w = tid >> 5, chunks = n / 64, per = (chunks + W - 1) / W;
        const u64 c0 = w * per, c1 = min(chunks, c0 + per);
        for (u64 c = c0; c < c1; c += 4) {
            V4u v[8];
#pragma unroll
            for (int u = 0; u < 8; u++) v[u] = c + u / 2 < c1 ? ld_stream(p + (c + u / 2) * 64 + (u & 1) * 32 + lane) : V4u{0, 0, 0, 0};
#pragma unroll
            for (int u = 0; u < 8; u++) eat(v[u]);
        }
    }
    if (acc == 0x9e3779b9u) sink[tid & 1023] = acc;
}

// handoff_probe is one launch of a chain, for TestHandoffSpeed: what a
// kernel boundary of a decode step costs, and what a handoff by a flag
// would. Thread 0 of each block adds 1 to x[block] (the work a kernel does
// after its wait, reduced to nothing). mode 0 waits as the decode kernels
// do (pdl_wait: until the launch before has completed and its writes are
// flushed). mode 1 hands off by a flag: the block lets its dependents
// launch at once, spins until launch seq − 1 has set flags[seq − 1]
// (ld.acquire; launch 0 does not wait), does its work and counts itself in
// (an acq_rel atomic on counts[seq]); the last block sets flags[seq]
// (st.release). The spinning cannot deadlock: a launch's dependents start
// only once all of its own blocks have. Every block still calls pdl_wait,
// at its end (pdl_wait's contract), when the launch before has long
// completed.
MARLIN_KERNEL void handoff_probe(float* x, int* flags, int* counts, int seq, int mode) {
    if (mode == 0) {
        pdl_wait();
        pdl_trigger();
        if (threadIdx.x == 0) x[blockIdx.x] += 1.f;
        return;
    }
    pdl_trigger();
    if (threadIdx.x == 0) {
        if (seq > 0) {
            int f = 0;
            do {
                asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(f) : "l"(flags + seq - 1) : "memory");
            } while (f == 0);
        }
        x[blockIdx.x] += 1.f;
        int old;
        asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(old) : "l"(counts + seq) : "memory");
        if (old == (int)gridDim.x - 1) asm volatile("st.release.gpu.global.s32 [%0], 1;" ::"l"(flags + seq) : "memory");
    }
    __syncthreads();
    pdl_wait();
}
