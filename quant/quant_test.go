package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/safetensors"
)

// randomCodes returns random but valid Codes of the given format.
func randomCodes(rng *rand.Rand, f Format, out, in, bits, group int, zeroOffset int, actOrder bool) *Codes {
	c := &Codes{Format: f, Out: out, In: in, Bits: bits, Group: group, ZeroOffset: zeroOffset, Sym: f != GPTQ}
	c.Q = make([]uint8, out*in)
	switch f {
	case GPTQ:
		groups := in / group
		for i := range c.Q {
			c.Q[i] = uint8(rng.Intn(1 << uint(bits)))
		}
		c.Scales = make([]float32, groups*out)
		c.Zeros = make([]int32, groups*out)
		for i := range c.Scales {
			c.Scales[i] = dtype.F16ToF32(dtype.F32ToF16(float32(rng.ExpFloat64() * 0.01)))
			c.Zeros[i] = int32(rng.Intn(1<<uint(bits))) + int32(zeroOffset)
		}
		if actOrder {
			c.GIdx = make([]int32, in)
			perm := rng.Perm(in)
			for i, p := range perm {
				c.GIdx[p] = int32(i / group)
			}
		}
	case FP8:
		c.Bits, c.Group = 8, in
		for i := range c.Q {
			b := uint8(rng.Intn(256))
			if b&0x7f == 0x7f { // avoid NaN codes
				b ^= 1
			}
			c.Q[i] = b
		}
		c.Scales = make([]float32, out)
		for i := range c.Scales {
			c.Scales[i] = float32(rng.ExpFloat64() * 0.01)
		}
	case FP4, MXFP4, NVFP4:
		c.Bits = 4
		switch f {
		case MXFP4:
			c.Group = 32
		case NVFP4:
			c.Group = 16
			c.GlobalScale = float32(rng.ExpFloat64() * 1e-3)
		}
		for i := range c.Q {
			c.Q[i] = uint8(rng.Intn(16))
		}
		nb := in / c.Group
		c.Scales = make([]float32, out*nb)
		for i := range c.Scales {
			switch f {
			case FP4:
				c.Scales[i] = dtype.F16ToF32(dtype.F32ToF16(float32(rng.ExpFloat64() * 0.01)))
			case MXFP4:
				c.Scales[i] = dtype.E8M0ToF32(uint8(100 + rng.Intn(40)))
			case NVFP4:
				c.Scales[i] = dtype.E4M3ToF32(uint8(rng.Intn(0x7f)))
			}
		}
	}
	return c
}

type fmtCase struct {
	f                Format
	bits, group, off int
	act              bool
}

func allCases() []fmtCase {
	var cs []fmtCase
	for _, bits := range []int{2, 3, 4, 8} {
		for _, g := range []int{32, 64, 128, 0} {
			for _, off := range []int{0, 1} {
				cs = append(cs, fmtCase{GPTQ, bits, g, off, false}, fmtCase{GPTQ, bits, g, off, true})
			}
		}
	}
	return append(cs, fmtCase{f: FP8}, fmtCase{f: FP4, group: 32}, fmtCase{f: FP4, group: 128},
		fmtCase{f: FP4, group: 16}, fmtCase{f: MXFP4}, fmtCase{f: NVFP4})
}

func TestPackUnpackRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, tc := range allCases() {
		for _, in := range []int{40, 96, 160, 256, 4160} {
			for _, out := range []int{1, 37, 64} {
				group := tc.group
				if group == 0 {
					group = in
				}
				if in == 40 && tc.group == 32 {
					group = 8
				}
				if in%group != 0 || (tc.f == GPTQ && in*tc.bits%32 != 0) || (tc.f == MXFP4 && in%32 != 0) || (tc.f == NVFP4 && in%16 != 0) {
					continue
				}
				if in == 4160 && out == 64 {
					continue // keep the test fast
				}
				c := randomCodes(rng, tc.f, out, in, tc.bits, group, tc.off, tc.act)
				w, err := Pack("t", c)
				if err != nil {
					t.Fatalf("%v %+v in=%d out=%d: %v", tc.f, tc, in, out, err)
				}
				c2, err := w.Unpack()
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c, c2) {
					t.Fatalf("%v %+v in=%d out=%d: Unpack(Pack(c)) != c", tc.f, tc, in, out)
				}
				w2, err := Pack("t", c2)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(w, w2) {
					t.Fatalf("%v %+v: Pack(Unpack(w)) != w", tc.f, tc)
				}
				checkDequant(t, w, c)
			}
		}
	}
}

// checkDequant compares DequantizeRow with an independent evaluation of the
// format's formula: GPTQ values are read from an explicit bit array built
// from qweight's columns, FP4 nibbles from the bytes directly, and scales
// are decoded from first principles.
func checkDequant(t *testing.T, w *Weight, c *Codes) {
	t.Helper()
	row := make([]float32, w.In)
	for n := 0; n < w.Out; n++ {
		w.DequantizeRow(row, n)
		want := independentRow(w, n)
		for k := range row {
			if math.Float32bits(row[k]) != math.Float32bits(want[k]) && !(row[k] == 0 && want[k] == 0) {
				t.Fatalf("%v row %d col %d: got %g want %g", w, n, k, row[k], want[k])
			}
		}
	}
}

func bitsOf(words []uint32) []uint8 {
	var b []uint8
	for _, w := range words {
		for i := 0; i < 32; i++ {
			b = append(b, uint8(w>>uint(i)&1))
		}
	}
	return b
}

func valueAt(bits []uint8, i, width int) int {
	v := 0
	for j := width - 1; j >= 0; j-- {
		v = v<<1 | int(bits[i*width+j])
	}
	return v
}

func independentRow(w *Weight, n int) []float32 {
	res := make([]float32, w.In)
	le := binary.LittleEndian
	switch w.Format {
	case GPTQ:
		rows := w.In * w.Bits / 32
		col := make([]uint32, rows)
		for r := range col {
			col[r] = le.Uint32(w.Data[4*(r*w.Out+n):])
		}
		qb := bitsOf(col)
		groups := w.In / w.Group
		zcols := len(w.Zeros) / 4 / groups
		zs := make([]int, groups)
		for g := range zs {
			zw := make([]uint32, zcols)
			for i := range zw {
				zw[i] = le.Uint32(w.Zeros[4*(g*zcols+i):])
			}
			zs[g] = valueAt(bitsOf(zw), n, w.Bits) + w.ZeroOffset
		}
		for k := range res {
			g := k / w.Group
			if w.GIdx != nil {
				g = int(w.GIdx[k])
			}
			z := zs[g]
			h := le.Uint16(w.Scales[2*(g*w.Out+n):])
			s := halfToFloat(h)
			res[k] = float32(valueAt(qb, k, w.Bits)-z) * s
		}
	case FP8:
		s := math.Float32frombits(le.Uint32(w.Scales[4*n:]))
		for k := range res {
			res[k] = e4m3ByFormula(w.Data[n*w.In+k]) * s
		}
	default:
		nb := w.In / w.Group
		for k := range res {
			b := w.Data[(n*w.In+k)/2]
			code := b & 15
			if k%2 == 1 {
				code = b >> 4
			}
			mag := []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6}[code&7]
			if code&8 != 0 {
				mag = -mag
			}
			i := n*nb + k/w.Group
			switch w.Format {
			case FP4:
				res[k] = mag * halfToFloat(le.Uint16(w.Scales[2*i:]))
			case MXFP4:
				res[k] = mag * float32(math.Ldexp(1, int(w.Scales[i])-127))
			case NVFP4:
				res[k] = mag * e4m3ByFormula(w.Scales[i]) * w.GlobalScale
			}
		}
	}
	return res
}

// halfToFloat decodes binary16 from the definition.
func halfToFloat(h uint16) float32 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e := int(h>>10) & 31
	m := float64(h & 1023)
	if e == 0 {
		return float32(s * m * math.Ldexp(1, -24))
	}
	return float32(s * (1 + m/1024) * math.Ldexp(1, e-15))
}

func e4m3ByFormula(b uint8) float32 {
	s := 1.0
	if b&0x80 != 0 {
		s = -1
	}
	e := int(b>>3) & 15
	m := float64(b & 7)
	if e == 0 {
		return float32(s * m / 8 * math.Ldexp(1, -6))
	}
	return float32(s * (1 + m/8) * math.Ldexp(1, e-7))
}

func TestE2M1(t *testing.T) {
	cases := map[float32]float32{0: 0, 0.25: 0, 0.26: 0.5, 0.75: 1, 1.25: 1, 1.3: 1.5, 1.75: 2, 2.5: 2, 2.6: 3,
		3.5: 4, 5: 4, 5.1: 6, 100: 6, -0.75: -1, -5.5: -6, -3.4: -3}
	for in, want := range cases {
		if got := E2M1Value(ToE2M1(in)); got != want {
			t.Errorf("ToE2M1(%g) = %g, want %g", in, got, want)
		}
	}
}

func randWeights(rng *rand.Rand, n int) []float32 {
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	return w
}

// TestRTNError checks the per-element error bound of every quantizer.
func TestRTNError(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	out, in := 19, 256
	w := randWeights(rng, out*in)
	// include an all-positive row and an all-zero group to hit edge cases
	for k := 0; k < in; k++ {
		w[k] = float32(math.Abs(float64(w[k])))
		if k < 64 {
			w[in+k] = 0
		}
	}
	row := make([]float32, in)
	for _, f := range []string{"int2", "int3", "int4", "int8"} {
		for _, g := range []int{32, 64, 128, 0} {
			for _, sym := range []bool{true, false} {
				for _, v2 := range []bool{false, true} {
					for _, maxScale := range []bool{true, false} {
						spec, err := ParseSpec(f, g, sym)
						if err != nil {
							t.Fatal(err)
						}
						spec.V2, spec.MaxScale = v2, maxScale
						q, err := QuantizeRTN(w, out, in, spec)
						if err != nil {
							t.Fatalf("%v: %v", spec, err)
						}
						c, _ := q.Unpack()
						maxq := int32(1)<<spec.Bits - 1
						for n := 0; n < out; n++ {
							q.DequantizeRow(row, n)
							for k := range row {
								gi := k / q.Group
								s, z := float64(c.Scales[gi*out+n]), c.Zeros[gi*out+n]
								x := float64(w[n*in+k])
								d := math.Abs(float64(row[k]) - x)
								if maxScale {
									// plain: within half a step of every weight
									if d > s/2*(1+1e-6) {
										t.Fatalf("%v v2=%v [%d,%d]: |%g − %g| > scale/2 = %g", spec, v2, n, k, row[k], x, s/2)
									}
									continue
								}
								// searched: the code is still the nearest one
								for _, qq := range []int32{int32(c.Q[n*in+k]) - 1, int32(c.Q[n*in+k]) + 1} {
									if qq >= 0 && qq <= maxq && math.Abs(float64(qq-z)*s-x) < d {
										t.Fatalf("%v v2=%v [%d,%d]: code %d (%g) is not the nearest to %g (%d is)", spec, v2, n, k, c.Q[n*in+k], row[k], x, qq)
									}
								}
							}
						}
					}
				}
			}
		}
	}
	halfGap := func(a float64) float64 { // half the e2m1 grid gap around |a| (≤ 6)
		switch {
		case a <= 2:
			return 0.25
		case a <= 4:
			return 0.5
		}
		return 1
	}
	for _, f := range []string{"fp4", "mxfp4", "nvfp4", "fp8"} {
		for _, g := range []int{0, 128, -1} {
			spec, err := ParseSpec(f, max(g, 0), true)
			if err != nil {
				if f == "fp4" {
					t.Fatal(err)
				}
				continue
			}
			spec.MaxScale = g >= 0 // g = -1: the default group, searched scales
			q, err := QuantizeRTN(w, out, in, spec)
			if err != nil {
				t.Fatalf("%v: %v", spec, err)
			}
			for n := 0; n < out; n++ {
				q.DequantizeRow(row, n)
				for k := range row {
					x := float64(w[n*in+k])
					d := math.Abs(float64(row[k]) - x)
					var bound float64
					switch q.Format {
					case FP8:
						s := float64(f32At(q.Scales, n))
						// e4m3 has 3 mantissa bits: relative half-ulp 2^-4, or the
						// subnormal step 2^-9·s/2 near zero
						bound = math.Max(math.Abs(x)/16, math.Ldexp(s, -10)) * (1 + 1e-6)
					default:
						s := float64(q.scaleAt(n, k/q.Group))
						if q.Format == NVFP4 {
							s *= float64(q.GlobalScale)
						}
						a := math.Abs(x) / s
						if a > 6 { // MXFP4 saturation (OCP) or NVFP4 e4m3 scale rounding
							bound = (a - 6) * s
						}
						bound = (bound + halfGap(math.Min(a, 6))*s) * (1 + 1e-5)
					}
					if d > bound {
						t.Fatalf("%v [%d,%d]: |%g − %g| = %g > %g", spec, n, k, row[k], x, d, bound)
					}
				}
			}
		}
	}
}

// TestRTNKnown checks hand-computed cases of plain round-to-nearest
// (MaxScale; the search is tested in search_test.go).
func TestRTNKnown(t *testing.T) {
	// int4 sym, one group of 4: absmax 1.5 → scale = 2·1.5/15 = 0.2 → fp16
	// rounded up 0.2000732421875; zero 8; 1.5/s = 7.497 → 7 → q 15;
	// −1.5 → −7 → 1; 0.3/s = 1.4995 → 1 → 9; 0 → 8.
	w := []float32{1.5, -1.5, 0.3, 0, 0, 0, 0, 0}
	q, err := QuantizeRTN(w, 1, 8, Spec{Format: GPTQ, Bits: 4, Group: 8, Sym: true, MaxScale: true})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := q.Unpack()
	if want := []uint8{15, 1, 9, 8, 8, 8, 8, 8}; !bytes.Equal(c.Q, want) {
		t.Errorf("int4 sym codes %v, want %v", c.Q, want)
	}
	if c.Scales[0] != 0.2000732421875 || c.Zeros[0] != 8 {
		t.Errorf("int4 sym scale %v zero %v", c.Scales[0], c.Zeros[0])
	}
	// v1 stores zero−1 = 7 in the low nibble of qzeros
	if z := binary.LittleEndian.Uint32(q.Zeros); z&15 != 7 {
		t.Errorf("v1 qzeros word %#x, want low nibble 7", z)
	}
	// int2 asym, v2: min −1, max 2: scale = 3/3 = 1, zero = 1;
	// values −1,0,1,2 → 0,1,2,3.
	w = []float32{-1, 0, 1, 2, 0.4, 0.6, -0.4, 1.6, 2, 2, 2, 2, 2, 2, 2, 2}
	q, err = QuantizeRTN(w, 1, 16, Spec{Format: GPTQ, Bits: 2, Group: 16, V2: true, MaxScale: true})
	if err != nil {
		t.Fatal(err)
	}
	c, _ = q.Unpack()
	if want := []uint8{0, 1, 2, 3, 1, 2, 1, 3}; !bytes.Equal(c.Q[:8], want) || c.Scales[0] != 1 || c.Zeros[0] != 1 {
		t.Errorf("int2 asym: codes %v scale %v zero %v", c.Q[:8], c.Scales[0], c.Zeros[0])
	}
	// The same all-non-negative row in v1 must not use zero 0: with values
	// 0..3 v2 gives zero 0, v1 zero 1 with scale 3/2.
	w = []float32{0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	q2, _ := QuantizeRTN(w, 1, 16, Spec{Format: GPTQ, Bits: 2, Group: 16, V2: true, MaxScale: true})
	q1, _ := QuantizeRTN(w, 1, 16, Spec{Format: GPTQ, Bits: 2, Group: 16, MaxScale: true})
	c2, _ := q2.Unpack()
	c1, _ := q1.Unpack()
	if c2.Zeros[0] != 0 || c2.Scales[0] != 1 || c1.Zeros[0] != 1 || c1.Scales[0] != 1.5 {
		t.Errorf("zero 0: v2 zero %d scale %g; v1 zero %d scale %g", c2.Zeros[0], c2.Scales[0], c1.Zeros[0], c1.Scales[0])
	}
	// MXFP4: absmax 5 → floor(log2 5) = 2 → exponent 0 → scale 1; 5 → 4 (tie to even), 7 → 6.
	w = make([]float32, 32)
	w[0], w[1], w[2] = 5, -1.3, 0.2
	q, _ = QuantizeRTN(w, 1, 32, Spec{Format: MXFP4, MaxScale: true})
	c, _ = q.Unpack()
	if c.Scales[0] != 1 || E2M1Value(c.Q[0]) != 4 || E2M1Value(c.Q[1]) != -1.5 || E2M1Value(c.Q[2]) != 0 {
		t.Errorf("mxfp4: scale %g codes %v", c.Scales[0], c.Q[:3])
	}
	// FP8: row absmax 448·2 → scale 2; 3 → 1.5 exactly.
	w = []float32{896, 3, -1}
	q, _ = QuantizeRTN(w, 1, 3, Spec{Format: FP8})
	row := make([]float32, 3)
	q.DequantizeRow(row, 0)
	if f32At(q.Scales, 0) != 2 || row[0] != 896 || row[1] != 3 || row[2] != -1 {
		t.Errorf("fp8: scale %g row %v", f32At(q.Scales, 0), row)
	}
	// NVFP4: global = 6/(448·6) = 1/448; block absmax 6 → scale 448 → value 6 exact.
	w = make([]float32, 16)
	w[0], w[1] = 6, -3
	q, _ = QuantizeRTN(w, 1, 16, Spec{Format: NVFP4, MaxScale: true})
	q.DequantizeRow(w[:16], 0)
	if q.GlobalScale != float32(6.0/(448*6)) || math.Abs(float64(w[0])-6) > 1e-6 || math.Abs(float64(w[1])+3) > 1e-6 {
		t.Errorf("nvfp4: global %g row %v", q.GlobalScale, w[:2])
	}
}

func getter(ts []safetensors.Tensor) func(string) (safetensors.Tensor, bool) {
	m := map[string]safetensors.Tensor{}
	for _, t := range ts {
		m[t.Name] = t
	}
	return func(n string) (safetensors.Tensor, bool) { t, ok := m[n]; return t, ok }
}

// TestTensorsLoadRoundTrip writes every format with Tensors and reads it back.
func TestTensorsLoadRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	out, in := 37, 256
	w := randWeights(rng, out*in)
	specs := []Spec{}
	for _, f := range []string{"int2", "int3", "int4", "int8"} {
		for _, g := range []int{32, 128, 0} {
			for _, sym := range []bool{true, false} {
				s, _ := ParseSpec(f, g, sym)
				specs = append(specs, s)
				s.V2 = true
				specs = append(specs, s)
			}
		}
	}
	for _, f := range []string{"fp4", "mxfp4", "nvfp4", "fp8"} {
		s, _ := ParseSpec(f, 0, true)
		specs = append(specs, s)
	}
	for _, spec := range specs {
		q, err := QuantizeRTN(w, out, in, spec)
		if err != nil {
			t.Fatal(err)
		}
		q.Name = "model.layers.0.mlp.down_proj"
		cfg := ConfigFor(spec)
		cfg2, err := ParseConfig(mustJSON(t, map[string]any{"quantization_config": cfg.JSON()}))
		if err != nil {
			t.Fatalf("%v: %v", spec, err)
		}
		if !reflect.DeepEqual(cfg, cfg2) {
			t.Fatalf("%v: config %+v reads back as %+v", spec, cfg, cfg2)
		}
		ts := q.Tensors(q.Name)
		for _, tt := range ts {
			if err := checkBytes(tt.Name, tt); err != nil {
				t.Fatal(err)
			}
		}
		back, err := LoadWeight(q.Name, getter(ts), cfg2)
		if err != nil {
			t.Fatalf("%v: %v", spec, err)
		}
		if !reflect.DeepEqual(q, back) {
			t.Fatalf("%v: loaded weight differs:\n%+v\n%+v", spec, q, back)
		}
	}
	// act-order g_idx survives; a trivial one is dropped
	c := randomCodes(rng, GPTQ, out, in, 4, 32, 1, true)
	q, _ := Pack("x", c)
	back, err := LoadWeight("x", getter(q.Tensors("x")), &Config{Format: GPTQ, Bits: 4, Group: 32, CheckpointFormat: "gptq"})
	if err != nil || !reflect.DeepEqual(q, back) {
		t.Fatalf("act-order round trip: %v", err)
	}
	// Dense
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		d := &Weight{Name: "d", Format: Dense, DType: dt, Out: 3, In: 5, Data: make([]byte, 15*dt.Size())}
		back, err := LoadWeight("d", getter(d.Tensors("d")), nil)
		if err != nil || !reflect.DeepEqual(d, back) {
			t.Fatalf("dense %v: %v", dt, err)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := jsonMarshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseConfig(t *testing.T) {
	for _, s := range []string{"", "null", `{"architectures":["LlamaForCausalLM"]}`, `{"quantization_config":null}`} {
		if c, err := ParseConfig([]byte(s)); c != nil || err != nil {
			t.Errorf("%q: %v %v", s, c, err)
		}
	}
	c, err := ParseConfig([]byte(`{"quant_method":"gptq","bits":4,"group_size":128,"desc_act":true,"sym":false}`))
	if err != nil || c.Bits != 4 || c.Group != 128 || !c.DescAct || c.Sym || c.CheckpointFormat != "gptq" || c.ZeroOffset() != 1 {
		t.Errorf("gptq: %+v %v", c, err)
	}
	c, err = ParseConfig([]byte(`{"quant_method":"compressed-tensors","config_groups":{"group_0":{"targets":["Linear"],"weights":{"num_bits":8,"type":"float","strategy":"channel"}}}}`))
	if err != nil || c.Format != FP8 {
		t.Errorf("compressed-tensors: %+v %v", c, err)
	}
	c, err = ParseConfig([]byte(`{"quant_method":"modelopt","quant_algo":"NVFP4"}`))
	if err != nil || c.Format != NVFP4 || c.Group != 16 {
		t.Errorf("modelopt: %+v %v", c, err)
	}
	bad := map[string]string{
		`{"quant_method":"gptq","bits":5,"group_size":128}`:             "bits 5",
		`{"quant_method":"gptq","bits":4,"group_size":0}`:               "group_size 0",
		`{"quant_method":"gptq","bits":4,"checkpoint_format":"marlin"}`: "checkpoint_format",
		`{"quant_method":"awq","bits":4}`:                               "awq",
		`{"quant_method":"marlin_fp","format":"fp5"}`:                   "fp5",
		`{"quant_method":"gptq","bits":"four"}`:                         "bits",
		`{"bits":4}`:                                                    "quant_method",
		`[1,2]`:                                                         "quantization_config",
		`{"quant_method":"compressed-tensors","config_groups":{"g":{"weights":{"num_bits":4,"type":"int"}}}}`: "not supported",
	}
	for s, want := range bad {
		if _, err := ParseConfig([]byte(s)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", s, err, want)
		}
	}
}

// TestBadInput checks that inconsistent weights and tensors give clear
// errors naming the tensor, never a panic.
func TestBadInput(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	good, _ := Pack("L", randomCodes(rng, GPTQ, 16, 64, 4, 32, 1, false))
	mod := func(f func(w *Weight)) *Weight { w := *good; f(&w); return &w }
	cases := map[string]*Weight{
		"bits 5":          mod(func(w *Weight) { w.Bits = 5 }),
		"does not divide": mod(func(w *Weight) { w.Group = 48 }),
		"L.qweight":       mod(func(w *Weight) { w.Data = w.Data[:len(w.Data)-1] }),
		"L.scales":        mod(func(w *Weight) { w.Scales = w.Scales[:4] }),
		"L.qzeros":        mod(func(w *Weight) { w.Zeros = w.Zeros[:4] }),
		"L.g_idx":         mod(func(w *Weight) { w.GIdx = make([]int32, 64); w.GIdx[5] = 2 }),
		"bad shape":       mod(func(w *Weight) { w.Out = 0 }),
	}
	for want, w := range cases {
		err := w.Validate()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	short := mod(func(w *Weight) { w.GIdx = []int32{0} })
	if err := short.Validate(); err == nil || !strings.Contains(err.Error(), "L.g_idx") {
		t.Errorf("short g_idx: %v", err)
	}
	for _, f := range []Format{FP8, FP4, MXFP4, NVFP4} {
		g := map[Format]int{FP4: 32}[f]
		w, err := Pack("F", randomCodes(rng, f, 8, 64, 0, g, 0, false))
		if err != nil {
			t.Fatal(err)
		}
		w.Data = w.Data[:len(w.Data)-1]
		if err := w.Validate(); err == nil || !strings.Contains(err.Error(), "F.weight") {
			t.Errorf("%v truncated: %v", f, err)
		}
	}
	// LoadWeight: bad tensors
	ts := good.Tensors("L")
	cfg := &Config{Format: GPTQ, Bits: 4, Group: 32, CheckpointFormat: "gptq"}
	for i := range ts {
		bad := append([]safetensors.Tensor(nil), ts...)
		bad[i].Data = bad[i].Data[:len(bad[i].Data)-1]
		if _, err := LoadWeight("L", getter(bad), cfg); err == nil || !strings.Contains(err.Error(), ts[i].Name) {
			t.Errorf("truncated %s: %v", ts[i].Name, err)
		}
		bad[i] = ts[i]
		bad[i].Shape = []int{3}
		if _, err := LoadWeight("L", getter(bad), cfg); err == nil || !strings.Contains(err.Error(), ts[i].Name) {
			t.Errorf("reshaped %s: %v", ts[i].Name, err)
		}
	}
	if _, err := LoadWeight("L", getter(ts), &Config{Format: GPTQ, Bits: 4, Group: 48}); err == nil || !strings.Contains(err.Error(), "does not divide") {
		t.Errorf("group 48: %v", err)
	}
	if _, err := LoadWeight("L", getter(ts), nil); err == nil || !strings.Contains(err.Error(), "L.qweight") {
		t.Errorf("no config: %v", err)
	}
	if _, err := LoadWeight("nothing", getter(ts), cfg); err == nil || !strings.Contains(err.Error(), "nothing") {
		t.Errorf("missing: %v", err)
	}
	if _, err := QuantizeRTN(make([]float32, 64), 1, 64, Spec{Format: GPTQ, Bits: 5}); err == nil {
		t.Error("bits 5 accepted")
	}
	if _, err := ParseSpec("int5", 0, true); err == nil {
		t.Error("int5 accepted")
	}
}

// FuzzLoadWeight feeds random shapes and bytes to LoadWeight: it may fail,
// but must not panic, and what it accepts must validate and dequantize.
func FuzzLoadWeight(f *testing.F) {
	f.Add(uint8(0), uint16(4), uint16(8), uint8(4), int16(32), []byte{1, 2, 3})
	f.Add(uint8(1), uint16(64), uint16(8), uint8(4), int16(32), []byte{})
	f.Add(uint8(2), uint16(4), uint16(16), uint8(0), int16(0), []byte{7})
	f.Add(uint8(5), uint16(8), uint16(8), uint8(3), int16(16+32*5), []byte{0x11, 0x3c}) // EXL3 K = 3, logical 123×128
	f.Fuzz(func(t *testing.T, kind uint8, a, b uint16, bits uint8, group int16, data []byte) {
		rows, cols := int(a%300), int(b%300)
		fill := func(n int) []byte {
			if n < 0 || n > 1<<20 {
				n = 0
			}
			out := make([]byte, n)
			for i := range out {
				if len(data) > 0 {
					out[i] = data[i%len(data)] ^ byte(i*7)
				}
			}
			return out
		}
		var ts []safetensors.Tensor
		var cfg *Config
		switch kind % 6 {
		case 0: // GPTQ
			cfg = &Config{Format: GPTQ, Bits: int(bits % 10), Group: int(group), CheckpointFormat: "gptq"}
			g := 1
			if group > 0 {
				g = max(1, rows*32/max(1, int(bits%10))/int(group))
			}
			ts = []safetensors.Tensor{
				{Name: "p.qweight", DType: dtype.I32, Shape: []int{rows, cols}, Data: fill(4 * rows * cols)},
				{Name: "p.scales", DType: dtype.F16, Shape: []int{g, cols}, Data: fill(2 * g * cols)},
				{Name: "p.qzeros", DType: dtype.I32, Shape: []int{g, (cols*int(bits%10) + 31) / 32}, Data: fill(4 * g * ((cols*int(bits%10) + 31) / 32))},
				{Name: "p.g_idx", DType: dtype.I32, Shape: []int{rows * 32 / max(1, int(bits%10))}, Data: fill(4 * rows * 32 / max(1, int(bits%10)))},
			}
		case 1: // FP8
			ts = []safetensors.Tensor{
				{Name: "p.weight", DType: dtype.F8E4M3, Shape: []int{rows, cols}, Data: fill(rows * cols)},
				{Name: "p.weight_scale", DType: dtype.BF16, Shape: []int{rows, 1}, Data: fill(2*rows + int(bits%2))},
			}
		case 2, 3: // FP4 family
			st := []dtype.DType{dtype.F16, dtype.U8, dtype.F8E4M3}[int(bits)%3]
			nb := max(1, int(group)%9)
			ts = []safetensors.Tensor{
				{Name: "p.weight", DType: dtype.U8, Shape: []int{rows, cols}, Data: fill(rows*cols + int(kind%2))},
				{Name: "p.weight_scale", DType: st, Shape: []int{rows, nb}, Data: fill(rows * nb * st.Size())},
				{Name: "p.weight_scale_2", DType: dtype.F32, Shape: []int{}, Data: fill(4)},
			}
		case 4: // Dense with random dtype
			dt := dtype.DType(bits % 13)
			ts = []safetensors.Tensor{{Name: "p.weight", DType: dt, Shape: []int{rows, cols}, Data: fill(rows * cols * dt.Size())}}
		case 5: // EXL3: trellis [In/16, Out/16, 16·K], suh [In], svh [Out], a codebook marker, a logical shape
			K := int(bits % 10)
			in, out := 16*rows, 16*cols
			ts = []safetensors.Tensor{
				{Name: "p.trellis", DType: dtype.I16, Shape: []int{rows, cols, 16 * K}, Data: fill(2 * rows * cols * 16 * K)},
				{Name: "p.suh", DType: dtype.F16, Shape: []int{in}, Data: fill(2 * in)},
				{Name: "p.svh", DType: dtype.F16, Shape: []int{out + int(group%2)}, Data: fill(2 * (out + int(group%2)))},
			}
			if group&4 != 0 {
				ts = append(ts, safetensors.Tensor{Name: "p.mcg", DType: dtype.I32, Shape: []int{1}, Data: fill(4)})
			}
			if group&8 != 0 {
				ts = append(ts, safetensors.Tensor{Name: "p.mul1", DType: dtype.I32, Shape: []int{1}, Data: fill(4)})
			}
			cfg = &Config{Format: EXL3}
			if group&16 != 0 {
				cfg.Shapes = map[string][2]int{"p": {out - int(group>>5), in - int(bits>>4)}}
			}
		}
		w, err := LoadWeight("p", getter(ts), cfg)
		if err != nil {
			if !strings.Contains(err.Error(), "p") {
				t.Fatalf("error without a name: %v", err)
			}
			return
		}
		if err := w.Validate(); err != nil {
			t.Fatalf("accepted weight does not validate: %v", err)
		}
		row := make([]float32, w.In)
		w.DequantizeRow(row, w.Out-1)
	})
}

func TestDenseAndScaleVariants(t *testing.T) {
	vals := []float32{1.5, -2.25, 0.125, 3e-5, -7, 65504}
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		w := &Weight{Name: "d", Format: Dense, DType: dt, Out: 2, In: 3, Data: make([]byte, 6*dt.Size())}
		want := make([]float32, 6)
		for i, v := range vals {
			switch dt {
			case dtype.F32:
				putF32(w.Data, i, v)
				want[i] = v
			case dtype.F16:
				h := dtype.F32ToF16(v)
				putU16(w.Data, i, h)
				want[i] = dtype.F16ToF32(h)
			case dtype.BF16:
				h := dtype.F32ToBF16(v)
				putU16(w.Data, i, h)
				want[i] = dtype.BF16ToF32(h)
			}
		}
		row := make([]float32, 3)
		for n := 0; n < 2; n++ {
			w.DequantizeRow(row, n)
			if !reflect.DeepEqual(row, want[3*n:3*n+3]) {
				t.Errorf("%v row %d: %v want %v", dt, n, row, want[3*n:3*n+3])
			}
		}
	}
	// FP8 with a BF16 [Out,1] scale and with one per-tensor scale
	data := []byte{0x38, 0xb8, 0x40, 0x00} // 1, −1, 2, 0
	bf := make([]byte, 4)
	putU16(bf, 0, dtype.F32ToBF16(0.5))
	putU16(bf, 1, dtype.F32ToBF16(4))
	for _, sc := range []safetensors.Tensor{
		{Name: "f.weight_scale", DType: dtype.BF16, Shape: []int{2, 1}, Data: bf},
		{Name: "f.weight_scale", DType: dtype.F32, Shape: []int{}, Data: []byte{0, 0, 0, 0x3f}}, // 0.5
	} {
		w, err := LoadWeight("f", getter([]safetensors.Tensor{
			{Name: "f.weight", DType: dtype.F8E4M3, Shape: []int{2, 2}, Data: data}, sc}), nil)
		if err != nil {
			t.Fatal(err)
		}
		row := make([]float32, 2)
		w.DequantizeRow(row, 1)
		want := []float32{8, 0}
		if len(sc.Shape) == 0 {
			want = []float32{1, 0}
		}
		if !reflect.DeepEqual(row, want) {
			t.Errorf("fp8 scale %v: row 1 = %v, want %v", sc.Shape, row, want)
		}
	}
	if _, err := LoadWeight("f", getter([]safetensors.Tensor{
		{Name: "f.weight", DType: dtype.F8E4M3, Shape: []int{2, 2}, Data: data},
		{Name: "f.weight_scale_inv", DType: dtype.F32, Shape: []int{1, 1}, Data: make([]byte, 4)}}), nil); err == nil || !strings.Contains(err.Error(), "block-wise") {
		t.Errorf("block FP8: %v", err)
	}
}

// TestLoadWeightMapped: a GPTQ (or FP4, MXFP4, NVFP4) weight is marked
// Mapped only when every tensor it aliases comes from a file mapping
// (kernels may then release those pages); heap tensors never are.
func TestLoadWeightMapped(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	spec, _ := ParseSpec("int4", 32, false)
	q, err := QuantizeRTN(randWeights(rng, 16*64), 16, 64, spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ConfigFor(spec)
	for _, unmapped := range []string{"", "x.qweight", "x.scales", "x.qzeros"} {
		ts := q.Tensors("x")
		for i := range ts {
			ts[i].Mapped = ts[i].Name != unmapped
		}
		w, err := LoadWeight("x", getter(ts), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if w.Mapped != (unmapped == "") {
			t.Errorf("%q on the heap: Mapped = %v", unmapped, w.Mapped)
		}
	}
	if w, _ := LoadWeight("x", getter(q.Tensors("x")), cfg); w.Mapped {
		t.Errorf("heap tensors: Mapped")
	}
	// the e2m1 formats: codes and scales both aliased
	for _, f := range []string{"fp4", "mxfp4", "nvfp4"} {
		spec, _ := ParseSpec(f, 0, true)
		q, err := QuantizeRTN(randWeights(rng, 16*64), 16, 64, spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, unmapped := range []string{"", "x.weight", "x.weight_scale"} {
			ts := q.Tensors("x")
			for i := range ts {
				ts[i].Mapped = ts[i].Name != unmapped
			}
			w, err := LoadWeight("x", getter(ts), ConfigFor(spec))
			if err != nil {
				t.Fatal(err)
			}
			if w.Mapped != (unmapped == "") {
				t.Errorf("%s, %q on the heap: Mapped = %v", f, unmapped, w.Mapped)
			}
		}
	}
}
