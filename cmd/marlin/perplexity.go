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
	register(command{name: "perplexity", usage: "MODEL --file F [--ctx N] [--json]",
		summary: "perplexity of a model on a text file", run: perplexityCmd})
}

func perplexityCmd(args []string) error {
	f := newFlags("perplexity", "MODEL --file F [--ctx N] [--json]")
	mo := addModelFlags(f)
	file := f.String("file", "", "text file to score (e.g. wiki.test.raw)")
	window := f.Int("ctx", 512, "context length of each scored window (BOS + ctx-1 tokens)")
	limit := f.Int("limit", 0, "score at most this many tokens (0: all)")
	asJSON := f.Bool("json", false, `print {"ppl":X,"tokens":N,...}`)
	noBOS := f.Bool("no-bos", false, "do not start windows with BOS")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bar := newProgress(len(ids), "perplexity")
	start := time.Now()
	res, err := engine.Perplexity(ctx, s.m, s.be, ids, *window, bos, func(done, total int) { bar.set(done) })
	bar.finish()
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{
			"ppl": res.PPL, "tokens": res.Tokens, "nll": res.NLL, "ctx": res.Ctx,
			"file": *file, "model": s.dir, "tokens_per_second": float64(res.Tokens) / secs})
	}
	fmt.Printf("perplexity %.4f over %d tokens (ctx %d) in %.1fs\n", res.PPL, res.Tokens, res.Ctx, secs)
	return nil
}
