package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustNew(t *testing.T, src string, special map[string]string) *Template {
	t.Helper()
	tpl, err := New(src, special)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

func mustRender(t *testing.T, tpl *Template, in Input) string {
	t.Helper()
	out, err := tpl.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRenderNormalizesOpenAIMessages(t *testing.T) {
	tpl := mustNew(t, `{% for m in messages %}{{ m.content }}|{% for c in m.tool_calls or [] %}{{ c.function.arguments is mapping }}:{{ c.function.arguments|tojson }};{% endfor %}{% endfor %}`, nil)
	msgs := `[
		{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
		{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
		{"role": "assistant", "content": null, "tool_calls": [
			{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"z\": 1, \"a\": [true]}"}},
			{"id": "2", "type": "function", "function": {"name": "g", "arguments": "not json"}},
			{"id": "3", "type": "function", "function": {"name": "h", "arguments": "[1]"}}
		]}
	]`
	got := mustRender(t, tpl, Input{Messages: json.RawMessage(msgs)})
	want := `a
b|[{'type': 'image_url', 'image_url': {'url': 'x'}}]|None|True:{"z": 1, "a": [true]};False:"not json";False:"[1]";`
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestRenderVariables(t *testing.T) {
	tpl := mustNew(t, `{{ bos_token }}|{{ tools }}|{{ documents }}|{{ add_generation_prompt }}|{{ enable_thinking }}|{{ n }}|{{ obj|tojson }}|{{ m|tojson }}|{{ strftime_now('%Y-%m-%d') }}|{{ eos_token }}|{{ unk_token is defined }}`,
		map[string]string{"bos_token": "<s>", "eos_token": "</s>"})
	got := mustRender(t, tpl, Input{
		Messages:            json.RawMessage(`[]`),
		AddGenerationPrompt: true,
		Vars: map[string]any{
			"enable_thinking": false,
			"n":               int64(3),
			"obj":             json.RawMessage(`{"b": 1, "a": 2}`),
			"m":               map[string]any{"y": 1, "x": []string{"q"}},
			"strftime_now":    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			"eos_token":       "<override>",
		},
	})
	want := `<s>|None|None|True|False|3|{"b": 1, "a": 2}|{"x": ["q"], "y": 1}|2025-01-02|<override>|False`
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	got = mustRender(t, mustNew(t, `{{ strftime_now('%Y-%m-%d') }}`, nil), Input{Messages: json.RawMessage(`[]`), Vars: map[string]any{
		"strftime_now": func(format string) string { return "fixed:" + format },
	}})
	if !strings.Contains(got, "fixed:%Y-%m-%d") {
		t.Fatalf("strftime_now override ignored: %q", got)
	}
	if _, err := tpl.Render(Input{Messages: json.RawMessage(`[]`), Vars: map[string]any{"messages": 1}}); err == nil {
		t.Fatal("Vars may not replace messages")
	}
	if _, err := tpl.Render(Input{Messages: json.RawMessage(`{"role": "user"}`)}); err == nil {
		t.Fatal("messages must be an array")
	}
	if _, err := tpl.Render(Input{Messages: json.RawMessage(`[`)}); err == nil {
		t.Fatal("invalid JSON accepted")
	}
}

func TestNewErrors(t *testing.T) {
	for _, src := range []string{
		"{% if x %}",
		"{{ x|nosuchfilter }}",
		"{{ x is nosuchtest }}",
		"{% do x %}",
		"{{ 'unterminated }}",
		"{% raw %}never closed",
		"bad \xff utf-8",
	} {
		if _, err := New(src, nil); err == nil {
			t.Errorf("New(%q) succeeded", src)
		} else if !strings.Contains(err.Error(), "chat template") {
			t.Errorf("New(%q) error lacks the template name: %v", src, err)
		}
	}
}

func TestRenderErrorLine(t *testing.T) {
	tpl := mustNew(t, "line one\n{% for m in messages %}\n{{ m.content + 1 }}\n{% endfor %}", nil)
	_, err := tpl.Render(Input{Messages: json.RawMessage(`[{"role":"user","content":"x"}]`)})
	var re *RenderError
	if !errors.As(err, &re) {
		t.Fatalf("got %v", err)
	}
	if re.Line != 3 || !strings.HasPrefix(re.Msg, "TypeError: can only concatenate str") || re.Raised {
		t.Fatalf("got %+v", re)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	cfg := `{
		"bos_token": {"content": "<s>", "lstrip": false},
		"eos_token": "</s>",
		"pad_token": null,
		"chat_template": [
			{"name": "default", "template": "D{{ bos_token }}{{ messages|length }}{{ pad_token is defined }}"},
			{"name": "tool_use", "template": "T{{ tools|length }}{{ eos_token }}"}
		]
	}`
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	tpl, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRender(t, tpl, Input{Messages: json.RawMessage(`[{"role":"user","content":"x"}]`)}); got != "D<s>1False" {
		t.Errorf("default: %q", got)
	}
	tool, ok := tpl.Variant("tool_use")
	if !ok {
		t.Fatalf("variants: %v", tpl.Variants())
	}
	if got := mustRender(t, tool, Input{Messages: json.RawMessage(`[]`), Tools: json.RawMessage(`[{"type":"function"}]`)}); got != "T1</s>" {
		t.Errorf("tool_use: %q", got)
	}
	if strings.Join(tpl.Variants(), ",") != "default,tool_use" {
		t.Errorf("variants: %v", tpl.Variants())
	}
	// chat_template.jinja takes precedence over tokenizer_config.json.
	if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("J{{ bos_token }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tpl, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRender(t, tpl, Input{Messages: json.RawMessage(`[]`)}); got != "J<s>" {
		t.Errorf("chat_template.jinja: %q", got)
	}
	if _, ok := tpl.Variant("tool_use"); !ok {
		t.Error("named templates must survive a chat_template.jinja")
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load of an empty directory succeeded")
	}
}

func TestLoadSharedTokenizers(t *testing.T) {
	data := sharedData(t)
	qwen, err := Load(filepath.Join(data, "tokenizers", "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	sp := qwen.SpecialTokens()
	if sp["eos_token"] != "<|im_end|>" || sp["pad_token"] != "<|endoftext|>" {
		t.Errorf("qwen3 special tokens: %v", sp)
	}
	if _, ok := sp["bos_token"]; ok {
		t.Errorf("qwen3 has a null bos_token; got %q", sp["bos_token"])
	}
	llama, err := Load(filepath.Join(data, "tokenizers", "llama3"))
	if err != nil {
		t.Fatal(err)
	}
	out := mustRender(t, llama, Input{Messages: json.RawMessage(`[{"role":"user","content":" hi "}]`)})
	if out != "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" {
		t.Errorf("llama3: %q", out)
	}
	if _, err := Load(filepath.Join(data, "tokenizers", "mistral")); err == nil {
		t.Error("the mistral tokenizer has no chat template; Load should fail")
	}
}

func TestConcurrentRender(t *testing.T) {
	tpl := mustNew(t, `{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{{ m.content|upper }}{% endfor %}{{ ns.n }}`, nil)
	in := Input{Messages: json.RawMessage(`[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]`)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if out, err := tpl.Render(in); err != nil || out != "AB2" {
					t.Errorf("got %q, %v", out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
