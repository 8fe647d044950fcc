package cpu

import (
	"fmt"
	"math"
	"sort"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/vkernels"
)

// selection holds each row's chosen experts and weights, row-major [rows, k].
type selection struct {
	rows, k int
	ids     []int32
	weights []float32
}

func (s *selection) Rows() int { return s.rows }

// NewSelection implements backend.Backend.
func (b *Backend) NewSelection(rows, topK int) backend.Selection {
	return &selection{rows: rows, k: topK, ids: make([]int32, rows*topK), weights: make([]float32, rows*topK)}
}

// SelectionOf returns the experts a selection of this backend holds and
// their weights, row-major [rows, k] (the backend's own slices: the
// reference for other backends' tests).
func SelectionOf(s backend.Selection) (ids []int32, weights []float32) {
	c := sel(s)
	return c.ids, c.weights
}

func sel(s backend.Selection) *selection {
	c, ok := s.(*selection)
	if !ok {
		panic(fmt.Sprintf("cpu: selection of another backend (%T)", s))
	}
	return c
}

// Route implements backend.Backend, in float32 as transformers' routers do
// (the softmax's sum in float64); the norm is RMSNorm's.
func (b *Backend) Route(s backend.Selection, xn, x backend.Tensor, norm *backend.Norm, router backend.Matrix, r *backend.Router) {
	if norm != nil {
		b.RMSNorm(xn, x, norm.W, norm.Eps)
		x = xn
	}
	sl, xt := sel(s), tensor(x)
	lg := getTemp(xt.rows, router.Rows()) // the logits
	defer putTemp(lg)
	b.MatMul(lg, x, router)
	E := lg.cols
	if err := r.Check(sl.rows, sl.k, lg.rows, E); err != nil {
		checkShape("Route", false, "%v", err)
	}
	groups := max(r.Groups, 1)
	var bias vector
	if r.Bias != nil {
		bias = vec(r.Bias)
		checkShape("Route", len(bias) == E, "bias of %d for %d experts", len(bias), E)
	}
	scale := r.Scale
	if scale == 0 {
		scale = 1
	}
	p := make([]float32, E)
	rank := make([]float32, E)
	order := make([]int, E)
	for i := range lg.rows {
		row := lg.Row(i)
		if r.Sigmoid {
			for e, v := range row {
				p[e] = float32(1 / (1 + math.Exp(-float64(v))))
				rank[e] = p[e]
				if bias != nil {
					rank[e] += bias[e]
				}
			}
		} else {
			m := float32(math.Inf(-1))
			for _, v := range row {
				m = max(m, v)
			}
			var sum float64
			for e, v := range row {
				x := math.Exp(float64(v - m))
				p[e] = float32(x)
				sum += x
			}
			for e := range p {
				p[e] = float32(float64(p[e]) / sum)
				rank[e] = p[e]
			}
		}
		if groups > 1 {
			maskGroups(rank, groups, r.TopKGroups, r.GroupMaskZero)
		}
		for e := range order {
			order[e] = e
		}
		sort.SliceStable(order, func(a, b int) bool { return rank[order[a]] > rank[order[b]] })
		ids, w := sl.ids[i*sl.k:(i+1)*sl.k], sl.weights[i*sl.k:(i+1)*sl.k]
		var sum float32
		for j := range sl.k {
			ids[j] = int32(order[j])
			w[j] = p[order[j]]
			sum += w[j]
		}
		for j := range w {
			if r.Normalize {
				w[j] /= sum + 1e-20
			}
			w[j] *= scale
		}
	}
}

// maskGroups sets to −Inf (or 0) the ranks of every expert outside the
// topGroups groups whose two best ranks sum highest (DeepSeek-V3's
// group-limited routing).
func maskGroups(rank []float32, groups, topGroups int, zero bool) {
	masked := float32(math.Inf(-1))
	if zero {
		masked = 0
	}
	per := len(rank) / groups
	score := make([]float32, groups)
	for g := range groups {
		a, b := float32(math.Inf(-1)), float32(math.Inf(-1))
		for _, v := range rank[g*per : (g+1)*per] {
			if v > a {
				a, b = v, a
			} else if v > b {
				b = v
			}
		}
		if per == 1 {
			b = 0
		}
		score[g] = a + b
	}
	idx := make([]int, groups)
	for g := range idx {
		idx[g] = g
	}
	sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] > score[idx[b]] })
	for _, g := range idx[topGroups:] {
		for e := g * per; e < (g+1)*per; e++ {
			rank[e] = masked
		}
	}
}

// ExpertsAdd implements backend.Backend: the rows routed to each expert
// are gathered into one small batch, run through that expert's three
// matrices (each matmul parallel over the output features) and summed,
// scaled by their routing weights, in expert order into a scratch y; the
// shared expert's output (SwiGLU, then its down product) is added to y,
// and y to dst.
func (b *Backend) ExpertsAdd(dst, x backend.Tensor, s backend.Selection, experts []backend.Expert, shared *backend.Expert) {
	b.ExpertsAddVia(b, dst, x, s, experts, shared)
}

// ExpertsAddVia is ExpertsAdd with its gathers, products, activations and
// final Add issued through ops, a backend that wraps this one (quantize's
// calibration backend, which then sees every expert's products and their
// inputs); the weighted sums over the experts are computed here.
func (b *Backend) ExpertsAddVia(ops backend.Backend, dst, x backend.Tensor, s backend.Selection, experts []backend.Expert, shared *backend.Expert) {
	d, xt, sl := tensor(dst), tensor(x), sel(s)
	checkShape("ExpertsAdd", d.rows == xt.rows && d.cols == xt.cols && sl.rows >= xt.rows,
		"dst [%d, %d], x [%d, %d], selection of %d rows", d.rows, d.cols, xt.rows, xt.cols, sl.rows)
	M, H := xt.rows, xt.cols
	rowsOf := make([][]int32, len(experts)) // expert → (row·k + slot)
	for i := range M * sl.k {
		e := sl.ids[i]
		checkShape("ExpertsAdd", e >= 0 && int(e) < len(experts), "expert %d of %d", e, len(experts))
		rowsOf[e] = append(rowsOf[e], int32(i))
	}
	y := &Tensor{rows: M, cols: H, data: make([]float32, M*H)}
	for e, slots := range rowsOf {
		if len(slots) == 0 {
			continue
		}
		ex := experts[e]
		n, I := len(slots), ex.Gate.Rows()
		rows := make([]int32, n)
		for j, slot := range slots {
			rows[j] = slot / int32(sl.k)
		}
		in := &Tensor{rows: n, cols: H, data: make([]float32, n*H)}
		gate := &Tensor{rows: n, cols: I, data: make([]float32, n*I)}
		up := &Tensor{rows: n, cols: I, data: make([]float32, n*I)}
		out := &Tensor{rows: n, cols: H, data: make([]float32, n*H)}
		ops.CopyRows(in, x, rows)
		ops.MatMul(gate, in, ex.Gate)
		ops.MatMul(up, in, ex.Up)
		ops.SiLUMul(gate, gate, up)
		ops.MatMul(out, gate, ex.Down)
		for j, slot := range slots {
			w := sl.weights[slot]
			yr, or := y.Row(int(rows[j])), out.Row(j)
			for c, v := range or {
				yr[c] += w * v
			}
		}
	}
	if shared != nil {
		I := shared.Gate.Rows()
		a := &Tensor{rows: M, cols: I, data: make([]float32, M*I)}
		ops.SwiGLU(a, x, shared.Gate, shared.Up, nil)
		ops.MatMulAdd(y, a, shared.Down)
	}
	ops.Add(dst, y)
}

// MLAPrologue implements backend.Backend, one pass over the rows: the
// latent's RMSNorm and the rotations are RMSNorm's and RoPE's own code,
// so the results equal those ops applied one after the other.
func (b *Backend) MLAPrologue(key, qf, kva, q backend.Tensor, norm backend.Vector, eps float32, heads, nope int, r *backend.Rope, pos []int32) {
	kt, qft, kv, qt, g := tensor(key), tensor(qf), tensor(kva), tensor(q), vec(norm)
	lora, half := len(g), len(r.InvFreq)
	rp, M := kv.cols-lora, kv.rows
	checkShape("MLAPrologue", lora > 0 && rp >= 2*half && heads > 0 && nope >= 0 && len(pos) == M &&
		kt.rows == M && kt.cols == lora+rp && qt.rows == M && qt.cols == heads*(nope+rp) &&
		qft.rows == M && qft.cols == heads*(lora+rp),
		"key [%d, %d], qf [%d, %d], kva [%d, %d], q [%d, %d], norm %d, %d heads, nope %d, %d rotary pairs, %d positions",
		kt.rows, kt.cols, qft.rows, qft.cols, kv.rows, kv.cols, qt.rows, qt.cols, lora, heads, nope, half, len(pos))
	tab := b.ropeTable(r, int(maxPosition("MLAPrologue", pos))+1)
	b.parallel(M, 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			cos, sin := tab.at(pos[i])
			kr, kvr := kt.Row(i), kv.Row(i)
			vkernels.RMSNorm(kr[:lora], kvr[:lora], g, eps)
			copy(kr[lora:], kvr[lora:])
			rotate(kr[lora:lora+2*half], cos, sin, r.Interleaved)
			qr, qfr := qt.Row(i), qft.Row(i)
			for h := range heads {
				d := qfr[h*(lora+rp)+lora : (h+1)*(lora+rp)]
				copy(d, qr[h*(nope+rp)+nope:(h+1)*(nope+rp)])
				rotate(d[:2*half], cos, sin, r.Interleaved)
			}
		}
	})
}

// HeadMatMul implements backend.Backend.
func (b *Backend) HeadMatMul(dst, x backend.Tensor, w []backend.Matrix, dstStride, xStride int) {
	d, xt := tensor(dst), tensor(x)
	M := xt.rows
	checkShape("HeadMatMul", d.rows == M && len(w) > 0, "dst [%d, %d], x [%d, %d], %d heads", d.rows, d.cols, M, xt.cols, len(w))
	for h, wm := range w {
		m := mat(wm)
		checkShape("HeadMatMul", h*xStride+m.w.In <= xt.cols && h*dstStride+m.w.Out <= d.cols,
			"head %d: %v with strides %d/%d on x [%d, %d], dst [%d, %d]", h, m.w, dstStride, xStride, M, xt.cols, d.rows, d.cols)
	}
	in := make([]float32, M*w[0].Cols())
	out := make([]float32, M*w[0].Rows())
	for h, wm := range w {
		m := mat(wm)
		K, N := m.w.In, m.w.Out
		in, out = in[:M*K], out[:M*N]
		for i := range M {
			copy(in[i*K:(i+1)*K], xt.Row(i)[h*xStride:h*xStride+K])
		}
		b.parallel(N, 16, func(lo, hi int) { m.mul(out, in, M, lo, hi) })
		for i := range M {
			copy(d.Row(i)[h*dstStride:h*dstStride+N], out[i*N:(i+1)*N])
		}
	}
}

// CopyCols implements backend.Backend.
func (b *Backend) CopyCols(dst, src backend.Tensor, heads, n, dstStride, dstOff, srcStride, srcOff int) {
	d, s := tensor(dst), tensor(src)
	last := heads - 1
	checkShape("CopyCols", d.rows == s.rows && heads > 0 && n >= 0 &&
		last*dstStride+dstOff+n <= d.cols && last*srcStride+srcOff+n <= s.cols,
		"%d heads of %d from [%d, %d] (stride %d, offset %d) to [%d, %d] (stride %d, offset %d)",
		heads, n, s.rows, s.cols, srcStride, srcOff, d.rows, d.cols, dstStride, dstOff)
	for i := range d.rows {
		dr, sr := d.Row(i), s.Row(i)
		for h := range heads {
			copy(dr[h*dstStride+dstOff:h*dstStride+dstOff+n], sr[h*srcStride+srcOff:h*srcStride+srcOff+n])
		}
	}
}
