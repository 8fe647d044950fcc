package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// fuzzTemplates are the templates the fuzz targets render: every shared
// template when ../shared/data is present, plus small ones of our own that
// exercise the string methods and filters on message content.
var (
	fuzzOnce      sync.Once
	fuzzTemplates []*Template
)

var ownFuzzTemplates = []string{
	`{%- for m in messages -%}<{{ m.role|upper }}>{{ m.content|trim }}|{{ m.content.split('</think>')[-1].lstrip('\n') }}|{{ m.content[::-1][:3] }}|{{ m.content|tojson }}|{{ m.content|title|wordcount }}|{{ m['content']|indent(2, true) }}{% if m.content is string and m.content.startswith('<') %}!{% endif %}{{ (m.content ~ '')|length }}{%- endfor -%}`,
	`{%- set ns = namespace(n=0) -%}{%- for m in messages if m.role in ['user', 'assistant'] -%}{% set ns.n = ns.n + 1 %}{{ loop.index }}{{ m|tojson(indent=1) }}{{ m.get('role') }}{{ m.items()|list|length }}{%- endfor -%}{{ ns.n }}{{ messages|map(attribute='role')|unique|join(',') }}{{ messages|selectattr('content', 'string')|list|length }}`,
}

func loadFuzzTemplates(tb testing.TB) []*Template {
	fuzzOnce.Do(func() {
		for i, src := range ownFuzzTemplates {
			t, err := NewNamed("fuzz"+itoa(i), src, map[string]string{"bos_token": "<s>", "eos_token": "</s>"})
			if err != nil {
				tb.Fatalf("fuzz template %d: %v", i, err)
			}
			fuzzTemplates = append(fuzzTemplates, t)
		}
		dir, _ := os.Getwd()
		for dir != filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			dir = filepath.Dir(dir)
		}
		data := filepath.Join(dir, "..", "shared", "data")
		files, _ := filepath.Glob(filepath.Join(data, "chat-templates", "*.jinja"))
		sort.Strings(files)
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			t, err := NewNamed(filepath.Base(f), string(src), map[string]string{"bos_token": "<s>", "eos_token": "</s>"})
			if err != nil {
				tb.Fatalf("%s: %v", f, err)
			}
			fuzzTemplates = append(fuzzTemplates, t)
		}
		for _, name := range []string{"qwen3", "llama3"} {
			if t, err := Load(filepath.Join(data, "tokenizers", name)); err == nil {
				fuzzTemplates = append(fuzzTemplates, t)
			}
		}
	})
	return fuzzTemplates
}

var fuzzTools = json.RawMessage(`[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"a":{"type":"string","description":"x"}},"required":["a"]}}}]`)

// FuzzRenderMessages renders every template with fuzzed roles, contents and
// tool-call arguments. Rendering may fail (templates raise on odd roles),
// but must never panic; panic recovery is off while fuzzing so that a panic
// anywhere in the renderer is reported.
func FuzzRenderMessages(f *testing.F) {
	templates := loadFuzzTemplates(f)
	for i := range templates {
		f.Add(uint8(i), "user", "Hello", "assistant", "Hi <think>x</think>y", `{"a": "b"}`, true)
	}
	f.Add(uint8(0), "system", "  sys  ", "user", "", `not json`, false)
	f.Add(uint8(1), "tool", "{\"r\": 1}", "ipython", "\x00\xff", `[1,2]`, true)
	f.Add(uint8(2), "", "{{ 1 }}{% if %}", "assistant", "</tool_call>", `{"a": {"b": [1, null, 2.5e300]}}`, false)
	f.Add(uint8(3), "USER", "\n\n<tool_response>x</tool_response>", "model", "é🚀\u2028", `"str"`, true)
	recoverPanics = false
	f.Cleanup(func() { recoverPanics = true })
	f.Fuzz(func(t *testing.T, which uint8, role1, content1, role2, content2, args string, tools bool) {
		msgs := []map[string]any{
			{"role": role1, "content": content1},
			{"role": role2, "content": content2, "tool_calls": []any{
				map[string]any{"id": "call12345", "type": "function", "function": map[string]any{"name": role1, "arguments": args}},
			}},
			{"role": "user", "content": []any{map[string]any{"type": "text", "text": content1}, map[string]any{"type": "text", "text": content2}}},
		}
		raw, err := json.Marshal(msgs)
		if err != nil {
			t.Skip()
		}
		in := Input{Messages: raw, AddGenerationPrompt: tools, Vars: map[string]any{"strftime_now": time.Unix(0, 0).UTC()}}
		if tools {
			in.Tools = fuzzTools
		}
		tpl := templates[int(which)%len(templates)]
		if _, err := tpl.Render(in); err != nil {
			var re *RenderError
			if !errors.As(err, &re) {
				t.Fatalf("%s: error of type %T: %v", tpl.Name(), err, err)
			}
		}
	})
}

// FuzzRenderRawMessages feeds arbitrary bytes as the messages JSON.
func FuzzRenderRawMessages(f *testing.F) {
	templates := loadFuzzTemplates(f)
	for i := range templates {
		f.Add(uint8(i), []byte(`[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]`))
	}
	f.Add(uint8(0), []byte(`[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"x","arguments":"{}"}}]}]`))
	f.Add(uint8(1), []byte(`[1, "a", null, {"role": ["x"]}, {"content": {"a": 1}}]`))
	f.Add(uint8(2), []byte(`{"role":"user"}`))
	recoverPanics = false
	f.Cleanup(func() { recoverPanics = true })
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		tpl := templates[int(which)%len(templates)]
		_, _ = tpl.Render(Input{Messages: raw, Tools: fuzzTools, AddGenerationPrompt: true})
	})
}

// FuzzTemplateSource parses and renders fuzzed template sources: no panic
// may escape New or Render, and neither may hang.
func FuzzTemplateSource(f *testing.F) {
	for _, s := range ownFuzzTemplates {
		f.Add(s)
	}
	f.Add(`{% for x in messages %}{{ x.role + 1 }}{% endfor %}`)
	f.Add(`{% set a, b = messages %}{{ a|tojson(indent=2) }}{% macro m(x, y=2) %}{{ x ~ y }}{% endmacro %}{{ m(1) }}`)
	f.Add(`{%- raw %} {{ x }} {% endraw -%}{# c #}{% filter upper %}{{ 'a'|safe + '<' }}{% endfilter %}`)
	// gonja's parser panics on some malformed templates (e.g. `{% if x is %}`);
	// New must turn those into errors, so recovery stays on here.
	f.Fuzz(func(t *testing.T, src string) {
		tpl, err := New(src, map[string]string{"bos_token": "<s>"})
		if err != nil {
			return
		}
		_, _ = tpl.Render(Input{Messages: json.RawMessage(`[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]`), Tools: fuzzTools})
	})
}
