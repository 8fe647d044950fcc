package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/marlin-llm/marlin/engine"
)

// TestBatchInvariance: 32 concurrent greedy requests with different prompts
// through the HTTP API produce exactly the tokens each produces alone
// (the CPU backend computes each row the same way whatever the batch) —
// also with chunked prefill, and with preemption under a small KV cache
// (asserted: the case with small chunks alone never preempted).
func TestBatchInvariance(t *testing.T) {
	words := strings.Fields("the king queen lord love death night day sword crown heaven earth fair foul speak hear blood honour grace war peace tomorrow")
	rng := rand.New(rand.NewPCG(7, 8))
	prompts := make([]string, 32)
	for i := range prompts {
		var b strings.Builder
		for range 1 + rng.IntN(12) {
			b.WriteString(words[rng.IntN(len(words))] + " ")
		}
		prompts[i] = b.String()
	}
	const maxTokens = 16
	generate := func(s *testServer, i int) ([]int32, error) {
		body := fmt.Sprintf(`{"prompt":%q,"max_tokens":%d,"temperature":0,"return_token_ids":true}`, prompts[i], maxTokens)
		if i%2 == 1 { // half through chat, streamed
			body = fmt.Sprintf(`{"messages":[{"role":"user","content":%q}],"max_tokens":%d,"temperature":0,"return_token_ids":true,"stream":true}`, prompts[i], maxTokens)
			code, b, _ := s.post(t, "/v1/chat/completions", body)
			if code != 200 {
				return nil, fmt.Errorf("status %d: %s", code, b)
			}
			events, err := sseEvents(b)
			if err != nil {
				return nil, err
			}
			var ids []int32
			for _, ev := range events[:len(events)-1] {
				var ch struct {
					Choices []struct {
						TokenIDs []int32 `json:"token_ids"`
					} `json:"choices"`
				}
				json.Unmarshal([]byte(ev), &ch)
				for _, c := range ch.Choices {
					ids = append(ids, c.TokenIDs...)
				}
			}
			return ids, nil
		}
		code, b, _ := s.post(t, "/v1/completions", body)
		if code != 200 {
			return nil, fmt.Errorf("status %d: %s", code, b)
		}
		var r struct {
			Choices []struct {
				TokenIDs []int32 `json:"token_ids"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, err
		}
		return r.Choices[0].TokenIDs, nil
	}

	solo := newDefaultServer(t, Options{}, engine.Config{MaxSeqs: 1})
	want := make([][]int32, len(prompts))
	for i := range prompts {
		ids, err := generate(solo, i)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != maxTokens {
			t.Fatalf("request %d: %d tokens", i, len(ids))
		}
		want[i] = ids
	}
	for _, c := range []struct {
		cfg     engine.Config
		preempt bool
	}{
		{engine.Config{MaxSeqs: 64}, false},
		{engine.Config{MaxSeqs: 32, ChunkTokens: 7, BlockSize: 2, CacheTokens: 520}, false}, // chunked prefill, small cache
		// the small cache with larger chunks: the 32 sequences outgrow it
		// together (6–12 preemptions measured)
		{engine.Config{MaxSeqs: 32, ChunkTokens: 64, BlockSize: 2, CacheTokens: 520}, true},
	} {
		cfg := c.cfg
		t.Run(fmt.Sprintf("chunk%d-cache%d", cfg.ChunkTokens, cfg.CacheTokens), func(t *testing.T) {
			s := newDefaultServer(t, Options{}, cfg)
			got := make([][]int32, len(prompts))
			var wg sync.WaitGroup
			for i := range prompts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ids, err := generate(s, i)
					if err != nil {
						t.Error(err)
					}
					got[i] = ids
				}()
			}
			wg.Wait()
			for i := range prompts {
				if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
					t.Errorf("request %d: batched %v, alone %v", i, got[i], want[i])
				}
			}
			st := s.engine.Stats()
			if st.KVBlocksUsed != 0 || st.Running != 0 {
				t.Errorf("after all requests: %+v", st)
			}
			if c.preempt && st.Preemptions == 0 {
				t.Errorf("no sequence was preempted (%+v): the case tests nothing", st)
			}
			t.Logf("engine: %d steps for %d tokens, %d preemptions", st.Steps, len(prompts)*maxTokens, st.Preemptions)
		})
	}
}
