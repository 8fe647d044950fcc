package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/defaultmodel"
	"github.com/marlin-llm/marlin/engine"
	"github.com/openai/openai-go/v3"
)

func completionParams(prompt string) openai.CompletionNewParams {
	return openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(defaultmodel.Name),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)}}
}

func streamCompletion(t *testing.T, c openai.Client, p openai.CompletionNewParams) (map[int64]string, map[int64]string, []openai.Completion) {
	t.Helper()
	stream := c.Completions.NewStreaming(context.Background(), p)
	texts, finish := map[int64]string{}, map[int64]string{}
	var chunks []openai.Completion
	for stream.Next() {
		ch := stream.Current()
		chunks = append(chunks, ch)
		for _, cc := range ch.Choices {
			texts[cc.Index] += cc.Text
			if cc.FinishReason != "" {
				finish[cc.Index] = string(cc.FinishReason)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return texts, finish, chunks
}

// TestCompletions is the completions conformance suite, through the
// official Go client.
func TestCompletions(t *testing.T) {
	s := newDefaultServer(t, Options{}, engine.Config{})
	c := s.client()
	ctx := context.Background()
	_, tok, _ := defaultFiles(t)

	prompt := "ROMEO:\nBut soft, what light"
	greedy := completionParams(prompt)
	greedy.Temperature, greedy.MaxTokens = openai.Float(0), openai.Int(20)
	var greedyText string

	t.Run("basic", func(t *testing.T) {
		resp, err := c.Completions.New(ctx, greedy)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.ID, "cmpl-") || resp.Object != "text_completion" || len(resp.Choices) != 1 {
			t.Fatalf("%s", resp.RawJSON())
		}
		greedyText = resp.Choices[0].Text
		u := resp.Usage
		if greedyText == "" || resp.Choices[0].FinishReason != "length" || u.CompletionTokens != 20 ||
			int(u.PromptTokens) != len(tok.Encode(prompt, true)) || u.TotalTokens != u.PromptTokens+20 {
			t.Errorf("%s", resp.RawJSON())
		}
		// max_tokens defaults to 16, as OpenAI's
		p := completionParams(prompt)
		resp, err = c.Completions.New(ctx, p)
		if err != nil || resp.Usage.CompletionTokens != 16 {
			t.Errorf("default max_tokens: %v %s", err, resp.RawJSON())
		}
	})

	t.Run("stream", func(t *testing.T) {
		p := greedy
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		texts, finish, chunks := streamCompletion(t, c, p)
		if texts[0] != greedyText || finish[0] != "length" {
			t.Errorf("streamed %q (%s), want %q", texts[0], finish[0], greedyText)
		}
		if u := chunks[len(chunks)-1].Usage; u.CompletionTokens != 20 || len(chunks[len(chunks)-1].Choices) != 0 {
			t.Errorf("usage chunk %s", chunks[len(chunks)-1].RawJSON())
		}
	})

	t.Run("prompt forms", func(t *testing.T) {
		ids := tok.Encode(prompt, true)
		ids64 := make([]int64, len(ids))
		for i, id := range ids {
			ids64[i] = int64(id)
		}
		for name, pu := range map[string]openai.CompletionNewParamsPromptUnion{
			"tokens":       {OfArrayOfTokens: ids64},
			"token arrays": {OfArrayOfTokenArrays: [][]int64{ids64, ids64}},
			"strings":      {OfArrayOfStrings: []string{prompt, prompt}},
		} {
			p := greedy
			p.Prompt = pu
			resp, err := c.Completions.New(ctx, p)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for i, ch := range resp.Choices {
				if ch.Text != greedyText || int(ch.Index) != i {
					t.Errorf("%s: choice %d %q, want %q", name, i, ch.Text, greedyText)
				}
			}
			if want := len(pu.OfArrayOfStrings) + len(pu.OfArrayOfTokenArrays); want > 0 && len(resp.Choices) != want {
				t.Errorf("%s: %d choices", name, len(resp.Choices))
			}
		}
	})

	t.Run("echo", func(t *testing.T) {
		p := greedy
		p.Echo = openai.Bool(true)
		resp, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].Text != prompt+greedyText {
			t.Errorf("echo: %q", resp.Choices[0].Text)
		}
		texts, _, _ := streamCompletion(t, c, p)
		if texts[0] != prompt+greedyText {
			t.Errorf("streamed echo: %q", texts[0])
		}
	})

	t.Run("stop", func(t *testing.T) {
		words := strings.Fields(greedyText)
		if len(words) < 3 {
			t.Skipf("greedy output %q too short", greedyText)
		}
		stop := words[2]
		want := greedyText[:strings.Index(greedyText, stop)]
		p := greedy
		p.Stop = openai.CompletionNewParamsStopUnion{OfString: openai.String(stop)}
		resp, err := c.Completions.New(ctx, p)
		if err != nil || resp.Choices[0].Text != want || resp.Choices[0].FinishReason != "stop" {
			t.Errorf("stop %q: %v %s, want %q", stop, err, resp.RawJSON(), want)
		}
		texts, finish, _ := streamCompletion(t, c, p)
		if texts[0] != want || finish[0] != "stop" {
			t.Errorf("streamed stop %q: %q (%s), want %q", stop, texts[0], finish[0], want)
		}
	})

	t.Run("seed and n", func(t *testing.T) {
		p := completionParams(prompt)
		p.MaxTokens, p.N, p.Seed, p.Temperature = openai.Int(15), openai.Int(2), openai.Int(5), openai.Float(1)
		a, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := c.Completions.New(ctx, p)
		if len(a.Choices) != 2 || a.Choices[0].Text != b.Choices[0].Text || a.Choices[1].Text != b.Choices[1].Text {
			t.Errorf("same seed: %s vs %s", a.RawJSON(), b.RawJSON())
		}
		if a.Choices[0].Text == a.Choices[1].Text {
			t.Errorf("n=2 choices are the same: %q", a.Choices[0].Text)
		}
		p.Seed = openai.Int(6)
		d, _ := c.Completions.New(ctx, p)
		if d.Choices[0].Text == a.Choices[0].Text {
			t.Errorf("different seeds, same text %q", d.Choices[0].Text)
		}
		texts, _, _ := streamCompletion(t, c, func() openai.CompletionNewParams { q := p; q.Seed = openai.Int(5); return q }())
		if texts[0] != a.Choices[0].Text || texts[1] != a.Choices[1].Text {
			t.Errorf("streamed n=2 differ: %v", texts)
		}
	})

	t.Run("logprobs", func(t *testing.T) {
		p := greedy
		p.Logprobs = openai.Int(2)
		resp, err := c.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		lp := resp.Choices[0].Logprobs
		if len(lp.Tokens) != 20 || len(lp.TokenLogprobs) != 20 || len(lp.TopLogprobs) != 20 || len(lp.TextOffset) != 20 {
			t.Fatalf("%s", resp.RawJSON())
		}
		if strings.Join(lp.Tokens, "") != greedyText || lp.TextOffset[0] != 0 || lp.TextOffset[1] != int64(len(lp.Tokens[0])) {
			t.Errorf("tokens %q offsets %v", lp.Tokens, lp.TextOffset)
		}
		for i, top := range lp.TopLogprobs {
			if len(top) == 0 || len(top) > 2 || top[lp.Tokens[i]] != lp.TokenLogprobs[i] {
				t.Errorf("token %d %q (%g): top %v", i, lp.Tokens[i], lp.TokenLogprobs[i], top)
			}
		}
	})

	t.Run("token ids extension", func(t *testing.T) {
		code, body, _ := s.post(t, "/v1/completions", `{"prompt":"ROMEO:","max_tokens":4,"temperature":0,"return_token_ids":true}`)
		var r struct {
			Choices []struct {
				Text           string  `json:"text"`
				TokenIDs       []int32 `json:"token_ids"`
				PromptTokenIDs []int32 `json:"prompt_token_ids"`
			} `json:"choices"`
		}
		if code != 200 || json.Unmarshal(body, &r) != nil || len(r.Choices[0].TokenIDs) != 4 || tok.Decode(r.Choices[0].TokenIDs, true) != r.Choices[0].Text ||
			len(r.Choices[0].PromptTokenIDs) != len(tok.Encode("ROMEO:", true)) {
			t.Errorf("%d %s", code, body)
		}
	})
}
