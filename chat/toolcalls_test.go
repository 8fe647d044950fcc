package chat

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseToolCalls(t *testing.T) {
	tests := []struct {
		name      string
		syntax    ToolSyntax
		output    string
		content   string
		calls     []ToolCall
		malformed bool
	}{
		{
			name:    "hermes single",
			syntax:  ToolSyntaxHermes,
			output:  "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
			content: "",
			calls:   []ToolCall{{Name: "get_weather", Arguments: `{"city":"Paris","unit":"celsius"}`}},
		},
		{
			name:    "hermes text then two calls",
			syntax:  ToolSyntaxHermes,
			output:  "Let me check both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>",
			content: "Let me check both.",
			calls:   []ToolCall{{Name: "a", Arguments: `{"x":1}`}, {Name: "b", Arguments: `{}`}},
		},
		{
			name:    "hermes unclosed last call (stopped at stop token)",
			syntax:  ToolSyntaxHermes,
			output:  "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"q\": \"é\"}}\n",
			content: "",
			calls:   []ToolCall{{Name: "a", Arguments: `{"q":"é"}`}},
		},
		{
			name:    "hermes arguments as JSON string",
			syntax:  ToolSyntaxHermes,
			output:  `<tool_call>{"name": "a", "arguments": "{\"k\": [1, 2]}"}</tool_call>`,
			calls:   []ToolCall{{Name: "a", Arguments: `{"k":[1,2]}`}},
			content: "",
		},
		{
			name:    "hermes key order kept",
			syntax:  ToolSyntaxHermes,
			output:  `<tool_call>{"name": "a", "arguments": {"z": 1, "a": {"y": 2, "b": 3}}}</tool_call>`,
			calls:   []ToolCall{{Name: "a", Arguments: `{"z":1,"a":{"y":2,"b":3}}`}},
			content: "",
		},
		{
			name:    "hermes missing arguments",
			syntax:  ToolSyntaxHermes,
			output:  `<tool_call>{"name": "now"}</tool_call>`,
			calls:   []ToolCall{{Name: "now", Arguments: `{}`}},
			content: "",
		},
		{
			name:    "hermes no call",
			syntax:  ToolSyntaxHermes,
			output:  "Just an answer.",
			content: "Just an answer.",
		},
		{
			name:      "hermes malformed JSON",
			syntax:    ToolSyntaxHermes,
			output:    "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": }\n</tool_call>",
			content:   "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": }\n</tool_call>",
			malformed: true,
		},
		{
			name:      "hermes missing name",
			syntax:    ToolSyntaxHermes,
			output:    `<tool_call>{"arguments": {}}</tool_call>`,
			content:   `<tool_call>{"arguments": {}}</tool_call>`,
			malformed: true,
		},
		{
			name:      "hermes arguments not an object",
			syntax:    ToolSyntaxHermes,
			output:    `<tool_call>{"name": "a", "arguments": [1]}</tool_call>`,
			content:   `<tool_call>{"name": "a", "arguments": [1]}</tool_call>`,
			malformed: true,
		},
		{
			name:    "llama3 json",
			syntax:  ToolSyntaxLlama3,
			output:  `{"name": "get_weather", "parameters": {"city": "Paris"}}`,
			calls:   []ToolCall{{Name: "get_weather", Arguments: `{"city":"Paris"}`}},
			content: "",
		},
		{
			name:    "llama3 python_tag and eom",
			syntax:  ToolSyntaxLlama3,
			output:  "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": true}}<|eom_id|>",
			calls:   []ToolCall{{Name: "f", Arguments: `{"a":true}`}},
			content: "",
		},
		{
			name:    "llama3 several separated by semicolons",
			syntax:  ToolSyntaxLlama3,
			output:  `{"name": "f", "parameters": {}}; {"name": "g", "arguments": {"n": 2}}`,
			calls:   []ToolCall{{Name: "f", Arguments: `{}`}, {Name: "g", Arguments: `{"n":2}`}},
			content: "",
		},
		{
			name:    "llama3 plain text",
			syntax:  ToolSyntaxLlama3,
			output:  "The weather is nice.",
			content: "The weather is nice.",
		},
		{
			name:    "llama3 JSON answer that is not a call",
			syntax:  ToolSyntaxLlama3,
			output:  `{"answer": 42}`,
			content: `{"answer": 42}`,
		},
		{
			name:    "llama3 builtin tool call is content",
			syntax:  ToolSyntaxLlama3,
			output:  `<|python_tag|>brave_search.call(query="x")`,
			content: `<|python_tag|>brave_search.call(query="x")`,
		},
		{
			name:      "llama3 malformed call",
			syntax:    ToolSyntaxLlama3,
			output:    `{"name": "f", "parameters": {"a": }`,
			content:   `{"name": "f", "parameters": {"a": }`,
			malformed: true,
		},
		{
			name:      "llama3 malformed after python_tag",
			syntax:    ToolSyntaxLlama3,
			output:    `<|python_tag|>{"nam`,
			content:   `<|python_tag|>{"nam`,
			malformed: true,
		},
		{
			name:    "mistral",
			syntax:  ToolSyntaxMistral,
			output:  `[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call12345"}]`,
			calls:   []ToolCall{{ID: "call12345", Name: "get_weather", Arguments: `{"city":"Paris"}`}},
			content: "",
		},
		{
			name:      "mistral malformed",
			syntax:    ToolSyntaxMistral,
			output:    `[TOOL_CALLS][{"name": "x", "arguments": {]`,
			content:   `[TOOL_CALLS][{"name": "x", "arguments": {]`,
			malformed: true,
		},
		{
			name:    "none syntax keeps output",
			syntax:  ToolSyntaxNone,
			output:  "<tool_call>{}</tool_call>",
			content: "<tool_call>{}</tool_call>",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			content, calls, err := ParseToolCalls(tc.syntax, tc.output)
			if tc.malformed {
				if !errors.Is(err, ErrMalformedToolCall) {
					t.Fatalf("want ErrMalformedToolCall, got %v", err)
				}
			} else if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if content != tc.content {
				t.Errorf("content = %q, want %q", content, tc.content)
			}
			if !reflect.DeepEqual(calls, tc.calls) {
				t.Errorf("calls = %#v, want %#v", calls, tc.calls)
			}
		})
	}
}

func TestDetectToolSyntax(t *testing.T) {
	data := sharedData(t)
	want := map[string]ToolSyntax{
		"Qwen-Qwen2.5-7B-Instruct.jinja":                      ToolSyntaxHermes,
		"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": ToolSyntaxHermes,
		"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja":   ToolSyntaxHermes,
		"meta-llama-Llama-3.1-8B-Instruct.jinja":              ToolSyntaxLlama3,
		"meta-llama-Llama-3.2-3B-Instruct.jinja":              ToolSyntaxLlama3,
		"meta-llama-Llama-3.3-70B-Instruct.jinja":             ToolSyntaxLlama3,
		"mistralai-Mistral-Nemo-Instruct-2407.jinja":          ToolSyntaxMistral,
		"google-gemma-2-2b-it.jinja":                          ToolSyntaxNone,
		"microsoft-Phi-3.5-mini-instruct.jinja":               ToolSyntaxNone,
		"meetkai-functionary-medium-v3.1.jinja":               ToolSyntaxNone,
	}
	for file, syntax := range want {
		src, err := os.ReadFile(filepath.Join(data, "chat-templates", file))
		if err != nil {
			t.Fatal(err)
		}
		if got := DetectToolSyntax(string(src)); got != syntax {
			t.Errorf("%s: DetectToolSyntax = %v, want %v", file, got, syntax)
		}
	}
	qwen3, err := Load(filepath.Join(data, "tokenizers", "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	if got := qwen3.ToolSyntax(); got != ToolSyntaxHermes {
		t.Errorf("qwen3: %v, want hermes", got)
	}
	if !strings.Contains(qwen3.Name(), "tokenizer_config.json") {
		t.Errorf("qwen3 template name %q", qwen3.Name())
	}
}
