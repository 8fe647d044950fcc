package dtype

import (
	"math"
	"math/rand/v2"
	"testing"
)

// nearest returns the representable value of vals nearest to x (ties to the
// one whose code is even), the reference for the rounding conversions.
func nearest(x float64, codes int, val func(int) float64) int {
	best, bd := -1, math.Inf(1)
	for c := range codes {
		v := val(c)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		d := math.Abs(v - x)
		if d < bd || d == bd && c%2 == 0 {
			best, bd = c, d
		}
	}
	return best
}

func TestF16(t *testing.T) {
	for h := range 1 << 16 {
		f := F16ToF32(uint16(h))
		if f != f {
			if F32ToF16(f)&0x7c00 != 0x7c00 || F32ToF16(f)&0x3ff == 0 {
				t.Fatalf("NaN %#x did not stay NaN", h)
			}
			continue
		}
		if back := F32ToF16(f); back != uint16(h) {
			t.Fatalf("F16 %#04x → %g → %#04x", h, f, back)
		}
	}
	// rounding of random float32s against an exhaustive nearest search over
	// the positive half-precision values
	pos := func(c int) float64 { return float64(F16ToF32(uint16(c))) }
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		x := float32(math.Exp(rng.Float64()*24 - 17)) // 4e-8 .. 6.5e4
		if x > 65504 {
			continue
		}
		if got, want := F32ToF16(x), nearest(float64(x), 0x7c00, pos); int(got) != want {
			t.Fatalf("F32ToF16(%g) = %#04x (%g), nearest is %#04x (%g)", x, got, F16ToF32(got), want, pos(want))
		}
	}
	if F32ToF16(1e6) != 0x7c00 || F32ToF16(-1e6) != 0xfc00 {
		t.Error("overflow does not give ±Inf")
	}
}

func TestBF16(t *testing.T) {
	for h := range 1 << 16 {
		f := BF16ToF32(uint16(h))
		if f != f {
			continue
		}
		if back := F32ToBF16(f); back != uint16(h) {
			t.Fatalf("BF16 %#04x → %g → %#04x", h, f, back)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		x := math.Float32frombits(rng.Uint32())
		if x != x || math.IsInf(float64(x), 0) {
			continue
		}
		b := F32ToBF16(x)
		if math.IsInf(float64(BF16ToF32(b)), 0) {
			if math.Abs(float64(x)) < 3.3961e38 { // halfway between the largest bf16 and 2^128
				t.Fatalf("F32ToBF16(%g) overflowed", x)
			}
			continue
		}
		// no neighbouring bf16 value is nearer to x
		d := math.Abs(float64(x) - float64(BF16ToF32(b)))
		for _, nb := range []uint16{b - 1, b + 1} {
			v := float64(BF16ToF32(nb))
			if !math.IsNaN(v) && !math.IsInf(v, 0) && math.Signbit(v) == math.Signbit(float64(x)) && math.Abs(float64(x)-v) < d {
				t.Fatalf("F32ToBF16(%g) = %g, but %g is nearer", x, BF16ToF32(b), v)
			}
		}
	}
	if v := F32ToBF16(float32(math.NaN())); BF16ToF32(v) == BF16ToF32(v) {
		t.Error("NaN lost")
	}
}

func TestE4M3(t *testing.T) {
	val := func(c int) float64 { return float64(E4M3ToF32(uint8(c))) }
	for c := range 256 {
		f := E4M3ToF32(uint8(c))
		if f != f {
			if c&0x7f != 0x7f {
				t.Fatalf("code %#x is NaN", c)
			}
			continue
		}
		if back := F32ToE4M3(f); back != uint8(c) && !(f == 0 && back&0x7f == 0) {
			t.Fatalf("E4M3 %#x → %g → %#x", c, f, back)
		}
	}
	if E4M3ToF32(0x7e) != 448 || F32ToE4M3(1000) != 0x7e || F32ToE4M3(-1000) != 0xfe {
		t.Error("448 is not the saturating maximum")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		x := float32(math.Exp(rng.Float64()*16 - 10))
		if x > 448 {
			continue
		}
		if got, want := F32ToE4M3(x), nearest(float64(x), 0x7f, val); int(got) != want {
			t.Fatalf("F32ToE4M3(%g) = %#x (%g), nearest %#x (%g)", x, got, val(int(got)), want, val(want))
		}
	}
}

func TestSmallFloats(t *testing.T) {
	want := []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6}
	for c, w := range want {
		if E2M1ToF32(uint8(c)) != w || E2M1ToF32(uint8(c|8)) != -w {
			t.Fatalf("e2m1 code %d", c)
		}
	}
	for e := 1; e < 255; e++ {
		if got := E8M0ToF32(uint8(e)); float64(got) != math.Ldexp(1, e-127) {
			t.Fatalf("e8m0 %d = %g", e, got)
		}
	}
	if v := E8M0ToF32(255); v == v {
		t.Error("e8m0 0xff is not NaN")
	}
}

func TestNames(t *testing.T) {
	for _, d := range []DType{F64, F32, F16, BF16, F8E4M3, F8E5M2, I64, I32, I16, I8, U8, Bool} {
		p, err := Parse(d.String())
		if err != nil || p != d || d.Size() == 0 {
			t.Errorf("%v: parse %v %v, size %d", d, p, err, d.Size())
		}
	}
	if _, err := Parse("F12"); err == nil {
		t.Error("unknown name accepted")
	}
}
