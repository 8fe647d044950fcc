package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/dtype"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/quant"
)

// loader maps checkpoint tensors onto a backend, checking every shape and
// remembering the first error so that model constructors read as a plain
// list of weights.
type loader struct {
	ck   *hf.Checkpoint
	be   backend.Backend
	q    *quant.Config
	info *Info
	err  error
	// idleExpertBytes is the part of the experts' weights a token does not
	// use: (E − topK)/E of each mixture's experts.
	idleExpertBytes int64
}

func newLoader(ck *hf.Checkpoint, be backend.Backend, q *quant.Config, info *Info) *loader {
	if info.Formats == nil {
		info.Formats = map[string]int{}
	}
	return &loader{ck: ck, be: be, q: q, info: info}
}

func (l *loader) fail(format string, args ...any) {
	if l.err == nil {
		l.err = fmt.Errorf("%s: "+format, append([]any{l.ck.Dir}, args...)...)
	}
}

// matrix loads the linear weight stored under prefix (prefix.weight, or the
// tensors of a quantized format) and checks it is [out, in].
func (l *loader) matrix(prefix string, out, in int) backend.Matrix {
	return l.load(l.weight(prefix, out, in))
}

// weight reads the linear weight stored under prefix and checks it is
// [out, in], without loading it onto the backend.
func (l *loader) weight(prefix string, out, in int) *quant.Weight {
	if l.err != nil {
		return nil
	}
	w, err := quant.LoadWeight(prefix, l.ck.Tensor, l.q)
	if err != nil {
		l.fail("%v", err)
		return nil
	}
	if w.Format == quant.EXL3 && (w.Out != out || w.In != in) && w.Out == quant.PadEXL3(out) && w.In == quant.PadEXL3(in) {
		// exllamav3's own checkpoints store a layer padded to multiples
		// of 128 without marlin's logical_shapes record: the stored
		// tensors are the padded weight, config.json gives its logical
		// (cut) shape
		w.Out, w.In = out, in
	}
	if w.Out != out || w.In != in {
		l.fail("%s: shape [%d, %d], want [%d, %d]", prefix, w.Out, w.In, out, in)
		return nil
	}
	return w
}

// wspec names a linear weight and its shape [out, in].
type wspec struct {
	prefix  string
	out, in int
}

// matrices loads weights that are multiplied by one input (q, k and v; gate
// and up) together, so that a backend may run their products as one
// (backend.LoadMatrices).
func (l *loader) matrices(specs ...wspec) []backend.Matrix {
	ws := make([]*quant.Weight, len(specs))
	for i, sp := range specs {
		if ws[i] = l.weight(sp.prefix, sp.out, sp.in); ws[i] == nil {
			return make([]backend.Matrix, len(specs))
		}
	}
	ms, err := l.be.LoadMatrices(ws)
	if err != nil {
		l.fail("%v", err)
		return make([]backend.Matrix, len(specs))
	}
	for i, w := range ws {
		l.count(w, ms[i])
	}
	return ms
}

// load puts a weight on the backend and counts it.
func (l *loader) load(w *quant.Weight) backend.Matrix {
	if l.err != nil || w == nil {
		return nil
	}
	m, err := l.be.LoadMatrix(w)
	if err != nil {
		l.fail("%v", err)
		return nil
	}
	l.count(w, m)
	return m
}

// count adds a loaded weight to the model's totals.
func (l *loader) count(w *quant.Weight, m backend.Matrix) {
	l.info.WeightBytes += m.Bytes()
	l.info.Params += int64(w.Out) * int64(w.In)
	l.info.Formats[formatName(w)]++
}

func formatName(w *quant.Weight) string {
	switch w.Format {
	case quant.Dense:
		return w.DType.String()
	case quant.GPTQ:
		return fmt.Sprintf("gptq int%d g%d", w.Bits, w.Group)
	case quant.EXL3:
		return fmt.Sprintf("exl3 %d-bit", w.Bits)
	}
	return fmt.Sprintf("%s g%d", w.Format, w.Group)
}

// has reports whether the checkpoint holds a tensor named name.
func (l *loader) has(name string) bool {
	_, ok := l.ck.Tensor(name)
	return ok
}

// hasMatrix reports whether a linear weight is stored under prefix.
func (l *loader) hasMatrix(prefix string) bool {
	return l.has(prefix+".weight") || l.has(prefix+".qweight")
}

// vector loads a 1-D parameter of n values, converting it to float32.
func (l *loader) vector(name string, n int) backend.Vector {
	if l.err != nil {
		return nil
	}
	t, ok := l.ck.Tensor(name)
	if !ok {
		l.fail("missing tensor %s", name)
		return nil
	}
	if len(t.Shape) != 1 || t.Shape[0] != n {
		l.fail("%s: shape %v, want [%d]", name, t.Shape, n)
		return nil
	}
	v, err := t.Float32s()
	if err != nil {
		l.fail("%s: %v", name, err)
		return nil
	}
	l.info.WeightBytes += int64(len(t.Data))
	l.info.Params += int64(n)
	return l.be.LoadVector(v)
}

// optVector loads name when present (nil otherwise).
func (l *loader) optVector(name string, n int, present bool) backend.Vector {
	if !present {
		if l.has(name) {
			l.fail("unexpected tensor %s (the config does not call for it)", name)
		}
		return nil
	}
	return l.vector(name, n)
}

// dense is a dense weight matrix built in memory (derived weights such as
// MLA's absorbed projections).
type dense struct{ w *quant.Weight }

func newDense(name string, out, in int, dt dtype.DType) *dense {
	return &dense{&quant.Weight{Name: name, Format: quant.Dense, Out: out, In: in, DType: dt,
		Data: make([]byte, out*in*dt.Size())}}
}

// set stores v at [r, c], rounding to the matrix's type (exact for values
// that came from a matrix of that type).
func (d *dense) set(r, c int, v float32) {
	i := r*d.w.In + c
	switch d.w.DType {
	case dtype.F32:
		binary.LittleEndian.PutUint32(d.w.Data[4*i:], math.Float32bits(v))
	case dtype.BF16:
		binary.LittleEndian.PutUint16(d.w.Data[2*i:], dtype.F32ToBF16(v))
	case dtype.F16:
		binary.LittleEndian.PutUint16(d.w.Data[2*i:], dtype.F32ToF16(v))
	}
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// outputHead loads the final norm and the output projection (the embedding
// table itself when tied), and sets Info.DecodeBytes: what one decode step
// reads, every matrix but the embedding unless it doubles as the head, and
// of each mixture of experts only the share of the experts a token uses.
func (l *loader) outputHead(embed backend.Matrix) (backend.Vector, backend.Matrix) {
	c := l.ck.Config
	norm := l.vector("model.norm.weight", c.HiddenSize)
	head := embed
	if !c.TiedEmbeddings() {
		head = l.matrix("lm_head", c.VocabSize, c.HiddenSize)
	}
	if l.err == nil {
		l.info.DecodeBytes = l.info.WeightBytes - l.idleExpertBytes
		if !c.TiedEmbeddings() {
			l.info.DecodeBytes -= embed.Bytes()
		}
	}
	return norm, head
}
