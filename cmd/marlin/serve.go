package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/marlin-llm/marlin/chat"
	"github.com/marlin-llm/marlin/defaultmodel"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/server"
)

func init() {
	register(command{name: "serve", usage: "[MODEL] [flags]",
		summary: "OpenAI-compatible HTTP server (the embedded default model when MODEL is not given)", run: serveCmd})
}

func serveCmd(args []string) error {
	f := newFlags("serve", "[MODEL] [flags]")
	mo := addModelFlags(f)
	kvFlag := addKVTypeFlag(f)
	host := f.String("host", "127.0.0.1", "address to listen on (0.0.0.0: every interface)")
	port := f.Int("port", 8000, "port to listen on (0: any free port)")
	name := f.String("served-model-name", "", "the model's name in the API (default: the folder's name, or "+defaultmodel.Name+")")
	apiKey := f.String("api-key", "", "require \"Authorization: Bearer KEY\" on /v1/ requests (default: $MARLIN_API_KEY; none when both are empty)")
	var cors listFlag
	f.Var(&cors, "cors", "allow browser requests from this origin, or * (repeatable; default: no CORS headers)")
	maxBody := f.String("max-body", "4MiB", "largest request body (413 beyond)")
	timeout := f.Duration("request-timeout", 10*time.Minute, "longest a generation request may run")
	grace := f.Duration("grace", 30*time.Second, "on SIGINT/SIGTERM, how long running requests may finish before they are cut short")
	maxSeqs := f.Int("max-seqs", 64, "sequences that run at once (the batch)")
	maxWaiting := f.Int("max-waiting", 256, "sequences that may wait for the batch; beyond, requests get 429 with Retry-After (0: unbounded)")
	cacheTokens := f.Int("kv-cache-tokens", 0, "KV cache capacity in tokens (0: 4 contexts, at least 4096, within the memory available)")
	ctxLen := f.Int("ctx", 0, "longest sequence served, prompt and output (0: the model's context length, shortened to what the memory holds)")
	chunk := f.Int("chunk-tokens", 0, "tokens per forward pass; longer prompts are prefilled in chunks (0: 256)")
	maxN := f.Int("max-n", 16, "most sequences one request may ask for (n, times the prompts of a completion)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	kvType, err := kvFlag()
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("one MODEL folder at most, got %q", pos)
	}
	dir := ""
	if len(pos) == 1 {
		if !isModelDir(pos[0]) {
			return fmt.Errorf("%s: not a model folder (no config.json)", pos[0])
		}
		dir = pos[0]
	}
	limit, err := parseSize(*maxBody)
	if err != nil {
		return usagef("--max-body: %v", err)
	}
	if *apiKey == "" {
		*apiKey = os.Getenv("MARLIN_API_KEY")
	}
	modelName := *name
	if modelName == "" {
		if dir == "" {
			modelName = defaultmodel.Name
		} else if abs, err := filepath.Abs(dir); err == nil {
			modelName = filepath.Base(abs)
		}
	}

	level := slog.LevelInfo
	if mo.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv := server.New(server.Options{APIKey: *apiKey, MaxBodyBytes: limit, RequestTimeout: *timeout,
		CORSOrigins: cors, MaxSequences: *maxN, Logger: log})

	addr := net.JoinHostPort(*host, strconv.Itoa(*port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("listening", "url", "http://"+l.Addr().String(), "model", modelName, "auth", *apiKey != "")
	if *host != "127.0.0.1" && *host != "localhost" && *host != "::1" && *apiKey == "" {
		log.Warn("listening beyond this machine without an API key (--api-key or MARLIN_API_KEY)")
	}

	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, fail := context.WithCancelCause(sigCtx)
	// loadErr is why the model did not load, stored before fail is called
	// (read by the main goroutine, which a signal may wake mid-load)
	var loadErr atomic.Pointer[error]

	// The model loads while the server already answers /health with 503.
	type loaded struct {
		s *session
		e *engine.Engine
	}
	ready := make(chan loaded, 1)
	go func() {
		start := time.Now()
		s, err := mo.open(dir, true)
		if err != nil {
			loadErr.Store(&err)
			fail(err)
			return
		}
		e, err := engine.New(s.m, s.be, engine.Config{MaxSeqs: *maxSeqs, MaxWaiting: *maxWaiting, ContextLength: *ctxLen, CacheTokens: *cacheTokens, ChunkTokens: *chunk, KVType: kvTypeFor(kvType, s.be)})
		if err != nil {
			s.Close()
			loadErr.Store(&err)
			fail(err)
			return
		}
		tmpl, err := chat.Load(s.dir)
		if err != nil {
			log.Warn("no chat template: /v1/chat/completions is off", "err", err)
			tmpl = nil
		}
		if err := srv.SetModel(&server.Model{Name: modelName, Engine: e, Tokenizer: s.tok, Template: tmpl}); err != nil {
			e.Close()
			s.Close()
			loadErr.Store(&err)
			fail(err)
			return
		}
		info := s.m.Info()
		if info.ContextLength > e.ContextLength() {
			log.Warn("context shorter than the model's (--ctx, or what the KV cache fits in memory; --kv-type f16 halves it)",
				"model_context", info.ContextLength, "context", e.ContextLength())
		}
		log.Info("model loaded", "model", modelName, "arch", info.Architecture, "context", e.ContextLength(),
			"kv_cache_MB", e.CacheBytes()>>20, "backend", s.be.Name(), "took", time.Since(start).Round(time.Millisecond))
		ready <- loaded{s, e}
	}()
	go func() {
		<-ctx.Done()
		if loadErr.Load() == nil {
			log.Info("shutting down: running requests may finish", "signal", context.Cause(sigCtx), "grace", *grace)
		}
		stop() // a second signal ends the process at once
	}()

	err = srv.Run(ctx, l, *grace)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("grace period over: the remaining requests were cut short")
		err = nil
	}
	select {
	case ld := <-ready:
		ld.e.Close()
		ld.s.Close()
	default:
	}
	if e := loadErr.Load(); e != nil {
		return *e // the model did not load
	}
	return err
}

// parseSize reads a byte size: 4194304, 4MiB, 512KiB, 1MB ...
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size %q (want e.g. 4MiB or 4194304)", s)
	}
	return v * mult, nil
}
