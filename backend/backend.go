// Package backend defines the operations a model's forward pass is written
// in — matrix products on stored (possibly quantized) weights, norms, rotary
// embeddings, attention over a paged KV cache — and the Backend interface
// that each device (backend/cpu, backend/cuda) implements.
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
	"fmt"

	"github.com/marlin-llm/marlin/backend/sampling"
	"github.com/marlin-llm/marlin/dtype"
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
	Layers   int
	KVHeads  int
	KeyDim   int
	ValueDim int
	// ValueInKey says the values are the first ValueDim numbers of each key
	// and are not stored separately: the latent cache of multi-head latent
	// attention, where one compressed vector serves as key and value.
	ValueInKey bool
	BlockSize  int
	Blocks     int
	// DType is the element type keys and values are stored in: F32 (also
	// the zero value), F16 or BF16 (rounded to nearest-even as they are
	// stored; attention then reads every position as stored).
	DType dtype.DType
}

// ElemBytes returns the size of one stored number.
func (s KVSpec) ElemBytes() int {
	if s.DType == dtype.F16 || s.DType == dtype.BF16 {
		return 2
	}
	return 4
}

// TokenBytes returns the bytes the cache uses per token across all layers
// when stored as DType.
func (s KVSpec) TokenBytes() int64 {
	per := s.KeyDim + s.ValueDim
	if s.ValueInKey {
		per = s.KeyDim
	}
	return int64(s.Layers) * int64(s.KVHeads) * int64(per) * int64(s.ElemBytes())
}

// Router describes how a mixture-of-experts layer picks its experts from
// the router's logits (one per expert):
//
//	softmax:  p = softmax(logits); take the TopK largest p
//	sigmoid:  p = sigmoid(logits); rank experts by p + Bias; with Groups > 1
//	          keep only the TopKGroups groups whose two best ranks sum
//	          highest; take the TopK best-ranked experts
//
// The weights are the chosen p, divided by their sum when Normalize, then
// multiplied by Scale.
type Router struct {
	TopK       int
	Sigmoid    bool
	Normalize  bool
	Bias       Vector // selection bias (DeepSeek's e_score_correction_bias); nil for none
	Groups     int    // expert groups (0 or 1: no grouping)
	TopKGroups int
	// GroupMaskZero ranks the experts of dropped groups 0 (DeepSeek-V3's
	// reference code) rather than −∞ (GLM-4-MoE-Lite's).
	GroupMaskZero bool
	Scale         float32 // routed_scaling_factor; 0 means 1
}

// Check reports, as an error naming the sizes, why a Router cannot route
// logits of logitRows rows over experts experts into a selection of
// selRows rows of selK experts each; nil when it can.
func (r *Router) Check(selRows, selK, logitRows, experts int) error {
	if selRows < logitRows || selK != r.TopK || r.TopK <= 0 || r.TopK > experts {
		return fmt.Errorf("selection [%d, %d], logits [%d, %d], top-k %d", selRows, selK, logitRows, experts, r.TopK)
	}
	if groups := max(r.Groups, 1); experts%groups != 0 || groups > 1 && (r.TopKGroups <= 0 || r.TopKGroups > groups) {
		return fmt.Errorf("%d experts in %d groups, top %d groups", experts, groups, r.TopKGroups)
	}
	return nil
}

// Selection holds, for each row of a batch, the experts a Router chose and
// their weights. It lives on the backend.
type Selection interface {
	Rows() int
}

// Expert is one SwiGLU feed-forward network of a mixture of experts.
type Expert struct {
	Gate, Up, Down Matrix
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

// Norm is the RMS normalisation of a product's input (MatMulN, SwiGLU):
// the product reads rmsnorm(x) = x / sqrt(mean(x²) + Eps) · W, row by row.
// Handing the norm to the product instead of calling RMSNorm first lets a
// backend normalise the input as it reads it (the CUDA decode kernels: one
// launch fewer).
type Norm struct {
	W   Vector
	Eps float32
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
	// MemoryAvailable returns the bytes the backend can still allocate for
	// activations and caches (the host's available memory for the CPU, the
	// device's free memory for a GPU), or 0 when it cannot tell.
	MemoryAvailable() int64

	// Embed writes row tokens[i] of table into row i of dst.
	Embed(dst Tensor, table Matrix, tokens []int32)
	// LoadMatrices prepares weights that are multiplied by one input
	// (attention's q, k and v; a SwiGLU's gate and up), one Matrix per
	// weight, in order. A backend may store them together so that MatMulN
	// and SwiGLU over all of them run as one product; each Matrix still
	// works alone in every op.
	LoadMatrices(ws []*quant.Weight) ([]Matrix, error)

	// MatMul computes dst = x·wᵀ: dst[M, w.Rows] from x[M, w.Cols].
	MatMul(dst, x Tensor, w Matrix)
	// MatMulN computes dst[i] = x'·w[i]ᵀ for every i: one input, several
	// weights (best loaded together by LoadMatrices). x' is x, or with
	// norm not nil rmsnorm(x) as RMSNorm(x', x, norm.W, norm.Eps) would
	// write it, norm.W one weight per column of x; x itself is left as it
	// is.
	MatMulN(dst []Tensor, x Tensor, w []Matrix, norm *Norm)
	// MatMulAdd computes dst += x·wᵀ (the residual connection after a
	// projection). dst must not share memory with x.
	MatMulAdd(dst, x Tensor, w Matrix)
	// SwiGLU computes dst = silu(x'·gateᵀ) ⊙ (x'·upᵀ), the gated
	// feed-forward activation (gate and up best loaded together by
	// LoadMatrices), with x' as in MatMulN. dst must not share memory with
	// x.
	SwiGLU(dst, x Tensor, gate, up Matrix, norm *Norm)
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
	// h reads KV head h / (heads/KVHeads)). With a ValueInKey cache v is
	// nil and each value is the head of its key. With rope not nil the
	// heads of q and k are first rotated at the rows' positions, as
	// RoPE(q, heads, KeyDim, 0, rope, b.Pos) and RoPE(k, KVHeads, …) do
	// (q and k may or may not be left rotated).
	Attention(out, q, k, v Tensor, cache KVCache, layer int, b *Batch, scale float32, rope *Rope)
	// CopyRows copies src's rows (in the given order) into dst's first rows.
	CopyRows(dst, src Tensor, rows []int32)
	// CopyCols copies, for each row and each h < heads, n values from
	// src[h·srcStride + srcOff :] to dst[h·dstStride + dstOff :] — a
	// strided column copy that splits or joins per-head parts.
	CopyCols(dst, src Tensor, heads, n, dstStride, dstOff, srcStride, srcOff int)
	// HeadMatMul multiplies each head separately: for h < len(w),
	// dst[:, h·dstStride : h·dstStride + w[h].Rows()] =
	// x[:, h·xStride : h·xStride + w[h].Cols()] · w[h]ᵀ.
	HeadMatMul(dst, x Tensor, w []Matrix, dstStride, xStride int)

	// NewSelection allocates room for the expert choices of rows rows.
	NewSelection(rows, topK int) Selection
	// Route computes each row's router logits x·routerᵀ (router is
	// [experts, hidden]: one logit per expert) and chooses the row's
	// experts from them as r says. With norm not nil the rows routed are
	// rmsnorm(x) instead, which Route also writes to xn (the experts'
	// input: a mixture-of-experts block's norm without an RMSNorm of its
	// own; xn must not share memory with x); with norm nil, xn is not used
	// and may be nil.
	Route(sel Selection, xn, x Tensor, norm *Norm, router Matrix, r *Router)
	// ExpertsAdd adds to each row of dst the weighted sum over the row's
	// selected experts of down(silu(x·gateᵀ) ⊙ x·upᵀ), and, when shared is
	// not nil, the same network of the shared expert (weight 1, every
	// row): a mixture-of-experts block and its residual connection. dst
	// must not share memory with x.
	ExpertsAdd(dst, x Tensor, sel Selection, experts []Expert, shared *Expert)
	// MLAPrologue forms one multi-head latent attention layer's cache key
	// and its queries' rotary parts. With kva [M, lora + rope] (the kv_a
	// product: the latent, then the rotary key part shared by all heads),
	// q [M, heads·(nope + rope)] and qf [M, heads·(lora + rope)], where
	// lora = norm.Len() and rope = kva.Cols() − lora, it computes at each
	// row's position
	//
	//	key[:, :lora] = rmsnorm(kva[:, :lora]) · norm
	//	key[:, lora:] = rope(kva[:, lora:])
	//	qf[h][lora:]  = rope(q[h][nope:])   for every head h
	//
	// (r rotates the first 2·len(r.InvFreq) of the rope dims); q is left
	// either as it was or with its rotary parts rotated.
	MLAPrologue(key, qf, kva, q Tensor, norm Vector, eps float32, heads, nope int, r *Rope, pos []int32)

	// Sample draws one token per row of logits [M, vocab], row i with
	// p[i] as sampling.Scratch.Draw defines it, into dst[i] (len(dst) =
	// len(p) = M), and waits for them: only the ids reach the host. It
	// returns the first error since the last Sync, as Read does.
	Sample(dst []int32, logits Tensor, p []sampling.Params) error

	// Sync waits for queued work and returns the first error since the
	// last Sync.
	Sync() error
	// Close releases the device's resources.
	Close() error
}

// MaxPosition returns the largest of the positions pos (0 for none), or
// an error naming a negative one.
func MaxPosition(pos []int32) (int32, error) {
	m := int32(0)
	for i, p := range pos {
		if p < 0 {
			return 0, fmt.Errorf("position %d is negative (%d)", i, p)
		}
		m = max(m, p)
	}
	return m, nil
}

// LoadEach loads every weight on its own with load (a backend's
// LoadMatrix): the LoadMatrices of a backend that stores nothing together.
func LoadEach(load func(*quant.Weight) (Matrix, error), ws []*quant.Weight) ([]Matrix, error) {
	ms := make([]Matrix, len(ws))
	for i, w := range ws {
		m, err := load(w)
		if err != nil {
			return nil, err
		}
		ms[i] = m
	}
	return ms, nil
}
