package main

import (
	"fmt"
	"os"
	"time"

	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

func init() {
	register(command{name: "quantize", usage: "MODEL OUT [--method rtn] [--format int4] [--group 128] [--asym] [--head-bits N] [--force]",
		summary: "write a quantized checkpoint", run: quantizeCmd})
}

func quantizeCmd(args []string) error {
	f := newFlags("quantize", "MODEL OUT [flags]")
	method := f.String("method", "rtn", "quantization method: rtn")
	format := f.String("format", "int4", "int8, int4, int3, int2 (GPTQ layout), fp4, mxfp4, nvfp4 or fp8")
	group := f.Int("group", 128, "group size along the input dimension (0: per channel)")
	asym := f.Bool("asym", false, "asymmetric integers (zero points)")
	headBits := f.Int("head-bits", 0, "also quantize the output head, to this many bits (0: keep 16-bit)")
	force := f.Bool("force", false, "replace OUT if it exists")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want MODEL and OUT folders")
	}
	if *method != "rtn" {
		return usagef("--method %q: only rtn is available in this build", *method)
	}
	spec, err := quant.ParseSpec(*format, *group, !*asym)
	if err != nil {
		return usagef("%v", err)
	}
	opt := quantize.Options{Spec: spec, Force: *force, Warn: func(m string) { fmt.Fprintln(os.Stderr, "note:", m) }}
	if *headBits != 0 {
		hs := spec
		switch {
		case spec.Format == quant.GPTQ && (*headBits == 2 || *headBits == 3 || *headBits == 4 || *headBits == 8):
			hs.Bits = *headBits
		case spec.Format != quant.GPTQ && *headBits == 4 || spec.Format == quant.FP8 && *headBits == 8:
		default:
			return usagef("--head-bits %d does not fit format %s", *headBits, *format)
		}
		opt.Head = &hs
	}
	var bar *progress
	opt.Progress = func(done, total int64) {
		if bar == nil {
			bar = newProgress(int(total>>20), "quantize (MiB)")
		}
		bar.set(int(done >> 20))
	}
	start := time.Now()
	rep, err := quantize.Run(pos[0], pos[1], opt)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d tensors quantized to %s, %d kept; %.1f MB → %.1f MB in %v\n",
		pos[1], rep.Quantized, spec, rep.Kept, float64(rep.InBytes)/1e6, float64(rep.OutBytes)/1e6, time.Since(start).Round(time.Millisecond))
	return nil
}
