//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// TestFusedOps checks LoadMatrices, MatMulN, MatMulAdd and SwiGLU against
// the float64 products of the reference dequantization, on random data
// with every output poisoned first: stacked groups (q, k, v shapes, the
// last part not a multiple of 64 rows, and a split-K-heavy one with K =
// 4096 and few column tiles), interleaved pairs (gate, up, rows not a
// multiple of 64), in the packed 4-bit, dense and tiled FP8 layouts, 8-bit
// GPTQ grouped in its stored layout (a stacked part used alone runs the
// whole group), and weights that cannot be grouped (act-order: each
// loaded alone), at decode sizes (the fused epilogues of the tensor-core
// kernels) and M = 64 (a plain product, then yout_apply). Each part is
// also multiplied alone (views; an interleaved part runs its pair).
// Tolerances: matmulTol of the part relative to Σ|x·w| (plus |h| for
// MatMulAdd); SwiGLU propagates the products' bounds through silu(g)·u.
func TestFusedOps(t *testing.T) {
	g := gpu(t)
	rng := rand.New(rand.NewPCG(31, 32))
	type mk = func(rng *rand.Rand, n, k int) *quant.Weight
	formats := []struct {
		name string
		make mk
	}{
		{"int4-g128", gptqWeight(4, 128, false, false, 1)},
		{"int4-g128-asym", gptqWeight(4, 128, true, false, 0)},
		{"fp4-g32", fp4Weight(32)},
		{"bf16", denseWeight(dtype.BF16)},
		{"f16", denseWeight(dtype.F16)},
		{"int4-actorder", gptqWeight(4, 128, true, true, 0)},
		{"int8-g128", gptqWeight(8, 128, false, false, 1)},
		{"fp8", fp8Weight},
		{"nvfp4", nvfp4Weight},
	}
	shapes := []struct {
		name string
		outs []int
		k    int
	}{
		{"qkv", []int{256, 64, 100}, 512},
		{"qkv-splitk", []int{128, 64, 64}, 4096},
		{"pair", []int{200, 200}, 1024},
		{"pair-splitk", []int{64, 64}, 4096},
	}
	for _, f := range formats {
		for _, sh := range shapes {
			ws := make([]*quant.Weight, len(sh.outs))
			for i, n := range sh.outs {
				ws[i] = f.make(rng, n, sh.k)
				if f.name == "int4-g128-asym" && i == 1 {
					ws[i] = gptqWeight(4, 128, false, false, 1)(rng, n, sh.k) // a symmetric part in an asymmetric group
				}
			}
			ms, err := g.LoadMatrices(ws)
			if err != nil {
				t.Fatal(err)
			}
			grouped := ms[0].(*matrix).grp != nil
			for _, M := range []int{1, 3, 16, 64} {
				what := fmt.Sprintf("%s %s K%d M%d (grouped %v)", f.name, sh.name, sh.k, M, grouped)
				testFusedCase(t, g, rng, what, ws, ms, M)
			}
		}
	}
}

func testFusedCase(t *testing.T, g *Backend, rng *rand.Rand, what string, ws []*quant.Weight, ms []backend.Matrix, M int) {
	K := ws[0].In
	xv := randn(rng, M*K, 1)
	x := g.NewTensor(M, K)
	g.Write(x, xv)
	want := make([][]float32, len(ws))
	scale := make([][]float64, len(ws))
	for i, w := range ws {
		want[i], scale[i] = exactMatMul(w, xv, M), absDot(w, xv, M)
	}
	outs := func() []backend.Tensor {
		ys := make([]backend.Tensor, len(ws))
		for i, w := range ws {
			ys[i] = g.NewTensor(M, w.Out)
			g.Write(ys[i], poison(M*w.Out))
		}
		return ys
	}
	read := func(y backend.Tensor) []float32 {
		v := make([]float32, y.Rows()*y.Cols())
		if err := g.Read(v, y); err != nil {
			t.Fatal(err)
		}
		return v
	}
	// MatMulN, then each part alone
	ys := outs()
	g.MatMulN(ys, x, ms, nil)
	for i := range ws {
		checkScaled(t, fmt.Sprintf("%s MatMulN part %d", what, i), read(ys[i]), want[i], scale[i], matmulTol(ms[i], M))
	}
	ys = outs()
	for i := range ws {
		g.MatMul(ys[i], x, ms[i])
	}
	for i := range ws {
		checkScaled(t, fmt.Sprintf("%s MatMul part %d", what, i), read(ys[i]), want[i], scale[i], matmulTol(ms[i], M))
	}
	// MatMulAdd onto random values
	for i, w := range ws {
		h0 := randn(rng, M*w.Out, 1)
		h := g.NewTensor(M, w.Out)
		g.Write(h, h0)
		g.MatMulAdd(h, x, ms[i])
		wa, sc := make([]float32, len(h0)), make([]float64, len(h0))
		for j := range h0 {
			wa[j] = float32(float64(h0[j]) + float64(want[i][j]))
			sc[j] = scale[i][j] + math.Abs(float64(h0[j]))
		}
		checkScaled(t, fmt.Sprintf("%s MatMulAdd part %d", what, i), read(h), wa, sc, matmulTol(ms[i], M))
	}
	// with a norm (the 4-bit decode kernels apply it at M ≤ 4): against
	// the products of rmsnorm(x) as the CPU forms it, x left as it was;
	// the group, then each part alone
	nv := randn(rng, K, 1)
	norm := &backend.Norm{W: g.LoadVector(nv), Eps: 1e-5}
	xn := refRMSNorm(xv, nv, norm.Eps)
	wantN, scaleN := make([][]float32, len(ws)), make([][]float64, len(ws))
	for i, w := range ws {
		wantN[i], scaleN[i] = exactMatMul(w, xn, M), absDot(w, xn, M)
	}
	ys = outs()
	g.MatMulN(ys, x, ms, norm)
	for i := range ws {
		checkScaled(t, fmt.Sprintf("%s MatMulN with a norm, part %d", what, i), read(ys[i]), wantN[i], scaleN[i], matmulTol(ms[i], M))
	}
	ys = outs()
	for i := range ws {
		g.MatMulN(ys[i:i+1], x, ms[i:i+1], norm)
	}
	for i := range ws {
		checkScaled(t, fmt.Sprintf("%s MatMulN of part %d alone with a norm", what, i), read(ys[i]), wantN[i], scaleN[i], matmulTol(ms[i], M))
	}
	if got := read(x); !slices.Equal(got, xv) {
		t.Fatalf("%s: a product with a norm changed its input", what)
	}
	if len(ws) != 2 || ws[0].Out != ws[1].Out {
		return
	}
	// SwiGLU of the pair
	d := g.NewTensor(M, ws[0].Out)
	g.Write(d, poison(M*ws[0].Out))
	g.SwiGLU(d, x, ms[0], ms[1], nil)
	wa, sc := swigluRef(want, scale, matmulTol(ms[1], M))
	checkScaled(t, what+" SwiGLU", read(d), wa, sc, matmulTol(ms[0], M))
	g.Write(d, poison(M*ws[0].Out))
	g.SwiGLU(d, x, ms[0], ms[1], norm)
	wa, sc = swigluRef(wantN, scaleN, matmulTol(ms[1], M))
	checkScaled(t, what+" SwiGLU with a norm", read(d), wa, sc, matmulTol(ms[0], M))
}

// swigluRef returns silu(g)·u of the products want[0] (g) and want[1] (u)
// and the scale of its error bound: |Δ(silu(g)·u)| ≤ |silu'(g)|·|Δg|·|u| +
// |silu(g)|·|Δu|, |silu'| < 1.1, with |Δu| ≤ tolU·scale[1].
func swigluRef(want [][]float32, scale [][]float64, tolU float64) ([]float32, []float64) {
	wa, sc := make([]float32, len(want[0])), make([]float64, len(want[0]))
	for j := range wa {
		gv, uv := float64(want[0][j]), float64(want[1][j])
		s := gv / (1 + math.Exp(-gv))
		wa[j] = float32(s * uv)
		sc[j] = 1.1*scale[0][j]*(math.Abs(uv)+tolU*scale[1][j]) + math.Abs(s)*scale[1][j]
	}
	return wa, sc
}

// refRMSNorm is rms_norm (and the CPU's RMSNorm) of the rows of x with
// weights w: r = 1/√(mean(x²) + eps) in float64, rounded to float32, then
// (x·r)·w in float32.
func refRMSNorm(x, w []float32, eps float32) []float32 {
	K := len(w)
	out := make([]float32, len(x))
	for m := 0; m < len(x)/K; m++ {
		var ss float64
		for _, v := range x[m*K : (m+1)*K] {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(K)+float64(eps)))
		for k, v := range x[m*K : (m+1)*K] {
			out[m*K+k] = (v * r) * w[k]
		}
	}
	return out
}

// TestDecodeLayerSpeed times one decoder layer's matrix products of the
// Llama-3-8B shape at M = 1, INT4 g128, device time from CUDA events with
// CUDA graphs on (each timed sequence repeats, so it is replayed), weights
// rotated among copies that exceed the L2 cache: the fused ops (q/k/v as
// one MatMulN, o and down as MatMulAdd, gate/up as SwiGLU) one by one and
// together, and the seven separate products with Add, SiLUMul, Add. Prints
// "decode <what> <µs> <GB/s>"; no assertion. MARLIN_QMV_BPS and
// MARLIN_QMV_MINSTEPS change the kernels' grid.
func TestDecodeLayerSpeed(t *testing.T) {
	b := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	const H, I, Q, KV = 4096, 14336, 4096, 1024
	rng := rand.New(rand.NewPCG(51, 52))
	mk := gptqWeight(4, 128, false, false, 1)
	wq, wk, wv, wo := mk(rng, Q, H), mk(rng, KV, H), mk(rng, KV, H), mk(rng, H, Q)
	wg, wu, wd := mk(rng, I, H), mk(rng, I, H), mk(rng, H, I)
	type layer struct {
		qkv, gu       []backend.Matrix
		o, d          backend.Matrix
		q, k, v, g, u backend.Matrix
		bytes         int64
	}
	load := func(w *quant.Weight) backend.Matrix {
		m, err := b.LoadMatrix(w)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var ls []layer
	for range 3 {
		var l layer
		var err error
		if l.qkv, err = b.LoadMatrices([]*quant.Weight{wq, wk, wv}); err != nil {
			t.Fatal(err)
		}
		if l.gu, err = b.LoadMatrices([]*quant.Weight{wg, wu}); err != nil {
			t.Fatal(err)
		}
		l.o, l.d = load(wo), load(wd)
		l.q, l.k, l.v, l.g, l.u = load(wq), load(wk), load(wv), load(wg), load(wu)
		for _, m := range []backend.Matrix{l.q, l.k, l.v, l.o, l.g, l.u, l.d} {
			l.bytes += m.Bytes()
		}
		ls = append(ls, l)
	}
	x, h := b.NewTensor(1, H), b.NewTensor(1, H)
	q, k, v, g, u, a := b.NewTensor(1, Q), b.NewTensor(1, KV), b.NewTensor(1, KV), b.NewTensor(1, I), b.NewTensor(1, I), b.NewTensor(1, Q)
	y := b.NewTensor(1, H)
	b.Write(x, randn(rng, H, 1))
	b.Write(h, randn(rng, H, 1))
	b.Write(a, randn(rng, Q, 1))
	b.Write(g, randn(rng, I, 0.1))
	mustSync(t, b)
	start, stop := b.newEvent(), b.newEvent()
	defer start.destroy()
	defer stop.destroy()
	const reps = 30
	timeIt := func(what string, bytes func(l *layer) int64, op func(l *layer)) {
		var d time.Duration
		for range 3 { // eager, captured, replayed
			start.record()
			for i := range reps {
				op(&ls[i%len(ls)])
			}
			stop.record()
			d = stop.since(start) / reps
		}
		mustSync(t, b)
		fmt.Printf("decode %-28s %8.2f µs %8.1f GB/s\n", what, float64(d.Nanoseconds())/1e3, float64(bytes(&ls[0]))/d.Seconds()/1e9)
	}
	all := func(l *layer) int64 { return l.bytes }
	timeIt("qkv MatMulN", func(l *layer) int64 { return l.q.Bytes() + l.k.Bytes() + l.v.Bytes() },
		func(l *layer) { b.MatMulN([]backend.Tensor{q, k, v}, x, l.qkv, nil) })
	timeIt("o MatMulAdd", func(l *layer) int64 { return l.o.Bytes() }, func(l *layer) { b.MatMulAdd(h, a, l.o) })
	timeIt("gate/up SwiGLU", func(l *layer) int64 { return l.g.Bytes() + l.u.Bytes() }, func(l *layer) { b.SwiGLU(g, x, l.gu[0], l.gu[1], nil) })
	timeIt("down MatMulAdd", func(l *layer) int64 { return l.d.Bytes() }, func(l *layer) { b.MatMulAdd(h, g, l.d) })
	timeIt("q MatMul", func(l *layer) int64 { return l.q.Bytes() }, func(l *layer) { b.MatMul(q, x, l.q) })
	timeIt("k MatMul", func(l *layer) int64 { return l.k.Bytes() }, func(l *layer) { b.MatMul(k, x, l.k) })
	timeIt("up MatMul", func(l *layer) int64 { return l.u.Bytes() }, func(l *layer) { b.MatMul(u, x, l.u) })
	timeIt("layer fused (4 launches)", all, func(l *layer) {
		b.MatMulN([]backend.Tensor{q, k, v}, x, l.qkv, nil)
		b.MatMulAdd(h, a, l.o)
		b.SwiGLU(g, x, l.gu[0], l.gu[1], nil)
		b.MatMulAdd(h, g, l.d)
	})
	norm := &backend.Norm{W: b.LoadVector(randn(rng, H, 1)), Eps: 1e-5}
	timeIt("layer + 2 RMSNorm", all, func(l *layer) {
		b.RMSNorm(x, h, norm.W, norm.Eps)
		b.MatMulN([]backend.Tensor{q, k, v}, x, l.qkv, nil)
		b.MatMulAdd(h, a, l.o)
		b.RMSNorm(x, h, norm.W, norm.Eps)
		b.SwiGLU(g, x, l.gu[0], l.gu[1], nil)
		b.MatMulAdd(h, g, l.d)
	})
	timeIt("layer, norms in the products", all, func(l *layer) {
		b.MatMulN([]backend.Tensor{q, k, v}, h, l.qkv, norm)
		b.MatMulAdd(h, a, l.o)
		b.SwiGLU(g, h, l.gu[0], l.gu[1], norm)
		b.MatMulAdd(h, g, l.d)
	})
	timeIt("layer unfused (10 launches)", all, func(l *layer) {
		b.MatMul(q, x, l.q)
		b.MatMul(k, x, l.k)
		b.MatMul(v, x, l.v)
		b.MatMul(y, a, l.o)
		b.Add(h, y)
		b.MatMul(g, x, l.g)
		b.MatMul(u, x, l.u)
		b.SiLUMul(g, g, u)
		b.MatMul(y, g, l.d)
		b.Add(h, y)
	})
}
