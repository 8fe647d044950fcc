package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// f32Weight wraps row-major float32 values [out, in] as a dense weight.
func f32Weight(v []float32, out, in int) *quant.Weight {
	d := make([]byte, 4*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		d[4*i], d[4*i+1], d[4*i+2], d[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return &quant.Weight{Name: "f32", Format: quant.Dense, DType: dtype.F32, Out: out, In: in, Data: d}
}

// TestExpertsAdd checks ExpertsAdd against a float64 evaluation of its
// definition on random data: 6 experts (hidden 48, intermediate 32), top-2
// selections with random weights, a shared expert of another width (64)
// or none, 1 and 5 rows added to a random residual. Tolerance: each
// output is float32 sums of at most 64 products through SiLU and one more
// product (relative error ~1e-6 of the magnitudes summed); 1e-4 of the
// largest expert output is far below what a wrong expert, weight or row
// would change.
func TestExpertsAdd(t *testing.T) {
	b := New(2)
	defer b.Close()
	randv := normals(rand.New(rand.NewPCG(51, 52)))
	rng := rand.New(rand.NewPCG(53, 54))
	const E, K, H, I, IS = 6, 2, 48, 32, 64
	type net struct {
		w [3][]float32 // gate [i, H], up [i, H], down [H, i]
		m backend.Expert
	}
	mk := func(inter int) net {
		var n net
		var ms [3]backend.Matrix
		for j, sh := range [3][2]int{{inter, H}, {inter, H}, {H, inter}} {
			n.w[j] = randv(sh[0] * sh[1])
			m, err := b.LoadMatrix(f32Weight(n.w[j], sh[0], sh[1]))
			if err != nil {
				t.Fatal(err)
			}
			ms[j] = m
		}
		n.m = backend.Expert{Gate: ms[0], Up: ms[1], Down: ms[2]}
		return n
	}
	experts := make([]net, E)
	list := make([]backend.Expert, E)
	for e := range experts {
		experts[e] = mk(I)
		list[e] = experts[e].m
	}
	shared := mk(IS)
	// run returns n's output for the row x, in float64
	run := func(n net, x []float32) []float64 {
		inter := len(n.w[0]) / H
		a := make([]float64, inter)
		for i := range a {
			var g, u float64
			for k, v := range x {
				g += float64(n.w[0][i*H+k]) * float64(v)
				u += float64(n.w[1][i*H+k]) * float64(v)
			}
			a[i] = g / (1 + math.Exp(-g)) * u
		}
		y := make([]float64, H)
		for o := range y {
			for i, v := range a {
				y[o] += float64(n.w[2][o*inter+i]) * v
			}
		}
		return y
	}
	for _, withShared := range []bool{false, true} {
		for _, M := range []int{1, 5} {
			name := fmt.Sprintf("M%d shared %v", M, withShared)
			s := b.NewSelection(M, K).(*selection)
			for r := range M {
				p := rng.Perm(E)
				for j := range K {
					s.ids[r*K+j] = int32(p[j])
					s.weights[r*K+j] = float32(rng.Float64())
				}
			}
			xv, hv := randv(M*H), randv(M*H)
			x, h := b.NewTensor(M, H), b.NewTensor(M, H)
			b.Write(x, xv)
			b.Write(h, hv)
			var sh *backend.Expert
			if withShared {
				sh = &shared.m
			}
			b.ExpertsAdd(h, x, s, list, sh)
			got := make([]float32, M*H)
			if err := b.Read(got, h); err != nil {
				t.Fatal(err)
			}
			want := make([]float64, M*H)
			scale := 0.0
			for r := range M {
				xr := xv[r*H : (r+1)*H]
				y := make([]float64, H)
				for j := range K {
					for o, v := range run(experts[s.ids[r*K+j]], xr) {
						y[o] += float64(s.weights[r*K+j]) * v
					}
				}
				if withShared {
					for o, v := range run(shared, xr) {
						y[o] += v
					}
				}
				for o, v := range y {
					want[r*H+o] = float64(hv[r*H+o]) + v
					scale = max(scale, math.Abs(v))
				}
			}
			for i := range want {
				if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-4*scale) {
					t.Fatalf("%s: element %d: got %g, want %g (largest output %g)", name, i, got[i], want[i], scale)
				}
			}
		}
	}
}

// TestRouteNorm checks Route with a norm against RMSNorm followed by Route
// without one, on random data (softmax and sigmoid routers, 1 and 7
// rows): xn must equal RMSNorm's output and the choices and weights must
// be the same, bit for bit (the same code on the same inputs); x is left
// as it was.
func TestRouteNorm(t *testing.T) {
	b := New(2)
	defer b.Close()
	randv := normals(rand.New(rand.NewPCG(61, 62)))
	const E, H = 12, 40
	router, err := b.LoadMatrix(f32Weight(randv(E*H), E, H))
	if err != nil {
		t.Fatal(err)
	}
	norm := &backend.Norm{W: b.LoadVector(randv(H)), Eps: 1e-5}
	for _, r := range []backend.Router{{TopK: 2, Normalize: true}, {TopK: 3, Sigmoid: true, Scale: 2}} {
		for _, M := range []int{1, 7} {
			xv := randv(M * H)
			x, xn, want := b.NewTensor(M, H), b.NewTensor(M, H), b.NewTensor(M, H)
			b.Write(x, xv)
			b.Write(xn, randv(M*H)) // poisoned
			got, ref := b.NewSelection(M, r.TopK), b.NewSelection(M, r.TopK)
			b.Route(got, xn, x, norm, router, &r)
			b.RMSNorm(want, x, norm.W, norm.Eps)
			b.Route(ref, nil, want, nil, router, &r)
			name := fmt.Sprintf("topk %d sigmoid %v M%d", r.TopK, r.Sigmoid, M)
			gx, wx, xa := make([]float32, M*H), make([]float32, M*H), make([]float32, M*H)
			for _, rd := range []struct {
				dst []float32
				src backend.Tensor
			}{{gx, xn}, {wx, want}, {xa, x}} {
				if err := b.Read(rd.dst, rd.src); err != nil {
					t.Fatal(err)
				}
			}
			for i := range wx {
				if gx[i] != wx[i] || xa[i] != xv[i] {
					t.Fatalf("%s: element %d: xn %g, RMSNorm %g; x %g, was %g", name, i, gx[i], wx[i], xa[i], xv[i])
				}
			}
			gi, gw := SelectionOf(got)
			ri, rw := SelectionOf(ref)
			for i := range ri {
				if gi[i] != ri[i] || gw[i] != rw[i] {
					t.Fatalf("%s: choice %d: expert %d weight %g, want expert %d weight %g", name, i, gi[i], gw[i], ri[i], rw[i])
				}
			}
		}
	}
}

// TestMLAPrologue checks the one-pass MLAPrologue against the ops it
// stands for (CopyCols, RMSNorm, RoPE) run one after the other on random
// data: the GLM-4.7-Flash head shape and small ones with a partial rotary
// part and no non-rotary query part, both rope conventions, random
// positions. The results must be equal bit for bit (the same code), and
// qf's latent columns untouched.
func TestMLAPrologue(t *testing.T) {
	b := New(2)
	defer b.Close()
	rng := rand.New(rand.NewPCG(55, 56))
	randv := normals(rng)
	for _, cs := range []struct {
		M, heads, nope, lora, rp, half int
		inter                          bool
	}{
		{1, 20, 192, 512, 64, 32, true},
		{3, 20, 192, 512, 64, 32, false},
		{5, 3, 6, 40, 10, 4, true},
		{2, 2, 0, 36, 8, 4, false},
	} {
		name := fmt.Sprintf("M%d-h%d-nope%d-lora%d-rope%d/%d-inter%v", cs.M, cs.heads, cs.nope, cs.lora, cs.rp, 2*cs.half, cs.inter)
		kd, hd := cs.lora+cs.rp, cs.nope+cs.rp
		inv := make([]float32, cs.half)
		for j := range inv {
			inv[j] = float32(math.Pow(10000, -float64(2*j)/float64(2*cs.half)))
		}
		rope := &backend.Rope{InvFreq: inv, Scale: 1, Interleaved: cs.inter}
		pos := make([]int32, cs.M)
		for i := range pos {
			pos[i] = int32(rng.IntN(3000))
		}
		norm := b.LoadVector(randv(cs.lora))
		kvav, qv, qfv := randv(cs.M*kd), randv(cs.M*cs.heads*hd), randv(cs.M*cs.heads*kd)
		tensor := func(rows, cols int, v []float32) backend.Tensor {
			x := b.NewTensor(rows, cols)
			if v != nil {
				b.Write(x, v)
			}
			return x
		}
		kva := tensor(cs.M, kd, kvav)
		key, qf, q := tensor(cs.M, kd, nil), tensor(cs.M, cs.heads*kd, qfv), tensor(cs.M, cs.heads*hd, qv)
		b.MLAPrologue(key, qf, kva, q, norm, 1e-6, cs.heads, cs.nope, rope, pos)

		key2, qf2, q2, lat := tensor(cs.M, kd, nil), tensor(cs.M, cs.heads*kd, qfv), tensor(cs.M, cs.heads*hd, qv), tensor(cs.M, cs.lora, nil)
		b.CopyCols(lat, kva, 1, cs.lora, 0, 0, 0, 0)
		b.RMSNorm(lat, lat, norm, 1e-6)
		b.CopyCols(key2, lat, 1, cs.lora, 0, 0, 0, 0)
		b.CopyCols(key2, kva, 1, cs.rp, 0, cs.lora, 0, cs.lora)
		b.RoPE(key2, 1, kd, cs.lora, rope, pos)
		b.RoPE(q2, cs.heads, hd, cs.nope, rope, pos)
		b.CopyCols(qf2, q2, cs.heads, cs.rp, kd, cs.lora, hd, cs.nope)

		for _, p := range [][2]backend.Tensor{{key, key2}, {qf, qf2}} {
			got, want := make([]float32, p[0].Rows()*p[0].Cols()), make([]float32, p[1].Rows()*p[1].Cols())
			b.Read(got, p[0])
			b.Read(want, p[1])
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: element %d of [%d, %d]: got %g, want %g", name, i, p[0].Rows(), p[0].Cols(), got[i], want[i])
				}
			}
		}
	}
}
