// Package quant describes how a weight matrix is stored — dense in 16 or 32
// bits, or quantized to 2 to 8 bits — and holds the reference math of every
// format (packing, unpacking, dequantization) and the quantizers that produce
// them. It knows nothing of files or devices: LoadWeight maps checkpoint
// tensors (handed over by format/hf's reader) to Weights and Tensors maps
// them back; backends turn Weights into something they can multiply.
package quant

import (
	"fmt"
	"slices"

	"github.com/marlin-llm/marlin/dtype"
)

// Format says how a Weight's bytes encode its values.
type Format uint8

// The storage formats of a weight matrix. Layouts, tensor names and the
// quantization_config of each are documented in docs/formats.md; in short:
const (
	// Dense: Data is row-major [Out, In] of DType F32, F16 or BF16.
	Dense Format = iota
	// GPTQ: integers of Bits ∈ {2,3,4,8} in the GPTQ checkpoint layout:
	// Data = qweight, int32 [In·Bits/32, Out], values packed along the input
	// dimension, least significant bits first (each column of qweight is one
	// little-endian bit stream, so 3-bit values may straddle two words);
	// Scales = fp16 [Groups, Out]; Zeros = qzeros, int32
	// [Groups, ⌈Out·Bits/32⌉] packed along the output dimension the same
	// way, holding z − ZeroOffset; GIdx = g_idx (group of each input row) or
	// nil when row i is in group i/Group. Value = (q − z) · scale. Zeros may
	// be nil only for symmetric weights, whose zero point is then
	// 2^(Bits−1) (checkpoints always store qzeros; LoadWeight keeps them).
	GPTQ
	// FP8: float8 e4m3fn [Out, In] with one float32 scale per output row
	// (Scales holds Out little-endian float32 values); Group = In.
	FP8
	// FP4: e2m1 values, two per byte along the input dimension (low nibble
	// = even element), Data [Out, In/2]; Scales fp16 [Out, In/Group].
	FP4
	// MXFP4: e2m1 as FP4; Scales e8m0 bytes [Out, In/32]; Group = 32.
	MXFP4
	// NVFP4: e2m1 as FP4; Scales e4m3 bytes [Out, In/16], times
	// GlobalScale; Group = 16.
	NVFP4
	// EXL3: the exllamav3 trellis format (QTIP bitshift code), Bits = K ∈
	// 1…8 bits per weight, Codebook selecting the value map. Both
	// dimensions are padded to multiples of 128: In' = ⌈In/128⌉·128,
	// Out' likewise (padding only when a checkpoint records the logical
	// shape; see docs/formats.md). Data = trellis, int16 [In'/16, Out'/16,
	// 16·K]: tile (kt, nt) is the 256-weight trellis of Ŵ[16kt:16kt+16,
	// 16nt:16nt+16] (Ŵ is [In', Out']) in TensorCoreOrder; Scales = suh,
	// fp16 [In']; Zeros = svh, fp16 [Out']. The weight, in the orientation
	// y = x·W of W [In', Out'], is diag(suh)·H·Ŵ·H·diag(svh) with H the
	// block-diagonal orthonormal Hadamard of order 128; the [Out, In]
	// matrix is its top-left part, transposed.
	EXL3
)

var formatNames = [...]string{Dense: "dense", GPTQ: "gptq", FP8: "fp8", FP4: "fp4", MXFP4: "mxfp4", NVFP4: "nvfp4", EXL3: "exl3"}

// String returns the format's lower-case name ("gptq", "fp8", ...).
func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", f)
}

// Weight is one linear layer's weight matrix, y = x·Wᵀ with W of shape
// [Out, In], in any storage format. The byte slices usually alias a
// memory-mapped checkpoint and must not be modified.
type Weight struct {
	Name   string // tensor name prefix, for error messages
	Format Format
	Out    int // rows: output features
	In     int // columns: input features

	DType dtype.DType // Dense: element type of Data

	Bits  int  // GPTQ: bits per value (2, 3, 4 or 8); FP8 8; FP4 formats 4; EXL3: K (1…8)
	Group int  // group size along In; equal to In for per-channel scales
	Sym   bool // GPTQ: symmetric (zero point 2^(Bits−1)); informational when Zeros is set
	// ZeroOffset is added to stored zero points: 1 for the original GPTQ
	// ("v1") checkpoints, which store z-1, and 0 for "gptq_v2".
	ZeroOffset int

	Data        []byte
	Scales      []byte
	Zeros       []byte
	GIdx        []int32
	GlobalScale float32  // NVFP4: multiplies every value (modelopt's weight_scale_2)
	Codebook    Codebook // EXL3: the trellis codebook (3INST, MCG or MUL1)

	// Mapped says Data, Scales and Zeros alias a read-only file mapping
	// (LoadWeight from a memory-mapped checkpoint): a kernel that keeps its
	// own copy in another layout may release those pages
	// (internal/pages.Release). False is always safe.
	Mapped bool

	// ZerosUniform (GPTQ) records that every stored zero point is the same
	// (as in symmetric checkpoints); Pack and LoadWeight set it, kernels
	// may then fold the zero point into their per-group sums. Leaving it
	// false is always correct.
	ZerosUniform bool
}

// Groups returns the number of scale groups along In (In/Group), or 1 for
// Dense weights and weights without a group size.
func (w *Weight) Groups() int {
	if w.Group <= 0 || w.Format == Dense {
		return 1
	}
	return w.In / w.Group
}

// GroupOrder returns the input rows of an act-order weight sorted by group
// (stably): row order[p] of the weight is row p of the sorted one. It
// reports false when the sorted rows do not fall into whole groups of
// size group, row p in group p/group (some group has another size, or an
// entry is out of range); kernels that walk groups of consecutive rows
// then cannot take the sorted weight.
func GroupOrder(gidx []int32, group int) (order []int32, ok bool) {
	order = make([]int32, len(gidx))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return int(gidx[a]) - int(gidx[b]) })
	for p, k := range order {
		if int(gidx[k]) != p/group {
			return nil, false
		}
	}
	return order, true
}

// String describes the weight in one line: name, format, shape and the
// parameters of its format.
func (w *Weight) String() string {
	s := fmt.Sprintf("%s %s [%d, %d]", w.Name, w.Format, w.Out, w.In)
	switch w.Format {
	case Dense:
		s += " " + w.DType.String()
	case GPTQ:
		s += fmt.Sprintf(" int%d g%d", w.Bits, w.Group)
	case FP4:
		s += fmt.Sprintf(" g%d", w.Group)
	case NVFP4:
		s += fmt.Sprintf(" global %g", w.GlobalScale)
	case EXL3:
		s += fmt.Sprintf(" K%d %s", w.Bits, w.Codebook)
	}
	return s
}
