package quant

import (
	"encoding/binary"
	"math"

	"github.com/marlin-llm/marlin/dtype"
)

// Little-endian helpers over the byte slices of a Weight.

func u32At(b []byte, i int) uint32      { return binary.LittleEndian.Uint32(b[4*i:]) }
func putU32(b []byte, i int, v uint32)  { binary.LittleEndian.PutUint32(b[4*i:], v) }
func u16At(b []byte, i int) uint16      { return binary.LittleEndian.Uint16(b[2*i:]) }
func putU16(b []byte, i int, v uint16)  { binary.LittleEndian.PutUint16(b[2*i:], v) }
func f32At(b []byte, i int) float32     { return math.Float32frombits(u32At(b, i)) }
func putF32(b []byte, i int, v float32) { putU32(b, i, math.Float32bits(v)) }

// streamGet reads the bits-wide value number i of a little-endian bit
// stream whose 32-bit words are word(0), word(1), ... (value i occupies
// bits i·bits … i·bits+bits−1 of the stream and may straddle two words).
func streamGet(word func(int) uint32, i, bits int) uint32 {
	p := i * bits
	r, off := p>>5, uint(p&31)
	v := word(r) >> off
	if int(off)+bits > 32 {
		v |= word(r+1) << (32 - off)
	}
	return v & (1<<uint(bits) - 1)
}

// streamPut ORs value v (already < 2^bits) into the stream at position i.
func streamPut(get func(int) uint32, set func(int, uint32), i, bits int, v uint32) {
	p := i * bits
	r, off := p>>5, uint(p&31)
	set(r, get(r)|v<<off)
	if int(off)+bits > 32 {
		set(r+1, get(r+1)|v>>(32-off))
	}
}

// gptqDims returns the number of qweight rows and of qzeros words per group.
func gptqDims(in, out, bits int) (qrows, zcols int) {
	return in * bits / 32, (out*bits + 31) / 32
}

// gptqQ returns the stored integer of element (row n, column k) of a GPTQ
// weight: value k of column n's bit stream in qweight.
func (w *Weight) gptqQ(n, k int) uint32 {
	out := w.Out
	return streamGet(func(r int) uint32 { return u32At(w.Data, r*out+n) }, k, w.Bits)
}

// gptqZero returns the effective zero point (stored value + ZeroOffset) of
// output column n in group g.
func (w *Weight) gptqZero(g, n int) int32 {
	if w.Zeros == nil {
		return 1 << uint(w.Bits-1)
	}
	_, zcols := gptqDims(w.In, w.Out, w.Bits)
	base := g * zcols
	return int32(streamGet(func(r int) uint32 { return u32At(w.Zeros, base+r) }, n, w.Bits)) + int32(w.ZeroOffset)
}

// group returns the group of input row k.
func (w *Weight) group(k int) int {
	if w.GIdx != nil {
		return int(w.GIdx[k])
	}
	return k / w.Group
}

// scaleAt returns the scale of block b of row n for the row-major formats
// (FP4, MXFP4, NVFP4: b = k/Group; FP8: b is ignored), without NVFP4's
// global scale.
func (w *Weight) scaleAt(n, b int) float32 {
	switch w.Format {
	case FP8:
		return f32At(w.Scales, n)
	case FP4:
		return dtype.F16ToF32(u16At(w.Scales, n*(w.In/w.Group)+b))
	case MXFP4:
		return dtype.E8M0ToF32(w.Scales[n*(w.In/32)+b])
	case NVFP4:
		return dtype.E4M3ToF32(w.Scales[n*(w.In/16)+b])
	}
	return 1
}

// nibble returns the 4-bit code of element k of row n (FP4 formats).
func (w *Weight) nibble(n, k int) uint8 {
	b := w.Data[n*(w.In/2)+k/2]
	if k&1 == 1 {
		return b >> 4
	}
	return b & 15
}

// zerosUniform reports whether every stored zero point of a GPTQ weight
// equals the first one: each qzeros row must be the packed row of that
// value (unused bits of the last word zero).
func zerosUniform(zeros []byte, groups, out, bits int) bool {
	if len(zeros) == 0 || groups <= 0 {
		return false
	}
	zcols := (out*bits + 31) / 32
	if len(zeros) != 4*groups*zcols {
		return false
	}
	z := streamGet(func(r int) uint32 { return u32At(zeros, r) }, 0, bits)
	row := make([]byte, 4*zcols)
	for n := 0; n < out; n++ {
		streamPut(func(r int) uint32 { return u32At(row, r) }, func(r int, v uint32) { putU32(row, r, v) }, n, bits, z)
	}
	for g := 0; g < groups; g++ {
		if string(zeros[4*g*zcols:4*(g+1)*zcols]) != string(row) {
			return false
		}
	}
	return true
}
