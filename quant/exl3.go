package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/safetensors"
)

// EXL3Block is the order of EXL3's Hadamard rotations: both dimensions of
// an EXL3 weight are stored padded to a multiple of it.
const EXL3Block = 128

// Codebook marker values exllamav3 stores in <prefix>.mcg / <prefix>.mul1
// (never read: the tensor's presence selects the codebook).
const (
	mcgMarker  = 0xCBAC1FED
	mul1Marker = 0x83DCD12D
)

// PaddedDims returns the stored dimensions of an EXL3 weight: In and Out
// rounded up to multiples of EXL3Block.
func (w *Weight) PaddedDims() (in, out int) {
	return PadEXL3(w.In), PadEXL3(w.Out)
}

// PadEXL3 rounds a dimension up to the multiple of EXL3Block an EXL3
// weight is stored at.
func PadEXL3(n int) int { return roundUp(n, EXL3Block) }

func roundUp(n, m int) int { return (n + m - 1) / m * m }

func (w *Weight) validateEXL3() error {
	name := w.Name
	if w.Bits < 1 || w.Bits > MaxTrellisBits {
		return fmt.Errorf("quant: %s.trellis: %d bits per weight, want 1 to %d", name, w.Bits, MaxTrellisBits)
	}
	if !w.Codebook.Stored() {
		return fmt.Errorf("quant: %s: codebook %v cannot be stored in an EXL3 weight", name, w.Codebook)
	}
	if w.GIdx != nil || w.GlobalScale != 0 {
		return fmt.Errorf("quant: %s: g_idx or global scale set on an EXL3 weight", name)
	}
	in, out := w.PaddedDims()
	if want := (in / 16) * (out / 16) * 32 * w.Bits; len(w.Data) != want {
		return fmt.Errorf("quant: %s.trellis: %d bytes, want %d (int16 [%d, %d, %d])", name, len(w.Data), want, in/16, out/16, 16*w.Bits)
	}
	if len(w.Scales) != 2*in {
		return fmt.Errorf("quant: %s.suh: %d bytes, want %d (fp16 [%d])", name, len(w.Scales), 2*in, in)
	}
	if len(w.Zeros) != 2*out {
		return fmt.Errorf("quant: %s.svh: %d bytes, want %d (fp16 [%d])", name, len(w.Zeros), 2*out, out)
	}
	return nil
}

// EXL3Tile returns the packed trellis of tile (kt, nt) of an EXL3 weight:
// 32·K bytes.
func (w *Weight) EXL3Tile(kt, nt int) []byte {
	_, out := w.PaddedDims()
	sz := 32 * w.Bits
	off := (kt*(out/16) + nt) * sz
	return w.Data[off : off+sz]
}

// DecodeTile decodes a packed trellis tile (32·K bytes) into the row-major
// 16×16 block it stores: dst[r·16 + c] is the weight of input r and output
// c of the tile.
func DecodeTile(dst *[TileLen]float32, src []byte, K int, cb Codebook) {
	var st [TileLen]uint16
	UnpackTile(&st, src, K)
	val := cb.Table()
	for e, s := range st {
		dst[TensorCoreOrder[e]] = val[s]
	}
}

// exl3Row is DequantizeRow for EXL3: row n of W [Out, In] is column n of
// diag(suh)·H·Ŵ·H·diag(svh), which needs the 128 columns of Ŵ in n's
// Hadamard block.
func (w *Weight) exl3Row(dst []float32, n int) {
	in, _ := w.PaddedDims()
	b0 := n / EXL3Block * EXL3Block
	j := n - b0
	// hcol[c] = H[c][j] (orthonormal): column j of the output rotation
	s := 1 / math.Sqrt(EXL3Block)
	v := make([]float64, in) // Ŵ[:, block] · hcol
	var tile [TileLen]float32
	for nt := b0 / 16; nt < b0/16+EXL3Block/16; nt++ {
		for kt := 0; kt < in/16; kt++ {
			DecodeTile(&tile, w.EXL3Tile(kt, nt), w.Bits, w.Codebook)
			for c := 0; c < 16; c++ {
				col := nt*16 + c - b0
				h := s
				if popcount(uint(col&j))&1 == 1 {
					h = -s
				}
				for r := 0; r < 16; r++ {
					v[kt*16+r] += float64(tile[r*16+c]) * h
				}
			}
		}
	}
	HadamardBlocks64(v, EXL3Block)
	sv := float64(dtype.F16ToF32(u16At(w.Zeros, n)))
	for k := range dst[:w.In] {
		dst[k] = float32(float64(dtype.F16ToF32(u16At(w.Scales, k))) * v[k] * sv)
	}
}

func popcount(x uint) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// exl3Tensors returns the checkpoint tensors of an EXL3 weight.
func (w *Weight) exl3Tensors(prefix string) []safetensors.Tensor {
	in, out := w.PaddedDims()
	ts := []safetensors.Tensor{
		{Name: prefix + ".trellis", DType: dtype.I16, Shape: []int{in / 16, out / 16, 16 * w.Bits}, Data: w.Data},
		{Name: prefix + ".suh", DType: dtype.F16, Shape: []int{in}, Data: w.Scales},
		{Name: prefix + ".svh", DType: dtype.F16, Shape: []int{out}, Data: w.Zeros},
	}
	marker := func(suffix string, v uint32) safetensors.Tensor {
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, v)
		return safetensors.Tensor{Name: prefix + suffix, DType: dtype.I32, Shape: []int{}, Data: b}
	}
	switch w.Codebook {
	case CodebookMCG:
		ts = append(ts, marker(".mcg", mcgMarker))
	case CodebookMUL1:
		ts = append(ts, marker(".mul1", mul1Marker))
	}
	return ts
}

// loadEXL3 builds an EXL3 weight from prefix.trellis, .suh, .svh and the
// optional codebook marker .mcg or .mul1. The logical shape comes from
// cfg.Shapes when the checkpoint records one for prefix (padded layers),
// else it is the stored one.
func loadEXL3(prefix string, tr safetensors.Tensor, get func(string) (safetensors.Tensor, bool), cfg *Config) (*Weight, error) {
	if cfg != nil && cfg.Format != EXL3 {
		return nil, fmt.Errorf("quant: %s.trellis: EXL3 tensors but quantization_config says %v", prefix, cfg.Format)
	}
	if tr.DType != dtype.I16 || len(tr.Shape) != 3 || tr.Shape[0] <= 0 || tr.Shape[1] <= 0 || tr.Shape[2] <= 0 || tr.Shape[2]%16 != 0 {
		return nil, fmt.Errorf("quant: %s.trellis: %v %v, want I16 [In/16, Out/16, 16·K]", prefix, tr.DType, tr.Shape)
	}
	K := tr.Shape[2] / 16
	if K > MaxTrellisBits {
		return nil, fmt.Errorf("quant: %s.trellis: last dimension %d means %d bits per weight, want 1 to %d", prefix, tr.Shape[2], K, MaxTrellisBits)
	}
	if err := checkBytes(prefix+".trellis", tr); err != nil {
		return nil, err
	}
	in, out := 16*tr.Shape[0], 16*tr.Shape[1]
	w := &Weight{Name: prefix, Format: EXL3, Out: out, In: in, Bits: K, Data: tr.Data}
	if cfg != nil {
		if s, ok := cfg.Shapes[prefix]; ok {
			if s[0] <= 0 || s[1] <= 0 || roundUp(s[0], EXL3Block) != out || roundUp(s[1], EXL3Block) != in {
				return nil, fmt.Errorf("quant: %s.trellis: stored [%d, %d] (In, Out) does not pad the logical shape [%d, %d] (Out, In) of quantization_config", prefix, in, out, s[0], s[1])
			}
			w.Out, w.In = s[0], s[1]
		}
	}
	if in%EXL3Block != 0 || out%EXL3Block != 0 {
		return nil, fmt.Errorf("quant: %s.trellis: stored dimensions [%d, %d] are not multiples of %d", prefix, in, out, EXL3Block)
	}
	vec := func(suffix string, n int) ([]byte, error) {
		t, ok := get(prefix + suffix)
		if !ok {
			if _, legacy := get(prefix + suffix[:len(suffix)-1]); legacy {
				return nil, fmt.Errorf("quant: %s%s: missing; packed sign vectors (%s) of early EXL3 checkpoints are not supported", prefix, suffix, suffix[:len(suffix)-1])
			}
			return nil, fmt.Errorf("quant: %s%s: missing (EXL3 weight needs it)", prefix, suffix)
		}
		if t.DType != dtype.F16 || len(t.Shape) != 1 || t.Shape[0] != n {
			return nil, fmt.Errorf("quant: %s%s: %v %v, want F16 [%d]", prefix, suffix, t.DType, t.Shape, n)
		}
		if err := checkBytes(prefix+suffix, t); err != nil {
			return nil, err
		}
		return t.Data, nil
	}
	var err error
	if w.Scales, err = vec(".suh", in); err != nil {
		return nil, err
	}
	if w.Zeros, err = vec(".svh", out); err != nil {
		return nil, err
	}
	_, mcg := get(prefix + ".mcg")
	_, mul1 := get(prefix + ".mul1")
	switch {
	case mcg && mul1:
		return nil, fmt.Errorf("quant: %s: both .mcg and .mul1 codebook markers present", prefix)
	case mcg:
		w.Codebook = CodebookMCG
	case mul1:
		w.Codebook = CodebookMUL1
	}
	for i := 0; i < in+out; i++ {
		var h uint16
		if i < in {
			h = u16At(w.Scales, i)
		} else {
			h = u16At(w.Zeros, i-in)
		}
		if h&0x7c00 == 0x7c00 {
			return nil, fmt.Errorf("quant: %s: suh/svh hold a non-finite value", prefix)
		}
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return w, nil
}
