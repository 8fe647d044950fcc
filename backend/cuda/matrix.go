//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// Storage formats of the kernels (FMT_* in common.cu).
const (
	fmtF32 = iota
	fmtF16
	fmtBF16
	fmtFP8
	fmtFP4
	fmtMXFP4
	fmtNVFP4
	fmtGPTQ
	fmtPInt4 // GPTQ int4 repacked at load (pack.go)
	fmtPFP4  // FP4 repacked at load
	numFmts
)

// fmtNames are the kernel name suffixes of the formats.
var fmtNames = [numFmts]string{"f32", "f16", "bf16", "fp8", "fp4", "mxfp4", "nvfp4", "gptq", "pint4", "pfp4"}

// wdesc mirrors struct WDesc of common.cu byte for byte (64 bytes): the
// device addresses of a weight's tensors and its shape parameters, passed
// by value to the matmul and embedding kernels.
type wdesc struct {
	data, scales, zeros, gidx uint64
	n, k                      int32
	bits, group               int32
	zcols, zoff               int32
	global                    float32
	_                         int32
}

// matrix is a weight uploaded in its stored format.
type matrix struct {
	owner      *Backend
	f          int // fmt*
	desc       wdesc
	bufs       []*buffer // keep the device tensors alive
	rows, cols int
	bytes      int64
	name       string      // the weight's one-line description
	asym       bool        // packed int4 with stored zero points
	tr         *trellisMat // EXL3 weights (trellis.go); f is then numFmts
	grp        *group      // the weights loaded together with this one, or nil
	part       int         // this weight's index in grp
	rounding   float64     // the packed layout's largest relative change of a weight (packed.rounding)
	// device tables of the lists this matrix heads (moe_dispatch.go): a
	// layer's experts (it is the first gate) or a HeadMatMul's heads
	lists *listTables
}

// group is the weights of one LoadMatrices call, stored together as one
// matrix all: their rows stacked (each part is then a view of its rows:
// an ordinary matrix) or, for two weights of one shape, interleaved (row
// 2i of all is row i of part 0, row 2i+1 row i of part 1: a SwiGLU's gate
// and up, whose outputs then meet in one lane of the decode kernels).
type group struct {
	all   *matrix
	parts []*matrix
	off   []int // stacked: the first row of each part in all
	inter bool
	// whole: the stacked parts are not views of all (8-bit GPTQ: rows are
	// the stored layout's columns); a part used alone runs all (outFor)
	whole bool
}

// Rows implements backend.Matrix.
func (m *matrix) Rows() int { return m.rows }

// Cols implements backend.Matrix.
func (m *matrix) Cols() int { return m.cols }

// Bytes implements backend.Matrix: the device memory of the stored weight.
func (m *matrix) Bytes() int64 { return m.bytes }

func (b *Backend) mat(w backend.Matrix) *matrix {
	m, ok := w.(*matrix)
	if !ok || m.owner != b {
		panic(fmt.Sprintf("cuda: matrix of another backend (%T)", w))
	}
	return m
}

// usable reports whether all of the matrix's tensors were uploaded.
func (m *matrix) usable() bool {
	for _, buf := range m.bufs {
		if buf.ptr == 0 && buf.size > 0 {
			return false
		}
	}
	return true
}

// kernelFormat returns the kernel format of w, or an error for formats
// without a CUDA kernel.
func kernelFormat(w *quant.Weight) (int, error) {
	switch w.Format {
	case quant.Dense:
		switch w.DType {
		case dtype.F32:
			return fmtF32, nil
		case dtype.F16:
			return fmtF16, nil
		case dtype.BF16:
			return fmtBF16, nil
		}
		return 0, fmt.Errorf("cuda: %s: dense weights of type %s are not supported", w.Name, w.DType)
	case quant.GPTQ:
		return fmtGPTQ, nil
	case quant.FP8:
		return fmtFP8, nil
	case quant.FP4:
		return fmtFP4, nil
	case quant.MXFP4:
		return fmtMXFP4, nil
	case quant.NVFP4:
		return fmtNVFP4, nil
	}
	return 0, fmt.Errorf("cuda: %s: format %s has no CUDA kernel yet", w.Name, w.Format)
}

// LoadMatrix implements backend.Backend: the weight's tensors are copied to
// the device as they are stored (no expansion); errors (out of memory) are
// returned, not made sticky.
func (b *Backend) LoadMatrix(w *quant.Weight) (backend.Matrix, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if w.Format == quant.EXL3 {
		return b.loadTrellis(w)
	}
	f, err := kernelFormat(w)
	if err != nil {
		return nil, err
	}
	if kind, _ := packable(w); kind != 0 {
		m, err := b.loadPacked(w, kind)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	b.enter()
	defer b.leave()
	m := &matrix{owner: b, f: f, rows: w.Out, cols: w.In, name: w.String()}
	up := func(data []byte) uint64 { return b.put(m, &err, data) }
	d := &m.desc
	d.n, d.k = int32(w.Out), int32(w.In)
	d.bits, d.group = int32(w.Bits), int32(w.Group)
	if w.Format == quant.FP8 {
		d.data = up(tileFP8(w.Data, w.Out, w.In)) // (pack.go)
	} else {
		d.data = up(w.Data)
	}
	d.scales = up(w.Scales)
	switch w.Format {
	case quant.GPTQ:
		d.zeros = up(w.Zeros)
		if len(w.GIdx) > 0 {
			d.gidx = up(unsafe.Slice((*byte)(unsafe.Pointer(&w.GIdx[0])), 4*len(w.GIdx)))
		}
		d.zcols = int32((w.Out*w.Bits + 31) / 32)
		d.zoff = int32(w.ZeroOffset)
	case quant.NVFP4:
		d.global = w.GlobalScale
	}
	if err != nil {
		return nil, fmt.Errorf("cuda: loading %s: %w", w.Name, err)
	}
	return m, nil
}

// put uploads data as one more device buffer of m (counted in m.bytes)
// and returns its address. After a failure, which it keeps in *err, it
// uploads nothing more and returns 0.
func (b *Backend) put(m *matrix, err *error, data []byte) uint64 {
	if *err != nil || len(data) == 0 {
		return 0
	}
	buf, e := b.upload(unsafe.Pointer(&data[0]), int64(len(data)))
	if e != nil {
		*err = e
		return 0
	}
	m.bufs = append(m.bufs, buf)
	m.bytes += int64(len(data))
	return buf.ptr
}

// loadPacked uploads w in the packed 4-bit layout (pack.go): the
// repacking runs on the host, in parallel, once.
func (b *Backend) loadPacked(w *quant.Weight, kind int) (*matrix, error) {
	return b.uploadPacked(packWeight(w, kind), w.String())
}

// uploadPacked uploads a packed weight.
func (b *Backend) uploadPacked(p *packed, name string) (*matrix, error) {
	b.enter()
	defer b.leave()
	f := fmtPInt4
	if p.kind == packKindFP4 {
		f = fmtPFP4
	}
	m := &matrix{owner: b, f: f, rows: p.n, cols: p.k, name: name, asym: p.zeros != nil, rounding: p.rounding}
	var err error
	up := func(data []byte) uint64 { return b.put(m, &err, data) }
	d := &m.desc
	d.n, d.k, d.bits, d.group = int32(p.n), int32(p.k), 4, int32(p.group)
	d.data = up(p.data)
	d.scales = up(p.scales)
	d.zeros = up(p.zeros)
	if p.perm != nil {
		d.gidx = up(unsafe.Slice((*byte)(unsafe.Pointer(&p.perm[0])), 4*len(p.perm)))
		m.bytes -= int64(4 * len(p.perm)) // read once per call, not per weight
	}
	if err != nil {
		return nil, fmt.Errorf("cuda: loading %s: %w", name, err)
	}
	return m, nil
}

// fastKernel returns the tensor-core decode kernel for m and M ≤ 16 rows,
// or 0 when m has none (K must be a multiple of 32).
func (b *Backend) fastKernel(m *matrix, M int) uintptr {
	if m.cols%32 != 0 || M > 16 {
		return 0
	}
	i := 0
	if M > 8 {
		i = 1
	}
	if (m.f == fmtPInt4 || m.f == fmtPFP4) && m.desc.group%32 != 0 && !fp4G16(m) {
		return 0 // qmv4 scales whole steps of 32 inputs, or FP4's halves of 16
	}
	switch m.f {
	case fmtPInt4:
		if m.asym {
			return b.k.qmvInt4Asym[i]
		}
		return b.k.qmvInt4[i]
	case fmtPFP4:
		if fp4G16(m) {
			return b.k.qmvFP4G16[i]
		}
		return b.k.qmvFP4[i]
	case fmtFP8:
		if gptq8On && i == 0 { // qmm.cu's qmv8, up to 8 rows
			return b.k.qmvFP8
		}
	case fmtGPTQ:
		// 8-bit in the stored layout (qmm.cu's qmv8): up to 8 rows, no
		// g_idx, whole steps a group, 16-byte copies of the scales (and
		// zero points)
		asym := m.desc.zeros != 0
		if gptq8On && i == 0 && m.desc.bits == 8 && m.desc.gidx == 0 && m.desc.group%32 == 0 &&
			(m.rows%8 == 0 && !asym || m.rows%16 == 0) {
			return b.k.qmvGPTQ8[btoi(asym)]
		}
	case fmtF16, fmtBF16:
		wide := i == 0 && m.cols%128 == 0 && dmvWide
		switch {
		case m.f == fmtF16 && wide:
			return b.k.dmvF16Wide
		case m.f == fmtF16:
			return b.k.dmvF16[i]
		case wide:
			return b.k.dmvBF16Wide
		}
		return b.k.dmvBF16[i]
	}
	return 0
}

// gptq8On runs 8-bit GPTQ and FP8 decode products on qmv8 (≤ 8 rows a launch)
// (MARLIN_CUDA_GPTQ8=0: the generic tile kernel, for measurements).
var gptq8On = os.Getenv("MARLIN_CUDA_GPTQ8") != "0"

// dmvWide chooses the wide order of the 16-bit decode kernels where it
// applies (MARLIN_CUDA_DMV_WIDE=0: the narrow one, for measurements).
var dmvWide = envInt("MARLIN_CUDA_DMV_WIDE", 1) != 0

// yout mirrors struct YOut of qmm.cu (56 bytes): where the columns of a
// product go (plain, split among up to three outputs, de-interleaved, or
// through SwiGLU; stored or added). See qmm.cu.
type yout struct {
	y0, y1, y2    uint64
	ld0, ld1, ld2 int32
	n1, n2        int32
	mode, accum   int32
	_             int32
}

const (
	youtSplit  = 0 // segments [0, n1), [n1, n2), [n2, N)
	youtPair   = 1 // interleaved pair: even columns to y0, odd to y1
	youtSwiGLU = 2 // interleaved (gate, up): y0 = silu(gate)·up
)

// plainOut sends all n columns to y (row stride ldy).
func plainOut(y uint64, ldy, n int) yout {
	return yout{y0: y, ld0: int32(ldy), n1: int32(n), n2: int32(n)}
}

func (o *yout) plain(n int) bool { return o.mode == youtSplit && o.accum == 0 && int(o.n1) >= n }

// rowsFrom returns o moved down r rows: the outputs of rows r, r+1, … of a
// product, as row 0, 1, … of a product of those rows alone.
func (o yout) rowsFrom(r int) yout {
	for _, p := range []struct {
		y  *uint64
		ld int32
	}{{&o.y0, o.ld0}, {&o.y1, o.ld1}, {&o.y2, o.ld2}} {
		if *p.y != 0 {
			*p.y += uint64(4 * r * int(p.ld))
		}
	}
	return o
}

// matmul queues y[M, N] = x[M, K]·Wᵀ with row strides ldy and ldx (in
// floats).
func (b *Backend) matmul(y uint64, ldy int, x uint64, ldx, M int, m *matrix) {
	mm, o := b.outFor(m, y, ldy, M)
	b.matmulOut(&o, x, ldx, M, mm, nil)
}

// normIn is the RMS norm a decode kernel applies to its input (qmm.cu's
// qmv*_norm_tc kernels): the norm weights' device address and epsilon, and
// the kernel and cluster size normCluster chose for the product.
type normIn struct {
	w   uint64
	eps float32
	f   uintptr
	c   int
}

// normFuse (MARLIN_CUDA_NORMFUSE=0 turns it off, for measurements) lets the
// 4-bit decode kernels apply a product's input norm themselves.
var normFuse = os.Getenv("MARLIN_CUDA_NORMFUSE") != "0"

// normInput returns the input of a product of x [M, K] (contiguous rows)
// with norm n: x itself and the norm for the kernel to apply, when the one
// launch of m (nil: not one launch) is a 4-bit decode kernel on tile
// clusters (normCluster) and M ≤ 4; else rmsnorm(x) in scratch and no
// norm. 0 after a failure.
//
// Every block of a kernel that applies the norm first reads the whole
// rows and reduces them (two barriers) before its first step. That pays
// for the small products that run on tile clusters (GLM-4.7-Flash's
// attention projections, H100: 225.8 / 220.8 tok/s unfused against 235.6
// / 234.0 fused), not for the large ones that run on the stripes (the
// Llama-3-8B shape's q/k/v and gate/up: 311.2 / 316.3 fused against 331.8
// / 335.9 with rms_norm's launch before the plain kernel; the seventeenth
// session, docs/cuda-kernels.md).
func (b *Backend) normInput(x *tensor, n *backend.Norm, m *matrix) (uint64, *normIn) {
	g := b.vec(n.W)
	checkShape("norm", g.n == x.cols, "weight %d for x [%d, %d]", g.n, x.rows, x.cols)
	if !b.vecUsable(g) {
		return 0, nil
	}
	M, xp := x.rows, x.ptr()
	if normFuse && m != nil && M <= 4 && m.tr == nil && (m.f == fmtPInt4 || m.f == fmtPFP4) && m.desc.gidx == 0 &&
		xp%16 == 0 && x.cols%4 == 0 {
		if ft, C := b.normCluster(m, M); C > 0 {
			return xp, &normIn{w: g.buf.ptr, eps: n.Eps, f: ft, c: C}
		}
	}
	xn := b.scratchBuf("xnorm", 4*int64(M)*int64(x.cols))
	if xn == 0 {
		return 0, nil
	}
	b.rmsNorm(xn, xp, g, int(x.n()), n.Eps)
	return xn, nil
}

// normCluster returns the tile-cluster kernel that applies an input norm
// for m's product of M rows and its cluster size, or C = 0 where the
// product would not run on tile clusters (tileClusters) or has no such
// kernel.
func (b *Backend) normCluster(m *matrix, M int) (ft uintptr, C int) {
	f := b.fastKernel(m, M)
	if ft = b.k.qmvNormTC[f]; ft == 0 {
		return 0, 0
	}
	return ft, b.tileClusters(ft, f, m, M)
}

// out is the yout of g's one launch that sends part i's outputs to ys[i]
// (row stride lds[i]): a pair's interleaved columns (youtPair), or a
// stack's column ranges (youtSplit: parts from off[1] and off[2] on).
func (g *group) out(ys []uint64, lds []int32) yout {
	o := yout{mode: youtSplit, n1: int32(g.all.rows), n2: int32(g.all.rows)}
	if g.inter {
		o.mode = youtPair
	} else {
		o.n1 = int32(g.off[1])
		if len(g.parts) > 2 {
			o.n2 = int32(g.off[2])
		}
	}
	dst, ld := []*uint64{&o.y0, &o.y1, &o.y2}, []*int32{&o.ld0, &o.ld1, &o.ld2}
	for i := range ys {
		*dst[i], *ld[i] = ys[i], lds[i]
	}
	return o
}

// outFor returns the matrix that computes m's product and the outputs that
// send it to y: m itself, or, for a part of an interleaved pair or of a
// group whose parts are not views (group.whole), the whole group, with the
// other parts' outputs going to scratch.
func (b *Backend) outFor(m *matrix, y uint64, ldy, M int) (*matrix, yout) {
	g := m.grp
	if g == nil || !g.inter && !g.whole {
		return m, plainOut(y, ldy, m.rows)
	}
	var ys [3]uint64 // (arrays: no allocation an op)
	var lds [3]int32
	if g.inter { // the other half, a row of m.rows
		other := b.scratchBuf("pairout", 4*int64(M)*int64(m.rows))
		ys[0], ys[1], lds[0], lds[1] = other, other, int32(m.rows), int32(m.rows)
	} else { // each other part at its own columns of a row of all's width
		other := b.scratchBuf("partout", 4*int64(M)*int64(g.all.rows))
		for i := range g.parts {
			ys[i], lds[i] = other+uint64(4*g.off[i]), int32(g.all.rows)
		}
	}
	ys[m.part], lds[m.part] = y, int32(ldy)
	return g.all, g.out(ys[:len(g.parts)], lds[:len(g.parts)])
}

// decodeParts returns into how many launches of the tensor-core decode
// kernels matmulOut cuts an M-row product of m: 1 up to the rows one
// launch takes (decodeRows: 16, qmv8 8); above, up to the cuBLAS path
// (takesGemm), ⌈M/rows⌉ launches of equal shares of the rows — each reads
// the weights again, yet the SIMT tile kernels that took these sizes were
// several times slower still (mm_large_pint4: 324 µs for a GLM attention
// projection at 32 rows, H100); 0 where the decode kernels do not apply.
func (b *Backend) decodeParts(m *matrix, M int) int {
	per := decodeRows(m)
	switch {
	case b.fastKernel(m, min(M, per)) == 0:
		return 0
	case M <= per:
		return 1
	case b.takesGemm(m, M):
		return 0
	}
	return (M + per - 1) / per
}

// decodeRows is the most rows of x one launch of m's decode kernel takes:
// 8 for qmv8 (8-bit GPTQ, FP8), 16 for the others.
func decodeRows(m *matrix) int {
	if m.f == fmtGPTQ || m.f == fmtFP8 {
		return 8
	}
	return 16
}

// fastPath reports whether matmulOut runs m at M rows on the tensor-core
// decode kernels (which write any yout themselves).
func (b *Backend) fastPath(m *matrix, M int, x uint64, ldx int) bool {
	if b.decodeParts(m, M) == 0 || b.wgGemm(m, M) || b.tcGemm(m, M) {
		return false
	}
	return (m.f == fmtPInt4 || m.f == fmtPFP4) && m.desc.gidx != 0 || x%16 == 0 && ldx%4 == 0
}

// packedOrder returns x [M, K] (row stride ldx) in the input order of m's
// packed 4-bit layout: x itself, or, for act-order weights, x permuted into
// scratch (the kernels read x in the packed order). 0 after a failure.
func (b *Backend) packedOrder(x uint64, ldx, M int, m *matrix) (uint64, int) {
	if (m.f != fmtPInt4 && m.f != fmtPFP4) || m.desc.gidx == 0 {
		return x, ldx
	}
	xp := b.scratchBuf("xperm", 4*int64(M)*int64(m.cols))
	if xp == 0 {
		return 0, 0
	}
	a := b.newArgs()
	a.ptr(xp)
	a.ptr(x)
	a.i32(ldx)
	a.ptr(m.desc.gidx)
	a.i32(m.cols)
	b.launch(b.k.permute, M, 1, 256, 0, a)
	return xp, m.cols
}

// tcGemmOn (MARLIN_CUDA_TCGEMM=0 turns it off), tcGemmMin and tcGemmMax
// (MARLIN_TC_MIN, MARLIN_TC_MAX: for measurements) choose tc_qgemm for
// 4-bit products of 17 to 256 rows.
var tcGemmOn, tcGemmMin, tcGemmMax = os.Getenv("MARLIN_CUDA_TCGEMM") != "0", envInt("MARLIN_TC_MIN", 17), envInt("MARLIN_TC_MAX", 256)

// tcGemm reports whether matmulOut runs m's product of M rows on tc_qgemm
// (qmm.cu): the products packedGemmable takes, tcGemmMin to tcGemmMax rows.
func (b *Backend) tcGemm(m *matrix, M int) bool {
	return tcGemmOn && M >= tcGemmMin && M <= tcGemmMax && packedGemmable(m) && b.k.tcQgemm[0] != 0
}

// tcQgemm queues x_to_half (x [M, K], row stride ldx, into fp16 scratch in
// the packed input order) and tc_qgemm for y[M, N] = x[M, K]·Wᵀ: blocks of
// 128 columns × 64 rows, the steps of K split among S blocks whose partial
// sums the last of them adds (deterministic; S from tcSplits).
func (b *Backend) tcQgemm(y uint64, ldy int, x uint64, ldx, M int, m *matrix) {
	if x16 := b.xHalf(x, ldx, M, m, false); x16 != 0 {
		b.packedGemm(b.k.tcQgemm[:], "tcws", y, ldy, x16, M, m, 128, 64, 8192, b.tcSplit)
	}
}

// tcSplit is tc_qgemm's split of K for packedGemm: tcSplits, partial sums
// through L2.
func (b *Backend) tcSplit(_ uintptr, tiles, spt int) (int, bool) {
	return tcSplits(tiles, spt, b.sms), false
}

// packedKernel returns the kernel of the set fs (packedGemm's) for m's
// format.
func packedKernel(fs []uintptr, m *matrix) uintptr {
	switch {
	case fp4G16(m):
		return fs[3]
	case m.f == fmtPFP4:
		return fs[2]
	case m.asym:
		return fs[1]
	}
	return fs[0]
}

// packedGemm queues one of a set of 4-bit GEMM kernels sharing tc_qgemm's
// arguments — fs[0] for INT4, [1] INT4 with zero points, [2] FP4, [3] FP4
// with groups of 16 (wg_qgemm only) — for
// y[M, N] = x16[M, K]·Wᵀ in blocks of 256 threads, cols output columns ×
// rows of x each, K split among S blocks (split picks it for the kernel
// and the grid of output tiles): without cluster the last of a tile's S
// blocks adds their partial sums, part floats a block, from the scratch
// named ws; with it (hopper.cu's wg_qgemm, S ≤ 8) the S blocks form a
// thread-block cluster along x and sum through distributed shared memory.
func (b *Backend) packedGemm(fs []uintptr, ws string, y uint64, ldy int, x16 uint64, M int, m *matrix, cols, rows, part int,
	split func(f uintptr, tiles, spt int) (S int, cluster bool)) {
	f := packedKernel(fs, m)
	gx, gy := (m.rows+cols-1)/cols, (M+rows-1)/rows
	S, cluster := split(f, gx*gy, m.cols/32)
	if gx*gy > counterCap && !cluster {
		S = 1
	}
	var wsp uint64
	if S > 1 && !cluster {
		if wsp = b.scratchBuf(ws, 4*int64(gx*gy)*int64(S)*int64(part)); wsp == 0 {
			return
		}
	}
	a := b.newArgs()
	a.desc(&m.desc)
	a.ptr(x16)
	a.ptr(y)
	a.i32(ldy)
	a.i32(M)
	a.ptr(wsp)
	a.ptr(b.counters.ptr)
	if cluster {
		b.launchCluster(f, gx*S, gy, 1, 256, b.dynSmem[f], a, true, S)
		return
	}
	b.launchOpt(f, gx, gy, S, 256, b.dynSmem[f], a, true)
}

// packedGemmable reports whether tc_qgemm and wg_qgemm take m: packed INT4
// or FP4 (any act-order: x_to_half permutes x into the packed order as it
// converts it), K and the group multiples of 32.
func packedGemmable(m *matrix) bool {
	return (m.f == fmtPInt4 || m.f == fmtPFP4) && m.tr == nil && m.cols%32 == 0 && m.desc.group%32 == 0
}

// wgGemmable reports whether wg_qgemm takes m: what packedGemmable takes,
// and FP4 with groups of 16 (tc_qgemm has no such form).
func wgGemmable(m *matrix) bool {
	return packedGemmable(m) || fp4G16(m) && m.tr == nil && m.cols%32 == 0
}

// fp4G16 reports whether m is packed FP4 with groups of 16 (NVFP4 as
// pack.go packs it), which the kernels scale a half step at a time.
func fp4G16(m *matrix) bool { return m.f == fmtPFP4 && m.desc.group == 16 }

// wgGemmMin and wgGemmMax (MARLIN_WG_MIN, MARLIN_WG_MAX; for
// measurements) are the fewest and most rows a product takes wg_qgemm
// with; wgFormForce (MARLIN_WG_FORM, an index into wgForms) takes that form
// at every size. The default range is where wg_qgemm was measured faster
// than tc_qgemm on all four shapes of the table (docs/cuda-kernels.md,
// tenth session: 17 … 256 rows, 5–40% less time); at 512 rows it wins on some
// shapes and loses on others, at 2048 it loses on all.
var (
	wgGemmMin   = envInt("MARLIN_WG_MIN", 17)
	wgGemmMax   = envInt("MARLIN_WG_MAX", 256)
	wgFormForce = envInt("MARLIN_WG_FORM", -1)
	wgClusterOn = os.Getenv("MARLIN_WG_CLUSTER") != "0" // K splits summed in a cluster (wgSplit)
	// wgSplitForce (MARLIN_WG_SPLIT) takes that split of K for every
	// wg_qgemm product (summed in a cluster where it can be), for measuring
	// the balance of its blocks over the multiprocessors
	wgSplitForce = envInt("MARLIN_WG_SPLIT", 0)
)

// wgSplit picks the split of K of wg_qgemm kernel f over tiles output
// tiles of spt steps of 32 inputs each, and whether the S blocks of a
// tile sum in a cluster (chooseWGSplit; pairs where the device has
// clusters and MARLIN_WG_CLUSTER is not 0). MARLIN_WG_SPLIT forces S, in
// a cluster where one of S blocks fits.
func (b *Backend) wgSplit(f uintptr, tiles, spt int) (int, bool) {
	clusters := wgClusterOn && b.cc >= 90 && b.d.cuLaunchKernelEx != 0
	if wgSplitForce > 0 {
		S := min(wgSplitForce, max(1, spt))
		return S, clusters && S > 1 && S <= 8 && b.residentClusters(f, 256, S) > 0
	}
	perSM, pairs := b.residentBlocks(f, 256), 0
	if clusters {
		pairs = b.residentClusters(f, 256, 2)
	}
	return chooseWGSplit(tiles, spt, b.sms, perSM, pairs)
}

// chooseWGSplit picks wg_qgemm's split of K — S and whether a tile's S
// blocks add their partial sums in a cluster — for tiles output tiles of
// spt steps of 32 inputs on sms multiprocessors that hold perSM blocks
// each and, where pairs > 0, that many clusters of two at once.
//
// It minimises a model fitted to the H100 (docs/cuda-kernels.md, eleventh
// session: the best of 11 splits on 32 products within 10% in sum): a
// block costs its steps plus 4 (its prologue), or plus 20 where the last
// of a tile's blocks adds their partial sums through L2; blocks run in
// rounds of perSM a multiprocessor; a last round of at most one block a
// multiprocessor costs 1.1 blocks' time (one block of wg_qgemm keeps a
// multiprocessor half busy: it is bound by issue, not memory). The
// candidates are no split, a split of 2 … 16 (each at least 16 steps)
// summed through L2, and a split of two summed in a cluster; larger
// clusters (3 … 8, which the kernel takes) measured slower, the
// scheduler placing their blocks on fewer multiprocessors.
func chooseWGSplit(tiles, spt, sms, perSM, pairs int) (S int, cluster bool) {
	sms = max(1, sms)
	cost := func(s, c, slots int) int { // in tenths of a block's time
		blocks, steps := tiles*s, (spt+s-1)/s+c
		t := blocks / slots * 10 * ((slots + sms - 1) / sms) // full rounds
		if rem := blocks % slots; rem > 0 {
			t += max(11, 10*((rem+sms-1)/sms))
		}
		return t * steps
	}
	slots := max(1, perSM) * sms
	S, best := 1, cost(1, 4, slots)
	for s := 2; s <= 16 && spt/s >= 16; s++ {
		if t := cost(s, 20, slots); t < best {
			S, best = s, t
		}
	}
	if pairs > 0 && spt/2 >= 16 {
		if t := cost(2, 4, min(slots, 2*pairs)); t < best {
			S, cluster = 2, true
		}
	}
	return S, cluster
}

// wgGemm reports whether matmulOut runs m's product of M rows on wg_qgemm
// (hopper.cu, the warpgroup MMA of sm_90a devices): the products
// wgGemmable takes (tcGemm's and FP4 g16), from wgGemmMin to wgGemmMax
// rows, in place of tc_qgemm and of dequantisation + cuBLAS (unless
// MARLIN_CUDA_WGMMA=0).
func (b *Backend) wgGemm(m *matrix, M int) bool {
	return b.wgmma && M >= wgGemmMin && M <= wgGemmMax && wgGemmable(m) && b.k.wgQgemm[0][0] != 0
}

// xTiles queues x_to_tiles: x [M, m.cols] (row stride ldx) in fp16 in
// scratch, laid out for wg_qgemm's bulk copies (hopper.cu), in the packed
// input order of m's act-order weights; the scratch's address, 0 after a
// failure.
func (b *Backend) xTiles(x uint64, ldx, M int, m *matrix) uint64 {
	K, TB := m.cols, wgBlocks(M)
	n := 64 * int64(K) * int64(TB)
	xt := b.scratchBuf("xtiles", 2*n)
	if xt == 0 {
		return 0
	}
	a := b.newArgs()
	a.ptr(xt)
	a.ptr(x)
	a.i32(ldx)
	a.ptr(m.desc.gidx)
	a.i32(K)
	a.i32(M)
	b.launch(b.k.xToTiles, int((n/8+255)/256), 1, 256, 0, a) // a thread a core-matrix row of 8
	return xt
}

// wgBlocks is hopper.cu's wg_blocks: x_to_tiles' 64-token blocks a step
// for M tokens, padded to the 128-token form's tile.
func wgBlocks(M int) int { return 2 * ((M + 127) / 128) }

// wgQgemm queues x_to_tiles and wg_qgemm for y[M, N] = x[M, K]·Wᵀ in
// the form wgFormOf picks; K split as wgSplit picks.
func (b *Backend) wgQgemm(y uint64, ldy int, x uint64, ldx, M int, m *matrix) {
	i := wgFormOf(M, m.rows, m.cols)
	f := wgForms[i]
	if x16 := b.xTiles(x, ldx, M, m); x16 != 0 {
		// partial sums: 256 threads × ct·bt/2 floats a block
		b.packedGemm(b.k.wgQgemm[i][:], "wgws", y, ldy, x16, M, m, 128*f.ct, f.bt, 256*f.ct*f.bt/2, b.wgSplit)
	}
}

// wgFormOf is the form wg_qgemm runs M rows of an N × K weight in:
// wgFormFor's, or the one MARLIN_WG_FORM forces.
func wgFormOf(M, N, K int) int {
	if wgFormForce >= 0 && wgFormForce < len(wgForms) {
		return wgFormForce
	}
	return wgFormFor(M, N, K)
}

// wgFormFor picks wg_qgemm's form (an index into wgForms) for M rows of
// an N × K weight, as measured on the H100 (docs/cuda-kernels.md, tenth
// session): 128 × 64 blocks up to 64 rows; 256 × 64 blocks (64w: half the
// reads of x a column) from 129 rows, and from 65 for weights of 2^27
// values and more, where it was 14–31% faster at 128 rows and 10% slower
// on the smaller two; the 128-token form beyond that.
func wgFormFor(M, N, K int) int {
	switch {
	case M > 256:
		return 2
	case M > 128, M > 64 && int64(N)*int64(K) >= 1<<27:
		return 1
	}
	return 0
}

// tcSplits picks tc_qgemm's split of K for tiles output tiles of spt steps
// of 32 inputs on sms multiprocessors, from a model of its time: a
// multiprocessor's blocks run at a lone block's speed until two share it
// (which saturate it), after which time grows with their number; a block
// costs its steps plus ~4 steps of prologue, and ~6 more with a split (its
// partial sums out and, for the last, back in). Split s (1 … 16, each at
// least 16 steps): (⌈spt/s⌉ + c) · max(1, ⌈tiles·s/sms⌉ / 2), the least,
// a larger split only where it saves 5%.
func tcSplits(tiles, spt, sms int) int {
	best, bestT := 1, 0
	for s := 1; s <= 16 && (s == 1 || spt/s >= 16); s++ {
		c := 4
		if s > 1 {
			c = 10
		}
		perSM := (tiles*s + sms - 1) / max(sms, 1)
		t := 2 * ((spt+s-1)/s + c) * max(2, perSM) // doubled: integer halves
		if s == 1 || 20*t < 19*bestT {             // a further split only for 5% less
			best, bestT = s, t
		}
	}
	return best
}

// tileClusterOn: MARLIN_CUDA_TILECLUSTER=0 keeps every decode product on
// the stripes; tileClusterMinSteps (MARLIN_TC_MINSTEPS) is the fewest
// steps of 32 inputs a warp of a tile cluster gets; tileClusterForce
// (MARLIN_TC_C = 1, 2, 4 or 8; for measurements) takes that cluster size
// wherever the steps allow it; tileClusterShare (MARLIN_TC_SHARE, for
// measurements) is chooseTileCluster's bound on the stripes' share of the
// device: clusters where tileClusterShare·stripeBlocks < stripeSlots (2:
// less than half; 1: the Llama-3-8B q/k/v product's 384 of 528 too).
var (
	tileClusterOn       = os.Getenv("MARLIN_CUDA_TILECLUSTER") != "0"
	tileClusterMinSteps = max(1, envInt("MARLIN_TC_MINSTEPS", 2))
	tileClusterForce    = envInt("MARLIN_TC_C", 0)
	tileClusterShare    = max(1, envInt("MARLIN_TC_SHARE", 2))
)

// tileClusters returns the cluster size C (1, 2, 4 or 8) for m's product
// of M rows on the tile-cluster kernel ft, or 0 for the stripes (kernel
// f): without clusters (before sm_90, MARLIN_CUDA_TILECLUSTER=0) or when
// chooseTileCluster says so.
func (b *Backend) tileClusters(ft, f uintptr, m *matrix, M int) int {
	if !tileClusterOn || b.cc < 90 || b.d.cuLaunchKernelEx == 0 || ft == 0 {
		return 0
	}
	ntiles, spt := (m.rows+63)/64, m.cols/32
	if tileClusterForce > 0 {
		if spt < tileClusterMinSteps*qmvWarps*tileClusterForce {
			return 0
		}
		return tileClusterForce
	}
	return chooseTileCluster(ntiles, spt, M, b.stripeBlocks(f, ntiles*spt), b.residentBlocks(f, 128)*b.sms,
		func(C int) int { return b.residentClusters(ft, 128, C) })
}

// chooseTileCluster picks the split of a decode product of M rows over
// ntiles column tiles of spt steps (docs/cuda-kernels.md, sixth session,
// has the measurements behind it). The stripes (0) fill the device with
// equal shares of the steps, but the warps that share a tile leave
// partial sums of M rows in global memory for the last one to add. Tile
// clusters add them on chip instead, with fewer warps in flight
// (ntiles·C blocks). Clusters win where the stripes' grid (stripeBlocks
// of stripeSlots resident) is less than half the device, or where the
// partial sums' traffic, stripe warps · M · 256 bytes written and read,
// is a quarter or more of the weights' (1 KB a step). Then C is the
// largest size whose ntiles clusters are resident at once (resident(C):
// a second wave made the 28672×8192 product 45% slower), each warp
// keeping at least tileClusterMinSteps steps.
func chooseTileCluster(ntiles, spt, M, stripeBlocks, stripeSlots int, resident func(C int) int) int {
	traffic := 2 * 4 * stripeBlocks * M * 256 // the warps' partials, written and read
	if tileClusterShare*stripeBlocks >= stripeSlots && 4*traffic < ntiles*spt*1024 {
		return 0
	}
	for C := 8; C >= 1; C /= 2 {
		if spt >= tileClusterMinSteps*qmvWarps*C && ntiles <= resident(C) {
			return C
		}
	}
	return 0
}

// stripeBlocks is the stripes' grid for a product of steps steps of 32
// inputs on kernel f (stripeGrid of its resident blocks).
func (b *Backend) stripeBlocks(f uintptr, steps int) int {
	bps := b.residentBlocks(f, 128)
	if qmvBlocksPerSM > 0 {
		bps = min(bps, qmvBlocksPerSM)
	}
	return stripeGrid(bps*b.sms, steps)
}

// stripeGrid is one wave of as many blocks as fit at once (slots), each
// warp at least qmvMinSteps of the steps.
func stripeGrid(slots, steps int) int { return max(1, min(slots, steps/(qmvWarps*qmvMinSteps))) }

// qmvWarps is qmm.cu's QW: the warps of a decode kernel's block.
const qmvWarps = 4

// Tuning knobs of the decode kernels' grid, read once (for measurements):
// MARLIN_QMV_BPS caps the blocks per multiprocessor (0: as many as fit),
// MARLIN_QMV_MINSTEPS is the fewest steps of 32 inputs a warp gets (8:
// fewer partial sums per column tile than 4, which made the 8B shape's
// fused q/k/v product 14% slower, docs/cuda-kernels.md).
var qmvBlocksPerSM, qmvMinSteps = envInt("MARLIN_QMV_BPS", 0), max(1, envInt("MARLIN_QMV_MINSTEPS", 8))

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// matmulOut queues the product x[M, K]·Wᵀ into the outputs o: the
// tensor-core decode kernels for M ≤ 16 (packed 4-bit and 16-bit dense
// weights, 16-byte aligned rows of x) and, cut into parts of at most 16
// rows, below the cuBLAS path (decodeParts); else the small-tile kernel
// for M ≤ 8, cuBLAS or the large-tile one above; those write a plain
// output, so other outputs get the product in scratch first, then
// yout_apply.
//
// With nrm not nil (normInput's choice: the 4-bit decode kernel on tile
// clusters at M ≤ 4) the kernel applies that norm to x.
func (b *Backend) matmulOut(o *yout, x uint64, ldx, M int, m *matrix, nrm *normIn) {
	if !m.usable() {
		b.fail(fmt.Errorf("cuda: use of %s, whose upload failed", m.name))
		return
	}
	if !o.plain(m.rows) && !b.fastPath(m, M, x, ldx) {
		tmp := b.scratchBuf("yfull", 4*int64(M)*int64(m.rows))
		if tmp == 0 {
			return
		}
		po := plainOut(tmp, m.rows, m.rows)
		b.matmulOut(&po, x, ldx, M, m, nil)
		a := b.newArgs()
		a.yout(o)
		a.ptr(tmp)
		a.i32(M)
		a.i32(m.rows)
		b.launch(b.k.youtApply, b.gridFor(int64(M)*int64((m.rows+1)/2)), 1, 256, 0, a)
		return
	}
	y, ldy := o.y0, int(o.ld0) // a plain output, unless on the fast path
	if m.tr != nil {
		b.trellisMatMul(y, ldy, x, ldx, M, m)
		return
	}
	if b.wgGemm(m, M) {
		b.wgQgemm(y, ldy, x, ldx, M, m)
		return
	}
	if b.tcGemm(m, M) {
		b.tcQgemm(y, ldy, x, ldx, M, m)
		return
	}
	if b.gemmLarge(y, ldy, x, ldx, M, m) {
		return
	}
	if n := b.decodeParts(m, M); n > 1 && b.fastPath(m, M, x, ldx) {
		for c := range n {
			r0, r1 := c*M/n, (c+1)*M/n
			oc := o.rowsFrom(r0)
			b.matmulOut(&oc, x+uint64(4*r0*ldx), ldx, r1-r0, m, nil)
		}
		return
	}
	if x, ldx = b.packedOrder(x, ldx, M, m); x == 0 {
		return
	}
	if f := b.fastKernel(m, M); f != 0 && x%16 == 0 && ldx%4 == 0 {
		// the kernel's arguments; ws: the stripes' partial sums (0 for
		// tile clusters, which need none)
		args := func(ws uint64) *launchArgs {
			a := b.newArgs()
			a.desc(&m.desc)
			a.ptr(x)
			a.i32(ldx)
			a.yout(o)
			a.i32(M)
			a.ptr(ws)
			a.ptr(b.counters.ptr)
			if nrm != nil {
				a.ptr(nrm.w)
				a.f32(nrm.eps)
			}
			return a
		}
		ntiles := (m.rows + 63) / 64
		if nrm != nil { // (normInput chose the kernel and its clusters for this product)
			b.launchCluster(nrm.f, ntiles*nrm.c, 1, 1, 128, b.dynSmem[nrm.f], args(0), true, nrm.c)
			return
		}
		if ft := b.k.qmvTC[f]; ft != 0 {
			if C := b.tileClusters(ft, f, m, M); C > 0 {
				// tile clusters (qmm.cu's TCL): C blocks a column tile
				b.launchCluster(ft, ntiles*C, 1, 1, 128, b.dynSmem[ft], args(0), true, C)
				return
			}
		}
		// stripe workers (qmm.cu)
		blocks := b.stripeBlocks(f, ntiles*(m.cols/32))
		if ntiles > counterCap {
			b.fail(fmt.Errorf("cuda: %s: %d column tiles exceed the kernel's %d counters", m.name, ntiles, counterCap))
			return
		}
		ws := b.scratchBuf("qws", 4*1024*int64(ntiles+4*blocks)) // slots tile + warp
		if ws == 0 {
			return
		}
		b.launchOpt(f, blocks, 1, 1, 128, b.dynSmem[f], args(ws), true)
		return
	}
	if nrm != nil {
		b.fail(fmt.Errorf("cuda: %s: a norm for a kernel that cannot apply it", m.name))
		return
	}
	a := b.newArgs()
	a.desc(&m.desc)
	a.ptr(x)
	a.i32(ldx)
	a.ptr(y)
	a.i32(ldy)
	a.i32(M)
	if M <= 8 {
		b.launch(b.k.mmSmall[m.f], (m.rows+31)/32, (M+7)/8, 256, 0, a)
	} else {
		b.launch(b.k.mmLarge[m.f], (m.rows+63)/64, (M+63)/64, 256, 0, a)
	}
}

// MatMul implements backend.Backend.
func (b *Backend) MatMul(dst, x backend.Tensor, w backend.Matrix) {
	d, xt, m := b.tensor(dst), b.tensor(x), b.mat(w)
	checkShape("MatMul", xt.cols == m.cols && d.rows == xt.rows && d.cols == m.rows,
		"dst [%d, %d] = x [%d, %d] · %s", d.rows, d.cols, xt.rows, xt.cols, m.name)
	b.enter()
	defer b.leave()
	if !b.usable(d, xt) {
		return
	}
	b.matmul(d.ptr(), d.cols, xt.ptr(), xt.cols, xt.rows, m)
}

// HeadMatMul implements backend.Backend: one launch for all heads of
// dense weights at decode sizes (headsOnDevice), else one matmul launch
// per head on strided column ranges of x and dst (no copies).
func (b *Backend) HeadMatMul(dst, x backend.Tensor, w []backend.Matrix, dstStride, xStride int) {
	d, xt := b.tensor(dst), b.tensor(x)
	M := xt.rows
	checkShape("HeadMatMul", d.rows == M && len(w) > 0, "dst [%d, %d], x [%d, %d], %d heads", d.rows, d.cols, M, xt.cols, len(w))
	ms := make([]*matrix, len(w))
	for h, wm := range w {
		m := b.mat(wm)
		checkShape("HeadMatMul", h*xStride >= 0 && h*dstStride >= 0 && h*xStride+m.cols <= xt.cols && h*dstStride+m.rows <= d.cols,
			"head %d: %s with strides %d/%d on x [%d, %d], dst [%d, %d]", h, m.name, dstStride, xStride, M, xt.cols, d.rows, d.cols)
		ms[h] = m
	}
	b.enter()
	defer b.leave()
	if !b.usable(d, xt) {
		return
	}
	if b.headsOnDevice(d, xt, ms, dstStride, xStride) {
		return
	}
	for h, m := range ms {
		b.matmul(d.ptr()+uint64(4*h*dstStride), d.cols, xt.ptr()+uint64(4*h*xStride), xt.cols, M, m)
	}
}

// Embed implements backend.Backend.
func (b *Backend) Embed(dst backend.Tensor, table backend.Matrix, tokens []int32) {
	d, m := b.tensor(dst), b.mat(table)
	checkShape("Embed", d.rows == len(tokens) && d.cols == m.cols,
		"dst [%d, %d] for %d tokens of %s", d.rows, d.cols, len(tokens), m.name)
	for _, t := range tokens {
		checkShape("Embed", t >= 0 && int(t) < m.rows, "token %d outside the table's %d rows", t, m.rows)
	}
	b.enter()
	defer b.leave()
	if len(tokens) == 0 || !b.usable(d) {
		return
	}
	if !m.usable() {
		b.fail(fmt.Errorf("cuda: use of %s, whose upload failed", m.name))
		return
	}
	if m.tr != nil {
		b.fail(fmt.Errorf("cuda: %s: EXL3 embedding tables are not supported", m.name))
		return
	}
	if m.grp != nil && (m.grp.inter || m.grp.whole) {
		b.fail(fmt.Errorf("cuda: %s is part of a grouped matrix: not an embedding table", m.name))
		return
	}
	tok := b.stageInts(tokens)
	a := b.newArgs()
	a.desc(&m.desc)
	a.ptr(tok)
	a.ptr(d.ptr())
	a.i32(d.cols)
	b.launch(b.k.embed[m.f], len(tokens), 1, 256, 0, a)
}
