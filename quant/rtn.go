package quant

import (
	"fmt"
	"math"
	"strings"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/internal/dense"
)

// Spec says how to quantize a weight matrix.
type Spec struct {
	Format Format // GPTQ (integers), FP8, FP4, MXFP4, NVFP4 or EXL3
	Bits   int    // GPTQ: 2, 3, 4 or 8 (the FP formats imply theirs); EXL3: K, 1 to 8
	// Group is the group size along In: GPTQ and FP4 any divisor of In
	// (0 or In: one scale per output row); MXFP4 32, NVFP4 16 (0 picks
	// these); FP8 0 or In (per output row).
	Group int
	Sym   bool // GPTQ: symmetric (zero point 2^(Bits−1)); the FP formats are always symmetric
	// V2 writes GPTQ zero points in the "gptq_v2" convention (stored as is,
	// ZeroOffset 0) instead of the default original "gptq" (v1) one, which
	// stores z−1 and so cannot represent z = 0 (the asymmetric quantizer then
	// keeps z ≥ 1).
	V2 bool
	// Codebook is EXL3's trellis codebook.
	Codebook Codebook
	// MaxScale makes round-to-nearest take each group's scale (and zero
	// point) from the group's extreme values, as plain RTN does, instead of
	// searching for those of least squared error (see QuantizeRTN). It
	// also applies to GPTQ's group parameters.
	MaxScale bool
}

// String returns the spec as the CLI names it ("int4 g128 sym", "nvfp4").
func (s Spec) String() string {
	switch s.Format {
	case GPTQ:
		g := "per-channel"
		if s.Group > 0 {
			g = fmt.Sprintf("g%d", s.Group)
		}
		sym := "asym"
		if s.Sym {
			sym = "sym"
		}
		return fmt.Sprintf("int%d %s %s", s.Bits, g, sym)
	case FP4:
		return fmt.Sprintf("fp4 g%d", s.Group)
	case EXL3:
		return fmt.Sprintf("exl3 %d-bit %s", s.Bits, s.Codebook)
	}
	return s.Format.String()
}

// ParseSpec turns the CLI's --format/--group/--sym into a Spec. format is
// one of "int8", "int4", "int3", "int2" (GPTQ layout), "fp4", "mxfp4",
// "nvfp4", "fp8". group ≤ 0 means per-channel for the integer formats and
// FP8, 32 for fp4, and the fixed block of mxfp4 (32) and nvfp4 (16); sym is
// ignored by the floating-point formats, which are symmetric.
func ParseSpec(format string, group int, sym bool) (Spec, error) {
	if group < 0 {
		group = 0
	}
	f := strings.ToLower(strings.TrimSpace(format))
	switch f {
	case "int8", "int4", "int3", "int2":
		return Spec{Format: GPTQ, Bits: int(f[3] - '0'), Group: group, Sym: sym}, nil
	case "fp4":
		if group == 0 {
			group = 32
		}
		if group%2 != 0 {
			return Spec{}, fmt.Errorf("quant: fp4 group size %d must be even", group)
		}
		return Spec{Format: FP4, Bits: 4, Group: group, Sym: true}, nil
	case "mxfp4":
		if group != 0 && group != 32 {
			return Spec{}, fmt.Errorf("quant: mxfp4 uses blocks of 32, not group %d", group)
		}
		return Spec{Format: MXFP4, Bits: 4, Group: 32, Sym: true}, nil
	case "nvfp4":
		if group != 0 && group != 16 {
			return Spec{}, fmt.Errorf("quant: nvfp4 uses blocks of 16, not group %d", group)
		}
		return Spec{Format: NVFP4, Bits: 4, Group: 16, Sym: true}, nil
	case "fp8":
		if group != 0 {
			return Spec{}, fmt.Errorf("quant: fp8 has one scale per output channel; group %d not supported", group)
		}
		return Spec{Format: FP8, Bits: 8, Sym: true}, nil
	}
	return Spec{}, fmt.Errorf("quant: unknown format %q (want int8, int4, int3, int2, fp4, mxfp4, nvfp4 or fp8)", format)
}

// Fits reports why spec cannot store a weight with in input columns (a
// group that does not divide in, unsupported bits), or nil when it can.
func (s Spec) Fits(in int) error {
	group := s.Group
	if group <= 0 {
		group = in
	}
	switch s.Format {
	case GPTQ:
		if s.Bits != 2 && s.Bits != 3 && s.Bits != 4 && s.Bits != 8 {
			return fmt.Errorf("quant: GPTQ bits %d not supported (want 2, 3, 4 or 8)", s.Bits)
		}
		if in%group != 0 {
			return fmt.Errorf("quant: group size %d does not divide In = %d", group, in)
		}
	case FP4:
		if in%group != 0 || group%2 != 0 {
			return fmt.Errorf("quant: fp4 group size %d does not divide In = %d (or is odd)", group, in)
		}
	case MXFP4:
		if in%32 != 0 {
			return fmt.Errorf("quant: mxfp4 needs In (%d) to be a multiple of 32", in)
		}
	case NVFP4:
		if in%16 != 0 {
			return fmt.Errorf("quant: nvfp4 needs In (%d) to be a multiple of 16", in)
		}
	case FP8:
		if s.Group != 0 && s.Group != in {
			return fmt.Errorf("quant: fp8 has one scale per output row; group %d not supported", s.Group)
		}
	}
	return nil
}

// QuantizeRTN quantizes the row-major [out, in] matrix w (the HF Linear
// layout) to spec by rounding to nearest. With spec.MaxScale each group's
// scale comes from its extreme values (plain round-to-nearest):
//
//   - GPTQ integers, per group of Group inputs and per output row, as GPTQ's
//     quantizer does: the range [min(w,0), max(w,0)]; symmetric: scale =
//     2·max|w|/(2^Bits−1), zero 2^(Bits−1) (for every group, also one
//     whose weights all have the same sign); asymmetric: scale =
//     (max−min)/(2^Bits−1), zero = round(−min/scale); and then
//     q = clamp(round(w/scale) + zero, 0, 2^Bits−1). The scale is rounded up
//     to fp16 before the codes are chosen, so every element is within
//     scale/2 of its stored value.
//   - FP4: scale = absmax/6 rounded up to fp16, codes rounded to nearest e2m1.
//   - MXFP4: per block of 32, the shared exponent of the OCP MX spec,
//     floor(log2(absmax)) − 2, and e2m1 codes saturating at ±6.
//   - NVFP4: global scale = absmax(tensor)/(448·6); per block of 16 the e4m3
//     scale absmax/6/global; codes = e2m1(w / (e4m3·global)).
//   - FP8: per output row scale = absmax/448, codes e4m3(w/scale).
//
// By default (MaxScale false) the group scales of the integer and FP4
// formats are instead searched for the least squared error Σ(w − ŵ)² of
// the group (see groupParams, fp4Scale, mxfp4Exponent and nvfp4Scale):
// smaller scales clip the largest weights a little and round the rest more
// finely. The plain scale is one of the candidates, so the error of every
// group is never above plain round-to-nearest's; codes are still the
// nearest to each weight for the chosen scale. FP8 and NVFP4's global scale
// are as above in both modes.
//
// Ties round to even. Rows are quantized in parallel (the result does not
// depend on the number of cores). The weight's Name is empty.
func QuantizeRTN(w []float32, out, in int, spec Spec) (*Weight, error) {
	if out <= 0 || in <= 0 || len(w) != out*in {
		return nil, fmt.Errorf("quant: QuantizeRTN: %d values for shape [%d, %d]", len(w), out, in)
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("quant: QuantizeRTN: weight [%d, %d] is %g", i/in, i%in, v)
		}
	}
	if err := spec.Fits(in); err != nil {
		return nil, err
	}
	group := spec.Group
	if group <= 0 {
		group = in
	}
	c := &Codes{Format: spec.Format, Out: out, In: in, Group: group, Q: make([]uint8, out*in)}
	search := !spec.MaxScale
	switch spec.Format {
	case GPTQ:
		c.Bits, c.Sym = spec.Bits, spec.Sym
		if !spec.V2 {
			c.ZeroOffset = 1
		}
		rtnGPTQ(c, w, search)
	case FP4:
		rtnFP4(c, w, search)
	case MXFP4:
		c.Group = 32
		rtnMXFP4(c, w, search)
	case NVFP4:
		c.Group = 16
		rtnNVFP4(c, w, search)
	case FP8:
		c.Group = in
		c.Scales = make([]float32, out)
		for n := 0; n < out; n++ {
			row := w[n*in : (n+1)*in]
			s := absMax(row) / 448
			if s == 0 {
				s = 1
			}
			c.Scales[n] = s
			for k, v := range row {
				c.Q[n*in+k] = dtype.F32ToE4M3(v / s)
			}
		}
	default:
		return nil, fmt.Errorf("quant: QuantizeRTN: format %v not supported", spec.Format)
	}
	return Pack("", c)
}

// f16Up returns the smallest fp16 value ≥ v (v ≥ 0, finite), and false if
// that overflows fp16.
func f16Up(v float64) (float32, bool) {
	if v >= 0x1p-14 && v <= 65504 {
		// normal fp16 range: round the float64 mantissa up to 10 bits
		// (the scale search calls this for every candidate)
		const low = 1<<42 - 1
		b := math.Float64bits(v)
		if b&low != 0 {
			b = (b | low) + 1
		}
		return float32(math.Float64frombits(b)), true
	}
	h := dtype.F32ToF16(float32(v))
	if float64(dtype.F16ToF32(h)) < v {
		h++
	}
	f := dtype.F16ToF32(h)
	return f, !math.IsInf(float64(f), 0)
}

func absMax(v []float32) float32 {
	var m float32
	for _, x := range v {
		if x < 0 {
			x = -x
		}
		if x > m {
			m = x
		}
	}
	return m
}

func rtnGPTQ(c *Codes, w []float32, search bool) {
	out, in, group := c.Out, c.In, c.Group
	groups := in / group
	maxq := float64(int(1)<<uint(c.Bits) - 1)
	c.Scales = make([]float32, groups*out)
	c.Zeros = make([]int32, groups*out)
	parallelRows(out, in, func(n0, n1 int) {
		xs := make([]float64, group)
		for n := n0; n < n1; n++ {
			for g := 0; g < groups; g++ {
				vals := w[n*in+g*group : n*in+(g+1)*group]
				for k, v := range vals {
					xs[k] = float64(v)
				}
				scale, zero := groupParams(xs, c.Bits, c.Sym, c.ZeroOffset, search)
				c.Scales[g*out+n] = scale
				c.Zeros[g*out+n] = int32(zero)
				for k, x := range xs {
					q := math.RoundToEven(x/float64(scale)) + zero
					if q < 0 {
						q = 0
					} else if q > maxq {
						q = maxq
					}
					c.Q[n*in+g*group+k] = uint8(q)
				}
			}
		}
	})
}

// gptqParams returns the scale (an fp16 value) and zero point of a GPTQ
// group whose values span [xmin, xmax] (xmin ≤ 0 ≤ xmax), as QuantizeRTN
// documents; GPTQ's quantizer uses the same.
func gptqParams(xmin, xmax float64, bits int, sym bool, zeroOffset int) (float32, float64) {
	maxq := float64(int(1)<<uint(bits) - 1)
	if sym {
		// Always the symmetric range ±max|w| (GPTQ's own quantizer
		// keeps min = 0 for an all-positive group, which clips it).
		xmax = math.Max(-xmin, xmax)
		xmin = -xmax
	}
	if xmin == 0 && xmax == 0 {
		xmin, xmax = -1, 1
	}
	scale, ok := f16Up((xmax - xmin) / maxq)
	if !ok {
		scale = 65504 // values beyond fp16's range saturate
	}
	var zero float64
	if sym {
		zero = float64(int(1) << uint(bits-1))
	} else {
		zero = math.RoundToEven(-xmin / float64(scale))
		zero = math.Max(0, math.Min(maxq, zero))
		if zero == 0 && zeroOffset == 1 {
			// v1 stores z−1: z = 0 would wrap. Use z = 1 and a scale
			// that still reaches xmax (then xmin ≥ −scale/2 holds).
			zero = 1
			if s, ok := f16Up(xmax / (maxq - 1)); ok {
				scale = s
			}
		}
	}
	return scale, zero
}

func rtnFP4(c *Codes, w []float32, search bool) {
	out, in, group := c.Out, c.In, c.Group
	nb := in / group
	c.Scales = make([]float32, out*nb)
	parallelRows(out, in, func(n0, n1 int) {
		xs := make([]float64, group)
		for n := n0; n < n1; n++ {
			for b := 0; b < nb; b++ {
				vals := w[n*in+b*group : n*in+(b+1)*group]
				for k, v := range vals {
					xs[k] = float64(v)
				}
				s := fp4Scale(xs, absMax(vals), search)
				c.Scales[n*nb+b] = s
				for k, x := range xs {
					if s == 0 {
						c.Q[n*in+b*group+k] = 0
						continue
					}
					c.Q[n*in+b*group+k] = ToE2M1(float32(x / float64(s)))
				}
			}
		}
	})
}

func rtnMXFP4(c *Codes, w []float32, search bool) {
	out, in := c.Out, c.In
	nb := in / 32
	c.Scales = make([]float32, out*nb)
	parallelRows(out, in, func(n0, n1 int) {
		xs := make([]float64, 32)
		for n := n0; n < n1; n++ {
			for b := 0; b < nb; b++ {
				vals := w[n*in+b*32 : n*in+(b+1)*32]
				for k, v := range vals {
					xs[k] = float64(v)
				}
				e := mxfp4Exponent(xs, absMax(vals), search)
				s := dtype.E8M0ToF32(uint8(e + 127))
				c.Scales[n*nb+b] = s
				for k, x := range xs {
					c.Q[n*in+b*32+k] = ToE2M1(float32(x / float64(s)))
				}
			}
		}
	})
}

func rtnNVFP4(c *Codes, w []float32, search bool) {
	out, in := c.Out, c.In
	nb := in / 16
	gs := absMax(w) / (448 * 6)
	if gs == 0 {
		gs = 1
	}
	c.GlobalScale = gs
	c.Scales = make([]float32, out*nb)
	parallelRows(out, in, func(n0, n1 int) {
		xs := make([]float64, 16)
		for n := n0; n < n1; n++ {
			for b := 0; b < nb; b++ {
				vals := w[n*in+b*16 : n*in+(b+1)*16]
				for k, v := range vals {
					xs[k] = float64(v)
				}
				s := nvfp4Scale(xs, absMax(vals), gs, search)
				c.Scales[n*nb+b] = s
				eff := float64(s) * float64(gs)
				for k, x := range xs {
					if eff == 0 {
						c.Q[n*in+b*16+k] = 0
						continue
					}
					c.Q[n*in+b*16+k] = ToE2M1(float32(x / eff))
				}
			}
		}
	})
}

// parallelRows calls f on consecutive ranges of the out rows of an
// [out, in] matrix, one per core when the matrix is large enough to be
// worth it (at least 2^15 weights a part). The rows are independent, so
// the result does not depend on the split.
func parallelRows(out, in int, f func(n0, n1 int)) {
	dense.Range(0, out, max(1, (1<<15)/max(in, 1)), f)
}
