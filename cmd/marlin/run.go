package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/marlin-llm/marlin/engine"
)

func init() {
	register(command{name: "run", usage: "[MODEL] [PROMPT | -] [flags]",
		summary: "stream a completion (the embedded default model when MODEL is not given)", run: runCmd})
}

// samplingFlags are the generation flags run and chat share.
type samplingFlags struct {
	maxTokens                   int
	temperature, topP, minP     float64
	topK                        int
	repeat, presence, frequency float64
	seed                        int64
	stops                       listFlag
	ignoreEOS                   bool
}

func addSamplingFlags(f *flags, defTemp float64) *samplingFlags {
	s := &samplingFlags{}
	f.IntVar(&s.maxTokens, "n", 256, "maximum tokens to generate (0: until the context is full)")
	f.Float64Var(&s.temperature, "temperature", defTemp, "sampling temperature (0: greedy)")
	f.IntVar(&s.topK, "top-k", 40, "keep the k most likely tokens (0: all)")
	f.Float64Var(&s.topP, "top-p", 0.95, "nucleus sampling threshold (1: off)")
	f.Float64Var(&s.minP, "min-p", 0.05, "drop tokens less likely than this times the best (0: off)")
	f.Float64Var(&s.repeat, "repeat-penalty", 1, "repetition penalty (1: off)")
	f.Float64Var(&s.presence, "presence-penalty", 0, "OpenAI presence penalty")
	f.Float64Var(&s.frequency, "frequency-penalty", 0, "OpenAI frequency penalty")
	f.Int64Var(&s.seed, "seed", -1, "random seed (-1: random)")
	f.Var(&s.stops, "stop", "stop string (repeatable)")
	f.BoolVar(&s.ignoreEOS, "ignore-eos", false, "do not stop at the end-of-sequence token")
	return s
}

func (s *samplingFlags) sampling() engine.Sampling {
	p := engine.Sampling{
		Temperature: float32(s.temperature), TopK: s.topK, TopP: float32(s.topP), MinP: float32(s.minP),
		RepetitionPenalty: float32(s.repeat), PresencePenalty: float32(s.presence), FrequencyPenalty: float32(s.frequency),
	}
	if s.seed >= 0 {
		p.Seed, p.HasSeed = uint64(s.seed), true
	}
	return p
}

func runCmd(args []string) error {
	f := newFlags("run", "[MODEL] [PROMPT | -] [flags]")
	mo := addModelFlags(f)
	kvFlag := addKVTypeFlag(f)
	sf := addSamplingFlags(f, 0.8)
	idsFlag := f.String("ids", "", "prompt as comma-separated token ids instead of text")
	asJSON := f.Bool("json", false, `print {"ids":[generated ids],"text":...} instead of streaming text`)
	raw := f.Bool("raw", false, "do not add the BOS token to a text prompt")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	kvType, err := kvFlag()
	if err != nil {
		return err
	}
	dir := ""
	if len(pos) > 0 && isModelDir(pos[0]) {
		dir, pos = pos[0], pos[1:]
	} else if len(pos) > 0 && (strings.ContainsRune(pos[0], os.PathSeparator) || len(pos) > 1) {
		if _, err := os.Stat(pos[0]); err == nil || len(pos) > 1 {
			return fmt.Errorf("%s: not a model folder (no config.json)", pos[0])
		}
	}
	prompt := strings.Join(pos, " ")
	if prompt == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		prompt = string(b)
	}
	s, err := mo.open(dir, *idsFlag == "")
	if err != nil {
		return err
	}
	defer s.Close()
	info := s.m.Info()

	var ids []int32
	if *idsFlag != "" {
		if ids, err = parseIDs(*idsFlag); err != nil {
			return err
		}
	} else {
		ids = s.tok.Encode(prompt, !*raw)
		if len(ids) == 0 {
			if info.BOS < 0 {
				return usagef("empty prompt and the model has no BOS token to start from")
			}
			ids = []int32{info.BOS}
		}
	}
	// a context as long as this run needs (the engine caps it at the
	// model's); with -n 0, the model's whole context
	ctxLen := len(ids) + sf.maxTokens + 1
	if sf.maxTokens <= 0 {
		ctxLen = 0
	}
	e, err := engine.New(s.m, s.be, engine.Config{MaxSeqs: 1, ContextLength: ctxLen, KVType: kvTypeFor(kvType, s.be)})
	if err != nil {
		return err
	}
	defer e.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	req := engine.Request{Prompt: ids, MaxTokens: sf.maxTokens, Sampling: sf.sampling(), Logprobs: -1}
	if !sf.ignoreEOS {
		req.StopIDs = info.EOS
		if s.tok != nil {
			if id, ok := s.tok.EOS(); ok && !contains(req.StopIDs, id) {
				req.StopIDs = append(req.StopIDs, id)
			}
		}
	}
	var dec interface {
		Next(int32) string
		Flush() string
	}
	if s.tok != nil {
		dec = s.tok.NewStreamDecoder(true)
	}
	matcher := engine.NewStopMatcher(sf.stops)
	out := os.Stdout
	var text strings.Builder
	lastNL := true
	// the prompt is shown, then its continuation, once the request is
	// accepted (a refused one prints only its error); the first token may
	// come through req.Stop on the engine's goroutine, hence the Once
	var shown sync.Once
	showPrompt := func() {
		shown.Do(func() {
			if *idsFlag == "" && !*asJSON && prompt != "" {
				io.WriteString(out, prompt)
				lastNL = strings.HasSuffix(prompt, "\n")
			}
		})
	}
	emit := func(t string) {
		showPrompt()
		if t == "" {
			return
		}
		if *asJSON {
			text.WriteString(t)
			return
		}
		io.WriteString(out, t)
		lastNL = strings.HasSuffix(t, "\n")
	}
	if len(sf.stops) > 0 && dec != nil {
		req.Stop = func(id int32) bool {
			chunk, stopped := matcher.Push(dec.Next(id))
			emit(chunk)
			return stopped
		}
	}
	start := time.Now()
	events, err := e.Submit(ctx, req)
	if err != nil {
		return err
	}
	showPrompt()
	var gen []int32
	var first time.Duration
	var final engine.Event
	for ev := range events {
		if ev.Done {
			final = ev
			break
		}
		if len(gen) == 0 {
			first = time.Since(start)
		}
		gen = append(gen, ev.Token)
		if dec != nil && req.Stop == nil {
			emit(dec.Next(ev.Token))
		}
	}
	if dec != nil {
		rest := dec.Flush()
		if req.Stop == nil {
			emit(rest)
		} else if chunk, stopped := matcher.Push(rest); !stopped {
			emit(chunk)
			emit(matcher.Flush())
		} else {
			emit(chunk)
		}
	}
	if final.Err != nil && final.Finish != engine.FinishCancelled {
		return final.Err
	}
	if *asJSON {
		res := map[string]any{"ids": gen, "finish_reason": final.Finish}
		if dec != nil {
			res["text"] = text.String()
		}
		return json.NewEncoder(out).Encode(res)
	}
	if !lastNL {
		io.WriteString(out, "\n")
	}
	if mo.verbose {
		total := time.Since(start)
		decode := total - first
		fmt.Fprintf(os.Stderr, "prompt %d tokens in %v (%.1f tok/s), generated %d tokens at %.1f tok/s, finish: %s\n",
			len(ids), first.Round(time.Millisecond), float64(len(ids))/first.Seconds(),
			len(gen), float64(max(len(gen)-1, 0))/decode.Seconds(), final.Finish)
	}
	return nil
}

func contains(ids []int32, id int32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
