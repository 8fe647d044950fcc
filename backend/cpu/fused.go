package cpu

import (
	"sync"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/vkernels"
	"github.com/marlin-llm/marlin/quant"
)

// The fused ops of backend.Backend (MatMulN, MatMulAdd, SwiGLU) run as one
// parallel op each: the workers take pieces of all the products' output
// features (matUnit of them at a time) and finish each piece before the
// next — SwiGLU applies silu(g)·u to a piece's gate and up columns while
// they are in cache, MatMulAdd adds a piece into the residual. Every output
// element is computed by the same kernel call over the same aligned column
// range as MatMul, then SiLUMul or Add, would compute it, so the results
// are bit for bit those of the plain sequence (TestFusedOpsMatchSequence).
// What fusing saves is the parallel ops themselves: a decode step of a
// small model is made of many short ones, each a hand-off to the helpers
// and a wait for the slowest piece.

// matUnit is the granularity of MatMul's pieces (output features).
const matUnit = 64

// LoadMatrices implements backend.Backend: each weight is loaded on its
// own.
func (b *Backend) LoadMatrices(ws []*quant.Weight) ([]backend.Matrix, error) {
	return backend.LoadEach(b.LoadMatrix, ws)
}

// normed returns x, or with norm not nil rmsnorm(x) in a temporary t
// (then returned too, for putTemp): the input of a product with a Norm.
func (b *Backend) normed(x *Tensor, norm *backend.Norm) (xn, t *Tensor) {
	if norm == nil {
		return x, nil
	}
	checkShape("norm", norm.W.Len() == x.cols, "weight %d for x [%d, %d]", norm.W.Len(), x.rows, x.cols)
	t = getTemp(x.rows, x.cols)
	b.RMSNorm(t, x, norm.W, norm.Eps)
	return t, t
}

// MatMulN implements backend.Backend: the products share one parallel op.
func (b *Backend) MatMulN(dst []backend.Tensor, x backend.Tensor, w []backend.Matrix, norm *backend.Norm) {
	checkShape("MatMulN", len(dst) == len(w), "%d outputs for %d weights", len(dst), len(w))
	xt, nt := b.normed(tensor(x), norm)
	if nt != nil {
		defer putTemp(nt)
	}
	ds, ms := make([]*Tensor, len(w)), make([]*matrix, len(w))
	units := make([]int, len(w)+1) // product i owns units [units[i], units[i+1])
	for i := range w {
		ds[i], ms[i] = tensor(dst[i]), mat(w[i])
		checkShape("MatMulN", xt.cols == ms[i].w.In && ds[i].rows == xt.rows && ds[i].cols == ms[i].w.Out,
			"dst[%d] [%d, %d] = x [%d, %d] · %v", i, ds[i].rows, ds[i].cols, xt.rows, xt.cols, ms[i].w)
		units[i+1] = units[i] + (ms[i].w.Out+matUnit-1)/matUnit
	}
	b.parallel(units[len(w)], 1, func(lo, hi int) {
		for i := range ms {
			u0, u1 := max(lo, units[i]), min(hi, units[i+1])
			if u0 < u1 {
				n0, n1 := (u0-units[i])*matUnit, min((u1-units[i])*matUnit, ms[i].w.Out)
				ms[i].mul(ds[i].data, xt.data, xt.rows, n0, n1)
			}
		}
	})
}

// MatMulAdd implements backend.Backend: each piece of x·wᵀ goes through
// its columns of a temporary into dst.
func (b *Backend) MatMulAdd(dst, x backend.Tensor, w backend.Matrix) {
	d, xt, m := tensor(dst), tensor(x), mat(w)
	checkShape("MatMulAdd", d.rows == xt.rows && d.cols == m.w.Out && xt.cols == m.w.In && !overlaps(d.data, xt.data),
		"dst [%d, %d] += x [%d, %d] · %v (dst must not alias x)", d.rows, d.cols, xt.rows, xt.cols, m.w)
	M, N := d.rows, d.cols
	t := getTemp(M, N) // each piece writes its own columns of it
	defer putTemp(t)
	b.parallel(N, matUnit, func(n0, n1 int) {
		m.mul(t.data, xt.data, M, n0, n1)
		for r := range M {
			row, add := d.data[r*N+n0:r*N+n1], t.data[r*N+n0:r*N+n1]
			for i, v := range add {
				row[i] += v
			}
		}
	})
}

// SwiGLU implements backend.Backend: each piece computes its gate columns
// into dst and its up columns into a temporary, then silu(g)·u in place.
func (b *Backend) SwiGLU(dst, x backend.Tensor, gate, up backend.Matrix, norm *backend.Norm) {
	d, xt, g, u := tensor(dst), tensor(x), mat(gate), mat(up)
	checkShape("SwiGLU", g.w.Out == u.w.Out && g.w.In == u.w.In && xt.cols == g.w.In && d.rows == xt.rows && d.cols == g.w.Out &&
		!overlaps(d.data, xt.data),
		"dst [%d, %d], x [%d, %d], gate %v, up %v (dst must not alias x)", d.rows, d.cols, xt.rows, xt.cols, g.w, u.w)
	xt, nt := b.normed(xt, norm)
	if nt != nil {
		defer putTemp(nt)
	}
	M, N := d.rows, d.cols
	t := getTemp(M, N) // the up products; each piece writes its own columns
	defer putTemp(t)
	b.parallel(N, matUnit, func(n0, n1 int) {
		g.mul(d.data, xt.data, M, n0, n1)
		u.mul(t.data, xt.data, M, n0, n1)
		for r := range M {
			row := d.data[r*N+n0 : r*N+n1]
			vkernels.SiLUMul(row, row, t.data[r*N+n0:r*N+n1])
		}
	})
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
