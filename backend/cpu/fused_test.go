package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// TestFusedOps checks MatMulN, MatMulAdd and SwiGLU (on weights from
// LoadMatrices) against float64 products of the reference dequantization
// on random data: dense F32 and BF16 and RTN int4 g32 weights, M = 1 and 5.
// Tolerance 1e-5 relative to Σ|x·w| (plus |h| for MatMulAdd; SwiGLU the
// bound propagated through silu(g)·u).
func TestFusedOps(t *testing.T) {
	b := New(2)
	defer b.Close()
	randv := normals(rand.New(rand.NewPCG(41, 42)))
	makeW := func(format string, out, in int) *quant.Weight {
		v := randv(out * in)
		switch format {
		case "int4":
			spec, err := quant.ParseSpec("int4", 32, true)
			if err != nil {
				t.Fatal(err)
			}
			w, err := quant.QuantizeRTN(v, out, in, spec)
			if err != nil {
				t.Fatal(err)
			}
			return w
		case "bf16":
			d := make([]byte, 2*len(v))
			for i, x := range v {
				u := dtype.F32ToBF16(x)
				d[2*i], d[2*i+1] = byte(u), byte(u>>8)
			}
			return &quant.Weight{Name: "bf16", Format: quant.Dense, DType: dtype.BF16, Out: out, In: in, Data: d}
		}
		d := make([]byte, 4*len(v))
		for i, x := range v {
			u := math.Float32bits(x)
			d[4*i], d[4*i+1], d[4*i+2], d[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
		return &quant.Weight{Name: "f32", Format: quant.Dense, DType: dtype.F32, Out: out, In: in, Data: d}
	}
	// ref returns x·wᵀ and Σ|x·w| in float64
	ref := func(w *quant.Weight, x []float32, M int) ([]float64, []float64) {
		y, s := make([]float64, M*w.Out), make([]float64, M*w.Out)
		row := make([]float32, w.In)
		for n := range w.Out {
			w.DequantizeRow(row, n)
			for m := range M {
				for k, v := range row {
					p := float64(v) * float64(x[m*w.In+k])
					y[m*w.Out+n] += p
					s[m*w.Out+n] += math.Abs(p)
				}
			}
		}
		return y, s
	}
	check := func(what string, got []float32, want, scale []float64) {
		t.Helper()
		for i := range want {
			if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*scale[i]+1e-30) {
				t.Fatalf("%s: element %d: got %g, want %g (scale %g)", what, i, got[i], want[i], scale[i])
			}
		}
	}
	for _, format := range []string{"f32", "bf16", "int4"} {
		for _, M := range []int{1, 5} {
			const K = 96
			what := fmt.Sprintf("%s M%d", format, M)
			ws := []*quant.Weight{makeW(format, 64, K), makeW(format, 32, K), makeW(format, 40, K)}
			ms, err := b.LoadMatrices(ws)
			if err != nil {
				t.Fatal(err)
			}
			xv := randv(M * K)
			x := b.NewTensor(M, K)
			b.Write(x, xv)
			ys := make([]backend.Tensor, len(ws))
			for i, w := range ws {
				ys[i] = b.NewTensor(M, w.Out)
			}
			b.MatMulN(ys, x, ms, nil)
			for i, w := range ws {
				want, scale := ref(w, xv, M)
				check(fmt.Sprintf("%s MatMulN part %d", what, i), ys[i].(*Tensor).Data(), want, scale)
				h0 := randv(M * w.Out)
				h := b.NewTensor(M, w.Out)
				b.Write(h, h0)
				b.MatMulAdd(h, x, ms[i])
				for j := range want {
					want[j] += float64(h0[j])
					scale[j] += math.Abs(float64(h0[j]))
				}
				check(fmt.Sprintf("%s MatMulAdd part %d", what, i), h.(*Tensor).Data(), want, scale)
			}
			gu := []*quant.Weight{makeW(format, 48, K), makeW(format, 48, K)}
			gm, err := b.LoadMatrices(gu)
			if err != nil {
				t.Fatal(err)
			}
			d := b.NewTensor(M, 48)
			b.SwiGLU(d, x, gm[0], gm[1], nil)
			gw, gs := ref(gu[0], xv, M)
			uw, us := ref(gu[1], xv, M)
			want, scale := make([]float64, len(gw)), make([]float64, len(gw))
			for j := range gw {
				s := gw[j] / (1 + math.Exp(-gw[j]))
				want[j] = s * uw[j]
				scale[j] = 1.1*gs[j]*(math.Abs(uw[j])+1e-5*us[j]) + math.Abs(s)*us[j] + 1e-2*math.Abs(want[j])
			}
			check(what+" SwiGLU", d.(*Tensor).Data(), want, scale)
		}
	}
	// an output that is the input is refused
	x := b.NewTensor(1, 64)
	w := []*quant.Weight{makeW("f32", 64, 64)}
	ms, _ := b.LoadMatrices(w)
	defer func() {
		if recover() == nil {
			t.Error("MatMulAdd with dst = x: no panic")
		}
	}()
	b.MatMulAdd(x, x, ms[0])
}

// TestNormShape checks that a product's norm with one weight per column of
// x is required: a per-head norm (fewer weights) panics with a message.
func TestNormShape(t *testing.T) {
	b := New(1)
	defer b.Close()
	v := normals(rand.New(rand.NewPCG(1, 2)))(32 * 64)
	d := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(d[4*i:], math.Float32bits(f))
	}
	w := &quant.Weight{Name: "w", Format: quant.Dense, DType: dtype.F32, Out: 32, In: 64, Data: d}
	ms, err := b.LoadMatrices([]*quant.Weight{w})
	if err != nil {
		t.Fatal(err)
	}
	x, y := b.NewTensor(1, 64), b.NewTensor(1, 32)
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "weight 32 for x [1, 64]") {
			t.Errorf("MatMulN with a norm of 32 weights for 64 columns: %v", r)
		}
	}()
	b.MatMulN([]backend.Tensor{y}, x, ms, &backend.Norm{W: b.LoadVector(make([]float32, 32)), Eps: 1e-5})
}

// TestFusedOpsMatchSequence checks that the fused ops, which share one
// parallel op among several products, give bit for bit the results of the
// plain sequences they stand for (MatMul each, MatMul then Add, MatMul
// gate and up then SiLUMul), with output sizes that are not multiples of
// the pieces and three workers, for dense, int4 g32 and fp4 weights.
func TestFusedOpsMatchSequence(t *testing.T) {
	b := New(3)
	defer b.Close()
	randv := normals(rand.New(rand.NewPCG(5, 6)))
	load := func(format string, out, in int) backend.Matrix {
		v := randv(out * in)
		var w *quant.Weight
		if format == "bf16" {
			d := make([]byte, 2*len(v))
			for i, x := range v {
				u := dtype.F32ToBF16(x)
				d[2*i], d[2*i+1] = byte(u), byte(u>>8)
			}
			w = &quant.Weight{Name: "bf16", Format: quant.Dense, DType: dtype.BF16, Out: out, In: in, Data: d}
		} else {
			spec, err := quant.ParseSpec(format, 32, true)
			if err != nil {
				t.Fatal(err)
			}
			if w, err = quant.QuantizeRTN(v, out, in, spec); err != nil {
				t.Fatal(err)
			}
		}
		m, err := b.LoadMatrix(w)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Bitwise where the kernels compute each output the same way whatever
	// the column range of the call (AVX-512 and the portable code); the
	// AVX2 kernels pick their column blocks by the range, so the fused op's
	// other split may differ in the last bits there (float32 sums of K = 160
	// products of unit normals: a few ulps; allowed 1e-5·(1 + |y|)).
	exact := kernels.HasAVX512() || !kernels.HasSIMD()
	same := func(what string, got, want backend.Tensor) {
		t.Helper()
		g, w := got.(*Tensor).Data(), want.(*Tensor).Data()
		for i := range w {
			if exact && math.Float32bits(g[i]) != math.Float32bits(w[i]) ||
				!exact && !(math.Abs(float64(g[i]-w[i])) <= 1e-5*(1+math.Abs(float64(w[i])))) {
				t.Fatalf("%s: element %d: fused %g, sequence %g", what, i, g[i], w[i])
			}
		}
	}
	const K = 160
	for _, format := range []string{"bf16", "int4", "fp4"} {
		for _, M := range []int{1, 3, 9} {
			what := fmt.Sprintf("%s M%d", format, M)
			x := b.NewTensor(M, K)
			b.Write(x, randv(M*K))
			outs := []int{200, 136, 72}
			ms := make([]backend.Matrix, len(outs))
			got, want := make([]backend.Tensor, len(outs)), make([]backend.Tensor, len(outs))
			for i, n := range outs {
				ms[i] = load(format, n, K)
				got[i], want[i] = b.NewTensor(M, n), b.NewTensor(M, n)
				b.MatMul(want[i], x, ms[i])
			}
			b.MatMulN(got, x, ms, nil)
			for i := range outs {
				same(fmt.Sprintf("%s MatMulN part %d", what, i), got[i], want[i])
			}
			// with a norm: as RMSNorm, then the product; x unchanged
			norm := &backend.Norm{W: b.LoadVector(randv(K)), Eps: 1e-5}
			x0, xn := append([]float32(nil), x.(*Tensor).Data()...), b.NewTensor(M, K)
			b.RMSNorm(xn, x, norm.W, norm.Eps)
			for i := range outs {
				b.MatMul(want[i], xn, ms[i])
			}
			b.MatMulN(got, x, ms, norm)
			for i := range outs {
				same(fmt.Sprintf("%s MatMulN with a norm, part %d", what, i), got[i], want[i])
			}
			if !slices.Equal(x.(*Tensor).Data(), x0) {
				t.Fatalf("%s: MatMulN with a norm changed x", what)
			}
			h0 := randv(M * 200)
			hg, hw, tmp := b.NewTensor(M, 200), b.NewTensor(M, 200), b.NewTensor(M, 200)
			b.Write(hg, h0)
			b.Write(hw, h0)
			b.MatMulAdd(hg, x, ms[0])
			b.MatMul(tmp, x, ms[0])
			b.Add(hw, tmp)
			same(what+" MatMulAdd", hg, hw)
			gate, up := load(format, 328, K), load(format, 328, K)
			dg, dw, u := b.NewTensor(M, 328), b.NewTensor(M, 328), b.NewTensor(M, 328)
			b.SwiGLU(dg, x, gate, up, nil)
			b.MatMul(dw, x, gate)
			b.MatMul(u, x, up)
			b.SiLUMul(dw, dw, u)
			same(what+" SwiGLU", dg, dw)
			b.SwiGLU(dg, x, gate, up, norm)
			b.MatMul(dw, xn, gate)
			b.MatMul(u, xn, up)
			b.SiLUMul(dw, dw, u)
			same(what+" SwiGLU with a norm", dg, dw)
		}
	}
}

// normals returns a function that draws n standard normal float32s from rng.
func normals(rng *rand.Rand) func(n int) []float32 {
	return func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
}

// TestMappedAccounting: weights whose bytes alias a file mapping are
// counted (MemoryAvailable subtracts them) while they live; a copied or
// heap weight is not.
func TestMappedAccounting(t *testing.T) {
	b := New(1)
	defer b.Close()
	d := make([]byte, 2*64*32)
	w := &quant.Weight{Name: "m", Format: quant.Dense, DType: dtype.BF16, Out: 64, In: 32, Data: d, Mapped: true}
	h := &quant.Weight{Name: "h", Format: quant.Dense, DType: dtype.BF16, Out: 64, In: 32, Data: d}
	before := b.mapped.Load()
	if _, err := b.LoadMatrix(w); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadMatrix(h); err != nil {
		t.Fatal(err)
	}
	if got := b.mapped.Load() - before; got != int64(len(d)) {
		t.Errorf("mapped bytes grew by %d, want %d", got, len(d))
	}
	runtime.KeepAlive(w)
}
