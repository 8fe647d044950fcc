package cpu

import (
	"math"

	"github.com/marlin-llm/marlin/backend/cpu/vkernels"

	"github.com/marlin-llm/marlin/backend"
)

// AddBias implements backend.Backend.
func (b *Backend) AddBias(dst backend.Tensor, bias backend.Vector) {
	d, v := tensor(dst), vec(bias)
	checkShape("AddBias", d.cols == len(v), "bias of %d for [%d, %d]", len(v), d.rows, d.cols)
	for i := range d.rows {
		row := d.Row(i)
		for j, x := range v {
			row[j] += x
		}
	}
}

// Add implements backend.Backend.
func (b *Backend) Add(dst, x backend.Tensor) {
	d, s := tensor(dst), tensor(x)
	checkShape("Add", d.rows == s.rows && d.cols == s.cols, "[%d, %d] += [%d, %d]", d.rows, d.cols, s.rows, s.cols)
	for i, v := range s.data {
		d.data[i] += v
	}
}

// RMSNorm implements backend.Backend. The mean square is accumulated in
// float64, then the scale is applied in float32 as the reference does.
func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Vector, eps float32) {
	d, s, g := tensor(dst), tensor(x), vec(w)
	n := len(g)
	checkShape("RMSNorm", d.rows == s.rows && d.cols == s.cols && n > 0 && s.cols%n == 0,
		"dst [%d, %d], x [%d, %d], weight %d", d.rows, d.cols, s.rows, s.cols, n)
	b.parallel(len(s.data)/n, 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			vkernels.RMSNorm(d.data[c*n:(c+1)*n], s.data[c*n:(c+1)*n], g, eps)
		}
	})
}

// RoPE implements backend.Backend. Angles are formed in float32 (position
// times inverse frequency) and their cosine and sine taken in float64, as
// the reference computes its cos/sin tables in float32; the values are
// kept in a table per Rope and position so each is computed once.
func (b *Backend) RoPE(x backend.Tensor, heads, headDim, offset int, r *backend.Rope, pos []int32) {
	t := tensor(x)
	half := len(r.InvFreq)
	checkShape("RoPE", t.cols == heads*headDim && offset+2*half <= headDim && len(pos) == t.rows,
		"x [%d, %d], %d heads of %d, rotary dims [%d, %d), %d positions", t.rows, t.cols, heads, headDim, offset, offset+2*half, len(pos))
	tab := b.ropeTable(r, int(maxPosition("RoPE", pos))+1)
	b.parallel(t.rows, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			cos, sin := tab.at(pos[i])
			row := t.Row(i)
			for h := range heads {
				rotate(row[h*headDim+offset:h*headDim+offset+2*half], cos, sin, r.Interleaved)
			}
		}
	})
}

// maxPosition returns the largest of pos (0 when empty), panicking with
// op's name on a negative one.
func maxPosition(op string, pos []int32) int32 {
	m, err := backend.MaxPosition(pos)
	checkShape(op, err == nil, "%v", err)
	return m
}

// rotate applies the rotary rotation with the angles' cos and sin to the
// pairs of v (len(v) = 2·len(cos)): (j, j + half), or (2j, 2j + 1) when
// interleaved.
func rotate(v, cos, sin []float32, interleaved bool) {
	half := len(cos)
	for j := range half {
		ia, ib := j, j+half
		if interleaved {
			ia, ib = 2*j, 2*j+1
		}
		a, bb := v[ia], v[ib]
		v[ia] = a*cos[j] - bb*sin[j]
		v[ib] = bb*cos[j] + a*sin[j]
	}
}

// ropeTab holds cos and sin (times Rope.Scale) for positions [0, n):
// [position][pair].
type ropeTab struct {
	n        int
	cos, sin []float32
}

// at returns the cos and sin of position p.
func (t *ropeTab) at(p int32) (cos, sin []float32) {
	half := len(t.cos) / t.n
	return t.cos[int(p)*half:][:half], t.sin[int(p)*half:][:half]
}

// ropeTable returns r's table covering at least n positions.
func (b *Backend) ropeTable(r *backend.Rope, n int) *ropeTab {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ropes == nil {
		b.ropes = map[*backend.Rope]*ropeTab{}
	}
	tab := b.ropes[r]
	if tab != nil && tab.n >= n {
		return tab
	}
	size := max(n, 256)
	if tab != nil {
		size = max(size, 2*tab.n)
	}
	half := len(r.InvFreq)
	scale := r.Scale
	if scale == 0 {
		scale = 1
	}
	nt := &ropeTab{n: size, cos: make([]float32, size*half), sin: make([]float32, size*half)}
	for p := range size {
		for j, f := range r.InvFreq {
			a := float64(float32(p) * f)
			nt.cos[p*half+j] = float32(math.Cos(a)) * scale
			nt.sin[p*half+j] = float32(math.Sin(a)) * scale
		}
	}
	b.ropes[r] = nt
	return nt
}

// SiLUMul implements backend.Backend.
func (b *Backend) SiLUMul(dst, gate, up backend.Tensor) {
	d, g, u := tensor(dst), tensor(gate), tensor(up)
	checkShape("SiLUMul", d.rows == g.rows && d.cols == g.cols && u.rows == g.rows && u.cols == g.cols,
		"dst [%d, %d], gate [%d, %d], up [%d, %d]", d.rows, d.cols, g.rows, g.cols, u.rows, u.cols)
	b.parallel(len(d.data), 4096, func(lo, hi int) {
		vkernels.SiLUMul(d.data[lo:hi], g.data[lo:hi], u.data[lo:hi])
	})
}

// CopyRows implements backend.Backend.
func (b *Backend) CopyRows(dst, src backend.Tensor, rows []int32) {
	d, s := tensor(dst), tensor(src)
	checkShape("CopyRows", d.cols == s.cols && d.rows >= len(rows), "%d rows of [%d, %d] into [%d, %d]", len(rows), s.rows, s.cols, d.rows, d.cols)
	for i, r := range rows {
		copy(d.Row(i), s.Row(int(r)))
	}
}
