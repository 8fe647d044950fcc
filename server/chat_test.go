package server

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/defaultmodel"
	"github.com/marlin-llm/marlin/engine"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
)

func userChat(text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    defaultmodel.Name,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Speak as a king."), openai.UserMessage(text)},
	}
}

// streamChat runs a streaming chat request through the official client and
// accumulates it.
func streamChat(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams) (openai.ChatCompletionAccumulator, []openai.ChatCompletionChunk) {
	t.Helper()
	stream := c.Chat.Completions.NewStreaming(context.Background(), p)
	var acc openai.ChatCompletionAccumulator
	var chunks []openai.ChatCompletionChunk
	for stream.Next() {
		ch := stream.Current()
		if !acc.AddChunk(ch) {
			t.Fatalf("the accumulator rejected chunk %s", ch.RawJSON())
		}
		chunks = append(chunks, ch)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return acc, chunks
}

// TestChat is the chat completions conformance suite, through the official
// Go client against the embedded model on the CPU backend.
func TestChat(t *testing.T) {
	s := newDefaultServer(t, Options{}, engine.Config{})
	c := s.client()
	ctx := context.Background()

	greedy := userChat("Who art thou?")
	greedy.Temperature = openai.Float(0)
	greedy.MaxTokens = openai.Int(24)
	var greedyText string

	t.Run("basic", func(t *testing.T) {
		resp, err := c.Chat.Completions.New(ctx, greedy)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Model != defaultmodel.Name || len(resp.Choices) != 1 {
			t.Fatalf("response %s", resp.RawJSON())
		}
		ch := resp.Choices[0]
		greedyText = ch.Message.Content
		if ch.Message.Role != "assistant" || greedyText == "" || ch.FinishReason != "length" || ch.Index != 0 {
			t.Errorf("choice %s", ch.RawJSON())
		}
		u := resp.Usage
		if u.CompletionTokens != 24 || u.PromptTokens < 10 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Errorf("usage %s", u.RawJSON())
		}
		// the prompt is the rendered template
		_, tok, tmpl := defaultFiles(t)
		text, _ := tmpl.Render(chatInput(`[{"role":"system","content":"Speak as a king."},{"role":"user","content":"Who art thou?"}]`))
		if want := len(tok.Encode(text, false)); int(u.PromptTokens) != want {
			t.Errorf("prompt tokens %d, the rendered template has %d", u.PromptTokens, want)
		}
		if !strings.HasSuffix(text, "ASSISTANT:\n") || !strings.HasPrefix(text, "<|endoftext|>SYSTEM:\n") {
			t.Errorf("rendered prompt %q", text)
		}
	})

	t.Run("stream", func(t *testing.T) {
		p := greedy
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		acc, chunks := streamChat(t, c, p)
		if got := acc.Choices[0].Message.Content; got != greedyText {
			t.Errorf("streamed %q, non-streamed %q", got, greedyText)
		}
		if acc.Choices[0].FinishReason != "length" {
			t.Errorf("finish %q", acc.Choices[0].FinishReason)
		}
		last := chunks[len(chunks)-1]
		if len(last.Choices) != 0 || last.Usage.CompletionTokens != 24 || last.Usage.TotalTokens != last.Usage.PromptTokens+24 {
			t.Errorf("usage chunk %s", last.RawJSON())
		}
		for _, ch := range chunks[:len(chunks)-1] {
			if !strings.Contains(ch.RawJSON(), `"usage":null`) || ch.Object != "chat.completion.chunk" || ch.ID != last.ID {
				t.Fatalf("chunk %s", ch.RawJSON())
			}
		}
		if chunks[0].Choices[0].Delta.Role != "assistant" {
			t.Errorf("first chunk %s", chunks[0].RawJSON())
		}
		// without include_usage there is no usage at all
		_, chunks = streamChat(t, c, greedy)
		for _, ch := range chunks {
			if strings.Contains(ch.RawJSON(), `"usage"`) {
				t.Fatalf("usage without include_usage: %s", ch.RawJSON())
			}
		}
	})

	t.Run("max_completion_tokens", func(t *testing.T) {
		p := userChat("Speak.")
		p.MaxCompletionTokens = openai.Int(5)
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Usage.CompletionTokens != 5 || resp.Choices[0].FinishReason != "length" {
			t.Errorf("%s", resp.RawJSON())
		}
	})

	t.Run("stop", func(t *testing.T) {
		// stop at a word the greedy output contains: the text ends just before it
		words := strings.Fields(greedyText)
		if len(words) < 3 {
			t.Skipf("greedy output %q too short", greedyText)
		}
		stop := words[2]
		want := greedyText[:strings.Index(greedyText, stop)]
		p := greedy
		p.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"never appears", stop}}
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if ch := resp.Choices[0]; ch.Message.Content != want || ch.FinishReason != "stop" {
			t.Errorf("stop %q: got %q (%s), want %q", stop, ch.Message.Content, ch.FinishReason, want)
		}
		acc, _ := streamChat(t, c, p)
		if ch := acc.Choices[0]; ch.Message.Content != want || ch.FinishReason != "stop" {
			t.Errorf("streamed, stop %q: got %q (%s), want %q", stop, ch.Message.Content, ch.FinishReason, want)
		}
		// a single string works too
		p.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String(stop)}
		resp, err = c.Chat.Completions.New(ctx, p)
		if err != nil || resp.Choices[0].Message.Content != want {
			t.Errorf("stop as a string: %v %v", err, resp)
		}
	})

	t.Run("seed", func(t *testing.T) {
		run := func(seed int64) string {
			p := userChat("Speak of love.")
			p.Temperature, p.MaxTokens, p.Seed = openai.Float(1.2), openai.Int(30), openai.Int(seed)
			resp, err := c.Chat.Completions.New(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			return resp.Choices[0].Message.Content
		}
		a, b, d := run(42), run(42), run(43)
		if a != b {
			t.Errorf("same seed, different text: %q vs %q", a, b)
		}
		if a == d {
			t.Errorf("different seeds, same text: %q", a)
		}
	})

	t.Run("logprobs", func(t *testing.T) {
		p := greedy
		p.Logprobs, p.TopLogprobs = openai.Bool(true), openai.Int(3)
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		lps := resp.Choices[0].Logprobs.Content
		if len(lps) != 24 {
			t.Fatalf("%d logprobs for 24 tokens", len(lps))
		}
		var text strings.Builder
		for i, lp := range lps {
			text.WriteString(lp.Token)
			if len(lp.TopLogprobs) != 3 || lp.Logprob > 0 || math.IsNaN(lp.Logprob) {
				t.Fatalf("token %d: %s", i, lp.RawJSON())
			}
			// greedy: the chosen token is the most likely one
			if lp.TopLogprobs[0].Token != lp.Token || lp.TopLogprobs[0].Logprob != lp.Logprob {
				t.Errorf("token %d: chose %q (%g), top is %q (%g)", i, lp.Token, lp.Logprob, lp.TopLogprobs[0].Token, lp.TopLogprobs[0].Logprob)
			}
			for k := 1; k < 3; k++ {
				if lp.TopLogprobs[k].Logprob > lp.TopLogprobs[k-1].Logprob {
					t.Errorf("token %d: top_logprobs not sorted: %s", i, lp.RawJSON())
				}
			}
			if string(bytesOf(lp.Bytes)) != lp.Token {
				t.Errorf("token %d: bytes %v for %q", i, lp.Bytes, lp.Token)
			}
		}
		if text.String() != greedyText {
			t.Errorf("logprob tokens spell %q, content is %q", text.String(), greedyText)
		}
		// streamed logprobs are the same
		acc, _ := streamChat(t, c, p)
		if got := acc.Choices[0].Logprobs.Content; len(got) != 24 || got[5].Token != lps[5].Token || got[5].Logprob != lps[5].Logprob {
			t.Errorf("streamed logprobs differ: %d entries", len(got))
		}
		// logprobs alone: no alternatives
		p.TopLogprobs = openai.Int(0)
		resp, err = c.Chat.Completions.New(ctx, p)
		if err != nil || len(resp.Choices[0].Logprobs.Content) != 24 || len(resp.Choices[0].Logprobs.Content[0].TopLogprobs) != 0 {
			t.Errorf("logprobs without top_logprobs: %v %s", err, resp.RawJSON())
		}
	})

	t.Run("n", func(t *testing.T) {
		p := userChat("Speak.")
		p.N, p.MaxTokens, p.Seed, p.Temperature = openai.Int(3), openai.Int(12), openai.Int(7), openai.Float(1)
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 3 || resp.Usage.CompletionTokens != 36 {
			t.Fatalf("%s", resp.RawJSON())
		}
		texts := map[string]bool{}
		for i, ch := range resp.Choices {
			if int(ch.Index) != i || ch.Message.Content == "" {
				t.Errorf("choice %d: %s", i, ch.RawJSON())
			}
			texts[ch.Message.Content] = true
		}
		if len(texts) < 2 {
			t.Errorf("n=3 sampled choices are all the same: %v", texts)
		}
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		acc, chunks := streamChat(t, c, p)
		if len(acc.Choices) != 3 {
			t.Fatalf("streamed %d choices", len(acc.Choices))
		}
		for i, ch := range acc.Choices {
			// the same seed gives the same choices streamed or not
			if ch.Message.Content != resp.Choices[i].Message.Content || ch.FinishReason != "length" {
				t.Errorf("streamed choice %d: %q (%s), want %q", i, ch.Message.Content, ch.FinishReason, resp.Choices[i].Message.Content)
			}
		}
		if u := chunks[len(chunks)-1].Usage; u.CompletionTokens != 36 {
			t.Errorf("streamed usage %s", u.RawJSON())
		}
	})

	t.Run("content parts and roles", func(t *testing.T) {
		p := openai.ChatCompletionNewParams{Model: defaultmodel.Name, MaxTokens: openai.Int(3), Messages: []openai.ChatCompletionMessageParamUnion{
			openai.DeveloperMessage("Be brief."),
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{openai.TextContentPart("Hail,"), openai.TextContentPart("good sir.")}),
			openai.AssistantMessage("Hail."),
			openai.UserMessage("Speak on."),
		}}
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Usage.CompletionTokens != 3 {
			t.Errorf("%s", resp.RawJSON())
		}
	})

	t.Run("penalties", func(t *testing.T) {
		p := greedy
		p.MaxTokens = openai.Int(40)
		p.PresencePenalty, p.FrequencyPenalty = openai.Float(2), openai.Float(2)
		resp, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		q := greedy
		q.MaxTokens = openai.Int(40)
		plain, _ := c.Chat.Completions.New(ctx, q)
		if resp.Choices[0].Message.Content == plain.Choices[0].Message.Content {
			t.Errorf("penalties changed nothing: %q", plain.Choices[0].Message.Content)
		}
	})

	t.Run("json_object", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			for _, seed := range []int64{1, 2, 3} {
				p := userChat("Answer in JSON.")
				p.Seed, p.MaxTokens, p.N = openai.Int(seed), openai.Int(int64(10+10*seed)), openai.Int(2)
				p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
				var choices []openai.ChatCompletionChoice
				if stream {
					acc, _ := streamChat(t, c, p)
					choices = acc.Choices
				} else {
					resp, err := c.Chat.Completions.New(ctx, p)
					if err != nil {
						t.Fatal(err)
					}
					choices = resp.Choices
				}
				for _, ch := range choices {
					var obj map[string]any
					if err := json.Unmarshal([]byte(ch.Message.Content), &obj); err != nil || ch.FinishReason != "stop" {
						t.Errorf("stream %v seed %d: not a JSON object (%v, finish %s): %q", stream, seed, err, ch.FinishReason, ch.Message.Content)
					}
				}
			}
		}
	})
}

func bytesOf(b []int64) []byte {
	out := make([]byte, len(b))
	for i, x := range b {
		out[i] = byte(x)
	}
	return out
}
