// trellis.cu — EXL3 (QTIP bitshift-trellis) weights on the tensor cores:
// y = x·W with W = diag(suh)·H·Ŵ·H·diag(svh) (docs/formats.md, "EXL3"), as
// three kernels:
//
//   trellis_in   x' = H128(pad(x) ⊙ suh) in fp16, written in mma.m16n8k16's
//                fragment order (16 rows; tmv forms its B registers from it
//                and zeroes rows past M)
//   tmv_K_CB     y'_partial = x'·Ŵ over a range of input tiles, Ŵ decoded
//                from the bit stream in registers (no table) straight into
//                the A fragments; fp32 partial sums per k-split (tmv16_K_CB
//                for 9 to 16 rows)
//   trellis_out  y = H128(Σ partials) ⊙ svh, cut to the logical columns
//
// The trellis of tile (kt, nt) (16 inputs × 16 outputs) is 256·K bits,
// stored as 8K little-endian 32-bit words holding the stream MSB first;
// position t's state is the 16 bits ending at stream bit (t+1)·K (mod
// 256·K). Positions 8·lane … 8·lane+7 of a tile are, for lane (g, t) =
// (lane/4, lane%4), the weights of inputs 2t, 2t+1, 2t+8, 2t+9 to output g
// (positions 0–3) and to output g+8 (4–7) (quant.TensorCoreOrder), so each
// lane decodes its 8 states from one window of the stream: the 7K+16 bits
// starting at bit (8·lane+1)·K − 16, which lie in 2 words (K ≤ 4) or 3
// (K ≤ 8). The window is aligned once (two funnel shifts); state j is then
// the top 16 bits of the 32-bit field at the constant offset j·K, and for
// K = 4 (8) the fields of states j and j+4 (j+2) are one register's two
// halves.
//
// Codebooks (bit-exact with quant.Codebook.Decode):
//   3INST: x = s·89226354 + 64248484; MCG: x = s·0xCBAC1FED; then
//          (x & 0x8FFF8FFF) ^ 0x3B603B60, and the value is fp16(hi) +
//          fp16(lo), one fp16 add.
//   MUL1:  x = s·0x83DCD12D; 0x6400 + (byte sum of x) by one dp4a is
//          fp16(1024 + sum); value fp16(fma(1024 + sum, 0x1EEE, 0xC931)).
//
// The decode kernel never forms a value. A codebook word x = {lo, hi} goes
// into the mma as it is, as the A operand (16 outputs × 16 k-slots), with
// each input of x' duplicated over two k-slots in the B operand: the
// tensor core then computes x'·lo + x'·hi, both products exact in fp32 —
// the value's sum without its fp16 rounding, and without the adds and byte
// permutes that formed it (they were a third of the kernel's
// instructions). One mma takes 8 inputs: the first the lane's states 0,
// 4, 2, 6 (inputs 2t and 2t+8 of outputs g and g+8) against x' inputs
// {2t, 2t+8}, the second states 1, 5, 3, 7 against {2t+1, 2t+9}; the
// duplicated B registers are formed once per input tile by byte permutes
// of the lane's x' fragment (whose token g is the B column of the lane).
// MUL1 puts {1024 + sum, −1536} in the A register (one dp4a from
// 0xE6006400), so the mma sums x'·(sum − 512); with c = fp16 0x1EEE =
// 1774/2^18 and d = fp16 0xC931, value = c·(1024 + sum) + d = c·(sum −
// 512) + e, e = 1536c + d = 3/256 exactly: the partial sum is c·acc +
// e·Σx', Σx' taken by one more mma of an all-ones A against the same B
// registers (2·Σx' in every row).
//
// Work split of tmv: grid (column blocks of 64 outputs, block splits of
// K). A block's 4 warps take the same column block and 4 consecutive
// ranges of KC input tiles; each warp streams its ranges' 4 tiles per
// input tile (one contiguous run of 128·K bytes) and the 16 rows of x' for
// them through a private cp.async ring in shared memory. At the end the
// four warps' sums are added in shared memory (in warp order) and the
// block writes one fp32 partial [M, 64] to ws; trellis_out adds the
// partials of all blocks in order: deterministic.
//
// Precision: x' rounded to fp16 (relative 2^-11), weights exact (the
// codebook words are fp16 numbers; the kernel's values are the exact sums
// of which the CPU's are the fp16 roundings), products and sums fp32. |x'|
// must stay below 65504.

#define TCB_3INST 0
#define TCB_MCG 1
#define TCB_MUL1 2
#define TW 4   // warps per block of tmv
#define TNW 4  // output tiles per warp of tmv

// ring stages per warp
__host__ __device__ constexpr int tstages(int K) { return K <= 2 ? 8 : K <= 4 ? 6 : 4; }
// bytes of a stage: the warp's NW tiles (32·K bytes each), x' of 16 rows
__host__ __device__ constexpr int tstage_bytes(int K, int NW) { return 32 * K * NW + 512; }
// a warp's shared memory: its ring, at least the [16][16·NW + 4] floats of
// the final reduction
__host__ __device__ constexpr int twarp_bytes(int K, int NW) {
    return tstages(K) * tstage_bytes(K, NW) > 16 * (16 * NW + 4) * 4 ? tstages(K) * tstage_bytes(K, NW) : 16 * (16 * NW + 4) * 4;
}

__device__ __forceinline__ u32 dp4a_u(u32 a, u32 b, u32 c) {
    u32 r;
    asm("dp4a.u32.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

// Pipe balance (the kernel is bound by integer issue, not memory: on
// sm_80/sm_90 the ALU pipe (shifts, lop3, prmt) and the IMAD pipe each
// take a warp instruction every other cycle, fp16 arithmetic has its own
// pipe). So the top 16 bits of a field are taken with mul.hi by 2^16
// (IMAD.HI) rather than a shift, the mask and xor are one lop3 with the
// constants in registers, and two states are summed with scalar fp16 adds
// on their own registers and joined by one prmt. The constants arrive as
// kernel arguments (tconst), so that ptxas cannot turn the multiplications
// back into shifts.
struct TConst {
    u32 c16, cmask, cxor, cneg16;  // 65536, 0x8FFF8FFF, 0x3B603B60, 0xFFFF0000
};
__device__ __forceinline__ u32 top16(u32 f, const TConst& c) { return __umulhi(f, c.c16); }
__device__ __forceinline__ u32 lop_and_xor(u32 a, u32 b, u32 c) {  // (a & b) ^ c
    u32 r;
    asm("lop3.b32 %0, %1, %2, %3, 0x6A;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

// The values of states sa (low half) and sb (high half) as fp16x2.
template <int CB>
__device__ __forceinline__ u32 tdec2(u32 sa, u32 sb, const TConst& c) {
    if (CB == TCB_MUL1) {
        const u32 ra = dp4a_u(sa * 0x83DCD12Du, 0x01010101u, 0x6400u);
        const u32 rb = dp4a_u(sb * 0x83DCD12Du, 0x01010101u, 0x6400u);
        return hfma2(__byte_perm(ra, rb, 0x5410), 0x1EEE1EEEu, 0xC931C931u);
    }
    u32 xa, xb;
    if (CB == TCB_MCG) {
        xa = sa * 0xCBAC1FEDu, xb = sb * 0xCBAC1FEDu;
    } else {
        xa = sa * 89226354u + 64248484u, xb = sb * 89226354u + 64248484u;
    }
    xa = lop_and_xor(xa, c.cmask, c.cxor), xb = lop_and_xor(xb, c.cmask, c.cxor);
    u32 r;
    asm("{ .reg .f16 al, ah, bl, bh, ra, rb;\n"
        " mov.b32 {al, ah}, %1;\n mov.b32 {bl, bh}, %2;\n"
        " add.rn.f16 ra, al, ah;\n add.rn.f16 rb, bl, bh;\n"
        " mov.b32 %0, {ra, rb}; }"
        : "=r"(r)
        : "r"(xa), "r"(xb));
    return r;
}

// The lane's window of a tile (words i0, i1, i2 of tw; bit offset r in
// word i0) cut into its 8 states s[0…7] (tile positions 8·lane + j).
template <int K>
__device__ __forceinline__ void tstates(const u32* tw, int i0, int i1, int i2, int r, u32 s[8], const TConst& c) {
    const u32 w0 = tw[i0], w1 = tw[i1];
    if (K <= 4) {
        // V = hi:lo, the window at the top
        const u32 hi = __funnelshift_l(w1, w0, r), lo = w1 << r;
        if (K == 4) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const u32 f = j == 0 ? hi : __funnelshift_l(lo, hi, 4 * j);
                s[j] = top16(f, c);
                s[j + 4] = f + s[j] * c.cneg16;  // f & 0xFFFF on the IMAD pipe
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) s[j] = top16(j == 0 ? hi : __funnelshift_l(lo, hi, j * K), c);
        }
    } else {
        const u32 w2 = tw[i2];
        const u32 hi = __funnelshift_l(w1, w0, r), mid = __funnelshift_l(w2, w1, r), lo = w2 << r;
        // the 32-bit field at offset p from the top of hi:mid:lo
        auto field = [&](int p) -> u32 {
            return p == 0 ? hi : p < 32 ? __funnelshift_l(mid, hi, p) : p == 32 ? mid : __funnelshift_l(lo, mid, p - 32);
        };
        if (K == 8) {
#pragma unroll
            for (int j = 0; j < 8; j += 4) {
                const u32 f0 = field(8 * j), f1 = field(8 * j + 8);
                s[j] = top16(f0, c), s[j + 2] = f0 + s[j] * c.cneg16;
                s[j + 1] = top16(f1, c), s[j + 3] = f1 + s[j + 1] * c.cneg16;
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) s[j] = top16(field(j * K), c);
        }
    }
}

// The lane's window decoded into the four B registers of the tile's
// values (the large-M path's decode): b[0] = {v0, v1}, b[1] = {v2, v3}
// (output g), b[2] = {v4, v5}, b[3] = {v6, v7} (output g + 8).
template <int K, int CB>
__device__ __forceinline__ void tdecode(const u32* tw, int i0, int i1, int i2, int r, u32 b[4], const TConst& c) {
    u32 s[8];
    tstates<K>(tw, i0, i1, i2, r, s, c);
    b[0] = tdec2<CB>(s[0], s[1], c);
    b[1] = tdec2<CB>(s[2], s[3], c);
    b[2] = tdec2<CB>(s[4], s[5], c);
    b[3] = tdec2<CB>(s[6], s[7], c);
}

// The codebook word of state s as the decode kernel's A register: {lo,
// hi} with lo + hi the value (3INST, MCG), or {1024 + sum, −1536} (MUL1).
template <int CB>
__device__ __forceinline__ u32 traw(u32 s, const TConst& c) {
    if (CB == TCB_MUL1) return dp4a_u(s * 0x83DCD12Du, 0x01010101u, 0xE6006400u);
    const u32 x = CB == TCB_MCG ? s * 0xCBAC1FEDu : s * 89226354u + 64248484u;
    return lop_and_xor(x, c.cmask, c.cxor);
}

// tmv: see the top. data: the trellis [KT][NT][16K] int16; xf: x' in
// fragment order [KT][32][4] u32; ws: partials [gridDim.y][M][NT·16]
// floats. KC input tiles per warp; MG groups of 8 rows (M ≤ 8·MG).
template <int K, int CB, int MG, int NW>
__device__ __forceinline__ void tmv(const u32* __restrict__ data, const u32* __restrict__ xf, float* __restrict__ ws, int NT,
                                    int KT, int KC, int M, TConst tc) {
    extern __shared__ __align__(16) unsigned char tsm[];
    constexpr int D = tstages(K), SB = tstage_bytes(K, NW), WB = twarp_bytes(K, NW), CW = 16 * NW, RS = CW + 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, t = lane & 3, g = lane >> 2;
    const int cb = blockIdx.x;
    const int k0 = min(KT, (blockIdx.y * TW + warp) * KC), k1 = min(KT, k0 + KC);
    unsigned char* ring = tsm + (size_t)warp * WB;
    const u32 ring_s = smem_addr(ring);

    // the lane's window: words i0, i1, i2 (mod 8K), offset r in word i0
    int b0 = (8 * lane + 1) * K - 16;
    if (b0 < 0) b0 += 256 * K;
    const int i0 = b0 >> 5, r = b0 & 31;
    const int i1 = i0 + 1 == 8 * K ? 0 : i0 + 1, i2 = i1 + 1 == 8 * K ? 0 : i1 + 1;

    // the next stage to request: its trellis tiles (NW of them, one run of
    // 32·K·NW bytes), its x' fragments, its slot (a byte offset in the
    // ring); all advanced by adding
    const size_t wstep = (size_t)NT * 2 * K;  // 16-byte chunks from one input tile to the next
    const V4u* wsrc = (const V4u*)data + ((size_t)k0 * NT + (size_t)cb * NW) * 2 * K;
    const V4u* xsrc = (const V4u*)xf + (size_t)k0 * 32 + lane;
    auto issue_w = [&](u32 slot) {
#pragma unroll
        for (int q = lane; q < 2 * K * NW; q += 32) cp_async16(ring_s + slot + 16 * q, wsrc + q);
    };
    auto issue_x = [&](u32 slot) { cp_async16(ring_s + slot + 32 * K * NW + 16 * lane, xsrc); };
    auto next = [](u32 slot) -> u32 { return slot == (D - 1) * SB ? 0u : slot + SB; };

    // acc[nt][mg]: outputs 16nt + g (0, 1) and + 8 (2, 3), rows 8mg + 2t, +1
    float acc[NW][MG][4], accs[MG][4];
#pragma unroll
    for (int mg = 0; mg < MG; mg++) {
        accs[mg][0] = accs[mg][1] = accs[mg][2] = accs[mg][3] = 0.f;
#pragma unroll
        for (int i = 0; i < NW; i++) acc[i][mg][0] = acc[i][mg][1] = acc[i][mg][2] = acc[i][mg][3] = 0.f;
    }

    // programmatic dependent launch: the first stages' tiles (constant) are
    // requested before the wait, x' (trellis_in's) after it; the first
    // group then holds all of those tiles
#pragma unroll
    for (int u = 0; u < D - 1; u++) {
        if (k0 + u < k1) issue_w(u * SB);
        wsrc += wstep;
    }
    pdl_wait();
    pdl_trigger();
#pragma unroll
    for (int u = 0; u < D - 1; u++) {
        if (k0 + u < k1) issue_x(u * SB);
        xsrc += 32;
        cp_commit();
    }
    u32 wslot = (D - 1) * SB, rslot = 0;
    for (int kt = k0; kt < k1; kt++) {
        if (kt + D - 1 < k1) issue_w(wslot), issue_x(wslot);
        wsrc += wstep, xsrc += 32, wslot = next(wslot);
        cp_commit();
        cp_wait<D - 1>();
        __syncwarp();
        const unsigned char* sl = ring + rslot;
        rslot = next(rslot);
        const V4u a = *(const V4u*)(sl + 32 * K * NW + 16 * lane);
        // B registers: row g (+ 8) of x', each input in both k-slots of its
        // pair; bx[mg][0] inputs {2t, 2t+8}, bx[mg][1] inputs {2t+1, 2t+9}
        u32 bx[MG][2][2];
#pragma unroll
        for (int mg = 0; mg < MG; mg++) {
            const bool live = g + 8 * mg < M;  // trellis_in writes rows < M only
            const u32 lo = live ? (mg ? a.y : a.x) : 0u, hi = live ? (mg ? a.w : a.z) : 0u;
            bx[mg][0][0] = __byte_perm(lo, 0, 0x1010), bx[mg][0][1] = __byte_perm(hi, 0, 0x1010);
            bx[mg][1][0] = __byte_perm(lo, 0, 0x3232), bx[mg][1][1] = __byte_perm(hi, 0, 0x3232);
            if (CB == TCB_MUL1) {
                mma_f16(accs[mg], 0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u, bx[mg][0][0], bx[mg][0][1]);
                mma_f16(accs[mg], 0x3C003C00u, 0x3C003C00u, 0x3C003C00u, 0x3C003C00u, bx[mg][1][0], bx[mg][1][1]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < NW; nt++) {
            u32 st[8], w[8];
            tstates<K>((const u32*)(sl + 32 * K * nt), i0, i1, i2, r, st, tc);
#pragma unroll
            for (int j = 0; j < 8; j++) w[j] = traw<CB>(st[j], tc);
#pragma unroll
            for (int mg = 0; mg < MG; mg++) {
                mma_f16(acc[nt][mg], w[0], w[4], w[2], w[6], bx[mg][0][0], bx[mg][0][1]);
                mma_f16(acc[nt][mg], w[1], w[5], w[3], w[7], bx[mg][1][0], bx[mg][1][1]);
            }
        }
        __syncwarp();
    }
    cp_wait<0>();
    if (CB == TCB_MUL1) {  // c·acc + e·Σx' (accs holds 2·Σx' in every row)
#pragma unroll
        for (int nt = 0; nt < NW; nt++)
#pragma unroll
            for (int mg = 0; mg < MG; mg++)
#pragma unroll
                for (int i = 0; i < 4; i++) acc[nt][mg][i] = fmaf(acc[nt][mg][i], 1774.f / 262144.f, accs[mg][i] * (3.f / 512.f));
    }
    __syncthreads();  // every warp is done with its ring: reuse it for the sums
    float* red = (float*)ring;  // [16][RS]: row, output
#pragma unroll
    for (int nt = 0; nt < NW; nt++)
#pragma unroll
        for (int mg = 0; mg < MG; mg++) {
            float* p = red + (8 * mg + 2 * t) * RS + 16 * nt + g;
            p[0] = acc[nt][mg][0], p[RS] = acc[nt][mg][1], p[8] = acc[nt][mg][2], p[RS + 8] = acc[nt][mg][3];
        }
    __syncthreads();
    const int Np = NT * 16;
    for (int idx = threadIdx.x; idx < M * CW; idx += TW * 32) {
        const int m = idx / CW, n = idx - m * CW;
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < TW; w++) v += ((const float*)(tsm + (size_t)w * WB))[m * RS + n];
        ws[((size_t)blockIdx.y * M + m) * Np + (size_t)cb * CW + n] = v;
    }
}

// The large-M path (with cuBLAS, trellis.go): Ŵ decoded to fp16, stored
// transposed, row-major [Out', In'] (w16[n·In' + k]). One warp a tile;
// grid ⌈tiles/8⌉ blocks of 256 threads.
template <int K, int CB>
__device__ __forceinline__ void tdq(u16* __restrict__ w16, const u32* __restrict__ data, int NT, int KT, TConst tc) {
    const int lane = threadIdx.x & 31, t = lane & 3, g = lane >> 2;
    const long tile = (long)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (tile >= (long)NT * KT) return;
    const int kt = (int)(tile / NT), nt = (int)(tile % NT);
    int b0 = (8 * lane + 1) * K - 16;
    if (b0 < 0) b0 += 256 * K;
    const int i0 = b0 >> 5, r = b0 & 31;
    const int i1 = i0 + 1 == 8 * K ? 0 : i0 + 1, i2 = i1 + 1 == 8 * K ? 0 : i1 + 1;
    u32 bf[4];
    tdecode<K, CB>(data + tile * 8 * K, i0, i1, i2, r, bf, tc);
    const size_t Kp = (size_t)KT * 16;
    u32* row0 = (u32*)(w16 + (size_t)(nt * 16 + g) * Kp + kt * 16);
    u32* row1 = (u32*)(w16 + (size_t)(nt * 16 + g + 8) * Kp + kt * 16);
    row0[t] = bf[0], row0[t + 4] = bf[1], row1[t] = bf[2], row1[t + 4] = bf[3];
}

#define TMV_KERNEL(K, CB, NAME)                                                                            \
    MARLIN_KERNEL void __launch_bounds__(TW * 32)                                                  \
        tmv_##K##_##NAME(const u32* data, const u32* xf, float* ws, int NT, int KT, int KC, int M, TConst tc) { \
        tmv<K, CB, 1, TNW>(data, xf, ws, NT, KT, KC, M, tc);                                                   \
    }                                                                                                      \
    MARLIN_KERNEL void __launch_bounds__(TW * 32)                                                  \
        tmv16_##K##_##NAME(const u32* data, const u32* xf, float* ws, int NT, int KT, int KC, int M, TConst tc) { \
        tmv<K, CB, 2, TNW>(data, xf, ws, NT, KT, KC, M, tc);                                                   \
    }                                                                                                      \
    MARLIN_KERNEL void __launch_bounds__(256) tdq_##K##_##NAME(u16* w16, const u32* data, int NT, int KT, TConst tc) { \
        tdq<K, CB>(w16, data, NT, KT, tc);                                                                \
    }
// KERNEL(K, CB, NAME) for K = 1 … 8
#define TRELLIS_KS(KERNEL, CB, NAME)                                                              \
    KERNEL(1, CB, NAME) KERNEL(2, CB, NAME) KERNEL(3, CB, NAME) KERNEL(4, CB, NAME) KERNEL(5, CB, NAME) \
    KERNEL(6, CB, NAME) KERNEL(7, CB, NAME) KERNEL(8, CB, NAME)
TRELLIS_KS(TMV_KERNEL, TCB_3INST, 3inst)
// kernels: mcg
TRELLIS_KS(TMV_KERNEL, TCB_MCG, mcg)
// kernels: mul1
TRELLIS_KS(TMV_KERNEL, TCB_MUL1, mul1)
// kernels: rest

// In-place orthonormal Hadamard transform of order 128 across a block of
// 128 threads (thread i holds element i), in the butterfly order of
// quant.FWHT (so the float32 results equal the CPU's), then ×1/√128.
__device__ __forceinline__ float fwht128(float v, float* sh) {
    const int i = threadIdx.x;
#pragma unroll
    for (int h = 1; h < 32; h <<= 1) {
        const float p = __shfl_xor_sync(0xffffffffu, v, h);
        v = (i & h) ? p - v : v + p;
    }
#pragma unroll
    for (int h = 32; h < 128; h <<= 1) {
        sh[i] = v;
        __syncthreads();
        const float p = sh[i ^ h];
        __syncthreads();
        v = (i & h) ? p - v : v + p;
    }
    return v * 0.088388347648318440550f;  // float32(1/√128), as quant.HadamardBlocks
}

// x' of rows 0…15 (zeros past M) in fragment order: element (m, k) is the
// half ((kt·32 + lane)·4 + q)·2 + k%2 with kt = k/16, lane = 4·(m%8) +
// (k%8)/2, q = m/8 + 2·((k%16)/8): the A registers a0…a3 of each lane, one
// 16-byte load. Grid (In'/128, M), 128 threads: tmv zeroes rows past M.
// With plain set, x' is written row-major [M, In'] instead (the cuBLAS
// path; grid (In'/128, M)).
MARLIN_KERNEL void __launch_bounds__(128)
    trellis_in(u16* __restrict__ xf, const float* __restrict__ x, int ldx, const u16* __restrict__ suh, int In, int M, int plain) {
    __shared__ float sh[128];
    const int m = blockIdx.y, k = blockIdx.x * 128 + threadIdx.x;
    const float su = k < In ? f16_to_f32(suh[k]) : 0.f;  // constant: before the wait
    pdl_wait();
    pdl_trigger();
    float v = 0.f;
    if (m < M && k < In) v = x[(size_t)m * ldx + k] * su;
    if (m < M) v = fwht128(v, sh);  // uniform per block
    const u16 h = (u16)(pack_f16x2(v, 0.f) & 0xffffu);
    if (plain) {
        xf[(size_t)m * (gridDim.x * 128) + k] = h;
        return;
    }
    const int kt = k >> 4, kk = k & 15, lane = 4 * (m & 7) + ((kk & 7) >> 1);
    const size_t idx = (((size_t)kt * 32 + lane) * 4 + (m >> 3) + 2 * (kk >> 3)) * 2 + (kk & 1);
    xf[idx] = h;
}

// y[m, n] = svh[n] · H128(Σ_s ws[s, m, :])[n] for n < N. Grid (Out'/128,
// M), 128 threads.
MARLIN_KERNEL void __launch_bounds__(128)
    trellis_out(float* __restrict__ y, int ldy, const float* __restrict__ ws, int S, const u16* __restrict__ svh, int N, int Np,
                int M) {
    __shared__ float sh[128];
    const int m = blockIdx.y, n = blockIdx.x * 128 + threadIdx.x;
    const float sv = n < N ? f16_to_f32(svh[n]) : 0.f;  // constant: before the wait
    pdl_wait();
    pdl_trigger();
    float v = 0.f;
    for (int s = 0; s < S; s++) v += ws[((size_t)s * M + m) * Np + n];
    v = fwht128(v, sh);
    if (n < N) y[(size_t)m * ldy + n] = v * sv;
}

// ---- EXL3 experts on the device (moe.cu's dispatch, for trellis weights) ----
//
// The jobs and slots of moe.cu's moe_mv (gate+up: job = 2·slot + which,
// output row which·nsel + slot; down: job = slot, mat0 = 2, x row slot),
// each job one M = 1 product through the three kernels above, the
// expert's matrix taken from a table of TDesc (three per expert) by the
// id the selection holds. Every expert of a table has the same bits,
// codebook and padded shape. x' and the partial sums of job j live at
// j·(its size) in their scratch buffers.
struct TDesc {
    const u32* data;
    const u16 *suh, *svh;
};
// job's slot, which matrix of the slot it multiplies, and that matrix's
// TDesc (moe.cu's moe_expert chooses the expert)
struct TJob {
    int slot, which;
    TDesc w;
};
__device__ __forceinline__ TJob trellis_job(const TDesc* tab, const int* ids, int job, int nr, int se, int mats, int mat0) {
    const int slot = job / mats, which = job - slot * mats;
    return TJob{slot, which, tab[3 * moe_expert(ids, slot, nr, se) + mat0 + which]};
}

// The three kernels take the jobs' table arguments first, in one order:
// (tab, ids, nr, se, mats, mat0).
//
// x' of job blockIdx.y into xf + job·KT·128 (fragment order, row 0); grid
// (In'/128, jobs), 128 threads.
MARLIN_KERNEL void __launch_bounds__(128)
    trellis_in_moe(const TDesc* __restrict__ tab, const int* __restrict__ ids, int nr, int se, int mats, int mat0,
                   u16* __restrict__ xf, const float* __restrict__ x, int ldx, int k, int xPerSlot, int In) {
    __shared__ float sh[128];
    pdl_wait();  // the selection and x are earlier kernels'
    pdl_trigger();
    const int job = blockIdx.y;
    const TJob j = trellis_job(tab, ids, job, nr, se, mats, mat0);
    const int kx = blockIdx.x * 128 + threadIdx.x;
    float v = kx < In ? x[(size_t)moe_xrow(j.slot, k, nr, xPerSlot) * ldx + kx] * f16_to_f32(j.w.suh[kx]) : 0.f;
    v = fwht128(v, sh);
    const int kt = kx >> 4, kk = kx & 15, lane = (kk & 7) >> 1;  // row 0: lanes 0–3
    xf[(size_t)job * gridDim.x * 8 * 256 + (((size_t)kt * 32 + lane) * 4 + 2 * (kk >> 3)) * 2 + (kk & 1)] =
        (u16)(pack_f16x2(v, 0.f) & 0xffffu);
}

// tmv for job blockIdx.z (M = 1): grid (column blocks, K splits, jobs).
template <int K, int CB>
__device__ __forceinline__ void tmv_moe(const TDesc* __restrict__ tab, const int* __restrict__ ids, int nr, int se, int mats,
                                        int mat0, const u32* __restrict__ xf, float* __restrict__ ws, int NT, int KT, int KC,
                                        int S, TConst tc) {
    pdl_wait();  // the selection (tmv's own wait, after its first requests, is then a no-op)
    const int job = blockIdx.z;
    tmv<K, CB, 1, TNW>(trellis_job(tab, ids, job, nr, se, mats, mat0).w.data, xf + (size_t)job * KT * 128, ws + (size_t)job * S * NT * 16, NT, KT, KC, 1, tc);
}

// y row (which·nsel + slot) = H128(Σ_s partials of the job) ⊙ svh, cut to
// N; grid (Out'/128, jobs), 128 threads.
MARLIN_KERNEL void __launch_bounds__(128)
    trellis_out_moe(const TDesc* __restrict__ tab, const int* __restrict__ ids, int nr, int se, int mats, int mat0,
                    float* __restrict__ y, int ldy, const float* __restrict__ ws, int S, int nsel, int N, int Np) {
    __shared__ float sh[128];
    pdl_wait();
    pdl_trigger();
    const int job = blockIdx.y;
    const TJob j = trellis_job(tab, ids, job, nr, se, mats, mat0);
    const int n = blockIdx.x * 128 + threadIdx.x;
    const float* wj = ws + (size_t)job * S * Np;
    float v = 0.f;
    for (int s = 0; s < S; s++) v += wj[(size_t)s * Np + n];
    v = fwht128(v, sh);
    if (n < N) y[(size_t)(j.which * nsel + j.slot) * ldy + n] = v * f16_to_f32(j.w.svh[n]);
}

#define TMV_MOE_KERNEL(K, CB, NAME)                                                                            \
    MARLIN_KERNEL void __launch_bounds__(TW * 32)                                                      \
        tmv_moe_##K##_##NAME(const TDesc* tab, const int* ids, int nr, int se, int mats, int mat0, const u32* xf, \
                             float* ws, int NT, int KT, int KC, int S, TConst tc) {                            \
        tmv_moe<K, CB>(tab, ids, nr, se, mats, mat0, xf, ws, NT, KT, KC, S, tc);                              \
    }
TRELLIS_KS(TMV_MOE_KERNEL, TCB_3INST, 3inst)
TRELLIS_KS(TMV_MOE_KERNEL, TCB_MCG, mcg)
TRELLIS_KS(TMV_MOE_KERNEL, TCB_MUL1, mul1)


// ---- the tail-biting Viterbi search of the quantizer (quant.EncodeTiles) ----
//
// One block of 1024 threads per tile (a persistent grid walks the tiles),
// the same search as the CPU, operation for operation, so that the chosen
// states are bit-identical: nodes are the 2^(16−K) overlaps e of
// consecutive states; a step computes, for every node e and top bits h
// (state w = h·2^(16−K) + e), c = (val(w) − x)² + prev[w >> K] in float32
// (sub, mul, add, each rounded: no fused multiply-add, as Go on amd64)
// and keeps the smallest, the smallest h on ties. The costs of the
// previous and next step are in shared memory (2 · 2^(16−K) floats: K ≥ 2),
// the codebook values are computed (no table), the backpointers (one byte
// a node and step) go to a per-block scratch in global memory. Pass 1 runs
// over the ring from position 128 with a free start, its best end (the
// smallest index on ties) is traced back to the node entering position 0;
// pass 2 starts from that node (all other nodes at +∞) and is traced back
// from it.

template <int CB>
__device__ __forceinline__ float tval1(u32 s) {
    u16 h;
    if (CB == TCB_MUL1) {
        const u32 r = dp4a_u(s * 0x83DCD12Du, 0x01010101u, 0x6400u);
        asm("{ .reg .f16 a, k, b; mov.b32 {a, b}, %1; mov.b16 k, 0x1EEE; mov.b16 b, 0xC931; fma.rn.f16 %0, a, k, b; }"
            : "=h"(h)
            : "r"(r));
    } else {
        u32 x = CB == TCB_MCG ? s * 0xCBAC1FEDu : s * 89226354u + 64248484u;
        x = (x & 0x8FFF8FFFu) ^ 0x3B603B60u;
        asm("{ .reg .f16 l, u; mov.b32 {l, u}, %1; add.rn.f16 %0, l, u; }" : "=h"(h) : "r"(x));
    }
    return f16_to_f32(h);
}

template <int K, int CB>
__device__ __forceinline__ void viterbi_pass(const float* __restrict__ xs, int roll, float* cost, unsigned char* bp) {
    constexpr int Kr = 16 - K, NE = 1 << Kr;
    float* prev = cost;
    float* next = cost + NE;
    for (int i = 0; i < 256; i++) {
        const float xv = xs[(i + roll) & 255];
        unsigned char* bpi = bp + (size_t)i * NE;
        for (int e = threadIdx.x; e < NE; e += blockDim.x) {
            float best = __int_as_float(0x7f800000);
            int bh = 0;
#pragma unroll 8
            for (int h = 0; h < (1 << K); h++) {
                const u32 w = ((u32)h << Kr) | (u32)e;
                const float d = __fsub_rn(tval1<CB>(w), xv);
                const float c = __fadd_rn(__fmul_rn(d, d), prev[w >> K]);
                if (c < best) best = c, bh = h;
            }
            next[e] = best;
            bpi[e] = (unsigned char)bh;
        }
        __syncthreads();
        float* t = prev;
        prev = next, next = t;
    }
    if (prev != cost) {  // leave the last costs in cost[0 … NE)
        for (int e = threadIdx.x; e < NE; e += blockDim.x) cost[e] = prev[e];
        __syncthreads();
    }
}

template <int K, int CB>
__device__ __forceinline__ void viterbi(const float* __restrict__ x, u16* __restrict__ states, unsigned char* __restrict__ bpws,
                                        int ntiles) {
    extern __shared__ __align__(16) unsigned char vsm[];
    constexpr int Kr = 16 - K, NE = 1 << Kr;
    float* cost = (float*)vsm;
    __shared__ float xs[256];
    __shared__ float rv[32];
    __shared__ int ri[32];
    __shared__ int snode;
    unsigned char* bp = bpws + (size_t)blockIdx.x * 256 * NE;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) xs[i] = x[(size_t)tile * 256 + i];
        // pass 1: free start (every node's previous cost 0: c = d² + 0 = d²)
        for (int e = threadIdx.x; e < NE; e += blockDim.x) cost[e] = 0.f;
        __syncthreads();
        viterbi_pass<K, CB>(xs, 128, cost, bp);
        // best end: smallest cost, smallest index on ties
        float bv = __int_as_float(0x7f800000);
        int bi = 0x7fffffff;
        for (int e = threadIdx.x; e < NE; e += blockDim.x)
            if (cost[e] < bv) bv = cost[e], bi = e;
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov < bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
        }
        if (lane == 0) rv[warp] = bv, ri[warp] = bi;
        __syncthreads();
        if (threadIdx.x == 0) {
            float v = rv[0];
            int e = ri[0];
            for (int w = 1; w < (int)(blockDim.x >> 5); w++)
                if (rv[w] < v || (rv[w] == v && ri[w] < e)) v = rv[w], e = ri[w];
            // trace back to the node entering ring position 0 (step 128)
            for (int i = 255; i >= 128; i--) {
                const u32 w = ((u32)bp[(size_t)i * NE + e] << Kr) | (u32)e;
                e = (int)(w >> K);
            }
            snode = e;
        }
        __syncthreads();
        const int start = snode;
        // pass 2: from start, forced to end there
        for (int e = threadIdx.x; e < NE; e += blockDim.x) cost[e] = e == start ? 0.f : __int_as_float(0x7f800000);
        __syncthreads();
        viterbi_pass<K, CB>(xs, 0, cost, bp);
        if (threadIdx.x == 0) {
            int e = start;
            for (int i = 255; i >= 0; i--) {
                const u32 w = ((u32)bp[(size_t)i * NE + e] << Kr) | (u32)e;
                states[(size_t)tile * 256 + i] = (u16)w;
                e = (int)(w >> K);
            }
        }
        __syncthreads();
    }
}

#define VIT_KERNEL(K, CB, NAME)                                                                                  \
    MARLIN_KERNEL void __launch_bounds__(1024)                                                           \
        viterbi_##K##_##NAME(const float* x, u16* states, unsigned char* bpws, int ntiles) {                     \
        viterbi<K, CB>(x, states, bpws, ntiles);                                                                 \
    }
#define VIT_CB(NAME, CB) \
    VIT_KERNEL(2, CB, NAME) VIT_KERNEL(3, CB, NAME) VIT_KERNEL(4, CB, NAME) VIT_KERNEL(5, CB, NAME) \
    VIT_KERNEL(6, CB, NAME) VIT_KERNEL(7, CB, NAME) VIT_KERNEL(8, CB, NAME)
// kernels: viterbi
VIT_CB(3inst, TCB_3INST)
VIT_CB(mcg, TCB_MCG)
VIT_CB(mul1, TCB_MUL1)
