// common.cu — definitions shared by every kernel of the CUDA backend.
//
// The sources are concatenated (common.cu, matmul.cu, ops.cu,
// attention.cu, moe.cu) and compiled by NVRTC as one program, without any
// CUDA header: the few conversions needed are written here with integer
// bit arithmetic (and one PTX instruction for binary16), exactly as the
// Go reference in package dtype defines them.
//
// Conventions: activations are row-major float32 with an explicit row
// stride (ld, in elements); sizes that can exceed 2^31 elements are
// computed in size_t; every kernel is extern "C" so the backend finds it by
// name with cuModuleGetFunction.

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned long long u64;

// IEEE binary16 → float32 (exact), with the hardware conversion.
__device__ __forceinline__ float f16_to_f32(u16 h) {
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else  // host compilation (a CPU emulation of the kernels): dtype.F16ToF32
    u32 sign = (u32)(h >> 15) << 31, e = (h >> 10) & 31u, m = h & 1023u;
    if (e == 31u) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e != 0u) return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
    float f = (float)m * (1.0f / 16777216.0f);
    return sign ? -f : f;
#endif
}

// bfloat16 → float32 (exact): the top half of a float32.
__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}

// float8 e4m3fn → float32 (exact): bias 7, no infinities, S.1111.111 NaN,
// subnormals man·2^-9 (dtype.E4M3ToF32).
__device__ __forceinline__ float e4m3_to_f32(u32 v) {
    u32 sign = (v >> 7) << 31;
    u32 e = (v >> 3) & 15u, m = v & 7u;
    if (e == 15u && m == 7u) return __uint_as_float(sign | 0x7fc00000u);
    if (e == 0u) {
        float f = (float)m * (1.0f / 512.0f);
        return sign ? -f : f;
    }
    return __uint_as_float(sign | ((e + 120u) << 23) | (m << 20));
}

// e2m1 code (low 4 bits, sign in bit 3) → ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.
// Magnitude codes 2..7 are 2^((m>>1)-1)·(1 + (m&1)/2): built as float bits.
__device__ __forceinline__ float e2m1_to_f32(u32 c) {
    u32 m = c & 7u;
    float v = m < 2u ? 0.5f * (float)m : __uint_as_float((((m >> 1) + 126u) << 23) | ((m & 1u) << 22));
    return (c & 8u) ? -v : v;
}

// e8m0 scale → 2^(v-127); 0xFF is NaN, 0 is the subnormal 2^-127.
__device__ __forceinline__ float e8m0_to_f32(u32 v) {
    if (v == 255u) return __uint_as_float(0x7fc00000u);
    if (v == 0u) return __uint_as_float(0x00400000u);
    return __uint_as_float(v << 23);
}

// Sum of v over the 32 lanes of a warp, returned to every lane.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// rms_scale returns, in every thread of the block, the RMS norm's
// r = 1/√(Σ/n + eps) rounded once to float32, Σ being the block's sum of
// the threads' float64 partial sums of squares ss: each warp's by
// shuffles, then the warps' by one warp (the order rms_norm has always
// used). Every thread of the block calls it (it has two barriers).
__device__ __forceinline__ float rms_scale(double ss, int n, float eps) {
    __shared__ double part[32];
    __shared__ float rs;
    ss = warp_sum_d(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        double t = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0;
        t = warp_sum_d(t);
        if (threadIdx.x == 0) rs = (float)(1.0 / sqrt(t / n + (double)eps));
    }
    __syncthreads();
    return rs;
}

// A weight matrix W [N, K] (N output features, K inputs) in its stored
// format, passed by value to the matmul and embedding kernels. The Go side
// (type wdesc) mirrors this layout field for field: four 8-byte pointers,
// then 32-bit fields, 64 bytes in all.
struct WDesc {
    const void* data;    // values: row-major [N, K] (dense, FP8, FP4 nibbles) or GPTQ qweight
    const void* scales;  // per-row or per-group scales (format dependent)
    const void* zeros;   // GPTQ qzeros, or null (symmetric: zero 2^(bits-1))
    const int* gidx;     // GPTQ g_idx, or null (group of input k is k/group)
    int N, K;
    int bits, group;     // GPTQ bits; group size along K (FP4/GPTQ)
    int zcols, zoff;     // GPTQ: 32-bit words per qzeros row; zero offset (1 for v1)
    float global;        // NVFP4 global scale
    int pad;
};

// Storage formats (the Go constants fmtF32 … fmtGPTQ match).
#define FMT_F32 0
#define FMT_F16 1
#define FMT_BF16 2
#define FMT_FP8 3
#define FMT_FP4 4
#define FMT_MXFP4 5
#define FMT_NVFP4 6
#define FMT_GPTQ 7
#define FMT_PINT4 8  // GPTQ int4 in the packed layout of pack.go (qmm.cu)
#define FMT_PFP4 9   // FP4 in the packed layout

// wload<F>(w, n, k) returns element (n, k) of W as float32, exactly as
// quant.Weight.DequantizeRow defines it.
template <int F> __device__ __forceinline__ float wload(const WDesc& w, int n, int k);

template <> __device__ __forceinline__ float wload<FMT_F32>(const WDesc& w, int n, int k) {
    return ((const float*)w.data)[(size_t)n * w.K + k];
}
template <> __device__ __forceinline__ float wload<FMT_F16>(const WDesc& w, int n, int k) {
    return f16_to_f32(((const u16*)w.data)[(size_t)n * w.K + k]);
}
template <> __device__ __forceinline__ float wload<FMT_BF16>(const WDesc& w, int n, int k) {
    return bf16_to_f32(((const u16*)w.data)[(size_t)n * w.K + k]);
}
// FP8: e4m3 in the tiled layout of pack.go (steps of 64 rows × 32 inputs,
// 2048 contiguous bytes each, ⌈K/32⌉ steps a column tile) times a float32
// scale a row.
__device__ __forceinline__ size_t fp8_offset(const WDesc& w, int n, int k) {
    const size_t step = (size_t)(n >> 6) * ((w.K + 31) >> 5) + (k >> 5);
    return 2048 * step + 32 * (n & 63) + (k & 31);
}
template <> __device__ __forceinline__ float wload<FMT_FP8>(const WDesc& w, int n, int k) {
    return e4m3_to_f32(((const u8*)w.data)[fp8_offset(w, n, k)]) * ((const float*)w.scales)[n];
}
// The e2m1 code of element (n, k): byte k/2 of row n, low nibble for even k.
__device__ __forceinline__ u32 nibble(const WDesc& w, int n, int k) {
    u32 b = ((const u8*)w.data)[(size_t)n * (w.K >> 1) + (k >> 1)];
    return (k & 1) ? (b >> 4) : (b & 15u);
}
// FP4: e2m1 times an fp16 scale per (row, group).
template <> __device__ __forceinline__ float wload<FMT_FP4>(const WDesc& w, int n, int k) {
    return e2m1_to_f32(nibble(w, n, k)) * f16_to_f32(((const u16*)w.scales)[(size_t)n * (w.K / w.group) + k / w.group]);
}
// MXFP4: e2m1 times an e8m0 scale per 32.
template <> __device__ __forceinline__ float wload<FMT_MXFP4>(const WDesc& w, int n, int k) {
    return e2m1_to_f32(nibble(w, n, k)) * e8m0_to_f32(((const u8*)w.scales)[(size_t)n * (w.K >> 5) + (k >> 5)]);
}
// NVFP4: (e2m1 · e4m3 scale per 16, exact) times the global scale.
template <> __device__ __forceinline__ float wload<FMT_NVFP4>(const WDesc& w, int n, int k) {
    float v = e2m1_to_f32(nibble(w, n, k)) * e4m3_to_f32(((const u8*)w.scales)[(size_t)n * (w.K >> 4) + (k >> 4)]);
    return v * w.global;
}
// GPTQ: value k of column n's little-endian bit stream in qweight
// ([K·bits/32, N] words; a 3-bit value may straddle two words), minus the
// group's zero point (same packing along n in qzeros row g, plus zoff),
// times the fp16 scale [G, N].
template <> __device__ __forceinline__ float wload<FMT_GPTQ>(const WDesc& w, int n, int k) {
    const u32* q = (const u32*)w.data;
    const u32 mask = (1u << w.bits) - 1u;
    int p = k * w.bits, r = p >> 5, off = p & 31;
    u32 v = q[(size_t)r * w.N + n] >> off;
    if (off + w.bits > 32) v |= q[(size_t)(r + 1) * w.N + n] << (32 - off);
    v &= mask;
    int g = w.gidx ? w.gidx[k] : k / w.group;
    float s = f16_to_f32(((const u16*)w.scales)[(size_t)g * w.N + n]);
    int z;
    if (w.zeros) {
        const u32* zr = (const u32*)w.zeros + (size_t)g * w.zcols;
        int zp = n * w.bits, zi = zp >> 5, zo = zp & 31;
        u32 zv = zr[zi] >> zo;
        if (zo + w.bits > 32) zv |= zr[zi + 1] << (32 - zo);
        z = (int)(zv & mask) + w.zoff;
    } else {
        z = 1 << (w.bits - 1);
    }
    return (float)((int)v - z) * s;
}

// Whether W's rows are contiguous along K (every format but GPTQ, whose
// qweight has N contiguous): the tile loaders let neighbouring threads
// walk the contiguous dimension so that their loads coalesce.
template <int F> struct KContiguous { static const bool value = true; };
template <> struct KContiguous<FMT_GPTQ> { static const bool value = false; };

// Programmatic dependent launch (sm_90). pdl_trigger lets the next kernel
// of the stream, if it was launched with programmatic serialization, start
// its blocks before this one ends; pdl_wait, in such a kernel, blocks
// until the previous kernel has completed and its writes are visible. Both
// are no-ops otherwise and below sm_90.
//
// The contract of a kernel the host launches that way (the decode
// matmuls, the expert products, route_mv, head_mv, mla_prologue,
// attn_mla, attn_split, moe_combine, rms_norm, trellis_in, tmv,
// trellis_out): before pdl_wait it reads
// only constant data (weights, their tables) and writes nothing; some
// thread of every block calls pdl_wait before the block ends, so that the
// kernel cannot complete before the one before it (the next kernel's wait
// then covers every earlier one); and it calls pdl_trigger after its wait.
// So when a kernel starts, every block of the one before it has passed its
// wait: what the kernels before that one wrote is complete, and a kernel
// may read it before its own wait, through L2 (ld.cg) — the expert ids in
// the down products and moe_combine, the residual stream in moe_combine,
// the row metadata and the cached keys and values of earlier steps in
// attn_split.
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}
#ifdef MARLIN_TRACE
// Tracing (compiled in with MARLIN_CUDA_TRACE=1; backend/cuda/trace.go
// reads it back): thread 0 of every block that calls pdl_wait writes its
// launch's id (%gridid, unique a launch), the global timer (ns) before
// and after the wait and the launch's shape to marlin_trace[slot][block][8],
// slot = id mod TRACE_SLOTS, and clears the block's four marks, which
// trace_mark(k) sets to the timer where a kernel reaches its phase k —
// plain stores, no atomics, so that the kernels keep their timing.
#define TRACE_SLOTS 1024
#define TRACE_BLOCKS 1024
#define TRACE_WORDS 8
extern "C" {
__device__ unsigned long long* marlin_trace;
}
__device__ __forceinline__ unsigned long long trace_clock() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
// trace_entry is this block's record, or null (another thread, no table,
// a block past TRACE_BLOCKS); id gets the launch's %gridid.
__device__ __forceinline__ unsigned long long* trace_entry(unsigned long long& id) {
    unsigned long long* tr = marlin_trace;
    if (tr == nullptr || threadIdx.x != 0 || threadIdx.y != 0 || threadIdx.z != 0) return nullptr;
    asm volatile("mov.u64 %0, %%gridid;" : "=l"(id));
    const unsigned blk = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    if (blk >= TRACE_BLOCKS) return nullptr;
    return tr + ((size_t)(id % TRACE_SLOTS) * TRACE_BLOCKS + blk) * TRACE_WORDS;
}
__device__ __forceinline__ void trace_wait(unsigned long long t0) {
    unsigned long long id;
    unsigned long long* e = trace_entry(id);
    if (e == nullptr) return;
    const unsigned long long t1 = trace_clock();
    e[0] = id, e[1] = t0, e[2] = t1;
    e[3] = (unsigned long long)gridDim.x | (unsigned long long)gridDim.y << 16 | (unsigned long long)gridDim.z << 32 |
           (unsigned long long)blockDim.x << 48;
    e[4] = e[5] = e[6] = e[7] = 0;
}
// trace_mark records when thread 0 of the block reaches phase k (1…4) of
// its kernel (after its pdl_wait); trace_mark_after, when v (a load's
// result) has arrived as well: the timer is read after a test of v (a NaN
// traps), which must wait for it.
__device__ __forceinline__ void trace_mark(int k) {
    unsigned long long id;
    unsigned long long* e = trace_entry(id);
    if (e != nullptr) e[3 + k] = trace_clock();
}
__device__ __forceinline__ void trace_mark_after(int k, float v) {
    unsigned long long id;
    unsigned long long* e = trace_entry(id);
    if (e == nullptr) return;
    unsigned long long t;
    asm volatile("{ .reg .pred p; setp.nan.f32 p, %1, %1; @p trap; mov.u64 %0, %%globaltimer; }" : "=l"(t) : "f"(v));
    e[3 + k] = t;
}
#else
__device__ __forceinline__ void trace_mark(int) {}
__device__ __forceinline__ void trace_mark_after(int, float) {}
#endif
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#ifdef MARLIN_TRACE
    const unsigned long long t0 = trace_clock();
#endif
    asm volatile("griddepcontrol.wait;" ::: "memory");
#ifdef MARLIN_TRACE
    trace_wait(t0);
#endif
#endif
}

// fence_gpu orders this thread's memory operations before it against those
// after it, at GPU scope, with acquire-release semantics: before a relaxed
// atomic it makes the writes before it visible to whoever sees the atomic
// (release); after one, it makes what the releasing threads wrote visible
// (acquire). It replaces __threadfence (membar.gl, a sequentially
// consistent fence.sc) in the split-K "last to arrive" patterns, which
// need no total order over fences and are on the critical path of every
// decode product.
__device__ __forceinline__ void fence_gpu() { asm volatile("fence.acq_rel.gpu;" ::: "memory"); }

// last_split is called by every thread of a block once its partial
// results (split-K partial sums, split attention's records) are written; it returns true in the last of the P blocks that count on
// counter (whose records are then all visible to it).
__device__ __forceinline__ bool last_split(int* counter, int P) {
    __shared__ int last;
    fence_gpu();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter, 1) == P - 1;
    __syncthreads();
    if (last) fence_gpu();
    return last;
}

// −∞ as a float (no math.h under NVRTC).
#define NEG_INF (__uint_as_float(0xff800000u))
