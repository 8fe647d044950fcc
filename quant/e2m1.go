package quant

import "math"

// e2m1Value holds the value of each 4-bit e2m1 code (sign in bit 3).
var e2m1Value = [16]float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6}

// E2M1Value returns the value of the e2m1 code c (low 4 bits of c):
// ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.
func E2M1Value(c uint8) float32 { return e2m1Value[c&15] }

// ToE2M1 rounds v to the nearest e2m1 value, ties to the even code (as the
// OCP MX specification and NVIDIA's conversions do), saturating at ±6, and
// returns its code. NaN becomes +0.
func ToE2M1(v float32) uint8 {
	var sign uint8
	if math.Signbit(float64(v)) {
		sign = 8
		v = -v
	}
	var c uint8
	switch {
	case !(v > 0.25): // includes NaN; 0.25 ties to 0
		c = 0
	case v < 0.75:
		c = 1 // 0.5
	case v <= 1.25:
		c = 2 // 1.0 (0.75 and 1.25 tie to the even code 2)
	case v < 1.75:
		c = 3 // 1.5
	case v <= 2.5:
		c = 4 // 2 (1.75 and 2.5 tie to 4)
	case v < 3.5:
		c = 5 // 3
	case v <= 5:
		c = 6 // 4 (3.5 and 5 tie to 6)
	default:
		c = 7 // 6, saturating
	}
	if c == 0 {
		return sign // keeps -0 as code 8, like the hardware conversions
	}
	return sign | c
}
