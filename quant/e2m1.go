package quant

import "math"

// e2m1Value holds the value of each 4-bit e2m1 code (sign in bit 3).
var e2m1Value = [16]float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6}

// e2m1Code holds the code of each e2m1 magnitude m, indexed by 2m (0 … 12).
var e2m1Code = [13]uint8{0, 1, 2, 3, 4, 0, 5, 0, 6, 0, 0, 0, 7}

// E2M1Value returns the value of the e2m1 code c (low 4 bits of c):
// ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.
func E2M1Value(c uint8) float32 { return e2m1Value[c&15] }

// ToE2M1 rounds v to the nearest e2m1 value, ties to the even code (as the
// OCP MX specification and NVIDIA's conversions do), saturating at ±6, and
// returns its code. The sign is kept (−0 and small negative values give
// code 8); NaN becomes ±0.
//
// Branch-free on finite input (the quantizers' scale search calls it for
// every element of every candidate scale).
func ToE2M1(v float32) uint8 {
	b := math.Float32bits(v)
	sign := uint8(b>>28) & 8
	b &^= 1 << 31
	if b >= 0x7F800000 { // ±Inf saturates, NaN gives ±0
		if b == 0x7F800000 {
			return sign | 7
		}
		return sign
	}
	return sign | e2m1Code[int(2*e2m1Round(math.Float32frombits(b)))]
}

// e2m1Round returns the e2m1 magnitude nearest a (finite, ≥ 0), ties to
// the even code, saturating at 6: the grid step around a is 0.5 below 2
// and half the power of two at or below a above it (1 in [2, 4), 2 from
// 4), so a/step lies in [0, 4) and rounding it to an integer, ties to
// even, picks the nearest grid point with the even code on a tie.
func e2m1Round(a float32) float32 {
	// step: the exponent of a less one, at least 0.5 (0x3F000000)
	sb := max(int32(math.Float32bits(a)&0x7F800000)-1<<23, 0x3F000000)
	step := math.Float32frombits(uint32(sb))
	const magic = 0x1.8p23 // adding and removing it rounds to an integer, ties to even
	m := float32(float32(a/step+magic)-magic) * step
	if m > 6 {
		m = 6
	}
	return m
}
