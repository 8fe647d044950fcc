// ---- 4-bit products on Hopper's warpgroup MMA (wgmma; sm_90a only) ----
//
// wg_qgemm: y[M, N] = x[M, K]·Wᵀ for packed INT4 (symmetric or with zero
// points) and FP4 weights, as tc_qgemm (qmm.cu) computes it — the same
// packed layout, the same dequantisation ((q − z)·s rounded once to fp16),
// x in fp16 in the packed input order — but on the warpgroup MMA, which
// tc_qgemm could not use: one wgmma.m64n64k16 does the work of 32
// mma.sync.m16n8k16 and takes its B operand straight from shared memory,
// so the instructions a step are the dequantisation and little else
// (tc_qgemm was bound by issuing ~9 instructions an mma).
//
// x's input order: the packed layout puts inputs 4t … 4t+3 of a 16-input
// half in lane t's registers a0 (4t, 4t+1) and a2 (4t+2, 4t+3), which the
// MMA reads as its k = 2t, 2t+1 and 8+2t, 8+2t+1. tc_qgemm loads its B
// fragments to match; here B is read by the hardware in k order, so x
// comes in that order (x_to_tiles): positions 0 … 7 of each 16 hold inputs
// 0, 1, 4, 5, 8, 9, 12, 13 and 8 … 15 inputs 2, 3, 6, 7, 10, 11, 14, 15.
//
// Operand roles: the weights are the MMA's A (64 output columns × 16
// inputs a warpgroup, in registers) and x its B (16 inputs × 64 tokens, in
// shared memory). A warpgroup's four warps each hold 16 of the 64 rows of
// A in the register layout of mma.m16n8k16's A fragment, which is what one
// 32-bit word of the packed layout dequantises to (qmv4's "Operand roles"):
// warp wl of a warpgroup takes word wl of each lane's 16 bytes of a column
// tile's 16-input half — column rows 16wl … 16wl + 15.
//
// Block: 2 warpgroups (256 threads), 2·CT packed column tiles (64 output
// columns each; warpgroup g owns tiles CT·g … CT·g + CT − 1) × BT tokens
// (BT/64 sub-tiles of 64, one wgmma each). K in steps of 32 inputs
// (two k16 halves), blockIdx.z taking steps [z·spt/S, (z+1)·spt/S).
// Per step, into a ring of WG_STAGES stages, WG_STAGES − 2 steps ahead:
// the tiles' codes (1 KB each), scales (128 B) and zero pairs (256 B) by
// cp.async (read back by the threads that dequantise them), and x's BT ×
// 32 inputs by one bulk copy (cp.async.bulk, completing on the stage's
// mbarrier) in the wgmma's canonical K-major layout without swizzle: 8 × 8
// "core matrices" (8 tokens × 16 bytes, 128 bytes contiguous), core matrix
// (n8, k8) at 128·(4·n8 + k8) — the layout x_to_tiles writes, so a step's
// BT tokens are BT·64 contiguous bytes. The descriptor of a k16 half j of
// a 64-token sub-tile u starts at 256j + 4096u, the next core matrix along
// K is 128 bytes on (LBO), along the tokens 512 (SBO). The bulk copy
// writes through the async proxy that wgmma reads through: with x copied
// by cp.async (the generic proxy) the step needed a fence.proxy.async,
// which compiles to MEMBAR.ALL.CTA and made every step wait for the
// thread's copies of the steps ahead too.
//
// The ring runs two slots of slack instead of one: step s's wgmma are
// still in flight (wgmma.wait_group 1) while step s + 1 is dequantised,
// so the slot refilled at step s is the one of step s − 2, which every
// warp has waited for before the barrier that precedes the refill.
//
// (The version before this one, with x by cp.async and a fence, was
// slower than tc_qgemm at most sizes. This one takes 5–40% less time than
// tc_qgemm from 17 to 256 rows on the issue's four shapes and is on by
// default there; at 2048 rows it loses: docs/cuda-kernels.md, tenth
// session. It is bound by issuing instructions, ~118 a warp a step.)
//
// With S > 1 each block leaves its partial sums in ws (slot (tile, z)) and
// the last of the S blocks of a tile (counter per tile, reset by it) adds
// them in z order: deterministic. Requires K % 32 == 0, group % 32 == 0
// (KIND PACK_FP4G16: exactly 16), x16 from x_to_tiles; dynamic shared
// memory wg_smem.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_ON 1
#else
#define WG_ON 0  // compiled for another target: the kernels are empty and never launched
#endif
// the ring's stages (deeper rings — 10 and 12 stages, as many as the
// shared memory holds — measured the same at every size: a step does not
// wait for its loads; docs/cuda-kernels.md, tenth session)
#define WG_STAGES 5
// wg_blocks: x_to_tiles' 64-token blocks a step for M tokens, padded to
// the 128-token form's tile, so that its last tile's copy stays inside
__host__ __device__ constexpr int wg_blocks(int M) { return 2 * ((M + 127) >> 7); }
// A stage: the 2·ct tiles' codes (1 KB each), their scales (128 B each, or
// 256 B with groups of 16: a step holds two groups), with zero points their
// zero pairs (256 B each), then x's bt tokens × 32 inputs in fp16.
__host__ __device__ constexpr int wg_sco(int ct) { return 2048 * ct; }
__host__ __device__ constexpr int wg_zo(int ct, bool g16) { return 2048 * ct + (g16 ? 512 : 256) * ct; }
__host__ __device__ constexpr int wg_xo(int ct, bool asym, bool g16) { return wg_zo(ct, g16) + (asym ? 512 * ct : 0); }
__host__ __device__ constexpr int wg_stage(int bt, int ct, bool asym, bool g16) { return wg_xo(ct, asym, g16) + 64 * bt; }
// (the ring, or the cluster sum's 256 threads × ct·bt/2 floats where that
// is larger, then an mbarrier a stage)
__host__ __device__ constexpr int wg_bars(int bt, int ct, bool asym, bool g16) {
    return WG_STAGES * wg_stage(bt, ct, asym, g16) > 512 * ct * bt ? WG_STAGES * wg_stage(bt, ct, asym, g16) : 512 * ct * bt;
}
__host__ __device__ constexpr int wg_smem(int bt, int ct, bool asym, bool g16) { return wg_bars(bt, ct, asym, g16) + 8 * WG_STAGES; }

#if WG_ON
// wg_desc is the shared-memory descriptor of one k16 half of a 64-token
// x sub-tile at saddr: no swizzle, LBO 128 bytes (next core matrix along
// K), SBO 512 bytes (next 8 tokens); the fields hold byte values >> 4.
__device__ __forceinline__ unsigned long long wg_desc(u32 saddr) {
    return (unsigned long long)((saddr & 0x3FFFF) >> 4) | ((unsigned long long)(128 >> 4) << 16) |
           ((unsigned long long)(512 >> 4) << 32);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }

// mbarriers (one a ring stage) and the bulk copy that completes on them:
// x reaches shared memory through the async proxy, which wgmma reads
// through too, so no proxy fence is needed between them (a
// fence.proxy.async a step compiled to MEMBAR.ALL.CTA, waiting for the
// thread's copies of the steps ahead as well).
__device__ __forceinline__ void mbar_init(u32 bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect(u32 bar, int bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_wait(u32 bar, int parity) {
    u32 done = 0;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.b32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}
__device__ __forceinline__ void bulk_copy(u32 dst, const void* src, int bytes, u32 bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst), "l"(src),
                 "r"(bytes), "r"(bar)
                 : "memory");
}

// wg_mma64: d += A·B for this warpgroup, A 64 × 16 from registers (this
// warp's fragment a0…a3 of its 16 rows), B 16 × 64 at desc; d in the
// accumulator layout of mma.m16n8k16 per n8 chunk i: d[4i], d[4i+1] at row
// 16wl + c, columns 8i + 2t, +1; d[4i+2], d[4i+3] at row 16wl + c + 8.
__device__ __forceinline__ void wg_mma64(float* d, u32 a0, u32 a1, u32 a2, u32 a3, unsigned long long desc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(desc), "r"(1));
}

// wg_keep holds a set of A fragments in their registers until here: a
// store of them under a predicate that is false at run time (never = M <
// 0), placed after the wait_group that ends their wgmma. ptxas frees an
// operand register once the wgmma that reads it is issued and, when it then
// reuses the register for the next fragments, has to wait for that wgmma
// to finish first ("wgmma serialized", C7513); an empty asm that only
// names them is no use, it leaves no instruction behind.
template <int CT> __device__ __forceinline__ void wg_keep(const u32 (&a)[CT][2][4], int never, u32 sink) {
#pragma unroll
    for (int ct = 0; ct < CT; ct++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            asm volatile("{\n.reg .pred p;\nsetp.lt.s32 p, %4, 0;\n@p st.shared.v4.b32 [%5], {%0, %1, %2, %3};\n}\n" ::"r"(a[ct][j][0]),
                         "r"(a[ct][j][1]), "r"(a[ct][j][2]), "r"(a[ct][j][3]), "r"(never), "r"(sink)
                         : "memory");
}
#endif

template <int KIND, bool ASYM, int BT, int CT>
__device__ __forceinline__ void wg_qgemm(const WDesc& w, const u16* __restrict__ x16, float* __restrict__ y, int ldy, int M,
                                         float* ws, int* counters) {
#if WG_ON
    extern __shared__ __align__(128) unsigned char gsm[];
    // G16: FP4 with groups of exactly 16 (NVFP4 as pack.go packs it): the
    // step's two k16 halves are groups 2·step and 2·step + 1, each scaled
    // by its own scales as it is dequantised
    constexpr bool G16 = KIND == PACK_FP4G16;
    static_assert(!G16 || !ASYM, "groups of 16: FP4 only");
    constexpr int SB = wg_stage(BT, CT, ASYM, G16), SCO = wg_sco(CT), ZO = wg_zo(CT, G16), XO = wg_xo(CT, ASYM, G16);
    constexpr int NT = 2 * CT, NU = BT / 64, PD = WG_STAGES - 2;  // tiles a block, 64-token sub-tiles, steps ahead
    constexpr int SCH = G16 ? 16 : 8, SCT = 16 * SCH;               // 16-byte chunks of a tile's scales a step, their bytes
    constexpr int WC = NT * (64 + SCH + (ASYM ? 16 : 0));           // 16-byte weight chunks a step
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wl = warp & 3, wgi = warp >> 2, t = lane & 3, c = lane >> 2;
    const int spt = w.K >> 5, ntiles = (w.N + 63) >> 6, groups = w.K / w.group, gsteps = G16 ? 1 : w.group >> 5;
    // K split S ways: along z (partial sums through ws), or in a
    // thread-block cluster of S blocks along x (summed through distributed
    // shared memory; see the end)
    const int C = (int)cluster_nctarank(), S = C > 1 ? C : (int)gridDim.z, z = C > 1 ? (int)cluster_ctarank() : (int)blockIdx.z;
    const int nt0 = NT * (int)(blockIdx.x / C), m0 = BT * blockIdx.y;
    const int s0 = (int)((long long)spt * z / S), s1 = (int)((long long)spt * (z + 1) / S);
    const u32 ring_s = smem_addr(gsm);

    // this thread's (at most two) weight chunks a step: codes of tile i
    // (chunk 16·(id & 63) of its 1 KB, source + 1024 a step), then scales
    // (128 B a tile, source + 128 a group; G16 256 B, + 256 a step), then
    // zero pairs (256 B a tile, + 256 a group); a tile past the last is
    // read as the last (its outputs are not stored)
    const unsigned char* wp[2];
    int wdst[2], wstep[2], wgrp[2];
    bool hasw[2];
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const int id = tid + 256 * k;
        hasw[k] = id < WC, wp[k] = (const unsigned char*)w.data, wdst[k] = 0, wstep[k] = 0, wgrp[k] = 0;
        if (id < 64 * NT) {
            const int nt = min(nt0 + (id >> 6), ntiles - 1);
            wp[k] += (size_t)nt * spt * 1024 + 16 * (id & 63), wdst[k] = 16 * id, wstep[k] = 1024;
        } else if (id < (64 + SCH) * NT) {
            const int j = id - 64 * NT, nt = min(nt0 + j / SCH, ntiles - 1);
            wp[k] = (const unsigned char*)w.scales + (size_t)nt * groups * 128 + 16 * (j % SCH), wdst[k] = SCO + 16 * j, wgrp[k] = SCT;
        } else if (ASYM && id < WC) {
            const int j = id - 72 * NT, nt = min(nt0 + (j >> 4), ntiles - 1);
            wp[k] = (const unsigned char*)w.zeros + (size_t)nt * groups * 256 + 16 * (j & 15), wdst[k] = ZO + 16 * j, wgrp[k] = 256;
        }
        wp[k] += (size_t)s0 * wstep[k] + (size_t)(s0 / gsteps) * wgrp[k];
    }
    // x: x_to_tiles laid each step's 64-token blocks out as the stage
    // holds them, so a block's BT tokens of a step are BT·64 contiguous
    // bytes, one bulk copy by thread 0 (tokens past M are zeros there)
    const int TB = wg_blocks(M);  // 64-token blocks of x16 a step
    const u16* xsrc = x16 + ((size_t)s0 * TB + (m0 >> 6)) * 2048;
    const u32 bars = ring_s + (u32)wg_bars(BT, CT, ASYM, G16);
    if (tid == 0) {
#pragma unroll
        for (int u = 0; u < WG_STAGES; u++) mbar_init(bars + 8 * u, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    int gs = s0 % gsteps;  // the next step to copy: its place in its group
    auto copy_w = [&](u32 slot) {
#pragma unroll
        for (int k = 0; k < 2; k++)
            if (hasw[k]) cp_async16(slot + wdst[k], wp[k]);
#pragma unroll
        for (int k = 0; k < 2; k++) wp[k] += wstep[k];
        if (++gs == gsteps) {
            gs = 0;
#pragma unroll
            for (int k = 0; k < 2; k++) wp[k] += wgrp[k];
        }
    };
    auto copy_x = [&](u32 slot, int u) {  // thread 0: step's x into ring slot u
        if (tid == 0) {
            mbar_expect(bars + 8 * u, 64 * BT);
            bulk_copy(slot, xsrc, 64 * BT, bars + 8 * u);
        }
        xsrc += (size_t)TB * 2048;
    };

    float acc[CT][BT / 2];  // acc[ct][4i + e]: n8 chunk i of the tile's tokens
#pragma unroll
    for (int a = 0; a < CT; a++)
#pragma unroll
        for (int e = 0; e < BT / 2; e++) acc[a][e] = 0.f;

    // prologue: the weights of the first PD steps before waiting for the
    // previous kernel, x after it; one commit group a step
#pragma unroll
    for (int u = 0; u < PD; u++)
        if (s0 + u < s1) copy_w(ring_s + (u32)(u * SB));
    pdl_wait();
    pdl_trigger();
#pragma unroll
    for (int u = 0; u < PD; u++) {
        if (s0 + u < s1) copy_x(ring_s + (u32)(u * SB) + XO, u);
        cp_commit();
    }
    // One step of 32 inputs into the A fragments a ([tile][k16 half]
    // [register]). The loop runs two steps a turn with two register sets:
    // step s's wgmma read theirs until the wait_group 1 at the end of step
    // s + 1, so step s + 1 dequantises into the other set; with one set
    // (a rolled loop) ptxas has to wait for each step's products before
    // the next dequantisation overwrites their operands, and the kernel ran
    // at a third of the tensor cores' rate.
    int sc = s0, slot = 0, pslot = PD, phase = 0;  // the step, its slot and the slot's fill parity, the next copy's slot
    auto step = [&](u32 (&a)[CT][2][4], const u32 (&prev)[CT][2][4]) {
        cp_wait<PD - 1>();                  // step sc's weights landed (this thread's copies) …
        mbar_wait(bars + 8 * slot, phase);  // … and its x
        __syncthreads();                    // everyone's weights; step sc − 2's slot is free
        if (sc + PD < s1) {
            const u32 ps = ring_s + (u32)(pslot * SB);
            copy_w(ps);
            copy_x(ps + XO, pslot);
        }
        cp_commit();
        pslot = pslot == WG_STAGES - 1 ? 0 : pslot + 1;

        const unsigned char* sl = gsm + slot * SB;
#pragma unroll
        for (int ct = 0; ct < CT; ct++) {
            const int i = CT * wgi + ct;
            // scales of this lane's columns 16wl + c (low half) and 16wl + 8 + c,
            // for the whole step (G16: for k16 half j, group 2·step + j)
            u32 s2[2];
            s2[0] = *(const u32*)(sl + SCO + SCT * i + 16 * c + 4 * wl);
            s2[1] = G16 ? *(const u32*)(sl + SCO + SCT * i + 128 + 16 * c + 4 * wl) : s2[0];
            u32 zl = 0xE408E408u, zh = 0xD480D480u;  // symmetric: z = 8
            if (ASYM) {
                const uint2 zp = *(const uint2*)(sl + ZO + 256 * i + 32 * c + 8 * wl);
                zl = __byte_perm(zp.x, zp.y, 0x5410), zh = __byte_perm(zp.x, zp.y, 0x7632);
            }
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const u32 sf0 = __byte_perm(s2[j], 0, 0x1010), sf1 = __byte_perm(s2[j], 0, 0x3232);
                const u32 v = *(const u32*)(sl + 1024 * i + 512 * j + 16 * lane + 4 * wl);
                u32 q4[4];
                if (KIND == PACK_INT4) {
                    dequant_int4(v, zl, zh, q4);
                } else {
                    dequant_fp4(v, q4);  // value·2^-14, times 2^14 exactly, then the scale
#pragma unroll
                    for (int qq = 0; qq < 4; qq++) q4[qq] = hmul2(q4[qq], 0x74007400u);
                }
                a[ct][j][0] = hmul2(q4[0], sf0), a[ct][j][1] = hmul2(q4[2], sf1);
                a[ct][j][2] = hmul2(q4[1], sf0), a[ct][j][3] = hmul2(q4[3], sf1);
            }
        }
        const u32 xs = ring_s + (u32)(slot * SB + XO);
        wg_fence();
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int ct = 0; ct < CT; ct++)
#pragma unroll
                for (int u = 0; u < NU; u++)
                    wg_mma64(acc[ct] + 32 * u, a[ct][j][0], a[ct][j][1], a[ct][j][2], a[ct][j][3], wg_desc(xs + 256 * j + 4096 * u));
        wg_commit();
        wg_wait<1>();  // step sc − 1's products done: its registers and slot are free
        wg_keep(prev, M, ring_s);
        if (++slot == WG_STAGES) slot = 0, phase ^= 1;
        sc++;
    };
    u32 a0[CT][2][4], a1[CT][2][4] = {};
    while (sc < s1) {
        step(a0, a1);
        if (sc < s1) step(a1, a0);
    }
    wg_wait<0>();
    cp_wait<0>();

    // acc[ct][4i + e]: output column 64(nt0 + CT·wgi + ct) + 16wl + c +
    // 8(e >> 1), token m0 + 8i + 2t + (e & 1)
    auto put = [&](const float (&v)[CT][BT / 2]) {
#pragma unroll
        for (int ct = 0; ct < CT; ct++)
#pragma unroll
            for (int e = 0; e < BT / 2; e++) {
                const int f = 64 * (nt0 + CT * wgi + ct) + 16 * wl + c + 8 * ((e >> 1) & 1);
                const int r = m0 + 8 * (e >> 2) + 2 * t + (e & 1);
                if (f < w.N && r < M) y[(size_t)r * ldy + f] = v[ct][e];
            }
    };
    if (S == 1) {
        put(acc);
        return;
    }
    constexpr int PER = CT * BT / 2;  // partial sums a thread
    if (C > 1) {
        // the cluster's blocks hold the tile's S partial sums: blocks 1 …
        // S − 1 leave theirs in shared memory (the ring's, free now; four
        // floats a thread, thread-contiguous, so a warp's stores and loads
        // hit every bank once), block 0 adds them in rank order through
        // distributed shared memory and writes y — no partial sums through
        // L2, no fence, no counter (ncu at 64 rows: the global tail held a
        // quarter of the kernel's samples); the same order as the global
        // path, so the same results. A last barrier keeps every block's
        // shared memory alive until block 0 has read it.
        float* red = (float*)gsm;
        __syncthreads();  // every warp past its last read of the ring
        if (z > 0) {
#pragma unroll
            for (int ct = 0; ct < CT; ct++)
#pragma unroll
                for (int e = 0; e < BT / 2; e += 4)
                    *(V4f*)(red + ((ct * (BT / 2) + e) >> 2) * 1024 + 4 * tid) = V4f{acc[ct][e], acc[ct][e + 1], acc[ct][e + 2], acc[ct][e + 3]};
        }
        cluster_sync();
        if (z == 0) {
            for (int r = 1; r < S; r++)
#pragma unroll
                for (int ct = 0; ct < CT; ct++)
#pragma unroll
                    for (int e = 0; e < BT / 2; e += 4) {
                        const float4 v = ld_dsmem4(red + ((ct * (BT / 2) + e) >> 2) * 1024 + 4 * tid, (u32)r);
                        acc[ct][e] += v.x, acc[ct][e + 1] += v.y, acc[ct][e + 2] += v.z, acc[ct][e + 3] += v.w;
                    }
            put(acc);
        }
        cluster_sync();
        return;
    }
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    float* part = ws + (((size_t)tile * S + z) * 256 + tid) * PER;
#pragma unroll
    for (int ct = 0; ct < CT; ct++)
#pragma unroll
        for (int e = 0; e < BT / 2; e += 4)
            *(V4f*)(part + ct * (BT / 2) + e) = V4f{acc[ct][e], acc[ct][e + 1], acc[ct][e + 2], acc[ct][e + 3]};
    if (!last_split(&counters[tile], S)) return;
#pragma unroll
    for (int ct = 0; ct < CT; ct++)
#pragma unroll
        for (int e = 0; e < BT / 2; e++) acc[ct][e] = 0.f;
    for (int zz = 0; zz < S; zz++) {
        const float* p = ws + (((size_t)tile * S + zz) * 256 + tid) * PER;
#pragma unroll
        for (int ct = 0; ct < CT; ct++)
#pragma unroll
            for (int e = 0; e < BT / 2; e += 4) {
                const float4 v = ld_cg4(p + ct * (BT / 2) + e);
                acc[ct][e] += v.x, acc[ct][e + 1] += v.y, acc[ct][e + 2] += v.z, acc[ct][e + 3] += v.w;
            }
    }
    put(acc);
    if (tid == 0) counters[tile] = 0;
#endif
}

// x_to_tiles: x [M, K] in fp16 laid out for wg_qgemm's bulk copies: for
// each step s of 32 inputs and each block tb of 64 tokens, 4096 contiguous
// bytes (at (s·TB + tb)·4096, TB = wg_blocks(M)) in the stage's core-matrix
// order — core matrix (n8, k8) at 128·(4·n8 + k8), its row r token 64tb +
// 8n8 + r, its 8 values the step's positions 8k8 … 8k8 + 7 in the MMA's k
// order (position 2t + e of a 16-input half holds input 4t + e, 8 + 2t + e
// input 4t + 2 + e) —, act-order weights' permutation applied, tokens past
// M zero. One thread a core-matrix row (8 values, one 16-byte store): its
// positions 8k8 + e are the step's inputs 16(k8 >> 1) + 2(k8 & 1) + 4(e >>
// 1) + (e & 1), pairs 4 apart. Grid ⌈8·K·TB / 256⌉ blocks of 256.
MARLIN_KERNEL void x_to_tiles(u16* __restrict__ xt, const float* __restrict__ x, int ldx, const int* __restrict__ perm,
                                      int K, int M) {
    const int TB = wg_blocks(M);
    const int o8 = blockIdx.x * 256 + threadIdx.x;  // 8·K·TB rows: < 2^31 for any K × M that fits a device
    if (o8 >= 8 * K * TB) return;
    const int r = o8 & 7, k8 = (o8 >> 3) & 3, n8 = (o8 >> 5) & 7, blk = o8 >> 8;  // blk = s·TB + tb
    const int tb = blk % TB, s = blk / TB, m = 64 * tb + 8 * n8 + r;
    const int p0 = 32 * s + 16 * (k8 >> 1) + 2 * (k8 & 1);
    float v[8];
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const int p = p0 + 4 * (e >> 1) + (e & 1);
        v[e] = m < M ? x[(size_t)m * ldx + (perm ? perm[p] : p)] : 0.f;
    }
    *(V4u*)(xt + 8 * (size_t)o8) = V4u{pack_f16x2(v[0], v[1]), pack_f16x2(v[2], v[3]), pack_f16x2(v[4], v[5]), pack_f16x2(v[6], v[7])};
}

// wg_qgemm_{int4, int4_asym, fp4, fp4_g16}_{form}: the forms of wgForms
// (cuda.go) — 64 (one token sub-tile, one column tile a warpgroup: 128 × 64
// blocks, two a multiprocessor), 64w (one sub-tile, two column tiles a
// warpgroup: 256 × 64, half the reads of x a column) and 128 (two
// sub-tiles, two column tiles a warpgroup: 256 × 128 blocks, one a
// multiprocessor).
#define WG_QGEMM_KERNEL(NAME, KIND, ASYM, BT, CT)                                                            \
    MARLIN_KERNEL void __launch_bounds__(256, BT == 64 ? 2 : 1)                                      \
        NAME(WDesc w, const u16* x16, float* y, int ldy, int M, float* ws, int* counters) {                  \
        wg_qgemm<KIND, ASYM, BT, CT>(w, x16, y, ldy, M, ws, counters);                                       \
    }
#define WG_QGEMM_FORM(SUFFIX, BT, CT)                                                                        \
    WG_QGEMM_KERNEL(wg_qgemm_int4_##SUFFIX, PACK_INT4, false, BT, CT)                                      \
    WG_QGEMM_KERNEL(wg_qgemm_int4_asym_##SUFFIX, PACK_INT4, true, BT, CT)                                  \
    WG_QGEMM_KERNEL(wg_qgemm_fp4_##SUFFIX, PACK_FP4, false, BT, CT)                                        \
    WG_QGEMM_KERNEL(wg_qgemm_fp4_g16_##SUFFIX, PACK_FP4G16, false, BT, CT)
WG_QGEMM_FORM(64, 64, 1)
WG_QGEMM_FORM(64w, 64, 2)
WG_QGEMM_FORM(128, 128, 2)
