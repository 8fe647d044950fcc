package quant

import (
	"fmt"
	"math"
	"strings"
	"sync"
)

// Codebook is a computed trellis codebook: a map from a 16-bit trellis
// state (the last 16 bits of the tile's bit stream) to a weight value,
// evaluated with integer arithmetic modulo 2^32 and fp16 arithmetic, as the
// EXL3 (exllamav3) and QTIP kernels do. The values of each codebook have a
// roughly Gaussian distribution of mean 0 and standard deviation
// CodebookScale (3INST, MCG) or 1 (MUL1, 1MAD); see CodebookStd.
type Codebook uint8

// The codebooks. The first three are EXL3's (a checkpoint selects MCG or
// MUL1 with a marker tensor, 3INST otherwise); 1MAD is QTIP's and is only
// used for rate-distortion comparisons (no checkpoint stores it).
const (
	// Codebook3INST: x = x·89226354 + 64248484; x = (x & 0x8FFF8FFF) ^
	// 0x3B603B60; value = fp16(high half) + fp16(low half), the sum rounded
	// to fp16 (the kernel's one fp16 addition).
	Codebook3INST Codebook = iota
	// CodebookMCG: x = x·0xCBAC1FED, then the mask, xor and half-sum of
	// 3INST.
	CodebookMCG
	// CodebookMUL1: x = x·0x83DCD12D; s = sum of the four bytes of x;
	// value = (s − 510) / 147.7, evaluated as the kernel does: one fp16
	// fused multiply-add fp16(1024 + s)·fp16(1/147.7) + fp16(−1534/147.7)
	// (the constants 0x1EEE and 0xC931), rounded once to fp16. It differs
	// from the exact quotient by less than 0.005.
	CodebookMUL1
	// Codebook1MAD: QTIP's 1MAD, x = x·34038481 + 76625530; value =
	// (byte sum − 510) / 147.800537109375 (float32).
	Codebook1MAD
	numCodebooks
)

// CodebookScale is the standard deviation of the 3INST codebook's values
// over all 65,536 states (exllamav3's codebook_scale, which exllamav3 uses
// for every codebook and corrects with its global scale search).
const CodebookScale = 1.24371088

var codebookNames = [...]string{Codebook3INST: "3inst", CodebookMCG: "mcg", CodebookMUL1: "mul1", Codebook1MAD: "1mad"}

// String returns the codebook's name as the CLI and quantization_config
// spell it ("3inst", "mcg", "mul1", "1mad").
func (c Codebook) String() string {
	if int(c) < len(codebookNames) {
		return codebookNames[c]
	}
	return fmt.Sprintf("codebook(%d)", c)
}

// ParseCodebook returns the codebook named s ("3inst", "mcg", "mul1" or
// "1mad"; case-insensitive; "" means 3INST).
func ParseCodebook(s string) (Codebook, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return Codebook3INST, nil
	}
	for i, n := range codebookNames {
		if n == s {
			return Codebook(i), nil
		}
	}
	return 0, fmt.Errorf("quant: unknown codebook %q (want 3inst, mcg, mul1 or 1mad)", s)
}

// Decode returns the value of a 16-bit trellis state.
func (c Codebook) Decode(state uint16) float32 {
	x := uint32(state)
	switch c {
	case Codebook3INST:
		return halfSum(x*89226354 + 64248484)
	case CodebookMCG:
		return halfSum(x * 0xCBAC1FED)
	case CodebookMUL1:
		return mul1Table[byteSum(x*0x83DCD12D)]
	case Codebook1MAD:
		return float32(int32(byteSum(x*34038481+76625530))-510) / 147.800537109375
	}
	panic(fmt.Sprintf("quant: Decode with %v", c))
}

// halfSum applies 3INST's mask and xor and adds the two fp16 halves. The
// mask pins the exponent fields to 12…15, so both halves are normal fp16
// numbers of magnitude in [2^-3, 2) and their exact sum is a multiple of
// 2^-13: rounding it (exact in float32) to fp16 never lands in the
// subnormal range, and the bit-level rounding below is correct.
func halfSum(x uint32) float32 {
	x = (x & 0x8FFF8FFF) ^ 0x3B603B60
	s := halfNormal(uint16(x)) + halfNormal(uint16(x>>16))
	return roundF16Normal(s)
}

// halfNormal converts a normal (or zero-exponent-free) fp16 to float32.
func halfNormal(h uint16) float32 {
	return math.Float32frombits(uint32(h&0x8000)<<16 | (uint32(h&0x7fff)<<13 + 112<<23))
}

// roundF16Normal rounds v to the nearest fp16 value (ties to even), for v
// zero or of magnitude within fp16's normal range.
func roundF16Normal(v float32) float32 {
	b := math.Float32bits(v)
	b += 0xfff + (b>>13)&1
	return math.Float32frombits(b &^ 0x1fff)
}

func byteSum(x uint32) uint32 { return x&0xff + x>>8&0xff + x>>16&0xff + x>>24 }

// mul1Table holds MUL1's value for each byte sum 0…1020.
var mul1Table = func() (t [1021]float32) {
	k := float64(halfNormal(0x1eee)) // 0.006767… ≈ 1/147.7
	b := float64(halfNormal(0xc931)) // −10.3828125 ≈ −1534/147.7
	for s := range t {
		// (1024+s)·k is exact in float64 (11 × 11 significant bits) and so
		// is the sum with b: one rounding, as the fp16 fma.
		t[s] = roundF16(float64(1024+s)*k + b)
	}
	return
}()

// roundF16 rounds v to the nearest fp16 value, ties to even (subnormals
// included; beyond the range it returns ±Inf).
func roundF16(v float64) float32 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return float32(v)
	}
	_, e := math.Frexp(v) // |v| = f·2^e, f ∈ [0.5, 1)
	e = max(e, -13)       // fp16's smallest exponent step: 2^-24 = 2^(-13-11)
	step := math.Ldexp(1, e-11)
	r := math.RoundToEven(v/step) * step
	if math.Abs(r) > 65504 {
		return float32(math.Copysign(math.Inf(1), r))
	}
	return float32(r)
}

var (
	tableOnce [numCodebooks]sync.Once
	tables    [numCodebooks][]float32
)

// Table returns the codebook's 65,536 values indexed by state. The slice
// is shared and must not be modified.
func (c Codebook) Table() []float32 {
	if c >= numCodebooks {
		panic(fmt.Sprintf("quant: Table of %v", c))
	}
	tableOnce[c].Do(func() {
		t := make([]float32, 1<<16)
		for s := range t {
			t[s] = c.Decode(uint16(s))
		}
		tables[c] = t
	})
	return tables[c]
}

// Stored reports whether EXL3 checkpoints can select the codebook.
func (c Codebook) Stored() bool { return c <= CodebookMUL1 }
