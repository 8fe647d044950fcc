// Package engine runs generation: a scheduler that batches many sequences
// into each forward pass (continuous batching with chunked prefill), the
// paged KV cache's block manager, the sampler and the stop conditions.
//
// One goroutine (the loop) owns the model, the backend and every sequence's
// state; callers talk to it through Submit and the event channel it returns.
package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/sampling"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/model"
)

// Config sizes the engine.
type Config struct {
	// BlockSize is the number of tokens per KV cache block (default 64:
	// the CPU attention kernels work a block per call, and 64-token blocks
	// served 64 streams ~15% faster than 16-token ones; a sequence wastes
	// less than one block).
	BlockSize int
	// ContextLength is the longest sequence (prompt and generated tokens)
	// served (0: the model's context length, shortened when a whole
	// context's KV cache would not fit in the backend's memory; at most the
	// model's in any case).
	ContextLength int
	// CacheTokens is the KV cache's capacity in tokens across all sequences
	// (default: 4 contexts, at least 4096 tokens, capped by the context
	// length × MaxSeqs and by nine tenths of the backend's available memory).
	// It holds at least one whole context.
	CacheTokens int
	// MaxSeqs bounds the sequences that run at once (default 64).
	MaxSeqs int
	// ChunkTokens bounds the tokens of one forward pass; a longer prompt is
	// prefilled in chunks between decode steps (default 256).
	ChunkTokens int
	// MaxWaiting bounds the queue of requests not yet running; Submit
	// returns ErrBusy beyond it (0: unbounded).
	MaxWaiting int
	// KVType is the element type of the KV cache: F32 (also the zero
	// value; exact), or F16 or BF16 (half the memory and half the bytes
	// attention reads, keys and values rounded to 16 bits).
	KVType dtype.DType
}

// ErrBusy is returned by Submit when the waiting queue is full.
var ErrBusy = errors.New("engine: too many requests waiting")

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("engine: closed")

// FinishReason says why a sequence ended.
type FinishReason string

// The reasons a sequence ends.
const (
	FinishStop      FinishReason = "stop"      // a stop token or the Stop callback
	FinishLength    FinishReason = "length"    // MaxTokens or the context length
	FinishCancelled FinishReason = "cancelled" // the request's context ended or the engine closed
	FinishError     FinishReason = "error"
)

// Request is one generation.
type Request struct {
	Prompt []int32
	// MaxTokens bounds the generated tokens (0: until the context is full).
	MaxTokens int
	Sampling  Sampling
	// StopIDs end the sequence when generated (they are not emitted).
	StopIDs []int32
	// Stop, when set, is called with each generated token after it is
	// emitted; returning true ends the sequence with FinishStop. It runs on
	// one of the engine's goroutines, never concurrently with itself or
	// Mask for the same request, but possibly alongside other requests'.
	Stop func(id int32) bool
	// Logprobs asks for the chosen token's log-probability (≥ 0) and that
	// many top alternatives; −1 for none.
	Logprobs int
	// Mask, when set, is called (like Stop) with each step's logits
	// before the log-probabilities are taken and a token is sampled. It
	// may change them, e.g. set disallowed tokens to −Inf (constrained
	// decoding) or add a logit bias.
	Mask func(logits []float32)
}

// TokenLogprob is a token and its log-probability.
type TokenLogprob struct {
	ID      int32
	Logprob float32
}

// Event is one message on a request's channel: a generated token, or the
// final event (Done) with the finish reason and usage.
type Event struct {
	Token   int32
	Logprob float32        // when Request.Logprobs ≥ 0
	Top     []TokenLogprob // when Request.Logprobs > 0

	Done   bool
	Finish FinishReason
	Err    error
	Usage  Usage
}

// Usage counts a request's tokens.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
}

// Stats is a snapshot of the engine's state.
type Stats struct {
	Running, Waiting       int
	KVBlocksUsed, KVBlocks int
	BlockSize              int
	Preemptions            int64
	Steps                  int64
}

// Engine schedules requests onto a model.
type Engine struct {
	m      model.Model
	be     backend.Backend
	cache  backend.KVCache
	cfg    Config
	ctxLen int

	incoming  chan *seq
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	waitingN atomic.Int64
	mu       sync.Mutex
	stats    Stats
}

// seq is one running or waiting request.
type seq struct {
	req     Request
	ctx     context.Context
	out     chan Event
	tokens  []int32 // prompt + generated: everything that is or will be in the cache
	cached  int     // tokens whose keys and values are in the cache
	prompt  int
	gen     int
	blocks  []int32
	sampler *Sampler
	order   uint64 // admission order, for preemption
}

// minContext is the shortest context sizeCache shortens a model's to.
const minContext = 256

// sizeCache settles the context length served and the KV cache's tokens
// (cfg.CacheTokens) for a model of context length modelCtx (0: unknown,
// 2048 assumed) whose cache takes perToken bytes a token, on a backend
// with avail bytes available (0: unknown): the defaults of Config, within
// nine tenths of avail (the rest is left for activations). A context or a
// cache size given in cfg that does not fit is an error that says what
// would; a default context is shortened to what fits, down to minContext.
func sizeCache(cfg *Config, modelCtx int, perToken, avail int64) (int, error) {
	if modelCtx <= 0 {
		modelCtx = 2048
	}
	ctxLen := modelCtx
	if cfg.ContextLength > 0 {
		ctxLen = min(cfg.ContextLength, modelCtx)
	}
	gave := cfg.CacheTokens > 0
	if !gave {
		cfg.CacheTokens = max(4*ctxLen, 4096)
		cfg.CacheTokens = min(cfg.CacheTokens, ctxLen*cfg.MaxSeqs)
	}
	// A whole context must fit, so that any admitted sequence can finish.
	cfg.CacheTokens = max(cfg.CacheTokens, ctxLen+cfg.BlockSize)
	if avail <= 0 || perToken <= 0 {
		return ctxLen, nil
	}
	budget := avail / 10 * 9
	if int64(cfg.CacheTokens)*perToken <= budget {
		return ctxLen, nil
	}
	fit := int(budget/perToken) / cfg.BlockSize * cfg.BlockSize
	need := func(tokens int) string {
		return fmt.Sprintf("%.2f GB", float64(int64(tokens)*perToken)/1e9)
	}
	switch {
	case gave && cfg.CacheTokens > ctxLen+cfg.BlockSize:
		return 0, fmt.Errorf("engine: a KV cache of %d tokens needs %s, and %s of memory is available: ask for at most %d tokens (or a 16-bit cache)",
			cfg.CacheTokens, need(cfg.CacheTokens), need(int(budget/perToken)), fit)
	case cfg.ContextLength > 0 || fit-cfg.BlockSize < minContext:
		return 0, fmt.Errorf("engine: a context of %d tokens needs a KV cache of %s, and %s of memory is available: ask for a context of at most %d tokens (or a 16-bit cache)",
			ctxLen, need(ctxLen+cfg.BlockSize), need(int(budget/perToken)), max(fit-cfg.BlockSize, 0))
	}
	cfg.CacheTokens = fit
	return min(ctxLen, fit-cfg.BlockSize), nil
}

// New starts an engine for m on be.
func New(m model.Model, be backend.Backend, cfg Config) (*Engine, error) {
	info := m.Info()
	if cfg.BlockSize <= 0 {
		cfg.BlockSize = 64
	}
	if cfg.MaxSeqs <= 0 {
		cfg.MaxSeqs = 64
	}
	if cfg.ChunkTokens <= 0 {
		cfg.ChunkTokens = 256
	}
	spec := info.KV
	spec.DType = cfg.KVType
	spec.BlockSize = cfg.BlockSize
	ctxLen, err := sizeCache(&cfg, info.ContextLength, spec.TokenBytes(), be.MemoryAvailable())
	if err != nil {
		return nil, err
	}
	spec.Blocks = (cfg.CacheTokens + cfg.BlockSize - 1) / cfg.BlockSize
	cache, err := be.NewKVCache(spec)
	if err != nil {
		return nil, fmt.Errorf("engine: KV cache of %d tokens: %w", cfg.CacheTokens, err)
	}
	e := &Engine{m: m, be: be, cache: cache, cfg: cfg, ctxLen: ctxLen,
		incoming: make(chan *seq, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	e.stats.KVBlocks, e.stats.BlockSize = spec.Blocks, spec.BlockSize
	go e.loop(newBlockPool(spec.Blocks))
	return e, nil
}

// Model returns the engine's model.
func (e *Engine) Model() model.Model { return e.m }

// ContextLength is the longest sequence (prompt + output) the engine runs.
func (e *Engine) ContextLength() int { return e.ctxLen }

// CacheBytes is the memory of the KV cache.
func (e *Engine) CacheBytes() int64 { return e.cache.Bytes() }

// Stats returns a snapshot of the scheduler's state.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Waiting = int(e.waitingN.Load())
	return s
}

// Submit queues a request. Events arrive on the returned channel, which is
// closed after the final (Done) event. Cancelling ctx ends the sequence and
// frees its cache blocks at the next step.
func (e *Engine) Submit(ctx context.Context, r Request) (<-chan Event, error) {
	if len(r.Prompt) == 0 {
		return nil, errors.New("engine: empty prompt")
	}
	if len(r.Prompt) >= e.ctxLen {
		return nil, fmt.Errorf("engine: prompt of %d tokens does not fit the context of %d", len(r.Prompt), e.ctxLen)
	}
	vocab := int32(e.m.Info().Vocab)
	for _, t := range r.Prompt {
		if t < 0 || t >= vocab {
			return nil, fmt.Errorf("engine: token id %d outside the vocabulary of %d", t, vocab)
		}
	}
	if err := r.Sampling.Validate(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if r.MaxTokens < 0 {
		return nil, fmt.Errorf("engine: max tokens %d must be ≥ 0", r.MaxTokens)
	}
	if e.cfg.MaxWaiting > 0 && e.waitingN.Load() >= int64(e.cfg.MaxWaiting) {
		return nil, ErrBusy
	}
	room := e.ctxLen - len(r.Prompt)
	if r.MaxTokens == 0 || r.MaxTokens > room {
		r.MaxTokens = room
	}
	s := &seq{req: r, ctx: ctx, out: make(chan Event, r.MaxTokens+2),
		tokens: append([]int32(nil), r.Prompt...), prompt: len(r.Prompt),
		sampler: NewSampler(r.Sampling, r.Prompt)}
	select {
	case <-e.quit:
		return nil, ErrClosed
	default:
	}
	e.waitingN.Add(1)
	select {
	case e.incoming <- s:
	case <-e.quit:
		e.waitingN.Add(-1)
		return nil, ErrClosed
	}
	return s.out, nil
}

// Close stops the engine: running and waiting requests end with
// FinishCancelled. It waits for the loop to exit.
func (e *Engine) Close() {
	e.closeOnce.Do(func() { close(e.quit) })
	<-e.done
}

func (s *seq) finish(reason FinishReason, err error) {
	s.out <- Event{Done: true, Finish: reason, Err: err, Usage: Usage{PromptTokens: s.prompt, CompletionTokens: s.gen}}
	close(s.out)
}

// loop is the scheduler: every step admits waiting sequences, builds one
// batch (a token for every decoding sequence, then prompt chunks up to the
// token budget), runs the model and samples.
func (e *Engine) loop(pool *blockPool) {
	defer close(e.done)
	var waiting, running []*seq
	var order uint64
	defer func() {
		for _, s := range append(running, waiting...) {
			s.finish(FinishCancelled, ErrClosed)
		}
		e.waitingN.Store(0)
	}()
	release := func(s *seq) {
		pool.release(s.blocks)
		s.blocks, s.cached = nil, 0
	}
	for {
		// Take new requests; block only when there is nothing to do.
		if len(waiting) == 0 && len(running) == 0 {
			select {
			case s := <-e.incoming:
				waiting = append(waiting, s)
			case <-e.quit:
				return
			}
		}
	drain:
		for {
			select {
			case s := <-e.incoming:
				waiting = append(waiting, s)
			case <-e.quit:
				return
			default:
				break drain
			}
		}

		// Drop cancelled sequences and free their blocks at once.
		running = e.sweep(running, release)
		n := len(waiting)
		waiting = e.sweep(waiting, release)
		e.waitingN.Add(int64(len(waiting) - n))

		// Admit in arrival order while there is room for the prompt.
		for len(waiting) > 0 && len(running) < e.cfg.MaxSeqs {
			s := waiting[0]
			need := (len(s.tokens)+1+e.cfg.BlockSize-1)/e.cfg.BlockSize - len(s.blocks)
			if need > pool.available() {
				break
			}
			order++
			s.order = order
			running = append(running, s)
			waiting = waiting[1:]
			e.waitingN.Add(-1)
		}
		if len(running) == 0 {
			e.setStats(0, pool)
			continue
		}

		// Build the batch. The stats then count the blocks it took, before
		// any of its tokens reach a client.
		b, rows, sampled := e.plan(&running, &waiting, pool)
		e.setStats(len(running), pool)
		if len(b.Tokens) == 0 {
			continue
		}
		logits := e.m.Forward(b, e.cache, rows)
		vocab := e.m.Info().Vocab
		// The backend draws the tokens (only the ids come back) unless a
		// sequence needs the logits on the host: penalties, a mask, or
		// log-probabilities. Both ways draw the same token.
		var buf []float32
		var ids []int32
		onDevice := true
		for _, s := range sampled {
			onDevice = onDevice && s.req.Mask == nil && s.req.Logprobs < 0 && !s.sampler.Penalised()
		}
		var err error
		if onDevice {
			ps := make([]sampling.Params, len(sampled))
			for i, s := range sampled {
				ps[i] = s.sampler.Next()
			}
			ids = make([]int32, len(sampled))
			err = e.be.Sample(ids, logits, ps)
		} else {
			buf = make([]float32, len(rows)*vocab)
			err = e.be.Read(buf, logits)
		}
		e.mu.Lock()
		e.stats.Steps++
		e.mu.Unlock()
		if err != nil {
			for _, s := range running {
				release(s)
				s.finish(FinishError, err)
			}
			running = running[:0]
			continue
		}
		// Sample every sequence's next token, in parallel: each sequence's
		// sampler, callbacks and channel are its own.
		reasons := make([]FinishReason, len(sampled))
		dones := make([]bool, len(sampled))
		parallelFor(len(sampled), func(i int) {
			if onDevice {
				reasons[i], dones[i] = e.accept(sampled[i], ids[i], nil)
			} else {
				reasons[i], dones[i] = e.emit(sampled[i], buf[i*vocab:(i+1)*vocab])
			}
		})
		var still []*seq
		finished := map[*seq]bool{}
		for i, s := range sampled {
			if dones[i] {
				release(s)
				s.finish(reasons[i], nil)
				finished[s] = true
			}
		}
		for _, s := range running {
			if !finished[s] {
				still = append(still, s)
			}
		}
		running = still
		e.setStats(len(running), pool)
	}
}

func (e *Engine) setStats(running int, pool *blockPool) {
	e.mu.Lock()
	e.stats.Running = running
	e.stats.KVBlocksUsed = pool.total - pool.available()
	e.mu.Unlock()
}

// sweep finishes and drops sequences whose context has ended.
func (e *Engine) sweep(list []*seq, release func(*seq)) []*seq {
	out := list[:0]
	for _, s := range list {
		if err := s.ctx.Err(); err != nil {
			release(s)
			s.finish(FinishCancelled, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// plan assigns this step's tokens: one for each sequence that is decoding,
// then chunks of pending prompts within the budget. A sequence that cannot
// get a cache block preempts the most recently admitted one, whose cache is
// dropped and recomputed when it runs again.
func (e *Engine) plan(running, waiting *[]*seq, pool *blockPool) (*backend.Batch, []int32, []*seq) {
	b := &backend.Batch{}
	var rows []int32
	var sampled []*seq
	budget := e.cfg.ChunkTokens
	// decoding sequences first, then prefills, each group in admission order
	var order []*seq
	for _, s := range *running {
		if len(s.tokens)-s.cached == 1 {
			order = append(order, s)
		}
	}
	for _, s := range *running {
		if len(s.tokens)-s.cached > 1 {
			order = append(order, s)
		}
	}
	preempted := map[*seq]bool{}
	inBatch := map[*seq]bool{}
	for _, s := range order {
		if budget == 0 {
			break
		}
		if preempted[s] {
			continue
		}
		n := min(len(s.tokens)-s.cached, budget)
		blocks := (s.cached + n + e.cfg.BlockSize - 1) / e.cfg.BlockSize
		for {
			var ok bool
			if s.blocks, ok = pool.grow(s.blocks, blocks); ok {
				break
			}
			v := e.victim(*running, s, preempted, inBatch)
			if v == nil {
				break
			}
			preempted[v] = true
			pool.release(v.blocks)
			v.blocks, v.cached = nil, 0
		}
		if len(s.blocks) < blocks {
			continue // no room even after preemption; wait for others to finish
		}
		start := len(b.Tokens)
		for i := range n {
			b.Tokens = append(b.Tokens, s.tokens[s.cached+i])
			b.Pos = append(b.Pos, int32(s.cached+i))
		}
		b.Seqs = append(b.Seqs, backend.Seq{Start: start, Len: n, Blocks: s.blocks})
		inBatch[s] = true
		s.cached += n
		budget -= n
		if s.cached == len(s.tokens) {
			rows = append(rows, int32(len(b.Tokens)-1))
			sampled = append(sampled, s)
		}
	}
	if len(preempted) > 0 {
		var keep, back []*seq
		for _, s := range *running {
			if preempted[s] {
				back = append(back, s)
			} else {
				keep = append(keep, s)
			}
		}
		*running = keep
		*waiting = append(back, *waiting...)
		e.waitingN.Add(int64(len(back)))
		e.mu.Lock()
		e.stats.Preemptions += int64(len(back))
		e.mu.Unlock()
	}
	return b, rows, sampled
}

// victim picks the most recently admitted running sequence, admitted after
// s, that is neither preempted already nor in this step's batch.
func (e *Engine) victim(running []*seq, s *seq, preempted, inBatch map[*seq]bool) *seq {
	var v *seq
	for _, r := range running {
		if r == s || preempted[r] || inBatch[r] || len(r.blocks) == 0 || r.order < s.order {
			continue
		}
		if v == nil || r.order > v.order {
			v = r
		}
	}
	return v
}

// emit samples s's next token from its logits, sends it, and reports
// whether the sequence is finished.
func (e *Engine) emit(s *seq, logits []float32) (FinishReason, bool) {
	if s.req.Mask != nil {
		s.req.Mask(logits)
	}
	var lp []float32
	if s.req.Logprobs >= 0 {
		lp = make([]float32, len(logits))
		LogSoftmax(lp, logits)
	}
	return e.accept(s, s.sampler.Sample(logits), lp)
}

// accept sends s's next token id (with its log-probabilities lp when
// asked for), and reports whether the sequence is finished.
func (e *Engine) accept(s *seq, id int32, lp []float32) (FinishReason, bool) {
	for _, stop := range s.req.StopIDs {
		if id == stop {
			return FinishStop, true
		}
	}
	s.sampler.Accept(id)
	s.tokens = append(s.tokens, id)
	s.gen++
	ev := Event{Token: id}
	if lp != nil {
		ev.Logprob = lp[id]
		ev.Top = topLogprobs(lp, s.req.Logprobs)
	}
	s.out <- ev
	if s.req.Stop != nil && s.req.Stop(id) {
		return FinishStop, true
	}
	if s.gen >= s.req.MaxTokens || len(s.tokens) >= e.ctxLen {
		return FinishLength, true
	}
	return "", false
}

func topLogprobs(lp []float32, k int) []TokenLogprob {
	top := sampling.Largest(lp, k)
	if len(top) == 0 {
		return nil
	}
	out := make([]TokenLogprob, len(top))
	for i, t := range top {
		out[i] = TokenLogprob{t.ID, t.P}
	}
	return out
}

// parallelFor runs fn(i) for i in [0, n) on up to GOMAXPROCS goroutines.
func parallelFor(n int, fn func(i int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	per := (n + w - 1) / w
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
