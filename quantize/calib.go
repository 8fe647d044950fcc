package quantize

import (
	_ "embed"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/internal/dense"
	"github.com/marlin-llm/marlin/quant"
)

// Calibration is the text that GPTQ and EXL3 run through the model to
// measure each linear layer's inputs.
type Calibration struct {
	Text []byte // raw text, tokenized with the model's tokenizer
	// Tokens, when not nil, replaces Text: token ids (no tokenizer needed).
	Tokens []int32
	Name   string // where it came from, for reports
	// Rows sequences of Ctx tokens (BOS + Ctx−1 text tokens) are cut from
	// the start of the text (0: 32 rows, 256 tokens; Ctx is capped at the
	// model's context length). Fewer rows are used when the text is short.
	Rows, Ctx int
	// BatchTokens bounds the tokens of one forward pass (0: 8192). When
	// all rows fit, one pass quantizes every layer as it reaches it;
	// otherwise each group of layers gets its own pass over the batches
	// (streaming: memory is one batch's activations plus one Hessian).
	BatchTokens int
}

// defaultText is the start of tiny Shakespeare (the first 262,063 bytes
// of the corpus, cut after a speech), built into the binary so that the
// default calibration is the same text wherever the command runs.
//
//go:embed calibtext/tinyshakespeare-start.txt
var defaultText []byte

// DefaultCalibration is the calibration text used when none is given: the
// start of tiny Shakespeare, a corpus unlike the usual evaluation texts
// (WikiText-2, TinyStories), and for the embedded default model a part of
// its training split, before its held-out part. Its 262 KB give about 250
// rows of 256 tokens to a tokenizer of 4 bytes a token; rows and ctx as in
// Calibration.
func DefaultCalibration(rows, ctx int) *Calibration {
	return &Calibration{Text: defaultText, Name: "tiny Shakespeare (its start, built in)", Rows: rows, Ctx: ctx}
}

// call is one MatMul seen while recording the order of the layers.
type call struct {
	m   backend.Matrix
	x   xKey
	gen int
}

// xKey identifies an activation tensor's contents: its data pointer and
// shape (views of the same buffer with different rows differ).
type xKey struct {
	p          unsafe.Pointer
	rows, cols int
}

func keyOf(t backend.Tensor) xKey {
	c := t.(*cpu.Tensor)
	d := c.Data()
	var p unsafe.Pointer
	if len(d) > 0 {
		p = unsafe.Pointer(&d[0])
	}
	return xKey{p, c.Rows(), c.Cols()}
}

// calibBackend is the CPU backend with MatMul intercepted: it records the
// order in which the model multiplies by its linear weights, accumulates
// the Hessian XᵀX of the inputs of the group of weights being calibrated,
// substitutes quantized weights for those already done, and once a pass
// has what it needs turns every later op into a no-op (skip) so that the
// rest of the forward pass costs nothing.
type calibBackend struct {
	*cpu.Backend
	names map[backend.Matrix]string         // loaded weight → checkpoint prefix
	repl  map[backend.Matrix]backend.Matrix // quantized replacements

	version   map[unsafe.Pointer]int // writes seen per activation buffer
	recording bool                   // record calls (the first pass)
	calls     []call

	group map[backend.Matrix]int // target weight → its group
	size  []int                  // members per group

	// streaming pass: collect group target's Hessian
	target  int
	acc     *hessian
	lastAcc xKey
	lastGen int // version of lastAcc's buffer when accumulated
	seen    int
	skip    bool

	// inline pass: quantize each group at its first multiplication,
	// given the Hessian of its inputs
	inline  bool
	done    []bool
	onFirst func(g int, h *hessian) error

	// twin pass (full-precision targets): the batch holds every row twice,
	// the first twin token rows as the full-precision model computes them
	// (source weights everywhere), the rest as the quantized model does
	// (replacements where there are). Activations with other row counts
	// (an expert's gathered rows) record in fpOf how many of their leading
	// rows are the full-precision model's.
	twin int
	fpOf map[xKey]int

	temps map[[3]int]backend.Tensor // scratch of the fused ops, by use and shape

	err error
}

func newCalibBackend(be *cpu.Backend) *calibBackend {
	return &calibBackend{Backend: be, names: map[backend.Matrix]string{}, repl: map[backend.Matrix]backend.Matrix{},
		version: map[unsafe.Pointer]int{}, target: -1}
}

// touch records a write to the buffer of t.
func (c *calibBackend) touch(t backend.Tensor) { c.version[keyOf(t).p]++ }

// LoadMatrix implements backend.Backend, remembering each weight's name.
func (c *calibBackend) LoadMatrix(w *quant.Weight) (backend.Matrix, error) {
	m, err := c.Backend.LoadMatrix(w)
	if err == nil {
		c.names[m] = w.Name
	}
	return m, err
}

func (c *calibBackend) fail(err error) {
	if c.err == nil {
		c.err = err
	}
	c.skip = true
}

// MatMul implements backend.Backend.
func (c *calibBackend) MatMul(dst, x backend.Tensor, w backend.Matrix) {
	if c.skip {
		return
	}
	xk := keyOf(x)
	gen := c.version[xk.p]
	defer c.touch(dst)
	if c.recording {
		c.calls = append(c.calls, call{w, xk, gen})
	}
	fp, err := c.fpRows(x)
	if err != nil {
		c.fail(err)
		return
	}
	c.setFPRows(dst, fp)
	xt := x.(*cpu.Tensor)
	if g, ok := c.group[w]; ok {
		switch {
		case c.inline && !c.done[g] && xt.Rows() > fp:
			h := newHessian(xk.cols)
			c.accumulate(h, xt, fp)
			if err := c.onFirst(g, h); err != nil {
				c.fail(err)
				return
			}
			c.done[g] = true
		case c.target >= 0 && g > c.target:
			c.skip = true
			return
		case g == c.target:
			if xk != c.lastAcc || gen != c.lastGen {
				if c.acc.h == nil {
					*c.acc = *newHessian(xk.cols)
				}
				c.accumulate(c.acc, xt, fp)
				c.lastAcc, c.lastGen = xk, gen
			}
			c.Backend.MatMul(dst, x, w)
			if c.seen++; c.seen == c.size[g] {
				c.skip = true
			}
			return
		}
	}
	r, ok := c.repl[w]
	switch {
	case !ok:
		c.Backend.MatMul(dst, x, w)
	case fp == 0:
		c.Backend.MatMul(dst, x, r)
	default: // the full-precision rows by the source weights, the others quantized
		d, n := dst.(*cpu.Tensor), xt.Rows()
		c.Backend.MatMul(d.SliceRows(0, fp), xt.SliceRows(0, fp), w)
		if fp < n {
			c.Backend.MatMul(d.SliceRows(fp, n), xt.SliceRows(fp, n), r)
		}
	}
}

// accumulate adds to h the rows of x (an input of the weights being
// calibrated) that the quantized model computed; when x holds every token
// of a twin pass, the full-precision model's rows of the same tokens come
// first (fp of them) and are the targets (hessian.add). A routed expert's
// gathered rows are other tokens in each half (the two models route
// differently): it is fit without targets.
func (c *calibBackend) accumulate(h *hessian, x *cpu.Tensor, fp int) {
	xq := x.SliceRows(fp, x.Rows())
	if fp == 0 || x.Rows() != 2*c.twin || fp != c.twin {
		h.add(xq, nil)
		return
	}
	h.add(xq, x.SliceRows(0, fp).Data())
}

// fpRows returns how many leading rows of t are the full-precision
// model's in a twin pass (0 outside one).
func (c *calibBackend) fpRows(t backend.Tensor) (int, error) {
	if c.twin == 0 {
		return 0, nil
	}
	k := keyOf(t)
	if n, ok := c.fpOf[k]; ok {
		return n, nil
	}
	if k.rows == 2*c.twin {
		return c.twin, nil
	}
	return 0, fmt.Errorf("calibration: an activation of %d rows and unknown origin in a pass of %d full-precision and %d quantized rows", k.rows, c.twin, c.twin)
}

// setFPRows records that the first n rows of t are the full-precision
// model's.
func (c *calibBackend) setFPRows(t backend.Tensor, n int) {
	if c.twin == 0 {
		return
	}
	k := keyOf(t)
	if k.rows == 2*c.twin && n == c.twin {
		delete(c.fpOf, k)
		return
	}
	if c.fpOf == nil {
		c.fpOf = map[xKey]int{}
	}
	c.fpOf[k] = n
}

// LoadMatrices implements backend.Backend: each weight on its own, named.
func (c *calibBackend) LoadMatrices(ws []*quant.Weight) ([]backend.Matrix, error) {
	return backend.LoadEach(c.LoadMatrix, ws)
}

// The fused products are taken apart into the MatMuls they stand for, so
// that each weight is seen (and its input recorded) as before.

// normed returns x, or rmsnorm(x) in a temporary (use 1).
func (c *calibBackend) normed(x backend.Tensor, norm *backend.Norm) backend.Tensor {
	if norm == nil {
		return x
	}
	t := c.temp(1, x.Rows(), x.Cols())
	c.RMSNorm(t, x, norm.W, norm.Eps)
	return t
}

// MatMulN implements backend.Backend.
func (c *calibBackend) MatMulN(dst []backend.Tensor, x backend.Tensor, w []backend.Matrix, norm *backend.Norm) {
	x = c.normed(x, norm)
	for i := range w {
		c.MatMul(dst[i], x, w[i])
	}
}

// MatMulAdd implements backend.Backend.
func (c *calibBackend) MatMulAdd(dst, x backend.Tensor, w backend.Matrix) {
	t := c.temp(0, dst.Rows(), dst.Cols())
	c.MatMul(t, x, w)
	c.Add(dst, t)
}

// SwiGLU implements backend.Backend.
func (c *calibBackend) SwiGLU(dst, x backend.Tensor, gate, up backend.Matrix, norm *backend.Norm) {
	x = c.normed(x, norm)
	t := c.temp(0, dst.Rows(), dst.Cols())
	c.MatMul(dst, x, gate)
	c.MatMul(t, x, up)
	c.SiLUMul(dst, dst, t)
}

// temp returns a scratch tensor of the given shape, one per use (uses
// that may be live at once differ) and shape.
func (c *calibBackend) temp(use, rows, cols int) backend.Tensor {
	k := [3]int{use, rows, cols}
	t, ok := c.temps[k]
	if !ok {
		if c.temps == nil {
			c.temps = map[[3]int]backend.Tensor{}
		}
		t = c.Backend.NewTensor(rows, cols)
		c.temps[k] = t
	}
	return t
}

// The other ops: skipped after a pass has what it needs; each records the
// write to its output, which ends a group of multiplications sharing an
// input.

// Embed implements backend.Backend.
func (c *calibBackend) Embed(dst backend.Tensor, table backend.Matrix, tokens []int32) {
	c.touch(dst)
	if !c.skip {
		c.Backend.Embed(dst, table, tokens)
	}
}

// AddBias implements backend.Backend.
func (c *calibBackend) AddBias(dst backend.Tensor, b backend.Vector) {
	c.touch(dst)
	if !c.skip {
		c.Backend.AddBias(dst, b)
	}
}

// Add implements backend.Backend.
func (c *calibBackend) Add(dst, x backend.Tensor) {
	c.touch(dst)
	if !c.skip {
		c.Backend.Add(dst, x)
	}
}

// RMSNorm implements backend.Backend.
func (c *calibBackend) RMSNorm(dst, x backend.Tensor, w backend.Vector, eps float32) {
	c.touch(dst)
	if !c.skip {
		c.Backend.RMSNorm(dst, x, w, eps)
	}
}

// RoPE implements backend.Backend.
func (c *calibBackend) RoPE(x backend.Tensor, heads, headDim, offset int, r *backend.Rope, pos []int32) {
	c.touch(x)
	if !c.skip {
		c.Backend.RoPE(x, heads, headDim, offset, r, pos)
	}
}

// SiLUMul implements backend.Backend.
func (c *calibBackend) SiLUMul(dst, gate, up backend.Tensor) {
	c.touch(dst)
	if !c.skip {
		c.Backend.SiLUMul(dst, gate, up)
	}
}

// Attention implements backend.Backend.
func (c *calibBackend) Attention(out, q, k, v backend.Tensor, cache backend.KVCache, layer int, b *backend.Batch, scale float32, rope *backend.Rope) {
	c.touch(out)
	if !c.skip {
		c.Backend.Attention(out, q, k, v, cache, layer, b, scale, rope)
	}
}

// CopyRows implements backend.Backend. In a twin pass the rows taken
// from the full-precision half must come first (the gathers of the model
// and of ExpertsAddVia keep the rows' order).
func (c *calibBackend) CopyRows(dst, src backend.Tensor, rows []int32) {
	c.touch(dst)
	if c.twin > 0 && !c.skip {
		fp, err := c.fpRows(src)
		if err != nil {
			c.fail(err)
			return
		}
		n := 0
		for i, r := range rows {
			if int(r) < fp {
				if i != n {
					c.fail(fmt.Errorf("calibration: a gather takes a full-precision row after a quantized one"))
					return
				}
				n++
			}
		}
		c.setFPRows(dst, n)
	}
	if !c.skip {
		c.Backend.CopyRows(dst, src, rows)
	}
}

// CopyCols implements backend.Backend.
func (c *calibBackend) CopyCols(dst, src backend.Tensor, heads, n, dstStride, dstOff, srcStride, srcOff int) {
	c.touch(dst)
	if !c.skip {
		c.Backend.CopyCols(dst, src, heads, n, dstStride, dstOff, srcStride, srcOff)
	}
}

// HeadMatMul implements backend.Backend (per-head weights are derived, not
// checkpoint tensors: not calibrated).
func (c *calibBackend) HeadMatMul(dst, x backend.Tensor, w []backend.Matrix, dstStride, xStride int) {
	c.touch(dst)
	if !c.skip {
		c.Backend.HeadMatMul(dst, x, w, dstStride, xStride)
	}
}

// Route implements backend.Backend.
func (c *calibBackend) Route(sel backend.Selection, xn, x backend.Tensor, norm *backend.Norm, router backend.Matrix, r *backend.Router) {
	if norm != nil {
		c.RMSNorm(xn, x, norm.W, norm.Eps)
		x = xn
	}
	if !c.skip {
		c.Backend.Route(sel, nil, x, nil, router, r)
	}
}

// ExpertsAdd implements backend.Backend: the CPU backend's, with every
// gather, product and activation issued through this backend, so that
// each expert's weights see the rows routed to them (an expert that no
// calibration token reaches is quantized without calibration) and the
// shared expert's see every row.
func (c *calibBackend) ExpertsAdd(dst, x backend.Tensor, sel backend.Selection, experts []backend.Expert, shared *backend.Expert) {
	c.Backend.ExpertsAddVia(c, dst, x, sel, experts, shared)
}

// MLAPrologue implements backend.Backend.
func (c *calibBackend) MLAPrologue(key, qf, kva, q backend.Tensor, norm backend.Vector, eps float32, heads, nope int, r *backend.Rope, pos []int32) {
	c.touch(key)
	c.touch(qf)
	if !c.skip {
		c.Backend.MLAPrologue(key, qf, kva, q, norm, eps, heads, nope, r, pos)
	}
}

// hessian accumulates XᵀX (float64) over the rows of activation tensors.
type hessian struct {
	n    int
	h    []float64
	d    []float64 // Σ_rows (x̃ − x)ᵀx, when full-precision inputs x̃ are given
	rows int
	xt   []float32 // transposed batch
	dt   []float32 // transposed x̃ − x
	prod []float32
}

func newHessian(n int) *hessian { return &hessian{n: n, h: make([]float64, n*n)} }

// add accumulates Σ_rows xᵀx: the float32 product of the transposed batch
// with itself (AVX2 kernels), added into the float64 sum. xf, when not
// nil, is the full-precision model's input of the same rows (row-major,
// like x): then Σ_rows (x̃ − x)ᵀx is accumulated in d too.
func (a *hessian) add(x *cpu.Tensor, xf []float32) {
	M, n := x.Rows(), x.Cols()
	if n != a.n || M == 0 {
		return
	}
	d := x.Data()
	if cap(a.xt) < n*M {
		a.xt = make([]float32, n*M)
	}
	xt := a.xt[:n*M]
	dense.Transpose(xt, d, M, n, n)
	if cap(a.prod) < n*n {
		a.prod = make([]float32, n*n)
	}
	prod := a.prod[:n*n]
	if xf != nil {
		a.addCross(xt, xf, M, n)
	}
	// the lower triangle of the batch's XᵀX, its rows cut into one part a
	// core of about equal work (part w ends at row n·√(w/W)); each part
	// also computes the upper entries of its own diagonal square, which
	// symmetrize overwrites
	workers := max(1, min(runtime.GOMAXPROCS(0), n/8))
	var wg sync.WaitGroup
	r0 := 0
	for w := 1; w <= workers; w++ {
		r1 := min(n, (int(float64(n)*math.Sqrt(float64(w)/float64(workers)))+7)&^7)
		if w == workers {
			r1 = n
		}
		if r1 <= r0 {
			continue
		}
		wg.Add(1)
		go func(r0, r1 int) {
			defer wg.Done()
			kernels.MatMulF32(prod[r0*n:], n, xt[r0*M:], r1-r0, M, xt, 0, r1)
			for i := r0; i < r1; i++ {
				hr, pr := a.h[i*n:i*n+i+1], prod[i*n:i*n+i+1]
				for j, v := range pr {
					hr[j] += float64(v)
				}
			}
		}(r0, r1)
		r0 = r1
	}
	wg.Wait()
	a.rows += M
}

// symmetrize copies the lower triangle of h, which add accumulates, to
// its upper one.
func (a *hessian) symmetrize() {
	n := a.n
	const tb = 64 // in square tiles: a column of the upper triangle is a stride of n
	dense.Range(0, (n+tb-1)/tb, 1, func(b0, b1 int) {
		for i0 := b0 * tb; i0 < min(n, b1*tb); i0 += tb {
			for j0 := 0; j0 <= i0; j0 += tb {
				for i := i0; i < min(n, i0+tb); i++ {
					for j := j0; j < min(i, j0+tb); j++ {
						a.h[j*n+i] = a.h[i*n+j]
					}
				}
			}
		}
	})
}

// addCross adds (x̃ − x)ᵀx to d, given the batch transposed (xt, [n, M])
// and x̃ (xf, [M, n]): float32 products summed in float64, like h (in
// a.prod, which add then reuses).
func (a *hessian) addCross(xt, xf []float32, M, n int) {
	if a.d == nil {
		a.d = make([]float64, n*n)
	}
	if cap(a.dt) < n*M {
		a.dt = make([]float32, n*M)
	}
	dt := a.dt[:n*M]
	dense.Transpose(dt, xf, M, n, n)
	dense.Range(0, n, 8, func(r0, r1 int) {
		for i := r0 * M; i < r1*M; i++ {
			dt[i] -= xt[i]
		}
	})
	prod := a.prod[:n*n]
	dense.Range(0, n, 8, func(r0, r1 int) {
		kernels.MatMulF32(prod[r0*n:], n, dt[r0*M:], r1-r0, M, xt, 0, n)
		for i, v := range prod[r0*n : r1*n] {
			a.d[r0*n+i] += float64(v)
		}
	})
}
