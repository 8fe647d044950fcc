// Package dtype names the element types that tensors are stored in and
// converts between the 16- and 8-bit floating-point encodings and float32.
//
// The conversions are exact where the target can represent the value and
// round to nearest-even otherwise, as IEEE 754 and the PyTorch conversions do.
package dtype

import (
	"fmt"
	"math"
)

// DType is the element type of a stored tensor.
type DType uint8

// The element types found in checkpoints.
const (
	Invalid DType = iota
	F64
	F32
	F16
	BF16
	F8E4M3 // float8 e4m3fn: no infinities, 0x7F/0xFF are NaN
	F8E5M2
	I64
	I32
	I16
	I8
	U8
	Bool
)

var names = [...]string{
	Invalid: "invalid", F64: "F64", F32: "F32", F16: "F16", BF16: "BF16",
	F8E4M3: "F8_E4M3", F8E5M2: "F8_E5M2", I64: "I64", I32: "I32", I16: "I16",
	I8: "I8", U8: "U8", Bool: "BOOL",
}

var sizes = [...]int{
	Invalid: 0, F64: 8, F32: 4, F16: 2, BF16: 2, F8E4M3: 1, F8E5M2: 1,
	I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, Bool: 1,
}

// String returns the safetensors name of the type ("F16", "BF16", ...).
func (d DType) String() string {
	if int(d) < len(names) {
		return names[d]
	}
	return fmt.Sprintf("dtype(%d)", d)
}

// Size returns the number of bytes of one element.
func (d DType) Size() int {
	if int(d) < len(sizes) {
		return sizes[d]
	}
	return 0
}

// Parse returns the DType with the given safetensors name.
func Parse(name string) (DType, error) {
	for d, n := range names {
		if d != int(Invalid) && n == name {
			return DType(d), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", name)
}

// F16ToF32 converts an IEEE 754 binary16 value to float32 (exact).
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// subnormal: value = man × 2^-24
	f := float32(man) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// F32ToF16 converts a float32 to binary16, rounding to nearest-even;
// values beyond the range become ±Inf, NaN stays NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00 // quiet NaN
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign // underflows to zero
		}
		// subnormal: shift the mantissa (with its implicit 1) into place
		m := man | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		rest := m & (1<<shift - 1)
		r := m >> shift
		if rest > half || (rest == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rest := man & 0x1fff
	if rest > 0x1000 || (rest == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, which is the right result (up to Inf)
	}
	return sign | uint16(r)
}

// BF16ToF32 converts a bfloat16 value to float32 (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts a float32 to bfloat16, rounding to nearest-even.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it a NaN
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// E4M3ToF32 converts a float8 e4m3fn value (bias 7, no infinities,
// S.1111.111 is NaN, largest finite 448) to float32 (exact).
func E4M3ToF32(v uint8) float32 {
	sign := uint32(v>>7) << 31
	exp := uint32(v>>3) & 0xf
	man := uint32(v) & 7
	if exp == 0xf && man == 7 {
		return math.Float32frombits(sign | 0x7fc00000)
	}
	if exp == 0 {
		f := float32(man) * (1.0 / 512) // man × 2^-9
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+120)<<23 | man<<20)
}

// F32ToE4M3 converts a float32 to float8 e4m3fn, rounding to nearest-even and
// saturating to ±448 (the behaviour of the usual "satfinite" conversion).
// NaN becomes NaN.
func F32ToE4M3(f float32) uint8 {
	if f != f {
		return 0x7f
	}
	var sign uint8
	if math.Signbit(float64(f)) {
		sign = 0x80
		f = -f
	}
	if f >= 448 {
		return sign | 0x7e
	}
	// Find the nearest representable value by scanning the 127 finite
	// magnitudes' binary structure: compute exponent and round mantissa.
	b := math.Float32bits(f)
	exp := int32(b>>23) - 127
	if exp < -6 { // subnormal range: multiples of 2^-9
		q := f * 512
		r := float32(math.RoundToEven(float64(q)))
		return sign | uint8(r) // r ≤ 8 → 8 is the smallest normal (0x08)
	}
	man := b & 0x7fffff
	r := uint32(exp+7)<<3 | man>>20
	rest := man & 0xfffff
	if rest > 0x80000 || (rest == 0x80000 && r&1 == 1) {
		r++
	}
	if r > 0x7e {
		r = 0x7e
	}
	return sign | uint8(r)
}

// E2M1ToF32 converts a 4-bit float (e2m1: values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6})
// held in the low nibble of v to float32.
func E2M1ToF32(v uint8) float32 { return e2m1Values[v&0xf] }

var e2m1Values = [16]float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6}

// E8M0ToF32 converts an e8m0 scale (a bare biased exponent, as in MXFP4) to
// float32: 2^(v-127); 0xFF is NaN.
func E8M0ToF32(v uint8) float32 {
	if v == 0xff {
		return float32(math.NaN())
	}
	if v == 0 {
		return math.Float32frombits(0x00400000) // 2^-127, a float32 subnormal
	}
	return math.Float32frombits(uint32(v) << 23)
}
