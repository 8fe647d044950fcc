//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"strings"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/quant"
)

// Weights that share an input (q, k, v; gate, up) are stored as one matrix
// so that their products are one launch of the decode kernels, whose
// epilogue (YOut in qmm.cu) sends each column where it belongs: q, k and v
// to their tensors, gate and up through SwiGLU; o and down add to the
// residual stream in the same pass (MatMulAdd). A decode step of the
// Llama-3-8B shape then has 4 matrix launches a layer instead of 7, and
// neither SiLUMul nor the two Adds.

// LoadMatrices implements backend.Backend. Two weights of one shape have
// their rows interleaved (a SwiGLU pair); more, or two of different
// shapes, are stacked when every part but the last has a multiple of 64
// rows (a whole number of the packed layout's column tiles, so that each
// part is a view of its rows). Both need the packed 4-bit layout (the same
// kind and group, no act-order), dense fp16/bf16 of one type, or FP8 for
// all; or 8-bit GPTQ (gptq8Group: interleaved or stacked in the stored
// layout, where a stacked part is no view: used alone it runs the whole
// group, outFor); otherwise each weight is loaded on its own.
func (b *Backend) LoadMatrices(ws []*quant.Weight) ([]backend.Matrix, error) {
	if !groupable(ws) {
		return backend.LoadEach(b.LoadMatrix, ws)
	}
	ms := make([]backend.Matrix, len(ws))
	w0 := ws[0]
	g := &group{inter: len(ws) == 2 && ws[0].Out == ws[1].Out}
	N := 0
	for _, w := range ws {
		g.off = append(g.off, N)
		N += w.Out
	}
	src := func(r int) (int, int) {
		if g.inter {
			return r & 1, r >> 1
		}
		i := len(g.off) - 1
		for g.off[i] > r {
			i--
		}
		return i, r - g.off[i]
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Name
	}
	name := fmt.Sprintf("%s [%d, %d]", strings.Join(names, "+"), N, w0.In)
	var err error
	if kind, _ := packable(w0); kind != 0 {
		g.all, err = b.uploadPacked(packRows(ws, N, src, kind), name)
	} else if gptq8Group(ws) {
		var cw *quant.Weight
		if g.inter {
			cw = gptq8Interleave(ws[0], ws[1], name)
		} else {
			cw, g.whole = gptq8Stack(ws, name), true
		}
		var m backend.Matrix
		if m, err = b.LoadMatrix(cw); err == nil {
			g.all = m.(*matrix)
		}
	} else {
		// dense fp16/bf16 or FP8 (codes, then one float32 scale a row):
		// the rows in their order, uploaded as one weight
		es := w0.DType.Size()
		cw := &quant.Weight{Name: name, Format: quant.Dense, DType: w0.DType, Out: N, In: w0.In, Data: make([]byte, N*w0.In*es)}
		if w0.Format == quant.FP8 {
			es = 1
			cw = &quant.Weight{Name: name, Format: quant.FP8, Bits: w0.Bits, Group: w0.Group, Out: N, In: w0.In,
				Data: make([]byte, N*w0.In), Scales: make([]byte, 4*N)}
		}
		row := w0.In * es
		for r := range N {
			i, n := src(r)
			copy(cw.Data[r*row:(r+1)*row], ws[i].Data[n*row:(n+1)*row])
			if cw.Scales != nil {
				copy(cw.Scales[4*r:4*r+4], ws[i].Scales[4*n:4*n+4])
			}
		}
		var m backend.Matrix
		if m, err = b.LoadMatrix(cw); err == nil {
			g.all = m.(*matrix)
		}
	}
	if err != nil {
		return nil, err
	}
	all := g.all
	for i, w := range ws {
		p := &matrix{owner: b, f: all.f, desc: all.desc, bufs: all.bufs, rows: w.Out, cols: w.In, name: w.String(),
			asym: all.asym, grp: g, part: i, rounding: all.rounding}
		p.desc.n = int32(w.Out)
		if g.inter {
			p.bytes = all.bytes / 2
		} else if g.whole {
			p.bytes = all.bytes // (alone it reads the whole group)
		} else if all.f == fmtPInt4 || all.f == fmtPFP4 {
			// whole column tiles: data, scales (and zero points) of tiles
			// off/64 onwards
			t0, nt := uint64(g.off[i]/64), uint64((w.Out+63)/64)
			steps, groups := uint64(w.In/16), uint64(w.In/int(all.desc.group))
			p.desc.data += t0 * steps * packStepBytes
			p.desc.scales += t0 * groups * packScaleBytes
			p.bytes = int64(nt * (steps*packStepBytes + groups*packScaleBytes))
			if all.desc.zeros != 0 {
				p.desc.zeros += t0 * groups * packZeroBytes
				p.bytes += int64(nt * groups * packZeroBytes)
			}
		} else if all.f == fmtFP8 {
			// whole column tiles of the tiled layout (pack.go) and the
			// parts' scales
			t0, nt, S := uint64(g.off[i]/64), uint64((w.Out+63)/64), uint64((w.In+31)/32)
			p.desc.data += t0 * S * fp8StepBytes
			p.desc.scales += 4 * uint64(g.off[i])
			p.bytes = int64(nt*S*fp8StepBytes) + 4*int64(w.Out)
		} else {
			es := uint64(w.DType.Size())
			p.desc.data += uint64(g.off[i]) * uint64(w.In) * es
			p.bytes = int64(w.Out) * int64(w.In) * int64(es)
		}
		g.parts = append(g.parts, p)
		ms[i] = p
	}
	return ms, nil
}

// noAlias panics when dst and x share an allocation.
func noAlias(op string, d, x *tensor) {
	checkShape(op, d.buf != x.buf || d.buf.ptr == 0, "the output shares memory with the input")
}

// MatMulN implements backend.Backend: one launch when w are all the parts
// of one LoadMatrices group, in order, or one matrix (which then applies
// the norm itself where it can, normInput).
func (b *Backend) MatMulN(dst []backend.Tensor, x backend.Tensor, w []backend.Matrix, norm *backend.Norm) {
	checkShape("MatMulN", len(dst) == len(w), "%d outputs for %d weights", len(dst), len(w))
	xt := b.tensor(x)
	ds, ms := make([]*tensor, len(w)), make([]*matrix, len(w))
	whole := len(w) > 0
	for i := range w {
		ds[i], ms[i] = b.tensor(dst[i]), b.mat(w[i])
		checkShape("MatMulN", xt.cols == ms[i].cols && ds[i].rows == xt.rows && ds[i].cols == ms[i].rows,
			"dst [%d, %d] = x [%d, %d] · %s", ds[i].rows, ds[i].cols, xt.rows, xt.cols, ms[i].name)
		noAlias("MatMulN", ds[i], xt)
		whole = whole && ms[i].grp != nil && ms[i].grp == ms[0].grp && ms[i].part == i
	}
	whole = whole && len(w) == len(ms[0].grp.parts)
	b.enter()
	defer b.leave()
	if !b.usable(append(ds, xt)...) {
		return
	}
	xp, nrm := xt.ptr(), (*normIn)(nil)
	if norm != nil && !whole && len(ms) == 1 { // one matrix: its kernel may apply the norm
		mm, o := b.outFor(ms[0], ds[0].ptr(), ds[0].cols, xt.rows)
		if xp, nrm = b.normInput(xt, norm, mm); xp != 0 {
			b.matmulOut(&o, xp, xt.cols, xt.rows, mm, nrm)
		}
		return
	}
	if norm != nil {
		var one *matrix // the matrix of the one launch, if one
		if whole {
			one = ms[0].grp.all
		}
		if xp, nrm = b.normInput(xt, norm, one); xp == 0 {
			return
		}
	}
	if !whole {
		for i, m := range ms {
			b.matmul(ds[i].ptr(), ds[i].cols, xp, xt.cols, xt.rows, m)
		}
		return
	}
	var ys [3]uint64
	var lds [3]int32
	for i, d := range ds {
		ys[i], lds[i] = d.ptr(), int32(d.cols)
	}
	o := ms[0].grp.out(ys[:len(ds)], lds[:len(ds)])
	b.matmulOut(&o, xp, xt.cols, xt.rows, ms[0].grp.all, nrm)
}

// MatMulAdd implements backend.Backend: the product is added to dst by the
// kernel that computes it.
func (b *Backend) MatMulAdd(dst, x backend.Tensor, w backend.Matrix) {
	d, xt, m := b.tensor(dst), b.tensor(x), b.mat(w)
	checkShape("MatMulAdd", xt.cols == m.cols && d.rows == xt.rows && d.cols == m.rows,
		"dst [%d, %d] += x [%d, %d] · %s", d.rows, d.cols, xt.rows, xt.cols, m.name)
	noAlias("MatMulAdd", d, xt)
	b.enter()
	defer b.leave()
	if !b.usable(d, xt) {
		return
	}
	mm, o := b.outFor(m, d.ptr(), d.cols, xt.rows)
	o.accum = 1
	b.matmulOut(&o, xt.ptr(), xt.cols, xt.rows, mm, nil)
}

// SwiGLU implements backend.Backend: one launch with the SwiGLU epilogue
// (and the norm, normInput) when gate and up are an interleaved
// LoadMatrices pair, else two products and silu_mul.
func (b *Backend) SwiGLU(dst, x backend.Tensor, gate, up backend.Matrix, norm *backend.Norm) {
	d, xt, gm, um := b.tensor(dst), b.tensor(x), b.mat(gate), b.mat(up)
	checkShape("SwiGLU", gm.rows == um.rows && gm.cols == um.cols && xt.cols == gm.cols && d.rows == xt.rows && d.cols == gm.rows,
		"dst [%d, %d] = SwiGLU(x [%d, %d]; %s, %s)", d.rows, d.cols, xt.rows, xt.cols, gm.name, um.name)
	noAlias("SwiGLU", d, xt)
	b.enter()
	defer b.leave()
	if !b.usable(d, xt) {
		return
	}
	M := xt.rows
	g := gm.grp
	paired := g != nil && g == um.grp && g.inter && gm.part == 0 && um.part == 1
	xp, nrm := xt.ptr(), (*normIn)(nil)
	if norm != nil {
		var one *matrix
		if paired {
			one = g.all
		}
		if xp, nrm = b.normInput(xt, norm, one); xp == 0 {
			return
		}
	}
	if paired {
		o := yout{mode: youtSwiGLU, y0: d.ptr(), ld0: int32(d.cols)}
		b.matmulOut(&o, xp, xt.cols, M, g.all, nrm)
		return
	}
	u := b.scratchBuf("swiglu", 4*int64(M)*int64(um.rows))
	if u == 0 {
		return
	}
	b.matmul(d.ptr(), d.cols, xp, xt.cols, M, gm)
	b.matmul(u, um.rows, xp, xt.cols, M, um)
	b.siluMul(d.ptr(), d.ptr(), u, d.n())
}
