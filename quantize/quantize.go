// Package quantize turns a Hugging Face checkpoint into a quantized one,
// tensor by tensor: each linear weight is read from the memory-mapped
// source, quantized (package quant holds the formats and the math) and
// written to the output before the next is read, so memory stays at about
// one tensor. The output folder appears complete or not at all.
package quantize

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/format/safetensors"
	"github.com/marlin-llm/marlin/internal/pages"
	"github.com/marlin-llm/marlin/quant"
)

// Method is the quantization algorithm.
type Method uint8

// The methods: round-to-nearest needs nothing but the weights; GPTQ and
// EXL3 need calibration text (Options.Calib).
const (
	RTN Method = iota
	GPTQ
	EXL3
)

func (m Method) String() string {
	switch m {
	case GPTQ:
		return "gptq"
	case EXL3:
		return "exl3"
	}
	return "rtn"
}

// Options choose what Run writes.
type Options struct {
	// Method: RTN (the zero value), GPTQ (Spec: a GPTQ integer format) or
	// EXL3 (Spec: Format EXL3, Bits = K, Codebook).
	Method Method
	Spec   quant.Spec
	// Head, when set, quantizes the output head (lm_head) too; by default it
	// stays in 16 bits, as do embeddings, norms and MoE routers.
	Head *quant.Spec
	// Force replaces an existing output folder.
	Force bool
	// Progress, when set, is called after each tensor with the bytes of
	// source weights done and the total.
	Progress func(done, total int64)
	// Warn receives notes about tensors kept in 16 bits because the format
	// cannot hold their shape.
	Warn func(msg string)

	// Calib is the calibration text of GPTQ and EXL3.
	Calib *Calibration
	// GPTQ tunes the GPTQ algorithm (damping, act-order).
	GPTQ quant.GPTQOptions
	// EXL3 tunes the EXL3 quantizer (its Bits and Codebook come from Spec,
	// or from AvgBits).
	EXL3 quant.EXL3Options
	// AvgBits (EXL3), when not an integer, mixes K = ⌊AvgBits⌋ and K + 1
	// across the linear layers to reach that average (see allocateBits).
	AvgBits float64
	// FPTargets fits each layer to the full-precision model's outputs
	// (quant.Compensation: GPTAQ's asymmetric calibration) instead of
	// to what its own weights make of the inputs the quantized layers
	// before it give it, so that it also corrects what those layers got
	// wrong. Each calibration pass then runs its rows twice, through the
	// source weights and through the quantized ones side by side: twice
	// the time and the activation memory of the passes (Calibration's
	// BatchTokens counts each row once). Routed experts keep the classic
	// fit: their tokens differ between the two models (shared experts,
	// which see every token, get targets). marlin quantize sets it for
	// EXL3, where it measured better at every K (docs/perf.md).
	FPTargets bool
	// Threads for the calibration forward passes (0: one per core).
	Threads int
	// Layer, when set, is called after each weight is quantized.
	Layer func(LayerReport)
	// Context, when set, stops a run between two weights once it is done:
	// Run then returns an error wrapping its Err and nothing is written
	// (the temporary folder is removed); a calibrated run of the same job
	// later resumes from the journal (resume.go).
	Context context.Context
}

// Report summarises a Run.
type Report struct {
	Quantized, Kept int   // tensors quantized / copied unchanged
	InBytes         int64 // source tensor bytes
	OutBytes        int64 // output tensor bytes

	// calibrated methods only:
	// Resumed is the weights taken from the journal of an earlier,
	// stopped run of the same job instead of being quantized again.
	Resumed     int
	CalibName   string // the calibration text
	CalibRows   int    // sequences
	CalibTokens int    // tokens (BOS included)
	// BatchTokens is the calibration tokens of one forward pass (run
	// twice in it with FPTargets); Passes the forward passes run (when
	// every row fits one batch, 1: each layer group is quantized when
	// reached; otherwise one pass per group and batch).
	BatchTokens, Passes int
	// FPTargets: the layers were fit to the full-precision model's
	// outputs (Options.FPTargets).
	FPTargets bool
	// Memory: the largest Hessian accumulator (float64 XᵀX plus its
	// float32 work buffers), the KV cache of one batch, and the Go heap in
	// use when the largest group was quantized.
	PeakHessianBytes, KVCacheBytes, PeakHeapBytes int64
	CalibSeconds, Seconds                         float64
	Layers                                        []LayerReport
}

// companionFiles are copied from the source folder when present.
var companionFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
	"generation_config.json", "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt",
}

// Run quantizes the checkpoint in src into dst: round-to-nearest tensor by
// tensor, or GPTQ / EXL3 with calibration (see runCalibrated).
func Run(src, dst string, opt Options) (*Report, error) {
	if opt.Method != RTN {
		return runCalibrated(src, dst, opt)
	}
	ck, err := openSource(src, opt)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	w, err := hf.NewWriter(dst, opt.Force)
	if err != nil {
		return nil, err
	}
	defer w.Abort() // no-op after Commit
	rep := &Report{}
	names := ck.Names()
	var total, done int64
	for _, n := range names {
		ti, _ := ck.Info(n)
		total += ti.End - ti.Begin
	}
	tied := ck.Config.TiedEmbeddings()
	untie := false
	// A tied checkpoint may store the shared matrix only as lm_head.weight
	// with embed_tokens as an alias in the file's metadata; write it under
	// the embedding's name, which every reader resolves.
	rename := tiedRenames(ck)
	for _, stored := range names {
		if opt.Context != nil && opt.Context.Err() != nil {
			return nil, fmt.Errorf("stopped before %s (nothing written): %w", stored, context.Cause(opt.Context))
		}
		t, _ := ck.Tensor(stored)
		name := stored
		if r, ok := rename[stored]; ok {
			name = r
			t.Name = r
		}
		size := int64(len(t.Data))
		spec := specFor(name, t, opt)
		if spec == nil {
			if err := w.AddTensor(t); err != nil {
				return nil, err
			}
			rep.Kept++
			rep.OutBytes += size
		} else {
			out, err := quantizeTensor(name, t, *spec, opt.Warn)
			if err != nil {
				return nil, err
			}
			for _, ot := range out {
				if err := w.AddTensor(ot); err != nil {
					return nil, err
				}
				rep.OutBytes += int64(len(ot.Data))
			}
			if len(out) == 1 && out[0].Name == name {
				rep.Kept++
			} else {
				rep.Quantized++
			}
		}
		// A tied head quantized on request becomes its own tensor.
		if tied && opt.Head != nil && name == "model.embed_tokens.weight" {
			out, err := quantizeTensor("lm_head.weight", t, *opt.Head, opt.Warn)
			if err != nil {
				return nil, err
			}
			for _, ot := range out {
				if err := w.AddTensor(ot); err != nil {
					return nil, err
				}
				rep.OutBytes += int64(len(ot.Data))
			}
			rep.Quantized++
			untie = true
		}
		rep.InBytes += size
		done += size
		if t.Mapped {
			pages.Release(t.Data)
		}
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
	}
	if err := someQuantized(rep, opt); err != nil {
		return nil, err
	}
	cfg, err := rewriteConfig(src, Config(opt), untie)
	if err != nil {
		return nil, err
	}
	if err := w.WriteFile("config.json", cfg); err != nil {
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
	return rep, nil
}

// openSource opens the checkpoint to quantize and refuses, before any
// work, one that is already quantized, a head format of another family
// than the body's, or a format that fits none of its weights (checkFits).
func openSource(src string, opt Options) (*hf.Checkpoint, error) {
	ck, err := hf.Open(src)
	if err != nil {
		return nil, err
	}
	switch {
	case len(ck.Config.QuantizationConfig) > 0:
		err = fmt.Errorf("%s is already quantized (config.json has a quantization_config)", src)
	case opt.Head != nil && opt.Head.Format != opt.Spec.Format:
		err = fmt.Errorf("--head-bits must use the same format family as the body (%s)", opt.Spec.Format)
	default:
		err = checkFits(ck, opt)
	}
	if err != nil {
		ck.Close()
		return nil, err
	}
	return ck, nil
}

// checkFits refuses, before any work, a run in which no weight the run
// would quantize fits the requested format (a group that divides none of
// their input dimensions, say); weights that do not fit while others do are
// kept with a note as they come.
func checkFits(ck *hf.Checkpoint, opt Options) error {
	var first error
	for _, n := range ck.Names() {
		ti, _ := ck.Info(n)
		if len(ti.Shape) != 2 || !Quantized(n, ti.Shape, false) {
			continue
		}
		err := opt.Spec.Fits(ti.Shape[1])
		if err == nil {
			return nil
		}
		if first == nil {
			first = fmt.Errorf("%s: %w", n, err)
		}
	}
	if first != nil {
		return fmt.Errorf("no weight can be quantized as %v (%v, and likewise every other): nothing written", opt.Spec, first)
	}
	return nil
}

// someQuantized refuses a run in which no weight could be stored in the
// requested format (every linear weight kept, e.g. a group size that
// divides none of their input dimensions): such a folder would claim a
// quantization it does not have.
func someQuantized(rep *Report, opt Options) error {
	if rep.Quantized > 0 {
		return nil
	}
	return fmt.Errorf("no weight could be quantized as %v (each was kept as it is; see the notes above): nothing written", opt.Spec)
}

// Config returns the quantization_config of a checkpoint quantized with
// opt: the body's format, and the output head's when opt.Head sets one —
// a dynamic override for a GPTQ head of other bits or group than the body,
// EXL3's head_bits.
func Config(opt Options) *quant.Config {
	qc := quant.ConfigFor(opt.Spec)
	h := opt.Head
	switch {
	case h != nil && qc.Format == quant.GPTQ && (h.Bits != opt.Spec.Bits || h.Group != opt.Spec.Group):
		hc := quant.ConfigFor(*h)
		qc.Dynamic = []quant.DynamicRule{{Pattern: `+:^lm_head$`, Override: map[string]any{"bits": hc.Bits, "group_size": hc.Group}}}
	case h != nil && qc.Format == quant.EXL3:
		qc.HeadBits = h.Bits
	}
	return qc
}

// tiedRenames maps a tied checkpoint's stored head (lm_head.weight, with
// model.embed_tokens.weight an alias of it in the file's metadata) to the
// embedding's name, which every reader resolves.
func tiedRenames(ck *hf.Checkpoint) map[string]string {
	rename := map[string]string{}
	for alias, target := range ck.Aliases() {
		if ck.Config.TiedEmbeddings() && alias == "model.embed_tokens.weight" && target == "lm_head.weight" {
			rename[target] = alias
		}
	}
	return rename
}

// specFor returns how to quantize the tensor name, or nil to keep it.
func specFor(name string, t safetensors.Tensor, opt Options) *quant.Spec {
	switch {
	case name == "lm_head.weight" && Quantized(name, t.Shape, true):
		return opt.Head
	case Quantized(name, t.Shape, false):
		return &opt.Spec
	}
	return nil
}

// Quantized reports whether marlin quantize quantizes the tensor name of
// this shape: the 2-D weights of linear layers, and the output head only
// when head is set. Kept in 16 bits: embeddings, norms, biases and MoE
// routers (".gate.weight", not ".gate_proj.weight").
func Quantized(name string, shape []int, head bool) bool {
	if len(shape) != 2 || !strings.HasSuffix(name, ".weight") {
		return false
	}
	switch {
	case strings.Contains(name, "embed_tokens"), strings.HasSuffix(name, ".gate.weight"),
		strings.Contains(name, "norm"):
		return false
	case name == "lm_head.weight":
		return head
	}
	return true
}

// quantizeTensor quantizes one [Out, In] weight, returning the tensors that
// store it. A shape the format cannot hold (a group that does not divide
// In) keeps the tensor as it is, with a warning.
func quantizeTensor(name string, t safetensors.Tensor, spec quant.Spec, warn func(string)) ([]safetensors.Tensor, error) {
	out, in := t.Shape[0], t.Shape[1]
	vals, err := t.Float32s()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	q, err := quant.QuantizeRTN(vals, out, in, spec)
	if err != nil {
		warnf(warn, "%s [%d, %d] kept in %s: %v", name, out, in, t.DType, err)
		return []safetensors.Tensor{t}, nil
	}
	prefix := strings.TrimSuffix(name, ".weight")
	q.Name = prefix
	return q.Tensors(prefix), nil
}

// rewriteConfig returns config.json with the quantization_config added.
func rewriteConfig(src string, qc *quant.Config, untie bool) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%s/config.json: %w", src, err)
	}
	cfg["quantization_config"] = qc.JSON()
	if untie {
		cfg["tie_word_embeddings"] = false
	}
	return json.MarshalIndent(cfg, "", "  ")
}
