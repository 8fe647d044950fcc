package quant

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/safetensors"
)

// refEXL3Dense reconstructs an EXL3 weight as a dense [Out, In] float64
// matrix with explicit Hadamard matrices (no fast transform).
func refEXL3Dense(w *Weight) []float64 {
	in, out := w.PaddedDims()
	what := make([]float64, in*out) // Ŵ [in, out]
	var tile [TileLen]float32
	for kt := 0; kt < in/16; kt++ {
		for nt := 0; nt < out/16; nt++ {
			DecodeTile(&tile, w.EXL3Tile(kt, nt), w.Bits, w.Codebook)
			for r := 0; r < 16; r++ {
				for c := 0; c < 16; c++ {
					what[(kt*16+r)*out+nt*16+c] = float64(tile[r*16+c])
				}
			}
		}
	}
	had := func(i, j int) float64 { // block-diagonal orthonormal H128
		if i/128 != j/128 {
			return 0
		}
		if popcount(uint(i%128&(j%128)))&1 == 1 {
			return -1 / math.Sqrt(128)
		}
		return 1 / math.Sqrt(128)
	}
	// T = Ŵ·H (over outputs), then H·T (over inputs)
	T := make([]float64, in*out)
	for k := 0; k < in; k++ {
		for n := 0; n < out; n++ {
			var s float64
			for j := n / 128 * 128; j < n/128*128+128; j++ {
				s += what[k*out+j] * had(j, n)
			}
			T[k*out+n] = s
		}
	}
	res := make([]float64, w.Out*w.In)
	for k := 0; k < w.In; k++ {
		su := float64(dtype.F16ToF32(u16At(w.Scales, k)))
		for n := 0; n < w.Out; n++ {
			var s float64
			for j := k / 128 * 128; j < k/128*128+128; j++ {
				s += had(k, j) * T[j*out+n]
			}
			res[n*w.In+k] = su * s * float64(dtype.F16ToF32(u16At(w.Zeros, n)))
		}
	}
	return res
}

// TestEXL3Quantize quantizes a random layer with a correlated Hessian at
// several K and checks: DequantizeRow matches the explicit-matrix
// reconstruction; the reported proxy error matches one computed from
// DequantizeRow; errors shrink with K and beat GPTQ's at the same bits;
// the result is reproducible; tensors round-trip through LoadWeight with
// the padded shape recorded in the config.
func TestEXL3Quantize(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	out, in := 40, 96 // padded to 128 × 128
	w, h := randomLayer(rng, out, in, 300)
	var prev float64 = math.Inf(1)
	for _, K := range []int{2, 3, 4} {
		q, st, err := QuantizeEXL3(w, out, in, h, EXL3Options{Bits: K, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		q.Name = "layer"
		ref := refEXL3Dense(q)
		row := make([]float32, in)
		var maxd float64
		for n := 0; n < out; n++ {
			q.DequantizeRow(row, n)
			for k, v := range row {
				maxd = math.Max(maxd, math.Abs(float64(v)-ref[n*in+k]))
			}
		}
		if maxd > 1e-6 {
			t.Fatalf("K=%d: DequantizeRow differs from the explicit reconstruction by %g", K, maxd)
		}
		pe := ProxyError(w, q, h) / traceW(w, out, in, h)
		if math.Abs(pe-st.ProxyError) > 1e-3*pe {
			t.Fatalf("K=%d: proxy error %g, reported %g", K, pe, st.ProxyError)
		}
		g, gst, err := QuantizeGPTQ(w, out, in, h, Spec{Format: GPTQ, Bits: K, Group: 32}, GPTQOptions{ActOrder: true})
		if err != nil {
			t.Fatal(err)
		}
		_ = g
		gpe := gst.Error / traceW(w, out, in, h)
		t.Logf("K=%d: proxy error %.5f (GPTQ g32 act-order %.5f, RTN %.5f); tile MSE %.4f, g %.3f, out scales %v, %d tiles",
			K, pe, gpe, gst.RTNError/traceW(w, out, in, h), st.TileMSE, st.GScale, st.OutScales, st.Tiles)
		if pe >= prev || pe >= gpe {
			t.Errorf("K=%d: proxy error %g (previous K %g, GPTQ %g)", K, pe, prev, gpe)
		}
		prev = pe
		if K == 3 {
			q2, _, _ := QuantizeEXL3(w, out, in, h, EXL3Options{Bits: K, Seed: 1})
			if string(q2.Data) != string(q.Data) || string(q2.Scales) != string(q.Scales) || string(q2.Zeros) != string(q.Zeros) {
				t.Fatal("QuantizeEXL3 is not reproducible")
			}
			roundTripEXL3(t, q, out, in)
		}
	}
	// without calibration and with MUL1
	q, st, err := QuantizeEXL3(w, out, in, nil, EXL3Options{Bits: 3, Codebook: CodebookMUL1, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("uncalibrated mul1 K=3: relative squared error %.5f", st.ProxyError)
	if q.Codebook != CodebookMUL1 || st.ProxyError > 0.05 {
		t.Errorf("uncalibrated: codebook %v, error %g", q.Codebook, st.ProxyError)
	}
}

func traceW(w []float32, out, in int, h []float64) float64 {
	var s float64
	for n := 0; n < out; n++ {
		for i := 0; i < in; i++ {
			for j := 0; j < in; j++ {
				s += float64(w[n*in+i]) * h[i*in+j] * float64(w[n*in+j])
			}
		}
	}
	return s
}

func roundTripEXL3(t *testing.T, q *Weight, out, in int) {
	ts := q.Tensors("layer")
	m := map[string]safetensors.Tensor{}
	for _, x := range ts {
		m[x.Name] = x
	}
	get := func(n string) (safetensors.Tensor, bool) { x, ok := m[n]; return x, ok }
	cfg := &Config{Format: EXL3, AvgBits: 3, Shapes: map[string][2]int{"layer": {out, in}}}
	raw, _ := json.Marshal(cfg.JSON())
	cfg2, err := ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cfg2.Format != EXL3 || cfg2.Shapes["layer"] != [2]int{out, in} || cfg2.AvgBits != 3 {
		t.Fatalf("config round trip: %+v from %s", cfg2, raw)
	}
	w2, err := LoadWeight("layer", get, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Out != out || w2.In != in || w2.Bits != q.Bits || string(w2.Data) != string(q.Data) {
		t.Fatalf("LoadWeight: %v", w2)
	}
	// without the recorded shape: the padded one
	w3, err := LoadWeight("layer", get, nil)
	if err != nil || w3.Out != 128 || w3.In != 128 {
		t.Fatalf("LoadWeight without shapes: %v, %v", w3, err)
	}
	// corrupt inputs give errors, never panics
	bad := func(what string, edit func(m map[string]safetensors.Tensor)) {
		mm := map[string]safetensors.Tensor{}
		for k, v := range m {
			mm[k] = v
		}
		edit(mm)
		g := func(n string) (safetensors.Tensor, bool) { x, ok := mm[n]; return x, ok }
		if _, err := LoadWeight("layer", g, cfg2); err == nil {
			t.Errorf("%s: accepted", what)
		} else if !strings.Contains(err.Error(), "layer") {
			t.Errorf("%s: error %q does not name the tensor", what, err)
		}
	}
	bad("K = 9", func(mm map[string]safetensors.Tensor) {
		x := mm["layer.trellis"]
		x.Shape = []int{8, 8, 144}
		x.Data = make([]byte, 8*8*144*2)
		mm["layer.trellis"] = x
	})
	bad("short trellis", func(mm map[string]safetensors.Tensor) {
		x := mm["layer.trellis"]
		x.Data = x.Data[:len(x.Data)-2]
		mm["layer.trellis"] = x
	})
	bad("trellis F16", func(mm map[string]safetensors.Tensor) {
		x := mm["layer.trellis"]
		x.DType = dtype.F16
		mm["layer.trellis"] = x
	})
	bad("trellis 2-D", func(mm map[string]safetensors.Tensor) {
		x := mm["layer.trellis"]
		x.Shape = []int{64, 48}
		mm["layer.trellis"] = x
	})
	bad("missing suh", func(mm map[string]safetensors.Tensor) { delete(mm, "layer.suh") })
	bad("svh of wrong length", func(mm map[string]safetensors.Tensor) {
		x := mm["layer.svh"]
		x.Shape = []int{64}
		x.Data = x.Data[:128]
		mm["layer.svh"] = x
	})
	bad("infinite suh", func(mm map[string]safetensors.Tensor) {
		x := mm["layer.suh"]
		x.Data = append([]byte(nil), x.Data...)
		x.Data[1] = 0x7c
		x.Data[0] = 0
		mm["layer.suh"] = x
	})
	bad("two codebook markers", func(mm map[string]safetensors.Tensor) {
		mm["layer.mcg"] = safetensors.Tensor{Name: "layer.mcg", DType: dtype.I32, Data: make([]byte, 4)}
		mm["layer.mul1"] = safetensors.Tensor{Name: "layer.mul1", DType: dtype.I32, Data: make([]byte, 4)}
	})
	bad("shape that the tensors do not pad", func(mm map[string]safetensors.Tensor) {
		cfg2.Shapes["layer"] = [2]int{out, 200}
	})
	cfg2.Shapes["layer"] = [2]int{out, in}
	// Validate catches inconsistent weights
	v := *q
	v.Scales = v.Scales[:10]
	if v.Validate() == nil {
		t.Error("Validate accepted a short suh")
	}
	v = *q
	v.Bits = 9
	if v.Validate() == nil {
		t.Error("Validate accepted K = 9")
	}
}

func TestEXL3QuantizeErrors(t *testing.T) {
	w := make([]float32, 16*16)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	if _, _, err := QuantizeEXL3(w, 16, 16, nil, EXL3Options{Bits: 0}); err == nil {
		t.Error("K = 0 accepted")
	}
	if _, _, err := QuantizeEXL3(w, 16, 16, nil, EXL3Options{Bits: 9}); err == nil {
		t.Error("K = 9 accepted")
	}
	if _, _, err := QuantizeEXL3(w, 16, 16, nil, EXL3Options{Bits: 2, Codebook: Codebook1MAD}); err == nil {
		t.Error("1MAD accepted for a checkpoint")
	}
	if _, _, err := QuantizeEXL3(w, 16, 16, make([]float64, 256), EXL3Options{Bits: 2}); err == nil {
		t.Error("zero Hessian accepted")
	}
	if _, _, err := QuantizeEXL3(w[:100], 16, 16, nil, EXL3Options{Bits: 2}); err == nil {
		t.Error("short weight accepted")
	}
	w[3] = float32(math.Inf(1))
	if _, _, err := QuantizeEXL3(w, 16, 16, nil, EXL3Options{Bits: 2}); err == nil {
		t.Error("infinite weight accepted")
	}
	w[3] = 0
	// an all-zero matrix stays zero
	z := make([]float32, 16*16)
	q, _, err := QuantizeEXL3(z, 16, 16, nil, EXL3Options{Bits: 2})
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float32, 16)
	for n := 0; n < 16; n++ {
		q.DequantizeRow(row, n)
		for _, v := range row {
			if v != 0 {
				t.Fatalf("zero matrix decodes to %v", v)
			}
		}
	}
}
