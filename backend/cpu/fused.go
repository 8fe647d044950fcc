package cpu

import (
	"sync"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/quant"
)

// The fused ops of backend.Backend (LoadMatrices, MatMulN, MatMulAdd,
// SwiGLU) are, on the CPU, the plain sequences of ops they stand for: the
// results are bit for bit those of MatMul, Add and SiLUMul in that order.
// (A matrix-vector product here streams its weight once whatever the
// fusion, so there is nothing to gain from one pass.)

// LoadMatrices implements backend.Backend: each weight is loaded on its
// own.
func (b *Backend) LoadMatrices(ws []*quant.Weight) ([]backend.Matrix, error) {
	ms := make([]backend.Matrix, len(ws))
	for i, w := range ws {
		m, err := b.LoadMatrix(w)
		if err != nil {
			return nil, err
		}
		ms[i] = m
	}
	return ms, nil
}

// MatMulN implements backend.Backend.
func (b *Backend) MatMulN(dst []backend.Tensor, x backend.Tensor, w []backend.Matrix) {
	checkShape("MatMulN", len(dst) == len(w), "%d outputs for %d weights", len(dst), len(w))
	for i := range w {
		b.MatMul(dst[i], x, w[i])
	}
}

// MatMulAdd implements backend.Backend: dst += x·wᵀ through a temporary.
func (b *Backend) MatMulAdd(dst, x backend.Tensor, w backend.Matrix) {
	d, xt := tensor(dst), tensor(x)
	checkShape("MatMulAdd", d.rows == xt.rows && d.cols == w.Rows() && !overlaps(d.data, xt.data),
		"dst [%d, %d] += x [%d, %d] · [%d, %d]ᵀ (dst must not alias x)", d.rows, d.cols, xt.rows, xt.cols, w.Rows(), w.Cols())
	t := getTemp(d.rows, d.cols)
	defer putTemp(t)
	b.MatMul(t, x, w)
	b.Add(dst, t)
}

// SwiGLU implements backend.Backend: gate into dst, up into a temporary,
// then SiLUMul.
func (b *Backend) SwiGLU(dst, x backend.Tensor, gate, up backend.Matrix) {
	d, xt := tensor(dst), tensor(x)
	checkShape("SwiGLU", gate.Rows() == up.Rows() && gate.Cols() == up.Cols() && !overlaps(d.data, xt.data),
		"dst [%d, %d], x [%d, %d], gate [%d, %d], up [%d, %d] (dst must not alias x)",
		d.rows, d.cols, xt.rows, xt.cols, gate.Rows(), gate.Cols(), up.Rows(), up.Cols())
	t := getTemp(d.rows, d.cols)
	defer putTemp(t)
	b.MatMul(dst, x, gate)
	b.MatMul(t, x, up)
	b.SiLUMul(dst, dst, t)
}

// overlaps reports whether two slices share memory.
func overlaps(a, b []float32) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, b0 := &a[0], &b[0]
	aEnd, bEnd := &a[len(a)-1], &b[len(b)-1]
	return uintptrOf(a0) <= uintptrOf(bEnd) && uintptrOf(b0) <= uintptrOf(aEnd)
}

func uintptrOf(p *float32) uintptr { return uintptr(unsafe.Pointer(p)) }

var temps sync.Pool // *Tensor

func getTemp(rows, cols int) *Tensor {
	n := rows * cols
	if t, ok := temps.Get().(*Tensor); ok && cap(t.data) >= n {
		t.rows, t.cols, t.data = rows, cols, t.data[:n]
		return t
	}
	return &Tensor{rows: rows, cols: cols, data: make([]float32, n)}
}

func putTemp(t *Tensor) { temps.Put(t) }
