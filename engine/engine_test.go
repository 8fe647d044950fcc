package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/model"
)

const fixture = "../testdata/models/llama-mqa-f32-bias"

func newEngine(t *testing.T, cfg engine.Config) *engine.Engine {
	t.Helper()
	be := cpu.New(2)
	m, err := model.Load(fixture, be)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(m, be, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(); m.Close() })
	return e
}

func collect(t *testing.T, ch <-chan engine.Event) ([]int32, engine.Event) {
	t.Helper()
	var ids []int32
	for ev := range ch {
		if ev.Done {
			return ids, ev
		}
		ids = append(ids, ev.Token)
	}
	t.Fatal("channel closed without a final event")
	return nil, engine.Event{}
}

func prompts(n int, rng *rand.Rand) [][]int32 {
	out := make([][]int32, n)
	for i := range out {
		p := make([]int32, 1+rng.IntN(40))
		for j := range p {
			p[j] = int32(2 + rng.IntN(250))
		}
		out[i] = p
	}
	return out
}

// TestBatchInvariance: concurrent greedy requests (batched together, with
// chunked prefill, and with preemption under a small cache) produce exactly the
// tokens each produces alone. The CPU kernels compute every output with the
// same summation order whatever the batch, so equality is exact.
func TestBatchInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ps := prompts(24, rng)
	solo := newEngine(t, engine.Config{MaxSeqs: 1})
	want := make([][]int32, len(ps))
	for i, p := range ps {
		ch, err := solo.Submit(context.Background(), engine.Request{Prompt: p, MaxTokens: 20, Logprobs: -1})
		if err != nil {
			t.Fatal(err)
		}
		want[i], _ = collect(t, ch)
	}
	for _, c := range []struct {
		cfg     engine.Config
		preempt bool
	}{
		{engine.Config{MaxSeqs: 32, ChunkTokens: 64}, false},
		{engine.Config{MaxSeqs: 32, ChunkTokens: 7, BlockSize: 4, CacheTokens: 600}, false}, // small chunks
		// a cache (one context, ~150 blocks of 4) that the 24 sequences
		// outgrow together once they all decode: preemption
		{engine.Config{MaxSeqs: 32, ChunkTokens: 64, BlockSize: 4, CacheTokens: 600}, true},
	} {
		cfg := c.cfg
		t.Run(fmt.Sprintf("chunk%d-cache%d", cfg.ChunkTokens, cfg.CacheTokens), func(t *testing.T) {
			e := newEngine(t, cfg)
			// all submitted at once (each channel holds its events), so that
			// they run together whatever the machine's timing
			got := make([][]int32, len(ps))
			chs := make([]<-chan engine.Event, len(ps))
			for i, p := range ps {
				ch, err := e.Submit(context.Background(), engine.Request{Prompt: p, MaxTokens: 20, Logprobs: -1})
				if err != nil {
					t.Fatal(err)
				}
				chs[i] = ch
			}
			var wg sync.WaitGroup
			for i, ch := range chs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i], _ = collect(t, ch)
				}()
			}
			wg.Wait()
			for i := range ps {
				if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
					t.Errorf("request %d: batched %v, alone %v", i, got[i], want[i])
				}
			}
			st := e.Stats()
			if st.KVBlocksUsed != 0 || st.Running != 0 {
				t.Errorf("after all requests: %+v", st)
			}
			if c.preempt && st.Preemptions == 0 {
				t.Errorf("no sequence was preempted (%+v): the case tests nothing", st)
			}
			t.Logf("stats %+v", st)
		})
	}
}

// TestCancelFreesBlocks: cancelling a request ends it with FinishCancelled
// and returns its cache blocks.
func TestCancelFreesBlocks(t *testing.T) {
	e := newEngine(t, engine.Config{MaxSeqs: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := e.Submit(ctx, engine.Request{Prompt: []int32{5, 6, 7}, MaxTokens: 0, Logprobs: -1, Sampling: engine.Sampling{Temperature: 1, HasSeed: true, Seed: 3}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var final engine.Event
	for ev := range ch {
		if ev.Done {
			final = ev
			break
		}
		if n++; n == 5 {
			if e.Stats().KVBlocksUsed == 0 {
				t.Error("no blocks in use while generating")
			}
			cancel()
		}
	}
	if final.Finish != engine.FinishCancelled {
		t.Errorf("finish %q, want cancelled", final.Finish)
	}
	deadline := time.Now().Add(2 * time.Second)
	for e.Stats().KVBlocksUsed != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if u := e.Stats().KVBlocksUsed; u != 0 {
		t.Errorf("%d blocks still used after cancel", u)
	}
}

// TestSeedReproducible: the same seed gives the same sampled tokens, a
// different seed (almost surely) different ones.
func TestSeedReproducible(t *testing.T) {
	e := newEngine(t, engine.Config{})
	run := func(seed uint64) []int32 {
		ch, err := e.Submit(context.Background(), engine.Request{Prompt: []int32{9, 8, 7}, MaxTokens: 30, Logprobs: -1,
			Sampling: engine.Sampling{Temperature: 1.5, TopK: 50, TopP: 0.95, HasSeed: true, Seed: seed}})
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := collect(t, ch)
		return ids
	}
	a, b, c := run(1), run(1), run(2)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed, different tokens: %v vs %v", a, b)
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Errorf("different seeds, same tokens: %v", a)
	}
}

// TestBackendAndHostDraws: a request the backend samples for (only ids
// come back) and the same request with log-probabilities (the logits come
// to the host, where the engine draws) produce the same tokens, for every
// filter setting.
func TestBackendAndHostDraws(t *testing.T) {
	e := newEngine(t, engine.Config{})
	for _, sp := range []engine.Sampling{
		{},
		{Temperature: 1.3},
		{Temperature: 1.5, TopK: 50, TopP: 0.95},
		{Temperature: 1, MinP: 0.02},
	} {
		sp.HasSeed, sp.Seed = true, 7
		run := func(logprobs int) []int32 {
			ch, err := e.Submit(context.Background(), engine.Request{Prompt: []int32{9, 8, 7}, MaxTokens: 24, Logprobs: logprobs, Sampling: sp})
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := collect(t, ch)
			return ids
		}
		if a, b := run(-1), run(0); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%+v: backend draws %v, host draws %v", sp, a, b)
		}
	}
}

func TestStopsAndLength(t *testing.T) {
	e := newEngine(t, engine.Config{})
	ch, _ := e.Submit(context.Background(), engine.Request{Prompt: []int32{3, 4}, MaxTokens: 5, Logprobs: 2})
	ids, final := collect(t, ch)
	if len(ids) != 5 || final.Finish != engine.FinishLength || final.Usage.CompletionTokens != 5 || final.Usage.PromptTokens != 2 {
		t.Fatalf("ids %v final %+v", ids, final)
	}
	// the first greedy token as a stop id ends at once, unemitted
	ch, _ = e.Submit(context.Background(), engine.Request{Prompt: []int32{3, 4}, MaxTokens: 5, StopIDs: ids[:1], Logprobs: -1})
	ids2, final := collect(t, ch)
	if len(ids2) != 0 || final.Finish != engine.FinishStop {
		t.Fatalf("stop id: ids %v final %+v", ids2, final)
	}
	for _, bad := range []engine.Request{{}, {Prompt: []int32{300}}, {Prompt: []int32{1}, MaxTokens: -1}, {Prompt: []int32{1}, Sampling: engine.Sampling{TopP: 2}}} {
		if _, err := e.Submit(context.Background(), bad); err == nil {
			t.Errorf("request %+v accepted", bad)
		}
	}
}

// TestKVType: a 16-bit KV cache gives, on the first generated token (whose
// attention already reads the rounded prompt keys and values), the float32
// cache's choice with a log-probability within 1e-2 for F16 (rounding of K
// and V by 2⁻¹¹ relative perturbs this fixture's logits by ~1e-3) and 4e-2
// for BF16 (2⁻⁸: 8× coarser), and an unsupported type is refused with an
// error naming it.
func TestKVType(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	ps := prompts(8, rng)
	first := func(kv dtype.DType) ([]int32, []float32) {
		e := newEngine(t, engine.Config{KVType: kv})
		var ids []int32
		var lps []float32
		for _, p := range ps {
			ch, err := e.Submit(context.Background(), engine.Request{Prompt: p, MaxTokens: 4, Logprobs: 0})
			if err != nil {
				t.Fatal(err)
			}
			var got []engine.Event
			for ev := range ch {
				got = append(got, ev)
			}
			if len(got) != 5 || !got[4].Done || got[4].Err != nil {
				t.Fatalf("%v: events %+v", kv, got)
			}
			ids, lps = append(ids, got[0].Token), append(lps, got[0].Logprob)
		}
		return ids, lps
	}
	ref, refLP := first(dtype.F32)
	for kv, tol := range map[dtype.DType]float32{dtype.F16: 1e-2, dtype.BF16: 4e-2} {
		ids, lps := first(kv)
		same := 0
		for i := range ids {
			if ids[i] != ref[i] {
				continue
			}
			same++
			if d := lps[i] - refLP[i]; d > tol || d < -tol {
				t.Errorf("%v: prompt %d: log-probability %g, float32 cache %g", kv, i, lps[i], refLP[i])
			}
		}
		if same < len(ids)-1 {
			t.Errorf("%v: %d of %d first tokens as with a float32 cache", kv, same, len(ids))
		}
	}
	be := cpu.New(1)
	m, err := model.Load(fixture, be)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := engine.New(m, be, engine.Config{KVType: dtype.F8E4M3}); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("KV type F8_E4M3: err %v", err)
	}
}
