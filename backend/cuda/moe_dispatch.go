//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"math/bits"
	"os"
	"slices"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
)

// Decode-speed paths for mixtures of experts and multi-head latent
// attention, which keep a decode step free of host synchronisation (so it
// is captured as one CUDA graph):
//
//   - expertsOnDevice: the chosen experts' gate and up products of every
//     (row, choice) slot in one launch, SiLU·up, the down products in one
//     launch, then a weighted sum per row (moe.cu) — for experts in packed
//     INT4/FP4 (NVFP4 as FP4 g16), fp16/bf16, FP8, 8-bit GPTQ (qmv8) and
//     EXL3 (trellis.go); others take the host-grouped path;
//   - headsOnDevice: every head of HeadMatMul in one launch (mla.cu);
//   - mlaAttention: flash-decoding over the latent cache (mla.cu).

// moeDeviceSlots is the largest number of chosen experts (rows × top-k) of
// one ExpertsAdd call that runs on the device: each slot reads its expert's
// weights once, so beyond this the host grouping (one read per expert)
// wins.
const moeDeviceSlots = 256

// moeState holds the kernels of these paths.
type moeState struct {
	off bool              // MARLIN_CUDA_MOE_FAST=0: the older paths, for comparison
	mv  [numMoEMV]uintptr // the expert product kernels (moeMVKernels)
	// the 4-bit kernels' down products that form silu(gate)·up themselves
	// (moe_qmv_int4_silu, …; 0 for the dense and 8-bit ones)
	mvSilu  [numMoEMV]uintptr
	combine uintptr
	// route_warp (moe.cu): Route without expert groups, a warp a row
	routeWarp uintptr
	// route_mv_* (moe.cu): the router's product and route_warp's choice in
	// one launch, by the router's format (float32, fp16, bf16)
	routeMV [numFmts]uintptr
	// route_mv_*_cl: the same with a row's blocks in one thread-block
	// cluster (sm_90, at most 8 blocks: 64 experts), the logits gathered
	// through distributed shared memory
	routeMVCl [numFmts]uintptr
	headMV    [3]uintptr // head_mv_f32, _f16, _bf16
	mla       []mlaKernel
	// attn_mla_tc_{MT}_{NV} (mla.cu): [MT − 1][log2 NV], for a bfloat16
	// cache; attn_merge (attention.cu) merges their splits
	mlaTC    [2][3]uintptr
	merge    uintptr
	prologue uintptr // mla_prologue
}

// listTables are the device tables built for lists of matrices that start
// with the matrix holding them (kept with it, so they live as long as the
// weights they point to).
type listTables struct {
	set       *expertSet // ExpertsAdd's checked list, with its dispatch table
	heads     *buffer    // the heads' weight addresses; nil: not eligible
	headsList []*matrix
}

type mlaKernel struct {
	ek, ev int            // key and value dims a lane holds (dk ≤ 32·ek, dv ≤ 32·ev)
	f      [numKV]uintptr // by the cache's number type (kvSuffixes)
	smem   int            // dynamic shared memory of a block
}

// mla.cu's MLA_WARPS and MLA_TC_WARPS, and attention.cu's SPLIT_PMAX (the
// most splits of a flash-decoding launch)
const (
	mlaWarps   = 8
	mlaTCWarps = 16
	splitPMax  = 64
)

// splitPitch is attention.cu's split_pitch: the floats of one split's
// record (m, l, two unused, acc[d]) in a flash-decoding workspace.
func splitPitch(d int) int { return 4 + 4*((d+3)/4) }

// expertTable is one layer's experts as the dispatch kernels see them.
type expertTable struct {
	ok   bool    // every expert has the same decode kernel
	kern uintptr // the moe_* kernel
	silu uintptr // its SILU variant for the down products, or 0
	buf  *buffer // WDesc [experts][gate, up, down] (TDesc for EXL3 experts)
	// EXL3 experts (trellis.go, expertsTrellis): the first expert's gate
	// and down, whose bits, codebook and padded shapes all share
	gateTr, downTr *trellisMat
}

const mlaHeadsPerBlock = 4 // MLA_GH in mla.cu

// The expert product kernels of moe.cu (moeState.mv), by weight format.
const (
	moeInt4 = iota
	moeInt4Asym
	moeFP4
	moeF16
	moeBF16
	moeFP4G16
	moeFP8
	moeGPTQ8
	moeGPTQ8Asym
	numMoEMV
)

// moeMVKernels are their names, the rings of the decode kernels they run
// (M ≤ 8), and whether a SILU variant (name + "_silu") exists.
var moeMVKernels = [numMoEMV]struct {
	name string
	smem int
	silu bool
}{
	moeInt4:      {"moe_qmv_int4", qmvSmem(8, false, false, false), true},
	moeInt4Asym:  {"moe_qmv_int4_asym", qmvSmem(8, true, false, false), true},
	moeFP4:       {"moe_qmv_fp4", qmvSmem(8, false, false, false), true},
	moeF16:       {"moe_dmv_f16", dmvSmem(8), false},
	moeBF16:      {"moe_dmv_bf16", dmvSmem(8), false},
	moeFP4G16:    {"moe_qmv_fp4_g16", qmvSmem(8, false, false, true), true},
	moeFP8:       {"moe_qmv_fp8", q8Smem(false, false), false},
	moeGPTQ8:     {"moe_qmv_gptq8", q8Smem(true, false), false},
	moeGPTQ8Asym: {"moe_qmv_gptq8_asym", q8Smem(true, true), false},
}

func (b *Backend) loadMoEKernels(get func(string) uintptr) {
	s := &b.moe
	s.off = os.Getenv("MARLIN_CUDA_MOE_FAST") == "0"
	for i, k := range moeMVKernels {
		s.mv[i] = get(k.name)
		b.dynSmem[s.mv[i]] = k.smem
		if k.silu {
			s.mvSilu[i] = get(k.name + "_silu")
			b.dynSmem[s.mvSilu[i]] = k.smem
		}
	}
	s.combine = get("moe_combine")
	s.prologue = get("mla_prologue")
	s.routeWarp = get("route_warp")
	s.routeMV[fmtF32], s.routeMV[fmtF16], s.routeMV[fmtBF16] = get("route_mv_f32"), get("route_mv_f16"), get("route_mv_bf16")
	s.routeMVCl[fmtF32], s.routeMVCl[fmtF16], s.routeMVCl[fmtBF16] = get("route_mv_f32_cl"), get("route_mv_f16_cl"), get("route_mv_bf16_cl")
	for i, n := range []string{"head_mv_f32", "head_mv_f16", "head_mv_bf16"} {
		s.headMV[i] = get(n)
	}
	for _, d := range [][2]int{{1, 1}, {2, 1}, {2, 2}, {3, 2}, {5, 4}, {9, 8}, {18, 16}} {
		g := mlaHeadsPerBlock
		k := mlaKernel{ek: d[0], ev: d[1], smem: 4 * (mlaWarps*g*32*d[1] + 2*mlaWarps*g + g*splitPMax + g + mlaWarps*g + 2*g)}
		for t, sfx := range kvSuffixes {
			k.f[t] = get(fmt.Sprintf("attn_mla_%d_%d%s", d[0], d[1], sfx))
			b.dynSmem[k.f[t]] = k.smem
		}
		s.mla = append(s.mla, k)
	}
	for mt := range s.mlaTC {
		for i := range s.mlaTC[mt] {
			s.mlaTC[mt][i] = get(fmt.Sprintf("attn_mla_tc_%d_%d", mt+1, 1<<i))
		}
	}
	s.merge = get("attn_merge")
}

// mlaTCOn (MARLIN_CUDA_MLA_TC=0 turns it off, for measurements) takes
// attn_mla_tc for a bfloat16 latent cache where its shapes allow.
var mlaTCOn = os.Getenv("MARLIN_CUDA_MLA_TC") != "0"

// mlaTCSmem is attn_mla_tc's dynamic shared memory for R query heads a
// block and keys of dk numbers (mla.cu's layout): Q's two parts and four
// stages of 16 keys in rows of dk + 8 bf16, the 16 warps' partial scores
// [R][16], P's two parts [R][24] bf16, and three floats a head.
func mlaTCSmem(R, dk int) int {
	return 2*(2*R+4*16)*(dk+8) + 4*mlaTCWarps*R*16 + 2*2*R*24 + 4*3*R
}

// mlaTCDecodeHeads (MARLIN_CUDA_MLA_TC_HEADS; default 16) is the most
// query heads an attn_mla_tc block takes at decode sizes (≤ 16 rows) when
// that makes at most two groups: GLM-4.7-Flash's 20 heads in two blocks
// of 10 a split instead of one of 20 — half the products and query loads
// a block on twice the multiprocessors (one decode row at 2K: 12.5 against
// 14.2–15.6 µs; in the step, attention and its merge 15.6 against 17.1 µs
// a layer; H100, 2026-11-28). More heads (DeepSeek-V3's 128) keep groups
// of at most 32.
var mlaTCDecodeHeads = envInt("MARLIN_CUDA_MLA_TC_HEADS", 16)

// mlaLaunch is the latent-attention kernel chosen for a cache, head count
// and row count: attn_mla_tc (tc) or attn_mla, with R query heads a block
// (attn_mla_tc: the heads of one group, its hpg argument, in 16·MT rows of
// which the rest are zeros) and warps warps.
type mlaLaunch struct {
	f              uintptr
	smem, R, warps int
	tc             bool
}

// newExpertTable builds the dispatch table of a layer's expert matrices
// (an expertSet's: its shapes are checked, and it keeps the table).
func (b *Backend) newExpertTable(fs []ffn) *expertTable {
	ms := make([]*matrix, 0, 3*len(fs))
	for _, f := range fs {
		ms = append(ms, f.gate, f.up, f.down)
	}
	if ms[0].tr != nil {
		return b.newTrellisExpertTable(ms)
	}
	t := &expertTable{}
	kern := func(m *matrix) uintptr {
		if b.fastKernel(m, 1) == 0 || m.desc.gidx != 0 || !m.usable() {
			return 0
		}
		switch {
		case fp4G16(m):
			return b.moe.mv[moeFP4G16]
		case m.f == fmtPInt4 && m.asym:
			return b.moe.mv[moeInt4Asym]
		case m.f == fmtPInt4:
			return b.moe.mv[moeInt4]
		case m.f == fmtPFP4:
			return b.moe.mv[moeFP4]
		case m.f == fmtF16:
			return b.moe.mv[moeF16]
		case m.f == fmtBF16:
			return b.moe.mv[moeBF16]
		case m.f == fmtFP8:
			return b.moe.mv[moeFP8]
		case m.f == fmtGPTQ && m.desc.bits == 8 && m.desc.zeros != 0:
			return b.moe.mv[moeGPTQ8Asym]
		case m.f == fmtGPTQ && m.desc.bits == 8:
			return b.moe.mv[moeGPTQ8]
		}
		return 0
	}
	descs := make([]wdesc, 0, len(ms))
	for _, m := range ms {
		k := kern(m)
		if k == 0 || t.kern != 0 && k != t.kern {
			return t
		}
		t.kern = k
		descs = append(descs, m.desc)
	}
	buf, err := b.upload(unsafe.Pointer(&descs[0]), int64(len(descs))*int64(unsafe.Sizeof(wdesc{})))
	if err != nil {
		b.fail(err)
		return t
	}
	t.buf, t.ok = buf, true
	if i := slices.Index(b.moe.mv[:], t.kern); i >= 0 {
		t.silu = b.moe.mvSilu[i]
	}
	return t
}

// expertsOnDevice runs ExpertsAdd without the host when the layer's experts
// (set) allow it (see moeState); it reports whether it did.
//
// With a shared expert, it runs as one more slot a row in the same
// launches (expert set.routed of the table) and the combine adds its
// output. The combine adds to d (d += experts + shared).
func (b *Backend) expertsOnDevice(d, xt *tensor, sl *selection, set *expertSet) bool {
	M, H, K, I := xt.rows, xt.cols, sl.k, set.mats[0].gate.rows
	if b.moe.off || H%32 != 0 || I%32 != 0 || xt.ptr()%16 != 0 || d.ptr()%16 != 0 || K > 32 {
		return false
	}
	if set.table == nil {
		fs := set.mats
		if set.sh != nil {
			fs = append(slices.Clone(fs), *set.sh)
		}
		set.table = b.newExpertTable(fs)
	}
	t := set.table
	if !t.ok || b.err != nil {
		return false
	}
	nr := M * K
	nsel, sh := nr, 0
	if set.sh != nil {
		nsel, sh = nr+M, 1
	}
	gu := b.scratchBuf("moe.gu", 4*2*int64(nsel)*int64(I))
	out := b.scratchBuf("moe.outs", 4*int64(nsel)*int64(H))
	if gu == 0 || out == 0 {
		return true // the sticky error is set
	}
	if t.gateTr != nil {
		b.expertsTrellis(d, xt, sl, set, nsel, sh, gu, out)
		return true
	}
	// mv launches jobs products of [N, Kin] matrices (mats per slot,
	// starting at mat0 of the expert's three)
	mv := func(name string, kern uintptr, y uint64, ldy int, x uint64, ldx int, xPerSlot bool, mats, mat0, N, Kin int) bool {
		jobs := nsel * mats
		ntiles := (N + 63) / 64
		steps := ntiles * (Kin / 32)
		blocks := max(1, min(steps/16, b.residentBlocks(kern, 128)*b.sms/jobs))
		wsPer := (ntiles + 4*blocks) * 1024
		if jobs*ntiles > counterCap {
			b.fail(fmt.Errorf("cuda: ExpertsAdd: %d products of %d column tiles exceed the %d counters", jobs, ntiles, counterCap))
			return false
		}
		ws := b.scratchBuf(name, 4*int64(jobs)*int64(wsPer))
		if ws == 0 {
			return false
		}
		a := b.newArgs()
		a.ptr(t.buf.ptr)
		a.ptr(sl.ids())
		a.i32(K)
		a.i32(nsel)
		a.i32(nr)
		a.i32(set.routed)
		a.i32(mats)
		a.i32(mat0)
		a.ptr(x)
		a.i32(ldx)
		a.i32(btoi(xPerSlot))
		a.ptr(y)
		a.i32(ldy)
		a.ptr(ws)
		a.i32(wsPer)
		a.ptr(b.counters.ptr)
		a.i32(ntiles)
		b.launchOpt(kern, blocks, jobs, 1, 128, b.dynSmem[kern], a, b.pdlOps)
		return true
	}
	if !mv("moe.ws1", t.kern, gu, I, xt.ptr(), H, false, 2, 0, I, H) {
		return true
	}
	// down: x = silu(gate)·up, formed by the 4-bit kernels as they read
	// gate and up (no launch of its own), else by silu_mul first
	down, x := t.silu, gu
	if down == 0 {
		h := b.scratchBuf("moe.h", 4*int64(nsel)*int64(I))
		if h == 0 {
			return true // the sticky error is set
		}
		b.siluMul(h, gu, gu+uint64(4*nsel*I), int64(nsel)*int64(I))
		down, x = t.kern, h
	}
	if !mv("moe.ws2", down, out, H, x, I, true, 1, 2, H, I) {
		return true
	}
	b.moeCombine(d, out, sl, M, K, H, sh)
	return true
}

// moeCombine queues moe_combine: d[r] += Σ_j wts · out[slot], the K
// choices of each of the M rows (and the shared expert's row when sh is 1).
func (b *Backend) moeCombine(d *tensor, out uint64, sl *selection, M, K, H, sh int) {
	a := b.newArgs()
	a.ptr(d.ptr())
	a.ptr(out)
	a.ptr(sl.ids())
	a.ptr(sl.weights())
	a.i32(K)
	a.i32(H)
	a.i32(sh)
	a.i32(1) // accumulate into d
	b.launchOpt(b.moe.combine, M, 1, 1, threadsFor(min(H, 1024)), 0, a, b.pdlOps)
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// headsOnDevice runs HeadMatMul as one launch when every head is a dense
// float32/16-bit matrix of the same shape with K % 4 == 0; it reports
// whether it did.
func (b *Backend) headsOnDevice(d, xt *tensor, ms []*matrix, dstStride, xStride int) bool {
	first := ms[0]
	fi := -1
	switch first.f {
	case fmtF32:
		fi = 0
	case fmtF16:
		fi = 1
	case fmtBF16:
		fi = 2
	}
	N, K, M := first.rows, first.cols, xt.rows
	if b.moe.off || fi < 0 || K%4 != 0 || K > 1536 || M > 64 {
		return false
	}
	if first.lists == nil {
		first.lists = &listTables{}
	}
	lt := first.lists
	if !slices.Equal(lt.headsList, ms) {
		lt.heads, lt.headsList = nil, slices.Clone(ms)
		ptrs := make([]uint64, len(ms))
		for h, m := range ms {
			if m.f != first.f || m.rows != N || m.cols != K || !m.usable() {
				return false
			}
			ptrs[h] = m.desc.data
		}
		buf, err := b.upload(unsafe.Pointer(&ptrs[0]), 8*int64(len(ptrs)))
		if err != nil {
			b.fail(err)
			return true
		}
		lt.heads = buf
	}
	tab := lt.heads
	if tab == nil {
		return false
	}
	a := b.newArgs()
	a.ptr(tab.ptr)
	a.i32(N)
	a.i32(K)
	a.ptr(xt.ptr())
	a.i32(xt.cols)
	a.i32(xStride)
	a.ptr(d.ptr())
	a.i32(d.cols)
	a.i32(dstStride)
	a.i32(M)
	b.launchOpt(b.moe.headMV[fi], (N+31)/32, len(ms), (M+7)/8, 256, 4*8*K, a, b.pdlOps) // 8 warps of 4 rows (mla.cu's HR)
	return true
}

// mlaKernelFor returns the latent-attention kernel for keys of dk and
// values of dv numbers, heads query heads, rows rows and a cache of
// number type typ: attn_mla_tc for a bfloat16 cache where dk % 16 == 0,
// dk ≤ 640, dv % 8 == 0, dv ≤ min(dk, 512) and its shared memory fits,
// with the heads in equal groups of at most 32 a block (of at most
// mlaTCDecodeHeads at decode sizes where that makes two groups or one);
// else attn_mla where a lane's share of the dims fits one of its
// instances; else none (f = 0).
func (b *Backend) mlaKernelFor(dk, dv, heads, rows, typ int) mlaLaunch {
	if b.moe.off {
		return mlaLaunch{}
	}
	if mlaTCOn && typ == kvBF16 && dk%16 == 0 && dk <= 640 && dv%8 == 0 && dv <= dk && dv <= 512 {
		most := 32
		if d := min(max(mlaTCDecodeHeads, 1), 32); rows <= 16 && heads <= 2*d {
			most = d
		}
		groups := (heads + most - 1) / most
		hpg := (heads + groups - 1) / groups
		mt := (hpg + 15) / 16
		nv := bits.Len(uint((dv+127)/128 - 1)) // log2 of the next power of two ≥ ⌈dv/128⌉
		if sm := mlaTCSmem(16*mt, dk); sm <= max(b.smemOptin, 48<<10) && b.moe.mlaTC[mt-1][nv] != 0 {
			return mlaLaunch{f: b.moe.mlaTC[mt-1][nv], smem: sm, R: hpg, warps: mlaTCWarps, tc: true}
		}
	}
	for _, k := range b.moe.mla {
		if dk <= 32*k.ek && dv <= 32*k.ev {
			return mlaLaunch{f: k.f[typ], smem: k.smem, R: mlaHeadsPerBlock, warps: mlaWarps}
		}
	}
	return mlaLaunch{}
}

// mlaAttention queues the latent-attention kernel k (attn_mla or
// attn_mla_tc, mla.cu) for M rows over a latent cache layer at kc; meta is
// Attention's staged row metadata. attn_mla merges its splits in its last
// block; attn_mla_tc's are merged by an attn_merge launch after it.
//
// With store (decode: every row the one new token of its sequence) the
// kernel also writes the rows' latent keys kt to the cache, in place of
// kv_store.
func (b *Backend) mlaAttention(k mlaLaunch, o, qt, kt *tensor, kc, meta uint64, M, heads int, s backend.KVSpec, scale float32, store bool) {
	HG := (heads + k.R - 1) / k.R
	// splits of the positions: about one block per multiprocessor at
	// decode sizes (a block of the GLM shape fills one with its
	// registers or shared memory), one split for prefill; a function of M
	// alone, so that a captured decode step replays at any context length
	P := max(1, min(splitPMax, b.sms/(M*HG)))
	if attnSplitForce > 0 && M <= 16 {
		P = min(attnSplitForce, splitPMax)
	}
	if !k.tc && M*HG > counterCap {
		P = 1
	}
	var ws uint64
	if P > 1 {
		if ws = b.scratchBuf("attnws", 4*int64(M)*int64(heads)*int64(P)*int64(splitPitch(s.ValueDim))); ws == 0 {
			return
		}
	}
	a := b.newArgs()
	a.ptr(o.ptr())
	a.ptr(qt.ptr())
	a.ptr(kc)
	a.rowMeta(meta, M)
	a.i32(heads)
	a.i32(s.KeyDim)
	a.i32(s.ValueDim)
	a.i32(s.BlockSize)
	a.f32(scale)
	a.ptr(ws)
	if !k.tc {
		a.ptr(b.counters.ptr)
	}
	a.ptrsIf(store, kt.ptr(), meta+uint64(4*2*M), meta+uint64(4*3*M))
	if k.tc {
		a.i32(k.R)
	}
	b.launchOpt(k.f, P, M, HG, 32*k.warps, k.smem, a, b.pdlOps)
	if k.tc && P > 1 {
		m := b.newArgs()
		m.ptr(o.ptr())
		m.ptr(ws)
		m.i32(heads)
		m.i32(s.ValueDim)
		m.i32(P)
		b.launchOpt(b.moe.merge, heads, M, (s.ValueDim+127)/128, 128, 0, m, b.pdlOps)
	}
}

// MLAPrologue implements backend.Backend in one launch (mla_prologue in
// mla.cu) where the shapes fit it, else (or with MARLIN_CUDA_MOE_FAST=0)
// as the sequence of CopyCols, RMSNorm and RoPE it stands for.
func (b *Backend) MLAPrologue(key, qf, kva, q backend.Tensor, norm backend.Vector, eps float32, heads, nope int, r *backend.Rope, pos []int32) {
	kt, qft, kv, qt, w := b.tensor(key), b.tensor(qf), b.tensor(kva), b.tensor(q), b.vec(norm)
	lora, half := w.n, len(r.InvFreq)
	rp := kv.cols - lora
	M := kv.rows
	checkShape("MLAPrologue", lora > 0 && rp >= 2*half && heads > 0 && nope >= 0 && len(pos) == M &&
		kt.rows == M && kt.cols == lora+rp && qt.rows == M && qt.cols == heads*(nope+rp) &&
		qft.rows == M && qft.cols == heads*(lora+rp),
		"key [%d, %d], qf [%d, %d], kva [%d, %d], q [%d, %d], norm %d, %d heads, nope %d, %d rotary pairs, %d positions",
		kt.rows, kt.cols, qft.rows, qft.cols, kv.rows, kv.cols, qt.rows, qt.cols, lora, heads, nope, half, len(pos))
	if b.moe.off || b.moe.prologue == 0 {
		lat := b.scratchTensor("mla.lat", M, lora)
		if lat == nil {
			return // the sticky error is set
		}
		kd, hd := lora+rp, nope+rp
		b.CopyCols(lat, kva, 1, lora, 0, 0, 0, 0)
		b.RMSNorm(lat, lat, norm, eps)
		b.CopyCols(key, lat, 1, lora, 0, 0, 0, 0)
		b.CopyCols(key, kva, 1, rp, 0, lora, 0, lora)
		b.RoPE(key, 1, kd, lora, r, pos)
		b.RoPE(q, heads, hd, nope, r, pos)
		b.CopyCols(qf, q, heads, rp, kd, lora, hd, nope)
		return
	}
	maxPos := maxPosition("MLAPrologue", pos)
	b.enter()
	defer b.leave()
	if M == 0 || !b.usable(kt, qft, kv, qt) || !b.vecUsable(w) {
		return
	}
	tab := b.ropeTable(r, int(maxPos)+1)
	if tab == nil {
		return
	}
	pp := b.stageInts(pos)
	a := b.newArgs()
	a.ptr(kt.ptr())
	a.ptr(qft.ptr())
	a.ptr(kv.ptr())
	a.ptr(qt.ptr())
	a.ptr(w.buf.ptr)
	a.f32(eps)
	a.i32(lora)
	a.i32(rp)
	a.i32(heads)
	a.i32(nope)
	a.ptr(pp)
	a.ptr(tab.buf.ptr)
	a.ptr(tab.buf.ptr + uint64(4*tab.n*half))
	a.i32(half)
	a.i32(btoi(r.Interleaved))
	b.launchOpt(b.moe.prologue, M, heads+1, 1, threadsFor(lora/4), 0, a, b.pdlOps)
}
