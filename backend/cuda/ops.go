//go:build linux && !nocuda

package cuda

import (
	"math"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
)

// AddBias implements backend.Backend.
func (b *Backend) AddBias(dst backend.Tensor, bias backend.Vector) {
	d, v := b.tensor(dst), b.vec(bias)
	checkShape("AddBias", d.cols == v.n, "bias of %d for [%d, %d]", v.n, d.rows, d.cols)
	b.enter()
	defer b.leave()
	if !b.usable(d) || !b.vecUsable(v) {
		return
	}
	a := b.newArgs()
	a.ptr(d.ptr())
	a.ptr(v.buf.ptr)
	a.i32(d.cols)
	a.u64(uint64(d.n()))
	b.launch(b.k.addBias, b.gridFor(d.n()), 1, 256, 0, a)
}

// Add implements backend.Backend.
func (b *Backend) Add(dst, x backend.Tensor) {
	d, s := b.tensor(dst), b.tensor(x)
	checkShape("Add", d.rows == s.rows && d.cols == s.cols, "[%d, %d] += [%d, %d]", d.rows, d.cols, s.rows, s.cols)
	b.enter()
	defer b.leave()
	if !b.usable(d, s) {
		return
	}
	a := b.newArgs()
	a.ptr(d.ptr())
	a.ptr(s.ptr())
	a.u64(uint64(d.n()))
	b.launch(b.k.add, b.gridFor(d.n()), 1, 256, 0, a)
}

// RMSNorm implements backend.Backend (float64 sum of squares, like the
// CPU's; see rms_norm in ops.cu).
func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Vector, eps float32) {
	d, s, g := b.tensor(dst), b.tensor(x), b.vec(w)
	n := g.n
	checkShape("RMSNorm", d.rows == s.rows && d.cols == s.cols && n > 0 && s.cols%n == 0,
		"dst [%d, %d], x [%d, %d], weight %d", d.rows, d.cols, s.rows, s.cols, n)
	b.enter()
	defer b.leave()
	if !b.usable(d, s) || !b.vecUsable(g) {
		return
	}
	b.rmsNorm(d.ptr(), s.ptr(), g, int(s.n()), eps)
}

// rmsNorm queues rms_norm of the count values at x (chunks of g.n) into
// dst.
func (b *Backend) rmsNorm(dst, x uint64, g *vector, count int, eps float32) {
	a := b.newArgs()
	a.ptr(dst)
	a.ptr(x)
	a.ptr(g.buf.ptr)
	a.i32(g.n)
	a.f32(eps)
	b.launchOpt(b.k.rmsNorm, count/g.n, 1, 1, threadsFor(g.n/4), 0, a, b.pdlOps)
}

// ropeTab is a Rope's cos/sin table on the device for positions [0, n):
// cos then sin, each [n][pairs], computed on the host exactly as the CPU
// backend computes its own (float32 angle, float64 cos/sin, times Scale).
type ropeTab struct {
	n   int
	buf *buffer
}

// ropeTable returns r's table covering at least n positions, growing it
// (doubling) when needed.
func (b *Backend) ropeTable(r *backend.Rope, n int) *ropeTab {
	tab := b.ropes[r]
	if tab != nil && tab.n >= n {
		return tab
	}
	size := max(n, 256)
	if tab != nil {
		size = max(size, 2*tab.n)
		b.drop(tab.buf)
		delete(b.ropes, r)
	}
	half := len(r.InvFreq)
	scale := r.Scale
	if scale == 0 {
		scale = 1
	}
	host := make([]float32, 2*size*half)
	cos, sin := host[:size*half], host[size*half:]
	for p := range size {
		for j, f := range r.InvFreq {
			a := float64(float32(p) * f)
			cos[p*half+j] = float32(math.Cos(a)) * scale
			sin[p*half+j] = float32(math.Sin(a)) * scale
		}
	}
	buf, err := b.allocRaw(4 * int64(len(host)))
	if err != nil {
		b.fail(err)
		return nil
	}
	if len(host) > 0 && !b.checkCall(call(b.d.cuMemcpyHtoDAsync, uintptr(buf.ptr), uintptr(unsafe.Pointer(&host[0])), uintptr(4*len(host)), b.stream), "cuMemcpyHtoDAsync") {
		b.drop(buf)
		return nil
	}
	nt := &ropeTab{n: size, buf: buf}
	b.ropes[r] = nt
	return nt
}

// maxPosition returns the largest of the positions pos (0 for none); a
// negative one is a programming error of the caller of op.
func maxPosition(op string, pos []int32) int32 {
	m, err := backend.MaxPosition(pos)
	checkShape(op, err == nil, "%v", err)
	return m
}

// RoPE implements backend.Backend.
func (b *Backend) RoPE(x backend.Tensor, heads, headDim, offset int, r *backend.Rope, pos []int32) {
	t := b.tensor(x)
	half := len(r.InvFreq)
	checkShape("RoPE", t.cols == heads*headDim && offset >= 0 && offset+2*half <= headDim && len(pos) == t.rows,
		"x [%d, %d], %d heads of %d, rotary dims [%d, %d), %d positions", t.rows, t.cols, heads, headDim, offset, offset+2*half, len(pos))
	maxPos := maxPosition("RoPE", pos)
	b.enter()
	defer b.leave()
	if half == 0 || t.rows == 0 || !b.usable(t) {
		return
	}
	tab := b.ropeTable(r, int(maxPos)+1)
	if tab == nil {
		return
	}
	pp := b.stageInts(pos)
	inter := 0
	if r.Interleaved {
		inter = 1
	}
	a := b.newArgs()
	a.ptr(t.ptr())
	a.i32(t.cols)
	a.ptr(pp)
	a.ptr(tab.buf.ptr)
	a.ptr(tab.buf.ptr + uint64(4*tab.n*half))
	a.i32(half)
	a.i32(heads)
	a.i32(headDim)
	a.i32(offset)
	a.i32(inter)
	b.launch(b.k.rope, t.rows, 1, threadsFor(heads*half), 0, a)
}

// SiLUMul implements backend.Backend.
func (b *Backend) SiLUMul(dst, gate, up backend.Tensor) {
	d, g, u := b.tensor(dst), b.tensor(gate), b.tensor(up)
	checkShape("SiLUMul", d.rows == g.rows && d.cols == g.cols && u.rows == g.rows && u.cols == g.cols,
		"dst [%d, %d], gate [%d, %d], up [%d, %d]", d.rows, d.cols, g.rows, g.cols, u.rows, u.cols)
	b.enter()
	defer b.leave()
	if !b.usable(d, g, u) {
		return
	}
	b.siluMul(d.ptr(), g.ptr(), u.ptr(), d.n())
}

func (b *Backend) siluMul(d, g, u uint64, n int64) {
	a := b.newArgs()
	a.ptr(d)
	a.ptr(g)
	a.ptr(u)
	a.u64(uint64(n))
	b.launch(b.k.siluMul, b.gridFor(n), 1, 256, 0, a)
}

// CopyRows implements backend.Backend.
func (b *Backend) CopyRows(dst, src backend.Tensor, rows []int32) {
	d, s := b.tensor(dst), b.tensor(src)
	checkShape("CopyRows", d.cols == s.cols && d.rows >= len(rows), "%d rows of [%d, %d] into [%d, %d]", len(rows), s.rows, s.cols, d.rows, d.cols)
	for _, r := range rows {
		checkShape("CopyRows", r >= 0 && int(r) < s.rows, "row %d of %d", r, s.rows)
	}
	b.enter()
	defer b.leave()
	if len(rows) == 0 || d.cols == 0 || !b.usable(d, s) {
		return
	}
	rp := b.stageInts(rows)
	a := b.newArgs()
	a.ptr(d.ptr())
	a.ptr(s.ptr())
	a.ptr(rp)
	a.i32(d.cols)
	b.launch(b.k.copyRows, len(rows), 1, 256, 0, a)
}

// CopyCols implements backend.Backend.
func (b *Backend) CopyCols(dst, src backend.Tensor, heads, n, dstStride, dstOff, srcStride, srcOff int) {
	d, s := b.tensor(dst), b.tensor(src)
	last := heads - 1
	checkShape("CopyCols", d.rows == s.rows && heads > 0 && n >= 0 && dstOff >= 0 && srcOff >= 0 && dstStride >= 0 && srcStride >= 0 &&
		last*dstStride+dstOff+n <= d.cols && last*srcStride+srcOff+n <= s.cols,
		"%d heads of %d from [%d, %d] (stride %d, offset %d) to [%d, %d] (stride %d, offset %d)",
		heads, n, s.rows, s.cols, srcStride, srcOff, d.rows, d.cols, dstStride, dstOff)
	b.enter()
	defer b.leave()
	if n == 0 || !b.usable(d, s) {
		return
	}
	a := b.newArgs()
	a.ptr(d.ptr())
	a.i32(d.cols)
	a.ptr(s.ptr())
	a.i32(s.cols)
	a.i32(heads)
	a.i32(n)
	a.i32(dstStride)
	a.i32(dstOff)
	a.i32(srcStride)
	a.i32(srcOff)
	b.launch(b.k.copyCols, d.rows, 1, 256, 0, a)
}

// threadsFor returns a block size for about n independent items: a
// multiple of 32 from 32 to 1024 (small decode-time ops then finish in one
// pass instead of looping on a few threads).
func threadsFor(n int) int {
	return min(1024, max(32, (n+31)/32*32))
}
