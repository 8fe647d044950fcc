package quantize

import (
	"context"
	"fmt"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/model"
)

// GenerateOptions say how GenerateCalibration samples.
type GenerateOptions struct {
	Rows, Ctx int    // sequences and tokens each, BOS included (0: 32 and 256)
	Seed      uint64 // row r samples with seed Seed + r
	Threads   int    // CPU threads (0: one per core)
	// Context, when set, stops the sampling between two decode steps with
	// its error (Ctrl-C in the command).
	Context context.Context
	// Progress, when set, is called after each decode step with the steps
	// done and their total (Ctx − 1).
	Progress func(done, total int)
}

// GenerateCalibration samples calibration text from the model in src
// itself: o.Rows sequences of o.Ctx tokens, each starting at the model's
// BOS token (or its first EOS token when it has no BOS), drawn at
// temperature 1 from the unquantized model on the CPU (the same text on
// every machine for the same seed: the quantized checkpoint does not
// depend on the device it was made on). Text a model writes is text of the
// domain it was trained on, so it calibrates it without a corpus at hand
// (self-generated calibration data). The result cuts into exactly these
// sequences (Tokens holds them without their BOS, which runCalibrated
// puts back).
func GenerateCalibration(src string, o GenerateOptions) (*Calibration, error) {
	rows, ctx, seed := o.Rows, o.Ctx, o.Seed
	if rows <= 0 {
		rows = 32
	}
	if ctx <= 0 {
		ctx = 256
	}
	// the text is for quantizing src, which Run refuses when it is
	// quantized already: say so before sampling
	ck, err := hf.Open(src)
	if err != nil {
		return nil, err
	}
	quantized := len(ck.Config.QuantizationConfig) > 0
	ck.Close()
	if quantized {
		return nil, fmt.Errorf("%s is already quantized (config.json has a quantization_config)", src)
	}
	be := cpu.New(o.Threads)
	defer be.Close()
	m, err := model.Load(src, be)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	info := m.Info()
	if info.ContextLength > 0 {
		ctx = min(ctx, info.ContextLength)
	}
	start := info.BOS
	if start < 0 && len(info.EOS) > 0 {
		start = info.EOS[0]
	}
	if start < 0 {
		return nil, fmt.Errorf("generating calibration text: %s has no BOS or EOS token to start from", src)
	}
	if ctx < 2 {
		return nil, fmt.Errorf("generating calibration text: context %d too short", ctx)
	}
	spec := info.KV
	spec.BlockSize = 16
	perSeq := (ctx + spec.BlockSize - 1) / spec.BlockSize
	spec.Blocks = rows * perSeq
	cache, err := be.NewKVCache(spec)
	if err != nil {
		return nil, err
	}
	b := &backend.Batch{Tokens: make([]int32, rows), Pos: make([]int32, rows)}
	out := make([]int32, rows)
	samplers := make([]*engine.Sampler, rows)
	seqs := make([][]int32, rows)
	for r := range rows {
		blocks := make([]int32, perSeq)
		for i := range blocks {
			blocks[i] = int32(r*perSeq + i)
		}
		b.Seqs = append(b.Seqs, backend.Seq{Start: r, Len: 1, Blocks: blocks})
		out[r] = int32(r)
		samplers[r] = engine.NewSampler(engine.Sampling{Temperature: 1, Seed: seed + uint64(r), HasSeed: true}, nil)
		seqs[r] = append(make([]int32, 0, ctx), start)
	}
	logits := make([]float32, rows*info.Vocab)
	for pos := 0; pos < ctx-1; pos++ {
		if o.Context != nil {
			if err := o.Context.Err(); err != nil {
				return nil, fmt.Errorf("generating calibration text: %w", err)
			}
		}
		for r := range rows {
			b.Tokens[r], b.Pos[r] = seqs[r][pos], int32(pos)
		}
		if err := be.Read(logits, m.Forward(b, cache, out)); err != nil {
			return nil, err
		}
		for r := range rows {
			seqs[r] = append(seqs[r], samplers[r].Sample(logits[r*info.Vocab:(r+1)*info.Vocab]))
		}
		if o.Progress != nil {
			o.Progress(pos+1, ctx-1)
		}
	}
	c := &Calibration{Name: fmt.Sprintf("text sampled from the model (seed %d)", seed), Rows: rows, Ctx: ctx}
	for _, s := range seqs {
		if info.BOS >= 0 {
			s = s[1:] // runCalibrated starts every row with BOS itself
		}
		c.Tokens = append(c.Tokens, s...)
	}
	return c, nil
}
