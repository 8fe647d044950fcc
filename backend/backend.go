// Package backend defines the operations a model's forward pass is written
// in — matrix products on stored (possibly quantized) weights, norms, rotary
// embeddings, attention over a paged KV cache — and the Backend interface
// that each device (backend/cpu, later backend/cuda) implements.
//
// Model code calls these operations on opaque tensors and never touches
// device memory itself, so one model file runs on every backend.
//
// Activations are float32 semantically; a backend may store them in lower
// precision. Operations are issued in order; a backend may run them
// asynchronously and report a failure (out of memory, a device fault) as a
// sticky error from Err, Read or Sync.
package backend

import (
	"github.com/marlin-llm/marlin/quant"
)

// Tensor is an activation matrix [Rows, Cols] owned by a backend.
type Tensor interface {
	Rows() int
	Cols() int
}

// Matrix is a weight matrix prepared for MatMul: Rows output features by
// Cols input features, in its stored format.
type Matrix interface {
	Rows() int
	Cols() int
	// Bytes is the memory the stored weight occupies (what a matrix-vector
	// product must read).
	Bytes() int64
}

// Vector is a small float32 parameter vector (norm weights, biases).
type Vector interface {
	Len() int
}

// Rope describes a rotary position embedding. Position p rotates the pair
// (a, b) of each head by the angle p·InvFreq[i]: a' = a·cos − b·sin,
// b' = b·cos + a·sin, with cos and sin multiplied by Scale.
type Rope struct {
	// InvFreq holds one inverse frequency per rotated pair; the rotary
	// dimension is 2·len(InvFreq).
	InvFreq []float32
	// Scale multiplies cos and sin (YaRN's attention factor); 1 otherwise.
	Scale float32
	// Interleaved pairs dimensions (2i, 2i+1), as GLM and DeepSeek's
	// rope_interleave; otherwise pairs are (i, i + rotary/2), the
	// "rotate_half" convention of Llama and Qwen checkpoints.
	Interleaved bool
}

// KVSpec sizes a paged key/value cache: Blocks blocks of BlockSize tokens,
// each holding for every layer KVHeads heads of KeyDim key values and
// ValueDim value values.
type KVSpec struct {
	Layers    int
	KVHeads   int
	KeyDim    int
	ValueDim  int
	BlockSize int
	Blocks    int
}

// TokenBytes returns the bytes the cache uses per token across all layers
// when stored as float32.
func (s KVSpec) TokenBytes() int64 {
	return int64(s.Layers) * int64(s.KVHeads) * int64(s.KeyDim+s.ValueDim) * 4
}

// KVCache is a pool of KV blocks on a backend. Which blocks belong to which
// sequence is decided by the caller (the engine's block manager) and passed
// to Attention in each Batch.
type KVCache interface {
	Spec() KVSpec
	// Bytes is the memory the cache occupies.
	Bytes() int64
}

// Seq is one sequence's share of a Batch: the rows [Start, Start+Len) of the
// batch are its next tokens, at consecutive positions starting at
// Batch.Pos[Start]. Blocks is its block table: block Blocks[i] of the KV
// cache holds positions [i·BlockSize, (i+1)·BlockSize). It must cover every
// position up to Batch.Pos[Start]+Len−1.
type Seq struct {
	Start, Len int
	Blocks     []int32
}

// Batch is the input of one forward pass: the tokens of several sequences,
// concatenated. Tokens[i] sits at position Pos[i] of its sequence.
type Batch struct {
	Tokens []int32
	Pos    []int32
	Seqs   []Seq
}

// Backend is a device that holds weights and activations and runs the ops.
//
// Shapes are checked by the backend; a mismatch is a programming error in
// the model and panics with a message naming the op and the shapes.
type Backend interface {
	// Name says which device this is ("cpu", "cuda:0").
	Name() string

	// NewTensor allocates an activation tensor [rows, cols], zeroed.
	NewTensor(rows, cols int) Tensor
	// View returns the first rows of t, sharing its memory.
	View(t Tensor, rows int) Tensor
	// Write copies host values (row-major, len rows·cols) into t.
	Write(t Tensor, src []float32)
	// Read copies t into dst (row-major) and reports any pending error.
	Read(dst []float32, t Tensor) error

	// LoadMatrix prepares a weight for MatMul. The backend may keep
	// references to w's bytes (a memory-mapped checkpoint) rather than copy.
	LoadMatrix(w *quant.Weight) (Matrix, error)
	// LoadVector copies a parameter vector to the device.
	LoadVector(v []float32) Vector
	// NewKVCache allocates a KV block pool.
	NewKVCache(spec KVSpec) (KVCache, error)

	// Embed writes row tokens[i] of table into row i of dst.
	Embed(dst Tensor, table Matrix, tokens []int32)
	// MatMul computes dst = x·wᵀ: dst[M, w.Rows] from x[M, w.Cols].
	MatMul(dst, x Tensor, w Matrix)
	// AddBias adds b to every row of dst.
	AddBias(dst Tensor, b Vector)
	// Add computes dst += x.
	Add(dst, x Tensor)
	// RMSNorm normalises each consecutive chunk of w.Len() values of x
	// (a row, or a head when w is a per-head norm) by its root mean square
	// and multiplies by w: dst = x / sqrt(mean(x²) + eps) · w.
	RMSNorm(dst, x Tensor, w Vector, eps float32)
	// RoPE rotates, in place, dims [offset, offset + 2·len(r.InvFreq)) of
	// each of the heads (of headDim values) of each row of x, row i at
	// position pos[i].
	RoPE(x Tensor, heads, headDim, offset int, r *Rope, pos []int32)
	// SiLUMul computes dst = silu(gate) ⊙ up, the SwiGLU activation.
	SiLUMul(dst, gate, up Tensor)
	// Attention stores each row's keys k[M, KVHeads·KeyDim] and values
	// v[M, KVHeads·ValueDim] into layer's slots of the cache at the row's
	// position, then writes into out[M, heads·ValueDim] the causal
	// attention of q[M, heads·KeyDim] over its sequence's cached positions
	// up to its own, with scores scaled by scale (grouped-query: query head
	// h reads KV head h / (heads/KVHeads)).
	Attention(out, q, k, v Tensor, cache KVCache, layer int, b *Batch, scale float32)
	// CopyRows copies src's rows (in the given order) into dst's first rows.
	CopyRows(dst, src Tensor, rows []int32)

	// Sync waits for queued work and returns the first error since the
	// last Sync.
	Sync() error
	// Close releases the device's resources.
	Close() error
}
