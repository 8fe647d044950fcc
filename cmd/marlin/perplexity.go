package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/marlin-llm/marlin/engine"
)

func init() {
	register(command{name: "perplexity", usage: "MODEL --file F [--ctx N] [--kl-base DIR] [--json]",
		summary: "perplexity of a model on a text file", run: perplexityCmd})
}

func perplexityCmd(args []string) error {
	f := newFlags("perplexity", "MODEL --file F [--ctx N] [--kl-base DIR] [--json]")
	mo := addModelFlags(f)
	file := f.String("file", "", "text file to score (e.g. wiki.test.raw)")
	window := f.Int("ctx", 512, "context length of each scored window (BOS + ctx-1 tokens)")
	limit := f.Int("limit", 0, "score at most this many tokens (0: all)")
	asJSON := f.Bool("json", false, `print {"ppl":X,"tokens":N,...}`)
	noBOS := f.Bool("no-bos", false, "do not start windows with BOS")
	klBase := f.String("kl-base", "", "also run the model in this folder (e.g. the unquantized source) over the same windows and report the mean KL(base ‖ MODEL) of the next-token distributions and how often their top tokens agree")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("want one MODEL folder")
	}
	if *file == "" {
		return usagef("--file is required")
	}
	text, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	dir := ""
	if len(pos) == 1 {
		dir = pos[0]
	}
	s, err := mo.open(dir, true)
	if err != nil {
		return err
	}
	defer s.Close()
	ids := s.tok.Encode(string(text), false)
	if *limit > 0 && len(ids) > *limit {
		ids = ids[:*limit]
	}
	bos := s.m.Info().BOS
	if id, ok := s.tok.BOS(); ok {
		bos = id
	}
	if *noBOS {
		bos = -1
	}
	var base *session
	if *klBase != "" {
		if base, err = mo.open(*klBase, false); err != nil {
			return err
		}
		defer base.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bar := newProgress(len(ids), "perplexity")
	start := time.Now()
	progress := func(done, total int) { bar.set(done) }
	var res engine.PerplexityResult
	if base != nil {
		res, err = engine.PerplexityKL(ctx, s.m, s.be, base.m, base.be, ids, *window, bos, progress)
	} else {
		res, err = engine.Perplexity(ctx, s.m, s.be, ids, *window, bos, progress)
	}
	bar.finish()
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	if *asJSON {
		out := map[string]any{
			"ppl": res.PPL, "tokens": res.Tokens, "nll": res.NLL, "ctx": res.Ctx,
			"file": *file, "model": s.dir, "tokens_per_second": float64(res.Tokens) / secs}
		if base != nil {
			out["kl_base"] = base.dir
			out["base_ppl"], out["kl"], out["top1"] = res.BasePPL, res.KL, res.Top1
		}
		return json.NewEncoder(os.Stdout).Encode(out)
	}
	fmt.Printf("perplexity %.4f over %d tokens (ctx %d) in %.1fs\n", res.PPL, res.Tokens, res.Ctx, secs)
	if base != nil {
		fmt.Printf("base %s: perplexity %.4f (%+.2f%%); KL(base ‖ model) %.6f nats/token; top-1 agreement %.2f%%\n",
			base.dir, res.BasePPL, 100*(res.PPL/res.BasePPL-1), res.KL, 100*res.Top1)
	}
	return nil
}
