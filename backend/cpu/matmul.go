package cpu

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/backend/cpu/qkernels"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// matrix is a weight in its stored format. Dense weights keep typed views
// of the (usually memory-mapped) bytes; nothing is expanded to float32.
type matrix struct {
	w   *quant.Weight
	f32 []float32 // Dense F32
	u16 []uint16  // Dense F16 / BF16
}

func (m *matrix) Rows() int    { return m.w.Out }
func (m *matrix) Cols() int    { return m.w.In }
func (m *matrix) Bytes() int64 { return weightBytes(m.w) }

func weightBytes(w *quant.Weight) int64 {
	return int64(len(w.Data) + len(w.Scales) + len(w.Zeros) + 4*len(w.GIdx))
}

// LoadMatrix implements backend.Backend. Dense weights are used in place
// when their bytes are aligned for their element type (safetensors files
// written by the reference library are); otherwise they are copied once.
func (b *Backend) LoadMatrix(w *quant.Weight) (backend.Matrix, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	m := &matrix{w: w}
	if w.Format != quant.Dense {
		if !quantSupported(w) {
			return nil, fmt.Errorf("cpu: %s: format %s has no CPU kernel", w.Name, w.Format)
		}
		if !qkernels.Prepare(w) { // the kernels' working copy, made now rather than in the first forward pass
			b.holdMapped(w)
		}
		return m, nil
	}
	b.holdMapped(w)
	n := w.Out * w.In
	switch w.DType {
	case dtype.F32:
		m.f32 = unsafe.Slice((*float32)(aligned(w.Data, 4)), n)
	case dtype.F16, dtype.BF16:
		m.u16 = unsafe.Slice((*uint16)(aligned(w.Data, 2)), n)
	default:
		return nil, fmt.Errorf("cpu: %s: dense weights of type %s are not supported", w.Name, w.DType)
	}
	return m, nil
}

// holdMapped counts w's bytes in b.mapped while w lives, when they alias
// a file mapping.
func (b *Backend) holdMapped(w *quant.Weight) {
	if !w.Mapped {
		return
	}
	n := int64(len(w.Data) + len(w.Scales) + len(w.Zeros))
	b.mapped.Add(n)
	runtime.AddCleanup(w, func(n int64) { b.mapped.Add(-n) }, n)
}

// aligned returns a pointer to data's first byte, copying data to a fresh
// (8-byte aligned) allocation when it is not aligned to align bytes.
func aligned(data []byte, align uintptr) unsafe.Pointer {
	if len(data) == 0 {
		return unsafe.Pointer(&make([]uint64, 1)[0])
	}
	p := unsafe.Pointer(unsafe.SliceData(data))
	if uintptr(p)%align == 0 {
		return p
	}
	c := make([]uint64, (len(data)+7)/8)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&c[0])), len(data)), data)
	return unsafe.Pointer(&c[0])
}

func mat(w backend.Matrix) *matrix {
	m, ok := w.(*matrix)
	if !ok {
		panic(fmt.Sprintf("cpu: matrix of another backend (%T)", w))
	}
	return m
}

// MatMul implements backend.Backend: the output features are split into one
// contiguous range per worker, so each worker streams its own part of the
// weight once for all rows of x.
func (b *Backend) MatMul(dst, x backend.Tensor, w backend.Matrix) {
	d, xt, m := tensor(dst), tensor(x), mat(w)
	checkShape("MatMul", xt.cols == m.w.In && d.rows == xt.rows && d.cols == m.w.Out,
		"dst [%d, %d] = x [%d, %d] · %v", d.rows, d.cols, xt.rows, xt.cols, m.w)
	b.parallel(m.w.Out, 64, func(lo, hi int) { m.mul(d.data, xt.data, xt.rows, lo, hi) })
}

// mul computes output features [n0, n1) of dst = x·Wᵀ for M rows of x.
func (m *matrix) mul(dst, x []float32, M, n0, n1 int) {
	N, K := m.w.Out, m.w.In
	switch {
	case m.f32 != nil:
		kernels.MatMulF32(dst, N, x, M, K, m.f32, n0, n1)
	case m.u16 != nil && m.w.DType == dtype.F16:
		kernels.MatMulF16(dst, N, x, M, K, m.u16, n0, n1)
	case m.u16 != nil:
		kernels.MatMulBF16(dst, N, x, M, K, m.u16, n0, n1)
	default:
		quantMatMul(dst, N, x, M, m.w, n0, n1)
	}
}

// Embed implements backend.Backend.
func (b *Backend) Embed(dst backend.Tensor, table backend.Matrix, tokens []int32) {
	d, m := tensor(dst), mat(table)
	checkShape("Embed", d.rows == len(tokens) && d.cols == m.w.In,
		"dst [%d, %d] for %d tokens of %v", d.rows, d.cols, len(tokens), m.w)
	for i, t := range tokens {
		checkShape("Embed", t >= 0 && int(t) < m.w.Out, "token %d outside the table's %d rows", t, m.w.Out)
		row := d.Row(i)
		K := m.w.In
		switch {
		case m.f32 != nil:
			copy(row, m.f32[int(t)*K:(int(t)+1)*K])
		case m.u16 != nil && m.w.DType == dtype.F16:
			for k, h := range m.u16[int(t)*K : (int(t)+1)*K] {
				row[k] = dtype.F16ToF32(h)
			}
		case m.u16 != nil:
			for k, h := range m.u16[int(t)*K : (int(t)+1)*K] {
				row[k] = dtype.BF16ToF32(h)
			}
		default:
			qkernels.DequantizeRow(row, m.w, int(t))
		}
	}
}
