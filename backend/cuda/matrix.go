//go:build !nocuda

package cuda

import (
	"fmt"
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
	name       string // the weight's one-line description
	asym       bool   // packed int4 with stored zero points
	// device tables of the lists this matrix heads (moe_dispatch.go): a
	// layer's experts (it is the first gate) or a HeadMatMul's heads
	lists *listTables
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
	f, err := kernelFormat(w)
	if err != nil {
		return nil, err
	}
	if kind, _ := packable(w); kind != 0 {
		return b.loadPacked(w, kind)
	}
	b.enter()
	defer b.leave()
	m := &matrix{owner: b, f: f, rows: w.Out, cols: w.In, name: w.String()}
	up := func(p unsafe.Pointer, size int) uint64 {
		if err != nil || size == 0 {
			return 0
		}
		var buf *buffer
		buf, err = b.upload(p, int64(size))
		m.bufs = append(m.bufs, buf)
		m.bytes += int64(size)
		return buf.ptr
	}
	bytesOf := func(s []byte) (unsafe.Pointer, int) {
		if len(s) == 0 {
			return nil, 0
		}
		return unsafe.Pointer(&s[0]), len(s)
	}
	d := &m.desc
	d.n, d.k = int32(w.Out), int32(w.In)
	d.bits, d.group = int32(w.Bits), int32(w.Group)
	d.data = up(bytesOf(w.Data))
	d.scales = up(bytesOf(w.Scales))
	switch w.Format {
	case quant.GPTQ:
		d.zeros = up(bytesOf(w.Zeros))
		if len(w.GIdx) > 0 {
			d.gidx = up(unsafe.Pointer(&w.GIdx[0]), 4*len(w.GIdx))
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

// loadPacked uploads w in the packed 4-bit layout (pack.go): the
// repacking runs on the host, in parallel, once.
func (b *Backend) loadPacked(w *quant.Weight, kind int) (backend.Matrix, error) {
	p := packWeight(w, kind)
	b.enter()
	defer b.leave()
	f := fmtPInt4
	if kind == packKindFP4 {
		f = fmtPFP4
	}
	m := &matrix{owner: b, f: f, rows: w.Out, cols: w.In, name: w.String(), asym: p.zeros != nil}
	var err error
	up := func(data []byte) uint64 {
		if err != nil || len(data) == 0 {
			return 0
		}
		var buf *buffer
		buf, err = b.upload(unsafe.Pointer(&data[0]), int64(len(data)))
		m.bufs = append(m.bufs, buf)
		m.bytes += int64(len(data))
		return buf.ptr
	}
	d := &m.desc
	d.n, d.k, d.bits, d.group = int32(w.Out), int32(w.In), 4, int32(p.group)
	d.data = up(p.data)
	d.scales = up(p.scales)
	d.zeros = up(p.zeros)
	if p.perm != nil {
		d.gidx = up(unsafe.Slice((*byte)(unsafe.Pointer(&p.perm[0])), 4*len(p.perm)))
		m.bytes -= int64(4 * len(p.perm)) // read once per call, not per weight
	}
	if err != nil {
		return nil, fmt.Errorf("cuda: loading %s: %w", w.Name, err)
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
	if (m.f == fmtPInt4 || m.f == fmtPFP4) && m.desc.group%32 != 0 {
		return 0 // qmv4 scales whole steps of 32 inputs
	}
	switch m.f {
	case fmtPInt4:
		if m.asym {
			return b.k.qmvInt4Asym[i]
		}
		return b.k.qmvInt4[i]
	case fmtPFP4:
		return b.k.qmvFP4[i]
	case fmtF16:
		return b.k.dmvF16[i]
	case fmtBF16:
		return b.k.dmvBF16[i]
	}
	return 0
}

// matmul queues y[M, N] = x[M, K]·Wᵀ with row strides ldx and ldy (in
// floats): the tensor-core decode kernels for M ≤ 16 (packed 4-bit and
// 16-bit dense weights, 16-byte aligned rows of x), else the small-tile
// kernel for M ≤ 8 and the large-tile one above.
func (b *Backend) matmul(y uint64, ldy int, x uint64, ldx, M int, m *matrix) {
	if !m.usable() {
		b.fail(fmt.Errorf("cuda: use of %s, whose upload failed", m.name))
		return
	}
	if M >= gemmMinRows && b.gemmLarge(y, ldy, x, ldx, M, m) {
		return
	}
	if (m.f == fmtPInt4 || m.f == fmtPFP4) && m.desc.gidx != 0 {
		// act-order: the kernels read x in the packed input order
		xp := b.scratchBuf("xperm", 4*int64(M)*int64(m.cols))
		if xp == 0 {
			return
		}
		a := b.newArgs()
		a.ptr(xp)
		a.ptr(x)
		a.i32(ldx)
		a.ptr(m.desc.gidx)
		a.i32(m.cols)
		b.launch(b.k.permute, M, 1, 256, 0, a)
		x, ldx = xp, m.cols
	}
	if f := b.fastKernel(m, M); f != 0 && x%16 == 0 && ldx%4 == 0 {
		// stripe workers (qmm.cu): one wave of as many blocks as fit on
		// the multiprocessors at once, each warp at least 4 steps of 32
		// inputs
		ntiles := (m.rows + 63) / 64
		steps := ntiles * (m.cols / 32)
		blocks := max(1, min(b.residentBlocks(f)*b.sms, steps/(4*4)))
		if ntiles > counterCap {
			b.fail(fmt.Errorf("cuda: %s: %d column tiles exceed the kernel's %d counters", m.name, ntiles, counterCap))
			return
		}
		ws := b.scratchBuf("qws", 4*1024*int64(ntiles+4*blocks)) // slots tile + warp
		if ws == 0 {
			return
		}
		a := b.newArgs()
		a.desc(&m.desc)
		a.ptr(x)
		a.i32(ldx)
		a.ptr(y)
		a.i32(ldy)
		a.i32(M)
		a.ptr(ws)
		a.ptr(b.counters.ptr)
		b.launchOpt(f, blocks, 1, 1, 128, b.dynSmem[f], a, true)
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
	tok := b.stageInts(tokens)
	a := b.newArgs()
	a.desc(&m.desc)
	a.ptr(tok)
	a.ptr(d.ptr())
	a.i32(d.cols)
	b.launch(b.k.embed[m.f], len(tokens), 1, 256, 0, a)
}
