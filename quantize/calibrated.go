package quantize

import (
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/format/safetensors"
	"github.com/marlin-llm/marlin/internal/pages"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/tokenizer"
)

// LayerReport describes one quantized linear weight.
type LayerReport struct {
	Name    string  `json:"name"`
	Out     int     `json:"out"`
	In      int     `json:"in"`
	Format  string  `json:"format"` // "gptq int3 g128", "exl3 K3 3inst", "kept BF16"
	Bits    float64 `json:"bits"`   // stored bits per logical weight (payload + scales)
	Samples int     `json:"samples"`
	// Error is tr((W−Q)·H·(W−Q)ᵀ) with H the mean of xᵀx over the
	// calibration inputs; RTNError the same for round-to-nearest with the
	// same spec (GPTQ only); Relative is Error/tr(W·H·Wᵀ). W is the
	// layer's target: with Options.FPTargets, the compensated W′.
	Error    float64 `json:"error"`
	RTNError float64 `json:"rtn_error,omitempty"`
	Relative float64 `json:"relative"`
	Seconds  float64 `json:"seconds"`
}

// runner holds one calibrated quantization.
type runner struct {
	opt   Options
	j     *journal // what earlier runs of this job quantized (resume.go)
	ck    *hf.Checkpoint
	w     *hf.Writer
	be    *calibBackend
	rep   *Report
	specs map[string]*quant.Spec // output prefix → spec
	bits  map[string]int         // EXL3: K per output prefix
	// per target matrix: output prefix and source tensor
	out   map[backend.Matrix]string
	src   map[backend.Matrix]string
	done  map[string]bool
	cfg   *quant.Config
	untie bool
	total int64
	prog  int64
}

// runCalibrated quantizes with GPTQ or EXL3, measuring each linear layer's
// inputs on the calibration text in sequential order: the layers are
// quantized in the order the forward pass reaches them, and the inputs of
// each come from the already quantized layers before it.
func runCalibrated(src, dst string, opt Options) (*Report, error) {
	start := time.Now()
	if opt.Calib == nil || len(opt.Calib.Text) == 0 && len(opt.Calib.Tokens) == 0 {
		return nil, fmt.Errorf("%v needs calibration text", opt.Method)
	}
	ck, err := openSource(src, opt)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	var tok *tokenizer.Tokenizer
	if opt.Calib.Tokens == nil {
		if tok, err = tokenizer.Load(src); err != nil {
			return nil, fmt.Errorf("calibration text needs the model's tokenizer (--calib generate samples token ids from the model instead): %w", err)
		}
	}
	be := newCalibBackend(cpu.New(opt.Threads))
	m, err := model.Load(src, be)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	info := m.Info()

	// calibration sequences
	c := *opt.Calib
	if c.Rows <= 0 {
		c.Rows = 32
	}
	if c.Ctx <= 0 {
		c.Ctx = 256
	}
	if info.ContextLength > 0 {
		c.Ctx = min(c.Ctx, info.ContextLength)
	}
	if c.BatchTokens <= 0 {
		c.BatchTokens = 8192
	}
	bos := info.BOS
	if tok != nil {
		if id, ok := tok.BOS(); ok {
			bos = id
		}
	}
	per := c.Ctx
	if bos >= 0 {
		per--
	}
	if per < 1 {
		return nil, fmt.Errorf("calibration context %d too short", c.Ctx)
	}
	ids := c.Tokens
	if tok != nil {
		ids = tok.Encode(string(c.Text), false)
	}
	for _, id := range ids {
		if id < 0 || int(id) >= info.Vocab {
			return nil, fmt.Errorf("calibration token %d outside the vocabulary of %d", id, info.Vocab)
		}
	}
	rows := min(c.Rows, len(ids)/per)
	if rows == 0 {
		return nil, fmt.Errorf("calibration text %s: %d tokens, fewer than one row of %d", c.Name, len(ids), per)
	}
	seqs := make([][]int32, rows)
	for i := range seqs {
		var s []int32
		if bos >= 0 {
			s = append(s, bos)
		}
		seqs[i] = append(s, ids[i*per:(i+1)*per]...)
	}

	w, err := hf.NewWriter(dst, opt.Force)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	r := &runner{opt: opt, ck: ck, w: w, be: be, specs: map[string]*quant.Spec{}, bits: map[string]int{},
		out: map[backend.Matrix]string{}, src: map[backend.Matrix]string{}, done: map[string]bool{},
		rep: &Report{CalibTokens: rows * len(seqs[0]), CalibRows: rows, CalibName: c.Name}}
	r.cfg = Config(opt)
	if opt.Method == GPTQ {
		r.cfg.DescAct = opt.GPTQ.ActOrder
	}
	tied := ck.Config.TiedEmbeddings()
	// the weights to quantize, by the matrix the model multiplies with
	for mat, name := range be.names {
		t, ok := ck.Tensor(name + ".weight")
		if !ok {
			continue // a derived matrix (absorbed MLA projections)
		}
		outName := name
		if name == "model.embed_tokens" {
			if !tied || opt.Head == nil {
				continue
			}
			outName = "lm_head" // the tied head, written as its own tensor
		}
		spec := specFor(outName+".weight", t, opt)
		if spec == nil {
			continue
		}
		r.out[mat], r.src[mat], r.specs[outName] = outName, name+".weight", spec
		r.total += int64(len(t.Data))
	}
	// tensors the model never loads as a matrix (derived ones), or never
	// multiplies (an expert no calibration token is routed to), are done
	// without calibration below
	if opt.Method == EXL3 {
		r.allocateBits()
	}

	// pass 1: the order of the multiplications
	first := seqs[0][:min(len(seqs[0]), 16)]
	if err := forward(m, be, [][]int32{first}, true, func() { be.recording = true }); err != nil {
		return nil, err
	}
	be.recording = false
	be.group = map[backend.Matrix]int{}
	var groups [][]backend.Matrix
	for i, cl := range be.calls {
		if _, ok := r.out[cl.m]; !ok {
			continue
		}
		if _, ok := be.group[cl.m]; ok {
			continue
		}
		prev := -1
		for j := i - 1; j >= 0; j-- {
			if _, ok := r.out[be.calls[j].m]; ok {
				prev = j
				break
			}
		}
		if prev >= 0 && len(groups) > 0 && be.calls[prev].x == cl.x && be.calls[prev].gen == cl.gen {
			if g, ok := be.group[be.calls[prev].m]; ok && g == len(groups)-1 {
				groups[g] = append(groups[g], cl.m)
				be.group[cl.m] = g
				continue
			}
		}
		be.group[cl.m] = len(groups)
		groups = append(groups, []backend.Matrix{cl.m})
	}
	be.calls = nil
	be.size = make([]int, len(groups))
	for g, ms := range groups {
		be.size[g] = len(ms)
	}

	// resume: the weights an interrupted run of this job quantized
	batchRows := max(1, c.BatchTokens/len(seqs[0]))
	key, err := jobKey(ck, src, opt, seqs, batchRows*len(seqs[0]))
	if err != nil {
		return nil, err
	}
	if r.j, err = openJournal(dst, key, opt.Warn); err != nil {
		return nil, err
	}
	if err := r.replay(); err != nil {
		return nil, err
	}
	r.rep.Resumed = len(r.j.Entries)

	// calibration passes. With full-precision targets each pass runs its
	// rows twice in one batch (calibBackend.twin): first through the
	// source weights, then through the quantized ones, so that every layer
	// sees its full-precision inputs beside its quantized ones.
	calibStart := time.Now()
	r.rep.FPTargets = opt.FPTargets
	pass := func(batch [][]int32) error {
		if opt.FPTargets {
			be.twin = len(batch) * len(batch[0])
			batch = append(append([][]int32(nil), batch...), batch...)
		}
		err := forward(m, be, batch, r.headCalibrated(), nil)
		be.twin, be.fpOf = 0, nil
		r.rep.Passes++
		return err
	}
	if batchRows >= len(seqs) {
		// everything in one forward pass: quantize each group when reached
		be.inline = true
		be.done = make([]bool, len(groups))
		be.onFirst = func(g int, h *hessian) error {
			r.trackMemory(h)
			return r.quantizeGroup(groups[g], h)
		}
		r.rep.BatchTokens = len(seqs) * len(seqs[0])
		if err := pass(seqs); err != nil {
			return nil, err
		}
		be.inline = false
	} else {
		for g := range groups {
			if r.groupDone(groups[g]) {
				continue
			}
			be.target = g
			h := &hessian{}
			be.acc = h
			for b0 := 0; b0 < len(seqs); b0 += batchRows {
				be.lastAcc, be.lastGen, be.seen = xKey{}, -1, 0
				if err := pass(seqs[b0:min(b0+batchRows, len(seqs))]); err != nil {
					return nil, err
				}
			}
			if h.rows == 0 {
				continue // never reached: done without calibration below
			}
			r.trackMemory(h)
			if err := r.quantizeGroup(groups[g], h); err != nil {
				return nil, err
			}
		}
		be.target = -1
		r.rep.BatchTokens = batchRows * len(seqs[0])
	}
	if be.err != nil {
		return nil, be.err
	}
	r.rep.KVCacheBytes = int64(r.rep.BatchTokens) * info.KV.TokenBytes()
	if opt.FPTargets {
		r.rep.KVCacheBytes *= 2 // each row twice
	}
	r.rep.CalibSeconds = time.Since(calibStart).Seconds()

	// the targets no pass reached, then everything else
	// (in the order of their names, so that the file is the same each run)
	var unreached []backend.Matrix
	for mat, name := range r.out {
		if !r.done[name] {
			unreached = append(unreached, mat)
		}
	}
	sort.Slice(unreached, func(i, j int) bool { return r.out[unreached[i]] < r.out[unreached[j]] })
	for _, mat := range unreached {
		warnf(opt.Warn, "%s: never multiplied in the forward pass; quantized without calibration", r.out[mat])
		if err := r.quantizeOne(mat, nil); err != nil {
			return nil, err
		}
	}
	rename := tiedRenames(ck)
	for _, stored := range ck.Names() {
		t, _ := ck.Tensor(stored)
		name := stored
		if n, ok := rename[stored]; ok {
			name, t.Name = n, n
		}
		prefix := strings.TrimSuffix(name, ".weight")
		if r.done[prefix] && strings.HasSuffix(name, ".weight") {
			r.rep.InBytes += int64(len(t.Data))
			continue
		}
		spec := specFor(name, t, opt)
		if spec != nil && !r.done[prefix] {
			// a target with no matrix in the model: no calibration
			out, rep, err := r.quantizeTensor(prefix, t, *spec, nil)
			if err != nil {
				return nil, err
			}
			if err := r.add(out); err != nil {
				return nil, err
			}
			r.layer(rep)
			r.rep.InBytes += int64(len(t.Data))
			continue
		}
		if err := w.AddTensor(t); err != nil {
			return nil, err
		}
		r.rep.Kept++
		r.rep.InBytes += int64(len(t.Data))
		r.rep.OutBytes += int64(len(t.Data))
	}
	if opt.Method == EXL3 {
		// "bits": the average K of the decoder layers' weights
		var kp, p float64
		for _, l := range r.rep.Layers {
			var k int
			if l.Name != "lm_head" && strings.HasPrefix(l.Format, "exl3 K") {
				fmt.Sscanf(l.Format, "exl3 K%d", &k)
				kp += float64(k) * float64(l.Out) * float64(l.In)
				p += float64(l.Out) * float64(l.In)
			}
		}
		if p > 0 {
			r.cfg.AvgBits = math.Round(kp/p*1000) / 1000
		}
	}
	if err := someQuantized(r.rep, opt); err != nil {
		return nil, err
	}
	raw, err := rewriteConfig(src, r.cfg, r.untie)
	if err != nil {
		return nil, err
	}
	if err := w.WriteFile("config.json", raw); err != nil {
		return nil, err
	}
	for _, f := range companionFiles {
		p := filepath.Join(src, f)
		if _, err := os.Stat(p); err == nil {
			if err := w.CopyFile(f, p); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	if err := r.j.remove(); err != nil {
		warnf(opt.Warn, "removing the journal %s: %v", r.j.dir, err)
	}
	r.rep.Seconds = time.Since(start).Seconds()
	return r.rep, nil
}

// headCalibrated reports whether the output head is a target (then every
// row's logits are computed; otherwise only one row's).
func (r *runner) headCalibrated() bool {
	_, ok := r.specs["lm_head"]
	return ok
}

func (r *runner) trackMemory(h *hessian) {
	hb := int64(len(h.h)+len(h.d))*8 + int64(cap(h.xt)+cap(h.dt)+cap(h.prod))*4
	r.rep.PeakHessianBytes = max(r.rep.PeakHessianBytes, hb)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.rep.PeakHeapBytes = max(r.rep.PeakHeapBytes, int64(ms.HeapInuse))
}

// forward runs the sequences through the model as one batch (each with
// its own KV blocks); before, when set, runs first.
func forward(m model.Model, be *calibBackend, seqs [][]int32, allRows bool, before func()) error {
	info := m.Info()
	spec := info.KV
	spec.BlockSize = 16
	b := &backend.Batch{}
	nb := 0
	for _, s := range seqs {
		n := (len(s) + 15) / 16
		blocks := make([]int32, n)
		for i := range blocks {
			blocks[i] = int32(nb + i)
		}
		nb += n
		b.Seqs = append(b.Seqs, backend.Seq{Start: len(b.Tokens), Len: len(s), Blocks: blocks})
		for i, t := range s {
			b.Tokens = append(b.Tokens, t)
			b.Pos = append(b.Pos, int32(i))
		}
	}
	spec.Blocks = nb
	cache, err := be.NewKVCache(spec)
	if err != nil {
		return err
	}
	rows := []int32{0}
	if allRows {
		rows = make([]int32, len(b.Tokens))
		for i := range rows {
			rows[i] = int32(i)
		}
	}
	be.skip = false
	if before != nil {
		before()
	}
	m.Forward(b, cache, rows)
	be.skip = false
	if be.err != nil {
		return be.err
	}
	return nil
}

// quantizeGroup quantizes the weights that share the inputs measured in h.
func (r *runner) quantizeGroup(ms []backend.Matrix, h *hessian) error {
	h.symmetrize()
	scale := 1 / float64(max(h.rows, 1))
	hs := &calibStats{h: make([]float64, len(h.h)), rows: h.rows}
	for i, v := range h.h {
		hs.h[i] = v * scale
	}
	if h.d != nil { // (H and D share the factor 1/rows, which M does not see)
		c, err := quant.NewCompensation(h.h, h.d, h.n, fpTargetDamp)
		if err != nil {
			return fmt.Errorf("%s: %w", r.out[ms[0]], err)
		}
		hs.comp = c
	}
	for _, mat := range ms {
		if err := r.quantizeOne(mat, hs); err != nil {
			return err
		}
	}
	return nil
}

// calibStats are a group's input statistics over its calibration rows:
// the mean of xᵀx and, with full-precision targets, the compensation that
// gives each weight its target (else nil).
type calibStats struct {
	h    []float64
	comp *quant.Compensation
	rows int
}

// fpTargetDamp is NewCompensation's damping: a fraction of mean(diag H),
// like GPTQ's.
const fpTargetDamp = 0.01

// warnf sends a formatted note to warn, when set.
func warnf(warn func(string), format string, args ...any) {
	if warn != nil {
		warn(fmt.Sprintf(format, args...))
	}
}

// quantizeOne quantizes one target weight (hs nil: without calibration),
// journals it, writes its tensors and installs it in the backend for the
// later passes.
func (r *runner) quantizeOne(mat backend.Matrix, hs *calibStats) error {
	name := r.out[mat]
	if r.done[name] {
		return nil
	}
	if ctx := r.opt.Context; ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("stopped before %s (%d weights done, journaled in %s: the same command resumes): %w", name, len(r.j.Entries), r.j.dir, ctx.Err())
	}
	t, _ := r.ck.Tensor(r.src[mat])
	tensors, rep, err := r.quantizeTensor(name, t, *r.specs[name], hs)
	if err != nil {
		return err
	}
	var shape *[2]int
	if sh, ok := r.cfg.Shapes[name]; ok {
		shape = &sh
	}
	if err := r.j.add(name, tensors, rep, shape); err != nil {
		return err
	}
	return r.install(mat, t, tensors, rep)
}

// replay installs the weights the journal holds, in their order.
func (r *runner) replay() error {
	byName := map[string]backend.Matrix{}
	for mat, name := range r.out {
		byName[name] = mat
	}
	for _, e := range r.j.Entries {
		mat, ok := byName[e.Name]
		if !ok || r.done[e.Name] {
			return fmt.Errorf("journal %s: weight %s is not a target of this model, or twice in it", r.j.dir, e.Name)
		}
		tensors, err := r.j.tensors(e)
		if err != nil {
			return err
		}
		if e.Shape != nil {
			if r.cfg.Shapes == nil {
				r.cfg.Shapes = map[string][2]int{}
			}
			r.cfg.Shapes[e.Name] = *e.Shape
		}
		t, _ := r.ck.Tensor(r.src[mat])
		if err := r.install(mat, t, tensors, e.Report); err != nil {
			return err
		}
	}
	return nil
}

// groupDone reports whether every weight of a group is quantized.
func (r *runner) groupDone(ms []backend.Matrix) bool {
	for _, m := range ms {
		if !r.done[r.out[m]] {
			return false
		}
	}
	return true
}

// install writes the quantized tensors of the weight mat (source tensor t)
// and has the backend multiply by them from now on.
func (r *runner) install(mat backend.Matrix, t safetensors.Tensor, tensors []safetensors.Tensor, rep LayerReport) error {
	name := r.out[mat]
	if err := r.add(tensors); err != nil {
		return err
	}
	r.layer(rep)
	if name == "lm_head" && r.src[mat] == "model.embed_tokens.weight" {
		r.untie = true
	}
	// use the quantized weight from now on
	if len(tensors) > 0 && tensors[0].Name != t.Name {
		get := func(n string) (safetensors.Tensor, bool) {
			for _, x := range tensors {
				if x.Name == n {
					return x, true
				}
			}
			return safetensors.Tensor{}, false
		}
		q, err := quant.LoadWeight(name, get, r.cfg) // (a head of other bits: the config's dynamic rule)
		if err != nil {
			return fmt.Errorf("%s: reloading the quantized weight: %w", name, err)
		}
		qm, err := r.be.Backend.LoadMatrix(q)
		if err != nil {
			return err
		}
		if name != "lm_head" || r.src[mat] != "model.embed_tokens.weight" {
			r.be.repl[mat] = qm // (the tied embedding keeps its table)
		}
	}
	r.done[name] = true
	r.prog += int64(len(t.Data))
	if t.Mapped {
		pages.Release(t.Data)
	}
	if r.opt.Progress != nil {
		r.opt.Progress(r.prog, r.total)
	}
	return nil
}

func (r *runner) add(ts []safetensors.Tensor) error {
	for _, t := range ts {
		if err := r.w.AddTensor(t); err != nil {
			return err
		}
		r.rep.OutBytes += int64(len(t.Data))
	}
	return nil
}

func (r *runner) layer(l LayerReport) {
	if strings.HasPrefix(l.Format, "kept") {
		r.rep.Kept++
	} else {
		r.rep.Quantized++
	}
	r.rep.Layers = append(r.rep.Layers, l)
	if r.opt.Layer != nil {
		r.opt.Layer(l)
	}
}

// quantizeTensor quantizes the [Out, In] tensor t stored as prefix with
// GPTQ or EXL3 given the calibration statistics (nil: none; GPTQ then
// falls back to round-to-nearest). A shape the format cannot hold keeps
// the tensor, with a warning.
func (r *runner) quantizeTensor(prefix string, t safetensors.Tensor, spec quant.Spec, hs *calibStats) ([]safetensors.Tensor, LayerReport, error) {
	start := time.Now()
	out, in := t.Shape[0], t.Shape[1]
	rep := LayerReport{Name: prefix, Out: out, In: in}
	if hs != nil {
		rep.Samples = hs.rows
	}
	vals, err := t.Float32s()
	if err != nil {
		return nil, rep, fmt.Errorf("%s: %w", prefix, err)
	}
	var q *quant.Weight
	var h []float64
	if hs != nil {
		h = hs.h
		if hs.comp != nil { // the target: W′ that best reproduces the full-precision outputs
			if vals, err = hs.comp.Target(vals, out); err != nil {
				return nil, rep, fmt.Errorf("%s: %w", prefix, err)
			}
		}
	}
	switch r.opt.Method {
	case GPTQ:
		if h == nil {
			q, err = quant.QuantizeRTN(vals, out, in, spec)
		} else {
			var st *quant.GPTQStats
			q, st, err = quant.QuantizeGPTQ(vals, out, in, h, spec, r.opt.GPTQ)
			if err == nil {
				rep.Error, rep.RTNError = st.Error, st.RTNError
			}
		}
	case EXL3:
		o := r.opt.EXL3
		o.Bits = spec.Bits
		if k, ok := r.bits[prefix]; ok {
			o.Bits = k
		}
		o.Codebook = spec.Codebook
		hf := fnv.New64a()
		hf.Write([]byte(prefix))
		o.Seed ^= hf.Sum64()
		var st *quant.EXL3Stats
		q, st, err = quant.QuantizeEXL3(vals, out, in, h, o)
		if err == nil {
			rep.Relative = st.ProxyError
			if pi, po := q.PaddedDims(); pi != in || po != out {
				if r.cfg.Shapes == nil {
					r.cfg.Shapes = map[string][2]int{}
				}
				r.cfg.Shapes[prefix] = [2]int{out, in}
			}
		}
	default:
		return nil, rep, fmt.Errorf("quantize: method %v is not calibrated", r.opt.Method)
	}
	if err != nil {
		warnf(r.opt.Warn, "%s [%d, %d] kept in %s: %v", prefix, out, in, t.DType, err)
		rep.Format = "kept " + t.DType.String()
		rep.Bits = float64(8 * t.DType.Size())
		t.Name = prefix + ".weight"
		return []safetensors.Tensor{t}, rep, nil
	}
	q.Name = prefix
	ts := q.Tensors(prefix)
	var bytes int
	for _, x := range ts {
		bytes += len(x.Data)
	}
	rep.Bits = float64(8*bytes) / float64(out*in)
	switch q.Format {
	case quant.GPTQ:
		rep.Format = fmt.Sprintf("gptq int%d g%d", q.Bits, q.Group)
		if q.GIdx != nil {
			rep.Format += " act-order"
		}
	case quant.EXL3:
		rep.Format = fmt.Sprintf("exl3 K%d %s", q.Bits, q.Codebook)
	}
	if h != nil && rep.Relative == 0 {
		if tw := quant.OutputEnergy(vals, out, in, h); tw > 0 {
			rep.Relative = rep.Error / tw
		}
	}
	if h != nil && rep.Error == 0 && rep.Relative > 0 {
		rep.Error = rep.Relative * quant.OutputEnergy(vals, out, in, h)
	}
	rep.Seconds = time.Since(start).Seconds()
	return ts, rep, nil
}

// allocateBits picks K per EXL3 target for a fractional AvgBits: every
// weight gets ⌊AvgBits⌋ and, in order of priority, weights get one bit
// more while the average over all targets' weights stays within AvgBits.
// Priority: the attention output and value projections and the MLP down
// projection first (the layers most sensitive to quantization in
// exllamav3's measurements), then the rest; within a kind, layers nearer
// the ends of the network first.
func (r *runner) allocateBits() {
	avg := r.opt.AvgBits
	if avg <= 0 {
		return
	}
	lo := int(math.Floor(avg))
	type item struct {
		name   string
		params float64
		prio   int
		depth  int
	}
	var items []item
	var total float64
	for name, spec := range r.specs {
		if name == "lm_head" {
			continue
		}
		t, _ := r.ck.Tensor(name + ".weight")
		if spec.Format != quant.EXL3 {
			continue
		}
		p := float64(t.Shape[0]) * float64(t.Shape[1])
		prio := 3
		switch {
		case strings.HasSuffix(name, "v_proj"), strings.HasSuffix(name, "down_proj"):
			prio = 0
		case strings.HasSuffix(name, "o_proj"):
			prio = 1
		case strings.HasSuffix(name, "q_proj"), strings.HasSuffix(name, "k_proj"):
			prio = 2
		}
		layer, layers := layerIndex(name), r.ck.Config.NumHiddenLayers
		depth := min(layer, max(layers-1-layer, 0))
		items = append(items, item{name, p, prio, depth})
		total += p
		r.bits[name] = lo
	}
	if avg == float64(lo) || lo >= quant.MaxTrellisBits {
		return
	}
	sort.Slice(items, func(a, b int) bool {
		x, y := items[a], items[b]
		if x.prio != y.prio {
			return x.prio < y.prio
		}
		if x.depth != y.depth {
			return x.depth < y.depth
		}
		return x.name < y.name
	})
	budget := (avg - float64(lo)) * total
	for _, it := range items {
		if it.params <= budget {
			r.bits[it.name] = lo + 1
			budget -= it.params
		}
	}
}

func layerIndex(name string) int {
	const p = "model.layers."
	i := strings.Index(name, p)
	if i < 0 {
		return 0
	}
	n := 0
	for _, ch := range name[i+len(p):] {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}
