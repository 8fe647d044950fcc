//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/quant"
)

// EXL3 (trellis) weights: the kernels of trellis.cu. A matmul is x' =
// H(pad(x) ⊙ suh) in fp16 (trellis_in), y' = x'·Ŵ with the trellis decoded
// in registers (tmv_K_CB and tmv16_K_CB, M ≤ 16 rows at a time) or, for M ≥
// trellisGemmRows, Ŵ decoded to an fp16 scratch matrix (tdq_K_CB) and
// multiplied by cuBLAS, then y = H(y') ⊙ svh (trellis_out).

// trellisCodebooks are the kernel name suffixes of quant.Codebook3INST,
// CodebookMCG and CodebookMUL1 (the stored codebooks).
var trellisCodebooks = [3]string{"3inst", "mcg", "mul1"}

// trellisKernels are trellis.cu's entry points, [codebook][K]: mv for up
// to 8 rows, mv16 for 9 to 16.
type trellisKernels struct {
	mv, mv16, dq, vit, mvMoE [3][quant.MaxTrellisBits + 1]uintptr
	in, out, inMoE, outMoE   uintptr
}

// trellisWarps is the number of warps of a tmv block (TW in trellis.cu),
// trellisTiles the output tiles of 16 columns a warp takes (TNW).
const trellisWarps, trellisTiles = 4, 4

// trellisGemmRows is the smallest M that takes the cuBLAS path.
const trellisGemmRows = 64

// tmvSmem mirrors twarp_bytes of trellis.cu: a block's shared memory, for
// nw output tiles a warp.
func tmvSmem(K, nw int) int {
	d := 4
	if K <= 2 {
		d = 8
	} else if K <= 4 {
		d = 6
	}
	return trellisWarps * max(d*(32*K*nw+512), 16*(16*nw+4)*4)
}

// trellisBlocks, when MARLIN_TRELLIS_BLOCKS sets it, replaces
// trellisSplit's target block count (read once, for experiments).
var trellisBlocks = envInt("MARLIN_TRELLIS_BLOCKS", 0)

// loadTrellisKernels looks up trellis.cu's kernels (get records missing
// ones) and their shared memory.
func (b *Backend) loadTrellisKernels(get func(string) uintptr) {
	t := &b.k.tr
	for c, cn := range trellisCodebooks {
		for K := 1; K <= quant.MaxTrellisBits; K++ {
			t.mv[c][K] = get(fmt.Sprintf("tmv_%d_%s", K, cn))
			t.mv16[c][K] = get(fmt.Sprintf("tmv16_%d_%s", K, cn))
			t.dq[c][K] = get(fmt.Sprintf("tdq_%d_%s", K, cn))
			t.mvMoE[c][K] = get(fmt.Sprintf("tmv_moe_%d_%s", K, cn))
			b.dynSmem[t.mvMoE[c][K]] = tmvSmem(K, trellisTiles)
			b.dynSmem[t.mv[c][K]] = tmvSmem(K, trellisTiles)
			b.dynSmem[t.mv16[c][K]] = tmvSmem(K, trellisTiles)
			if K >= 2 {
				t.vit[c][K] = get(fmt.Sprintf("viterbi_%d_%s", K, cn))
				b.dynSmem[t.vit[c][K]] = 2 * 4 << (16 - K) // two cost arrays
			}
		}
	}
	t.in, t.out = get("trellis_in"), get("trellis_out")
	t.inMoE, t.outMoE = get("trellis_in_moe"), get("trellis_out_moe")
}

// tconst fills the TConst argument of trellis.cu (constants the kernels
// must see in registers).
func (a *launchArgs) tconst() {
	p := (*[4]uint32)(a.slot(2))
	*p = [4]uint32{65536, 0x8FFF8FFF, 0x3B603B60, 0xFFFF0000}
}

// trellisMat is the device side of an EXL3 weight.
type trellisMat struct {
	K, cb           int
	inP, outP       int
	data, suh, svh  uint64
	weightBytesOnly int64
}

// loadTrellis uploads an EXL3 weight as it is stored (trellis, suh, svh).
func (b *Backend) loadTrellis(w *quant.Weight) (backend.Matrix, error) {
	if int(w.Codebook) >= len(trellisCodebooks) {
		return nil, fmt.Errorf("cuda: %s: codebook %v has no CUDA kernel", w.Name, w.Codebook)
	}
	b.enter()
	defer b.leave()
	inP, outP := w.PaddedDims()
	m := &matrix{owner: b, f: numFmts, rows: w.Out, cols: w.In, name: w.String()}
	var err error
	up := func(data []byte) uint64 { return b.put(m, &err, data) }
	m.tr = &trellisMat{K: w.Bits, cb: int(w.Codebook), inP: inP, outP: outP, weightBytesOnly: int64(len(w.Data))}
	m.tr.data = up(w.Data)
	m.tr.suh = up(w.Scales)
	m.tr.svh = up(w.Zeros)
	if err != nil {
		return nil, fmt.Errorf("cuda: loading %s: %w", w.Name, err)
	}
	return m, nil
}

// trellisMatMul queues y[M, N] = x[M, K]·Wᵀ for an EXL3 weight.
func (b *Backend) trellisMatMul(y uint64, ldy int, x uint64, ldx, M int, m *matrix) {
	if M >= trellisGemmRows && b.trellisGemm(y, ldy, x, ldx, M, m) {
		return
	}
	for m0 := 0; m0 < M; m0 += 16 {
		b.trellisMV(y+uint64(4*m0*ldy), ldy, x+uint64(4*m0*ldx), ldx, min(16, M-m0), m)
	}
}

// trellisIn queues trellis_in: x' = H128(pad(x) ⊙ suh) of M rows into dst,
// in the decode kernel's fragment order (plain 0) or row-major fp16 for
// the GEMM path (plain 1).
func (b *Backend) trellisIn(dst, x uint64, ldx, M int, m *matrix, plain int) {
	a := b.newArgs()
	a.ptr(dst)
	a.ptr(x)
	a.i32(ldx)
	a.ptr(m.tr.suh)
	a.i32(m.cols)
	a.i32(M)
	a.i32(plain)
	b.launchOpt(b.k.tr.in, m.tr.inP/128, M, 1, 128, 0, a, b.pdlOps)
}

// trellisSplit returns the input tiles per warp (KC) and the block splits
// of K (SB) of a tmv launch: CB column groups × SB splits fill about two
// waves of resident blocks (MARLIN_TRELLIS_BLOCKS overrides the count, for
// experiments); each block's 4 warps take 4 consecutive ranges of KC input
// tiles.
func (b *Backend) trellisSplit(f uintptr, KT, CB int) (KC, SB int) {
	target := 2 * b.residentBlocks(f, 128) * b.sms
	if trellisBlocks > 0 {
		target = trellisBlocks
	}
	SB = min((KT+trellisWarps-1)/trellisWarps, max(1, target/CB))
	S := SB * trellisWarps
	KC = (KT + S - 1) / S
	SB = (KT + KC*trellisWarps - 1) / (KC * trellisWarps)
	return KC, SB
}

// trellisOnly, when set by a test, makes trellisMV launch only one of its
// kernels (1 trellis_in, 2 tmv, 3 trellis_out): the speed test's
// breakdown.
var trellisOnly int

// trellisMV runs the three kernels for M ≤ 16 rows.
func (b *Backend) trellisMV(y uint64, ldy int, x uint64, ldx, M int, m *matrix) {
	tr := m.tr
	KT, NT, CB := tr.inP/16, tr.outP/16, tr.outP/(16*trellisTiles)
	f := b.k.tr.mv[tr.cb][tr.K]
	if M > 8 {
		f = b.k.tr.mv16[tr.cb][tr.K]
	}
	KC, SB := b.trellisSplit(f, KT, CB)
	xf := b.scratchBuf("trxf", int64(KT)*512) // [KT][32 lanes][4] u32
	ws := b.scratchBuf("trws", 4*int64(SB)*int64(M)*int64(tr.outP))
	if xf == 0 || ws == 0 {
		return
	}
	if trellisOnly == 0 || trellisOnly == 1 {
		b.trellisIn(xf, x, ldx, M, m, 0)
	}
	a := b.newArgs()
	a.ptr(tr.data)
	a.ptr(xf)
	a.ptr(ws)
	a.i32(NT)
	a.i32(KT)
	a.i32(KC)
	a.i32(M)
	a.tconst()
	if trellisOnly == 0 || trellisOnly == 2 {
		b.launchOpt(f, CB, SB, 1, trellisWarps*32, b.dynSmem[f], a, true)
	}
	if trellisOnly == 0 || trellisOnly == 3 {
		b.trellisOut(y, ldy, ws, SB, M, m)
	}
}

func (b *Backend) trellisOut(y uint64, ldy int, ws uint64, S, M int, m *matrix) {
	tr := m.tr
	a := b.newArgs()
	a.ptr(y)
	a.i32(ldy)
	a.ptr(ws)
	a.i32(S)
	a.ptr(tr.svh)
	a.i32(m.rows)
	a.i32(tr.outP)
	a.i32(M)
	b.launchOpt(b.k.tr.out, tr.outP/128, M, 1, 128, 0, a, b.pdlOps)
}

// trellisGemm is the large-M path: x' row-major in fp16, Ŵ decoded into an
// fp16 scratch matrix [Out', In'], y' = x'·Ŵ by cuBLAS (fp32 result), then
// the output rotation. False when cuBLAS is unavailable.
func (b *Backend) trellisGemm(y uint64, ldy int, x uint64, ldx, M int, m *matrix) bool {
	c := b.blasReady()
	if c == nil {
		return false
	}
	tr := m.tr
	KT, NT := tr.inP/16, tr.outP/16
	x16 := b.scratchBuf("trx16", 2*int64(M)*int64(tr.inP))
	w16 := b.scratchBuf("w16", 2*int64(tr.outP)*int64(tr.inP))
	ws := b.scratchBuf("trws", 4*int64(M)*int64(tr.outP))
	if x16 == 0 || w16 == 0 || ws == 0 {
		return true
	}
	b.trellisIn(x16, x, ldx, M, m, 1)
	a := b.newArgs()
	a.ptr(w16)
	a.ptr(tr.data)
	a.i32(NT)
	a.i32(KT)
	a.tconst()
	b.launch(b.k.tr.dq[tr.cb][tr.K], (KT*NT+7)/8, 1, 256, 0, a)
	b.flush() // cuBLAS is not recorded
	if b.err != nil {
		return true
	}
	alpha, beta := float32(1), float32(0)
	// column-major: Y' (Out'×M, ld Out') = W16ᵀ (W16: In'×Out', ld In') · X16 (In'×M, ld In')
	r := call(c.gemmEx, c.handle, cublasOpT, cublasOpN, uintptr(tr.outP), uintptr(M), uintptr(tr.inP),
		uintptr(unsafe.Pointer(&alpha)), uintptr(w16), cudaR16F, uintptr(tr.inP), uintptr(x16), cudaR16F, uintptr(tr.inP),
		uintptr(unsafe.Pointer(&beta)), uintptr(ws), cudaR32F, uintptr(tr.outP), cublasCompute32F, uintptr(cublasGemmDefault&0xffffffff))
	if r != cublasStatusOK {
		b.fail(fmt.Errorf("cuda: cublasGemmEx (%s, M %d): status %d", m.name, M, r))
		return true
	}
	b.trellisOut(y, ldy, ws, 1, M, m)
	return true
}

// EncodeTiles runs the tail-biting Viterbi search of quant.EncodeTiles on
// the GPU (trellis.cu, viterbi_K_CB) for the n = len(x)/256 tiles of x
// (trellis order), writing each tile's 256 states to states[i·256:]. The
// search does the CPU's float32 operations in the CPU's order, so the
// states are the same. K from 2 to 8 (K = 1 needs more shared memory than
// a block has: an error). Safe for concurrent use (ops are serialised).
func (b *Backend) EncodeTiles(states []uint16, x []float32, K int, cb quant.Codebook) error {
	if K < 2 || K > quant.MaxTrellisBits || int(cb) >= len(trellisCodebooks) {
		return fmt.Errorf("cuda: EncodeTiles: K %d, codebook %v not supported on the GPU", K, cb)
	}
	if len(x)%quant.TileLen != 0 || len(states) != len(x) {
		return fmt.Errorf("cuda: EncodeTiles: %d values, %d states", len(x), len(states))
	}
	n := len(x) / quant.TileLen
	if n == 0 {
		return nil
	}
	b.enter()
	defer b.leave()
	b.flush()
	if b.err != nil {
		return b.takeErr()
	}
	f := b.k.tr.vit[cb][K]
	grid := min(n, b.sms)
	xb, err := b.upload(unsafe.Pointer(&x[0]), 4*int64(len(x)))
	if err != nil {
		return err
	}
	defer b.drop(xb)
	sb, err := b.allocRaw(2 * int64(len(x)))
	if err != nil {
		return err
	}
	defer b.drop(sb)
	bp, err := b.allocRaw(int64(grid) * 256 << (16 - K))
	if err != nil {
		return err
	}
	defer b.drop(bp)
	a := b.newArgs()
	a.ptr(xb.ptr)
	a.ptr(sb.ptr)
	a.ptr(bp.ptr)
	a.i32(n)
	b.issue(f, grid, 1, 1, 1024, b.dynSmem[f], unsafe.Pointer(&a.ptrs[0]), false, 1)
	b.checkCall(call(b.d.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&states[0])), uintptr(sb.ptr), uintptr(2*len(states)), b.stream), "cuMemcpyDtoHAsync")
	b.syncStream()
	return b.takeErr()
}

// tdesc is trellis.cu's TDesc: one EXL3 matrix of an expert table.
type tdesc struct{ data, suh, svh uint64 }

// newTrellisExpertTable is newExpertTable for EXL3 experts ms ([gate, up,
// down] an expert): usable on the device when every matrix has the first
// one's bits and codebook, and the gates, ups and downs their padded
// shapes.
func (b *Backend) newTrellisExpertTable(ms []*matrix) *expertTable {
	t := &expertTable{}
	g, dn := ms[0].tr, ms[2].tr
	if g == nil || dn == nil {
		return t
	}
	descs := make([]tdesc, 0, len(ms))
	for i, m := range ms {
		tr, ref := m.tr, g
		if i%3 == 2 {
			ref = dn
		}
		if tr == nil || !m.usable() || tr.K != ref.K || tr.cb != ref.cb || tr.inP != ref.inP || tr.outP != ref.outP ||
			b.k.tr.mvMoE[tr.cb][tr.K] == 0 {
			return t
		}
		descs = append(descs, tdesc{tr.data, tr.suh, tr.svh})
	}
	buf, err := b.upload(unsafe.Pointer(&descs[0]), int64(len(descs))*int64(unsafe.Sizeof(tdesc{})))
	if err != nil {
		b.fail(err)
		return t
	}
	t.buf, t.ok, t.gateTr, t.downTr = buf, true, g, dn
	return t
}

// expertsTrellis is expertsOnDevice for EXL3 experts: moe.cu's jobs (the
// gate and up products of every slot, then the down products), each an
// M = 1 product through trellis_in_moe, tmv_moe and trellis_out_moe, with
// silu_mul between and moe_combine after — eight launches and no host
// synchronisation. nsel, sh, gu and out are expertsOnDevice's: the slots
// (sh of them a row the shared expert's), the gate+up and down outputs.
func (b *Backend) expertsTrellis(d, xt *tensor, sl *selection, set *expertSet, nsel, sh int, gu, out uint64) {
	M, H, K, I := xt.rows, xt.cols, sl.k, set.mats[0].gate.rows
	t := set.table
	nr := M * K
	h := b.scratchBuf("moe.h", 4*int64(nsel)*int64(I))
	if h == 0 {
		return // the sticky error is set
	}
	// one stage: the jobs' products of tr-shaped [N, In] matrices (mats a
	// slot from mat0), x rows from x (one a slot with xPerSlot), outputs
	// to y
	stage := func(tr *trellisMat, x uint64, ldx int, xPerSlot bool, mats, mat0 int, y uint64, ldy, N, In int) bool {
		jobs := nsel * mats
		KT, NT, CB := tr.inP/16, tr.outP/16, tr.outP/(16*trellisTiles)
		f := b.k.tr.mvMoE[tr.cb][tr.K]
		KC, SB := b.trellisSplit(f, KT, CB*jobs)
		xf := b.scratchBuf("trxf.moe", int64(jobs)*int64(KT)*512)
		ws := b.scratchBuf("trws.moe", 4*int64(jobs)*int64(SB)*int64(tr.outP))
		if xf == 0 || ws == 0 {
			return false
		}
		// each kernel's first arguments: the jobs' table (trellis.cu)
		jobArgs := func() *launchArgs {
			a := b.newArgs()
			a.ptr(t.buf.ptr)
			a.ptr(sl.ids())
			a.i32(nr)
			a.i32(set.routed)
			a.i32(mats)
			a.i32(mat0)
			return a
		}
		a := jobArgs()
		a.ptr(xf)
		a.ptr(x)
		a.i32(ldx)
		a.i32(K)
		a.i32(btoi(xPerSlot))
		a.i32(In)
		b.launchOpt(b.k.tr.inMoE, tr.inP/128, jobs, 1, 128, 0, a, b.pdlOps)
		a = jobArgs()
		a.ptr(xf)
		a.ptr(ws)
		a.i32(NT)
		a.i32(KT)
		a.i32(KC)
		a.i32(SB)
		a.tconst()
		b.launchOpt(f, CB, SB, jobs, trellisWarps*32, b.dynSmem[f], a, true)
		a = jobArgs()
		a.ptr(y)
		a.i32(ldy)
		a.ptr(ws)
		a.i32(SB)
		a.i32(nsel)
		a.i32(N)
		a.i32(tr.outP)
		b.launchOpt(b.k.tr.outMoE, tr.outP/128, jobs, 1, 128, 0, a, b.pdlOps)
		return true
	}
	if !stage(t.gateTr, xt.ptr(), H, false, 2, 0, gu, I, I, H) {
		return
	}
	b.siluMul(h, gu, gu+uint64(4*nsel*I), int64(nsel)*int64(I))
	if !stage(t.downTr, h, I, true, 1, 2, out, H, H, I) {
		return
	}
	b.moeCombine(d, out, sl, M, K, H, sh)
}
