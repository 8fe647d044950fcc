package quant

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/dtype"
)

// Codes is the unpacked form of a quantized Weight: one integer code per
// element in the HF orientation [Out, In], and the scales and zero points as
// plain numbers. Pack and Unpack convert between Codes and Weight exactly:
// Unpack(Pack(c)) == c and Pack(Unpack(w)) reproduces w's bytes.
type Codes struct {
	Format     Format
	Out, In    int
	Bits       int  // GPTQ: 2, 3, 4 or 8
	Group      int  // as Weight.Group
	Sym        bool // GPTQ
	ZeroOffset int  // GPTQ: 1 for v1 checkpoints, 0 for gptq_v2

	// Q holds Out·In codes, row-major [Out, In]: the GPTQ integer
	// (0 … 2^Bits−1), the e2m1 code (0 … 15) of FP4/MXFP4/NVFP4, or the
	// e4m3 byte of FP8.
	Q []uint8
	// Scales: GPTQ [Groups, Out] (fp16 values); FP4 [Out, In/Group] (fp16
	// values); MXFP4 [Out, In/32] (powers of two 2^-127 … 2^127); NVFP4
	// [Out, In/16] (e4m3 values); FP8 [Out] (any float32). Pack fails on a
	// scale its storage type cannot hold exactly.
	Scales []float32
	// Zeros (GPTQ only): [Groups, Out] effective zero points, that is the
	// stored value plus ZeroOffset; each must satisfy
	// 0 ≤ z − ZeroOffset < 2^Bits.
	Zeros []int32
	// GIdx (GPTQ only, optional): the group of each input row.
	GIdx        []int32
	GlobalScale float32 // NVFP4
}

// Pack stores c in its format's layout and returns the Weight, named name.
// It fails (never panics) on inconsistent shapes, codes out of range and
// scales or zero points the format cannot store exactly.
func Pack(name string, c *Codes) (*Weight, error) {
	w := &Weight{Name: name, Format: c.Format, Out: c.Out, In: c.In, Bits: c.Bits,
		Group: c.Group, Sym: c.Sym, ZeroOffset: c.ZeroOffset, GlobalScale: c.GlobalScale}
	if c.Out <= 0 || c.In <= 0 {
		return nil, fmt.Errorf("quant: %s: bad shape [%d, %d]", name, c.Out, c.In)
	}
	if len(c.Q) != c.Out*c.In {
		return nil, fmt.Errorf("quant: %s: %d codes, want Out·In = %d", name, len(c.Q), c.Out*c.In)
	}
	switch c.Format {
	case GPTQ:
		if err := packGPTQ(w, c); err != nil {
			return nil, err
		}
	case FP8:
		w.Bits, w.Group, w.Sym = 8, c.In, true
		if len(c.Scales) != c.Out {
			return nil, fmt.Errorf("quant: %s.weight_scale: %d scales, want %d", name, len(c.Scales), c.Out)
		}
		w.Data = append([]byte(nil), c.Q...)
		w.Scales = make([]byte, 4*c.Out)
		for i, s := range c.Scales {
			putF32(w.Scales, i, s)
		}
	case FP4, MXFP4, NVFP4:
		if err := packFP4(w, c); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("quant: %s: Pack does not handle format %v", name, c.Format)
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return w, nil
}

func packGPTQ(w *Weight, c *Codes) error {
	name := w.Name
	if c.Bits != 2 && c.Bits != 3 && c.Bits != 4 && c.Bits != 8 {
		return fmt.Errorf("quant: %s: GPTQ bits %d not supported (want 2, 3, 4 or 8)", name, c.Bits)
	}
	if c.Group <= 0 || c.In%c.Group != 0 {
		return fmt.Errorf("quant: %s: group size %d does not divide In = %d", name, c.Group, c.In)
	}
	if c.In*c.Bits%32 != 0 {
		return fmt.Errorf("quant: %s.qweight: In = %d is not a multiple of %d, as %d-bit packing needs", name, c.In, 32/gcd(32, c.Bits), c.Bits)
	}
	if c.ZeroOffset != 0 && c.ZeroOffset != 1 {
		return fmt.Errorf("quant: %s: zero offset %d (want 0 or 1)", name, c.ZeroOffset)
	}
	groups := c.In / c.Group
	out, bits := c.Out, c.Bits
	maxq := uint8(1<<uint(bits) - 1)
	qrows, zcols := gptqDims(c.In, out, bits)
	for i, q := range c.Q {
		if q > maxq {
			return fmt.Errorf("quant: %s.qweight: code %d at [%d, %d] exceeds %d bits", name, q, i/c.In, i%c.In, bits)
		}
	}
	// Pack row by row of qweight: the 32 values of a unit (bits words) are
	// ORed into place for every column n, so both Q (along k) and qweight
	// (along n) are walked contiguously.
	words := make([]uint32, qrows*out)
	for u := 0; u < c.In/32; u++ {
		for n := 0; n < out; n++ {
			q := c.Q[n*c.In+32*u : n*c.In+32*u+32]
			for j, v := range q {
				p := j * bits
				r, off := u*bits+p>>5, uint(p&31)
				words[r*out+n] |= uint32(v) << off
				if int(off)+bits > 32 {
					words[(r+1)*out+n] |= uint32(v) >> (32 - off)
				}
			}
		}
	}
	if tail := c.In % 32; tail != 0 { // In·bits is a multiple of 32: whole words remain
		u := c.In / 32
		for n := 0; n < out; n++ {
			for j := 0; j < tail; j++ {
				v := c.Q[n*c.In+32*u+j]
				p := j * bits
				r, off := u*bits+p>>5, uint(p&31)
				words[r*out+n] |= uint32(v) << off
				if int(off)+bits > 32 {
					words[(r+1)*out+n] |= uint32(v) >> (32 - off)
				}
			}
		}
	}
	w.Data = make([]byte, 4*qrows*out)
	for i, v := range words {
		putU32(w.Data, i, v)
	}
	if len(c.Scales) != groups*out {
		return fmt.Errorf("quant: %s.scales: %d scales, want [%d, %d]", name, len(c.Scales), groups, out)
	}
	w.Scales = make([]byte, 2*groups*out)
	for i, s := range c.Scales {
		h := dtype.F32ToF16(s)
		if dtype.F16ToF32(h) != s {
			return fmt.Errorf("quant: %s.scales: scale %g at %d is not an fp16 value", name, s, i)
		}
		putU16(w.Scales, i, h)
	}
	if len(c.Zeros) != groups*out {
		return fmt.Errorf("quant: %s.qzeros: %d zero points, want [%d, %d]", name, len(c.Zeros), groups, out)
	}
	w.Zeros = make([]byte, 4*groups*zcols)
	for g := 0; g < groups; g++ {
		base := g * zcols
		get := func(r int) uint32 { return u32At(w.Zeros, base+r) }
		set := func(r int, v uint32) { putU32(w.Zeros, base+r, v) }
		for n := 0; n < out; n++ {
			z := c.Zeros[g*out+n] - int32(c.ZeroOffset)
			if z < 0 || z > int32(maxq) {
				return fmt.Errorf("quant: %s.qzeros: zero point %d at [%d, %d] cannot be stored in %d bits with offset %d",
					name, c.Zeros[g*out+n], g, n, bits, c.ZeroOffset)
			}
			streamPut(get, set, n, bits, uint32(z))
		}
	}
	if c.GIdx != nil {
		w.GIdx = append([]int32(nil), c.GIdx...)
	}
	w.ZerosUniform = zerosUniform(w.Zeros, groups, out, bits)
	return nil
}

func packFP4(w *Weight, c *Codes) error {
	name := w.Name
	w.Bits, w.Sym = 4, true
	switch c.Format {
	case MXFP4:
		w.Group = 32
	case NVFP4:
		w.Group = 16
	}
	if w.Group <= 0 || w.Group%2 != 0 || c.In%w.Group != 0 {
		return fmt.Errorf("quant: %s: group size %d does not divide In = %d (or is odd)", name, w.Group, c.In)
	}
	if c.Format != NVFP4 && c.GlobalScale != 0 {
		return fmt.Errorf("quant: %s: global scale is for NVFP4 only", name)
	}
	nb := c.In / w.Group
	w.Data = make([]byte, c.Out*c.In/2)
	for i, q := range c.Q {
		if q > 15 {
			return fmt.Errorf("quant: %s.weight: code %d at %d is not a 4-bit code", name, q, i)
		}
		w.Data[i/2] |= q << (4 * uint(i&1))
	}
	if len(c.Scales) != c.Out*nb {
		return fmt.Errorf("quant: %s.weight_scale: %d scales, want [%d, %d]", name, len(c.Scales), c.Out, nb)
	}
	switch c.Format {
	case FP4:
		w.Scales = make([]byte, 2*len(c.Scales))
		for i, s := range c.Scales {
			h := dtype.F32ToF16(s)
			if dtype.F16ToF32(h) != s {
				return fmt.Errorf("quant: %s.weight_scale: scale %g at %d is not an fp16 value", name, s, i)
			}
			putU16(w.Scales, i, h)
		}
	case MXFP4:
		w.Scales = make([]byte, len(c.Scales))
		for i, s := range c.Scales {
			e, ok := toE8M0(s)
			if !ok {
				return fmt.Errorf("quant: %s.weight_scale: scale %g at %d is not a power of two in [2^-127, 2^127]", name, s, i)
			}
			w.Scales[i] = e
		}
	case NVFP4:
		w.Scales = make([]byte, len(c.Scales))
		for i, s := range c.Scales {
			e := dtype.F32ToE4M3(s)
			if dtype.E4M3ToF32(e) != s || math.IsNaN(float64(s)) {
				return fmt.Errorf("quant: %s.weight_scale: scale %g at %d is not an e4m3 value", name, s, i)
			}
			w.Scales[i] = e
		}
	}
	return nil
}

// toE8M0 returns the e8m0 code of s when s is exactly 2^e, −127 ≤ e ≤ 127.
func toE8M0(s float32) (uint8, bool) {
	for e := 0; e < 255; e++ {
		if dtype.E8M0ToF32(uint8(e)) == s {
			return uint8(e), true
		}
	}
	return 0, false
}

// Unpack returns the codes, scales and zero points of a quantized Weight.
// The weight is validated first.
func (w *Weight) Unpack() (*Codes, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	c := &Codes{Format: w.Format, Out: w.Out, In: w.In, Bits: w.Bits, Group: w.Group,
		Sym: w.Sym, ZeroOffset: w.ZeroOffset, GlobalScale: w.GlobalScale}
	c.Q = make([]uint8, w.Out*w.In)
	switch w.Format {
	case GPTQ:
		groups := w.Groups()
		for n := 0; n < w.Out; n++ {
			for k := 0; k < w.In; k++ {
				c.Q[n*w.In+k] = uint8(w.gptqQ(n, k))
			}
		}
		c.Scales = make([]float32, groups*w.Out)
		c.Zeros = make([]int32, groups*w.Out)
		for g := 0; g < groups; g++ {
			for n := 0; n < w.Out; n++ {
				c.Scales[g*w.Out+n] = dtype.F16ToF32(u16At(w.Scales, g*w.Out+n))
				c.Zeros[g*w.Out+n] = w.gptqZero(g, n)
			}
		}
		if w.GIdx != nil {
			c.GIdx = append([]int32(nil), w.GIdx...)
		}
	case FP8:
		copy(c.Q, w.Data)
		c.Scales = make([]float32, w.Out)
		for n := range c.Scales {
			c.Scales[n] = f32At(w.Scales, n)
		}
	case FP4, MXFP4, NVFP4:
		for i := range c.Q {
			c.Q[i] = w.Data[i/2] >> (4 * uint(i&1)) & 15
		}
		nb := w.In / w.Group
		c.Scales = make([]float32, w.Out*nb)
		for n := 0; n < w.Out; n++ {
			for b := 0; b < nb; b++ {
				c.Scales[n*nb+b] = w.scaleAt(n, b)
			}
		}
	default:
		return nil, fmt.Errorf("quant: %s: Unpack does not handle format %v", w.Name, w.Format)
	}
	return c, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
