package engine_test

import (
	"context"
	"math"
	"testing"

	"github.com/marlin-llm/marlin/engine"
)

// TestMask: a Mask that allows a single token makes greedy and sampled
// decoding both produce it, and the reported log-probabilities are those of
// the masked distribution.
func TestMask(t *testing.T) {
	e := newEngine(t, engine.Config{})
	for _, temp := range []float32{0, 1} {
		allow := int32(17)
		mask := func(logits []float32) {
			for i := range logits {
				if int32(i) != allow {
					logits[i] = float32(math.Inf(-1))
				}
			}
		}
		ch, err := e.Submit(context.Background(), engine.Request{Prompt: []int32{3, 4, 5}, MaxTokens: 6, Logprobs: 0, Mask: mask,
			Sampling: engine.Sampling{Temperature: temp, HasSeed: true, Seed: 1}})
		if err != nil {
			t.Fatal(err)
		}
		for ev := range ch {
			if ev.Done {
				break
			}
			if ev.Token != allow || ev.Logprob != 0 {
				t.Fatalf("temperature %g: token %d logprob %g, want %d with logprob 0", temp, ev.Token, ev.Logprob, allow)
			}
		}
	}
}
