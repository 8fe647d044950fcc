package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/marlin-llm/marlin/backend/cuda"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

func init() {
	register(command{name: "quantize",
		usage: "MODEL OUT [--method rtn|gptq|exl3] [--format int4] [--group 128] [--asym] [--rtn-search=false] [--act-order] [--bits 3] [--codebook 3inst] [--calib FILE] [--head-bits N] [--force]\n" +
			"       marlin quantize --rate-distortion [--bits 2,3,4] [--json]",
		summary: "write a quantized checkpoint (or measure the trellis code)", run: quantizeCmd})
}

// formatGroup is the group size to quantize format with: group, unless the
// format has blocks of its own (mxfp4, nvfp4, fp8) and --group was not
// given (its default, 128, is the integer formats'), then 0 (the format's
// own).
func formatGroup(format string, group int, given bool) int {
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "mxfp4", "nvfp4", "fp8":
		if !given {
			return 0
		}
	}
	return group
}

func quantizeCmd(args []string) error {
	f := newFlags("quantize", "MODEL OUT [flags]")
	method := f.String("method", "rtn", "quantization method: rtn, gptq (calibrated integers) or exl3 (calibrated trellis)")
	format := f.String("format", "int4", "rtn/gptq: int8, int4, int3, int2 (GPTQ layout); rtn also fp4, mxfp4, nvfp4, fp8")
	group := f.Int("group", 128, "group size along the input dimension (0: per channel); mxfp4, nvfp4 and fp8 have their own blocks and need no --group")
	asym := f.Bool("asym", false, "asymmetric integers (zero points)")
	rtnSearch := f.Bool("rtn-search", true, "rtn/gptq: search each group's scale (and zero point) for the least squared error; =false takes them from the group's extremes (plain round-to-nearest)")
	actOrder := f.Bool("act-order", false, "gptq: quantize columns by decreasing Hessian diagonal (desc_act, g_idx)")
	damp := f.Float64("damp", 0, "gptq/exl3: Hessian damping, fraction of mean(diag H) (0: 0.01 for gptq, 0.025 for exl3)")
	bits := f.String("bits", "", "exl3: bits per weight, 1 to 8 (fractional: K and K+1 mixed across layers); --rate-distortion: a list such as 2,3,4")
	codebook := f.String("codebook", "3inst", "exl3: trellis codebook 3inst, mcg or mul1")
	calib := f.String("calib", "", "gptq/exl3: calibration text file, or generate: text sampled from the model itself (default: the start of tiny Shakespeare, built in)")
	calibRows := f.Int("calib-rows", 32, "gptq/exl3: calibration sequences")
	calibCtx := f.Int("calib-ctx", 256, "gptq/exl3: tokens per calibration sequence")
	calibBatch := f.Int("calib-batch", 8192, "gptq/exl3: tokens per calibration forward pass (more rows are streamed)")
	seed := f.Int64("seed", 0, "exl3: seed of the random sign vectors; --calib generate: seed of the sampled text")
	noSearch := f.Bool("no-scale-search", false, "exl3: skip the global scale search (faster)")
	noRefit := f.Bool("no-refit", false, "exl3: skip the least-squares refit of the channel scales")
	fpTargets := f.String("fp-targets", "auto", "gptq/exl3: fit each layer to the full-precision model's outputs (GPTAQ) instead of to its own weights' outputs on the quantized inputs, running each calibration row twice (the 16-bit and the quantized model side by side: twice the calibration time and activation memory): on, off or auto (on for exl3, off for gptq, as measured in docs/perf.md)")
	headBits := f.Int("head-bits", 0, "also quantize the output head, to this many bits (0: keep 16-bit)")
	threads := f.Int("threads", 0, "threads (0: one per core)")
	device := f.String("device", "auto", "exl3: where the trellis (Viterbi) search runs: cpu, cuda or auto (the GPU when there is one)")
	force := f.Bool("force", false, "replace OUT if it exists")
	verbose := f.Bool("v", false, "print each layer's format and error to stderr")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the run to this file")
	asJSON := f.Bool("json", false, "print the report (or the rate-distortion table) as JSON on stdout")
	rd := f.Bool("rate-distortion", false, "measure the trellis codes on an i.i.d. unit Gaussian instead of quantizing a model")
	samples := f.Int("samples", 1<<16, "--rate-distortion: samples (a multiple of 256)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if *rd {
		if len(pos) != 0 {
			return usagef("--rate-distortion takes no MODEL or OUT")
		}
		return rateDistortion(*bits, *samples, *threads, *asJSON)
	}
	if len(pos) != 2 {
		return usagef("want MODEL and OUT folders")
	}
	opt := quantize.Options{Force: *force, Threads: *threads, Warn: func(m string) { fmt.Fprintln(os.Stderr, "note:", m) }}
	switch *method {
	case "rtn":
		opt.Method = quantize.RTN
	case "gptq":
		opt.Method = quantize.GPTQ
	case "exl3":
		opt.Method = quantize.EXL3
	default:
		return usagef("--method %q: want rtn, gptq or exl3", *method)
	}
	switch opt.Method {
	case quantize.RTN, quantize.GPTQ:
		if *bits != "" {
			return usagef("--bits is for exl3 (rtn and gptq take --format)")
		}
		spec, err := quant.ParseSpec(*format, formatGroup(*format, *group, f.set("group")), !*asym)
		if err != nil {
			return usagef("%v", err)
		}
		if opt.Method == quantize.GPTQ && spec.Format != quant.GPTQ {
			return usagef("--method gptq needs an integer --format (int8, int4, int3 or int2), not %s", *format)
		}
		spec.MaxScale = !*rtnSearch
		opt.Spec = spec
		opt.GPTQ = quant.GPTQOptions{ActOrder: *actOrder, Damp: *damp}
	case quantize.EXL3:
		if !*rtnSearch {
			return usagef("--rtn-search is for rtn and gptq")
		}
		if *bits == "" {
			return usagef("--method exl3 needs --bits (1 to 8)")
		}
		b, err := strconv.ParseFloat(*bits, 64)
		if err != nil || !(b >= 1 && b <= quant.MaxTrellisBits) {
			return usagef("--bits %q: want a number from 1 to %d", *bits, quant.MaxTrellisBits)
		}
		cb, err := quant.ParseCodebook(*codebook)
		if err != nil || !cb.Stored() {
			return usagef("--codebook %q: want 3inst, mcg or mul1", *codebook)
		}
		opt.Spec = quant.Spec{Format: quant.EXL3, Bits: int(math.Floor(b)), Codebook: cb}
		opt.AvgBits = b
		opt.EXL3 = quant.EXL3Options{Seed: uint64(*seed), NoScaleSearch: *noSearch, NoRefit: *noRefit, Sigma: *damp}
	}
	if *actOrder && opt.Method != quantize.GPTQ {
		return usagef("--act-order is for --method gptq")
	}
	switch *fpTargets {
	case "on":
		opt.FPTargets = true
	case "off":
	case "auto":
		opt.FPTargets = opt.Method == quantize.EXL3
	default:
		return usagef("--fp-targets %q: want on, off or auto", *fpTargets)
	}
	// The calibrated quantizers allocate and drop float64 matrices of
	// In × In (1.6 GB each at In = 14336) weight after weight: with the
	// collector's default target the heap grows to twice its live size
	// between collections (a Llama-3.2-1B-shaped GPTQ run peaked at 6.8 GB
	// RSS); at 20% it peaks at 4.6 GB, in the same time. (RTN streams one
	// tensor at a time and gains nothing from it.)
	if opt.Method != quantize.RTN {
		debug.SetGCPercent(20)
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	// Ctrl-C or SIGTERM stops the sampling of calibration text, or the
	// quantizer after the weight in progress, removing the unfinished
	// output; a calibrated run's work stays journaled in OUT.partial, and
	// the same command resumes
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if opt.Method != quantize.RTN {
		switch *calib {
		case "":
			opt.Calib = quantize.DefaultCalibration(*calibRows, *calibCtx)
		case "generate":
			bar := newProgress(0, "sampling calibration text (steps)")
			opt.Calib, err = quantize.GenerateCalibration(pos[0], quantize.GenerateOptions{Rows: *calibRows, Ctx: *calibCtx,
				Seed: uint64(*seed), Threads: *threads, Context: ctx, Progress: func(done, total int) {
					bar.setMax(total)
					bar.set(done)
				}})
			bar.finish()
			if err != nil {
				return err
			}
		default:
			text, err := os.ReadFile(*calib)
			if err != nil {
				return err
			}
			opt.Calib = &quantize.Calibration{Text: text, Name: *calib, Rows: *calibRows, Ctx: *calibCtx}
		}
		opt.Calib.BatchTokens = *calibBatch
	} else if *calib != "" {
		return usagef("--calib is for gptq and exl3")
	} else if opt.FPTargets {
		return usagef("--fp-targets is for gptq and exl3")
	}
	spec := opt.Spec
	if *headBits != 0 {
		hs := spec
		switch {
		case spec.Format == quant.GPTQ && (*headBits == 2 || *headBits == 3 || *headBits == 4 || *headBits == 8):
			hs.Bits = *headBits
		case spec.Format == quant.EXL3 && *headBits >= 1 && *headBits <= quant.MaxTrellisBits:
			hs.Bits = *headBits
		case spec.Format != quant.GPTQ && spec.Format != quant.EXL3 && *headBits == 4 || spec.Format == quant.FP8 && *headBits == 8:
		default:
			return usagef("--head-bits %d does not fit format %s", *headBits, spec)
		}
		opt.Head = &hs
	}
	if *verbose {
		opt.Layer = func(l quantize.LayerReport) {
			fmt.Fprintf(os.Stderr, "%-44s [%5d, %5d] %-22s %6.3f bits  rel. error %.5f", l.Name, l.Out, l.In, l.Format, l.Bits, l.Relative)
			if l.RTNError > 0 {
				fmt.Fprintf(os.Stderr, "  (RTN %.5f)", l.Relative*l.RTNError/l.Error)
			}
			fmt.Fprintf(os.Stderr, "  %.2fs\n", l.Seconds)
		}
	}
	var bar *progress
	opt.Progress = func(done, total int64) {
		if *verbose {
			return
		}
		if bar == nil {
			bar = newProgress(int(total>>10), "quantize (KiB)")
		}
		bar.set(int(done >> 10))
	}
	if opt.Method == quantize.EXL3 {
		gpu, stop, err := useGPUViterbi(*device, *verbose)
		if err != nil {
			return err
		}
		defer stop()
		opt.EXL3.GPU = gpu
	}
	opt.Context = ctx
	start := time.Now()
	rep, err := quantize.Run(pos[0], pos[1], opt)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return err
	}
	if rep.Resumed > 0 {
		fmt.Fprintf(os.Stderr, "resumed: %d weights taken from the journal of a stopped run\n", rep.Resumed)
	}
	label := spec.String()
	if opt.Method == quantize.GPTQ {
		label = "gptq " + label
		if *actOrder {
			label += " act-order"
		}
	}
	if opt.Method == quantize.EXL3 {
		label = fmt.Sprintf("exl3 %s-bit %s", *bits, spec.Codebook)
	}
	fmt.Fprintf(os.Stderr, "%s: %d tensors quantized to %s, %d kept; %.1f MB → %.1f MB in %v\n",
		pos[1], rep.Quantized, label, rep.Kept, float64(rep.InBytes)/1e6, float64(rep.OutBytes)/1e6, time.Since(start).Round(time.Millisecond))
	if opt.Method != quantize.RTN {
		var weights, payload float64
		for _, l := range rep.Layers {
			weights += float64(l.Out) * float64(l.In)
			payload += l.Bits * float64(l.Out) * float64(l.In)
		}
		targets := "each layer fit to its own quantized inputs"
		if rep.FPTargets {
			targets = "layers fit to the full-precision model's outputs (each pass runs its tokens twice, 16-bit and quantized)"
		}
		fmt.Fprintf(os.Stderr, "calibration: %d × %d tokens of %s, %d forward pass(es) of %d tokens, %s, %.1fs; quantized %.0f weights at %.3f bits/weight, %.0f weights/s overall; memory: Hessian %.1f MB, KV cache %.1f MB, heap %.1f MB\n",
			rep.CalibRows, rep.CalibTokens/max(rep.CalibRows, 1), rep.CalibName, rep.Passes, rep.BatchTokens, targets, rep.CalibSeconds,
			weights, payload/max(weights, 1), weights/rep.Seconds, float64(rep.PeakHessianBytes)/1e6, float64(rep.KVCacheBytes)/1e6, float64(rep.PeakHeapBytes)/1e6)
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
	return nil
}

// rateDistortion prints the trellis codes' MSE on an i.i.d. unit Gaussian
// beside the bound 2^(−2K) and the Lloyd–Max quantizer.
func rateDistortion(bitsList string, samples, threads int, asJSON bool) error {
	if bitsList == "" {
		bitsList = "2,3,4"
	}
	var ks []int
	for _, s := range strings.Split(bitsList, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || k < 1 || k > quant.MaxTrellisBits {
			return usagef("--bits %q: want integers from 1 to %d", bitsList, quant.MaxTrellisBits)
		}
		ks = append(ks, k)
	}
	if samples < quant.TileLen || samples%quant.TileLen != 0 {
		return usagef("--samples %d: want a positive multiple of %d", samples, quant.TileLen)
	}
	x := quant.GaussianSource(samples, 1)
	type cbResult struct {
		MSE     float64 `json:"mse"`
		Ratio   float64 `json:"ratio"`
		Scale   float64 `json:"scale"`
		FreeMSE float64 `json:"free_mse"`
	}
	type row struct {
		Bits      int                 `json:"bits"`
		MSE       float64             `json:"mse"`
		Bound     float64             `json:"bound"`
		LloydMax  float64             `json:"lloyd_max"`
		Ratio     float64             `json:"ratio"`
		LMRatio   float64             `json:"lloyd_max_ratio"`
		Codebook  string              `json:"codebook"`
		Scale     float64             `json:"scale"`
		Samples   int                 `json:"samples"`
		Codebooks map[string]cbResult `json:"codebooks"`
	}
	var rows []row
	start := time.Now()
	for _, k := range ks {
		r := row{Bits: k, Samples: samples, Codebooks: map[string]cbResult{}}
		for cb := quant.Codebook3INST; cb <= quant.Codebook1MAD; cb++ {
			p, err := quant.TrellisRD(x, k, cb, threads)
			if err != nil {
				return err
			}
			r.Codebooks[cb.String()] = cbResult{MSE: p.MSE, Ratio: p.MSE / p.Bound, Scale: p.Scale, FreeMSE: p.FreeMSE}
			if cb == quant.Codebook3INST {
				r.MSE, r.Bound, r.LloydMax, r.Scale, r.Codebook = p.MSE, p.Bound, p.LloydMax, p.Scale, cb.String()
				r.Ratio, r.LMRatio = p.MSE/p.Bound, p.LloydMax/p.Bound
			}
		}
		rows = append(rows, r)
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(rows)
	}
	fmt.Printf("i.i.d. unit Gaussian, %d samples, tail-biting trellis (256-weight tiles, L = 16); %v\n", samples, time.Since(start).Round(time.Millisecond))
	fmt.Println("K  bound     Lloyd-Max (×)     3inst (×)         mcg (×)           mul1 (×)          1mad (×)")
	for _, r := range rows {
		fmt.Printf("%d  %.6f  %.6f (%.3f)", r.Bits, r.Bound, r.LloydMax, r.LMRatio)
		for _, n := range []string{"3inst", "mcg", "mul1", "1mad"} {
			c := r.Codebooks[n]
			fmt.Printf("  %.6f (%.3f)", c.MSE, c.Ratio)
		}
		fmt.Println()
	}
	return nil
}

// useGPUViterbi returns the trellis search of a CUDA device (--device cuda,
// or auto with a device present) for quant.EXL3Options.GPU, nil for the
// CPU, and a function that releases the device.
func useGPUViterbi(device string, verbose bool) (quant.TileEncoder, func(), error) {
	switch device {
	case "cpu":
		return nil, func() {}, nil
	case "auto", "cuda":
	default:
		return nil, nil, usagef("--device %q: want cpu, cuda or auto", device)
	}
	be, err := cuda.New(0)
	if err != nil {
		if device == "cuda" {
			return nil, nil, fmt.Errorf("--device cuda: %w", err)
		}
		if verbose {
			fmt.Fprintf(os.Stderr, "trellis search on the CPU: %v\n", err)
		}
		return nil, func() {}, nil
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "trellis search on %s\n", be.Describe())
	}
	return be.EncodeTiles, func() { be.Close() }, nil
}
