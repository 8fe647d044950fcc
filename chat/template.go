package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/parser"
)

// Template is a parsed chat template. It is safe for concurrent use.
type Template struct {
	name     string
	source   string
	special  map[string]string
	tpl      *exec.Template
	variants map[string]*Template
}

// Input is what a chat template is rendered with.
type Input struct {
	// Messages is an OpenAI-style JSON array of messages: role, content (a
	// string, null, or an array of parts such as {"type":"text","text":...}),
	// tool_calls, tool_call_id, name, ... Object key order is kept.
	Messages json.RawMessage
	// Tools is an OpenAI-style JSON array of tools, or nil (the template then
	// sees tools = None, as with transformers).
	Tools json.RawMessage
	// AddGenerationPrompt asks the template to open an assistant turn.
	AddGenerationPrompt bool
	// Vars are extra template variables (e.g. enable_thinking, date_string).
	// Values may be nil (None), bool, string, Go numbers, slices, maps with
	// string keys (keys sorted), json.RawMessage (decoded keeping key order)
	// or any JSON-marshalable value. They override the special tokens.
	// "documents" sets the documents variable (default None). Vars
	// "strftime_now" may be a time.Time (the instant strftime_now formats),
	// a func() time.Time or a func(format string) string, for reproducible
	// output.
	Vars map[string]any
}

// RenderError is the error Render returns when the template fails.
type RenderError struct {
	// Template is the template's name.
	Template string
	// Line is the template line of the failing statement, 0 when unknown.
	Line int
	// Msg describes the failure; a Python exception the template would have
	// raised under transformers is prefixed with its class ("TypeError: ...").
	Msg string
	// Raised is true when the template called raise_exception(Msg): the
	// input is not acceptable to this template (e.g. roles that do not
	// alternate).
	Raised bool
}

// Error implements the error interface.
func (e *RenderError) Error() string {
	where := fmt.Sprintf("chat template %q", e.Template)
	if e.Line > 0 {
		where += fmt.Sprintf(" line %d", e.Line)
	}
	if e.Raised {
		return where + ": raise_exception: " + e.Msg
	}
	return where + ": " + e.Msg
}

// recoverPanics turns panics inside gonja or this package into errors; the
// fuzz tests switch it off to find them.
var recoverPanics = true

var (
	setupOnce sync.Once
	gonjaCfg  *config.Config
	gonjaEnv  *exec.Environment
)

// setup builds the gonja configuration and environment that reproduce
// transformers' jinja2 environment: trim_blocks, lstrip_blocks, the
// loopcontrols extension and the {% generation %} tag; no `do` or i18n tags.
func setup() {
	gonjaCfg = config.New()
	gonjaCfg.TrimBlocks = true
	gonjaCfg.LeftStripBlocks = false // done by prepareSource, see lstrip.go
	gonjaCfg.KeepTrailingNewline = false
	gonjaCfg.AutoEscape = false
	gonjaCfg.StrictUndefined = false

	structs := map[string]parser.ControlStructureParser{}
	for _, name := range []string{"autoescape", "block", "call", "extends", "for", "from", "if", "import", "include", "macro", "break", "continue"} {
		if p, ok := builtins.ControlStructures.Get(name); ok {
			structs[name] = p
		}
	}
	structs["set"] = parseSet
	structs["filter"] = parseFilterBlock
	structs["with"] = parseWith
	structs["generation"] = parseGeneration
	structs["raw"] = parseRaw
	gonjaEnv = &exec.Environment{
		Context:           exec.EmptyContext(),
		Filters:           exec.NewFilterSet(map[string]exec.FilterFunction{}),
		Tests:             exec.NewTestSet(map[string]exec.TestFunction{}),
		ControlStructures: exec.NewControlStructureSet(structs),
		Methods:           builtins.Methods,
	}
}

// New parses a chat template. special holds the tokenizer's special tokens
// (bos_token, eos_token, unk_token, pad_token, ...) the template sees as
// variables; tokens the tokenizer lacks should be left out (they are then
// undefined, as with transformers).
func New(source string, special map[string]string) (*Template, error) {
	return NewNamed("chat_template", source, special)
}

// NewNamed is New with the name errors use for the template (e.g. its path).
func NewNamed(name, source string, special map[string]string) (t *Template, err error) {
	setupOnce.Do(setup)
	defer func() {
		if !recoverPanics {
			return
		}
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("chat template %q: parse: internal error: %v", name, r)
		}
	}()
	prepared, err := prepareSource(source)
	if err != nil {
		return nil, fmt.Errorf("chat template %q: syntax error: %w", name, err)
	}
	loader, err := loaders.NewMemoryLoader(map[string]string{"/template": prepared})
	if err != nil {
		return nil, fmt.Errorf("chat template %q: %w", name, err)
	}
	tpl, err := exec.NewTemplate("/template", gonjaCfg, loader, gonjaEnv)
	if err != nil {
		// gonja puts the whole source in its message; keep the cause only.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return nil, fmt.Errorf("chat template %q: syntax error: %w", name, err)
	}
	rw := &rewriter{src: prepared}
	for _, n := range tpl.Root().Nodes {
		rw.node(n)
	}
	if tpl.Root().Parent != nil {
		rw.err = errors.New("template inheritance ({% extends %}) is not supported")
	}
	if rw.err != nil {
		return nil, fmt.Errorf("chat template %q: %w", name, rw.err)
	}
	sp := make(map[string]string, len(special))
	for k, v := range special {
		sp[k] = v
	}
	t = &Template{name: name, source: source, special: sp, tpl: tpl}
	t.variants = map[string]*Template{"default": t}
	return t, nil
}

// Name returns the template's name (used in errors).
func (t *Template) Name() string { return t.name }

// Source returns the template text.
func (t *Template) Source() string { return t.source }

// SpecialTokens returns a copy of the special tokens the template sees.
func (t *Template) SpecialTokens() map[string]string {
	out := make(map[string]string, len(t.special))
	for k, v := range t.special {
		out[k] = v
	}
	return out
}

// ToolSyntax returns the tool-call syntax detected in the template source.
func (t *Template) ToolSyntax() ToolSyntax { return DetectToolSyntax(t.source) }

// Variant returns the named template of a Load()ed model ("default",
// "tool_use", "rag", ...).
func (t *Template) Variant(name string) (*Template, bool) {
	v, ok := t.variants[name]
	return v, ok
}

// Variants lists the names Variant accepts, sorted.
func (t *Template) Variants() []string {
	names := make([]string, 0, len(t.variants))
	for n := range t.variants {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var lineRe = regexp.MustCompile(`(?i)line:? (\d+)`)

// Render renders the template like transformers' apply_chat_template (with
// tokenize=False). Before rendering, the OpenAI-style messages are
// normalized the way OpenAI-compatible servers feed HF templates:
//
//   - a content array whose parts are all {"type":"text"} becomes the texts
//     joined with "\n" (text-only templates expect a string);
//   - tool_calls[i].function.arguments, a JSON string in the OpenAI API,
//     becomes the decoded object when it holds a JSON object (HF templates
//     expect a mapping, e.g. `arguments | tojson`); other strings are kept.
//
// The template sees messages, tools (None without tools), documents (None
// unless Vars sets it), add_generation_prompt, the special tokens, Vars,
// and the globals raise_exception and strftime_now.
//
// A template failure is a *RenderError; invalid input (messages or tools
// that are not JSON arrays, unsupported Vars) is reported as a plain error.
func (t *Template) Render(in Input) (out string, err error) {
	defer func() {
		if !recoverPanics {
			return
		}
		if r := recover(); r != nil {
			out, err = "", &RenderError{Template: t.name, Msg: fmt.Sprintf("internal error: %v", r)}
		}
	}()
	data, st, err := t.variables(in)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	execErr := t.tpl.Execute(&b, exec.NewContext(data))
	if execErr == nil && st.err == nil {
		return b.String(), nil
	}
	re := &RenderError{Template: t.name}
	if execErr != nil {
		if m := lineRe.FindAllStringSubmatch(execErr.Error(), -1); len(m) > 0 {
			re.Line, _ = strconv.Atoi(m[len(m)-1][1])
		}
		re.Msg = strings.TrimPrefix(execErr.Error(), "unable to execute template: ")
	}
	if st.err != nil {
		re.Msg, re.Raised = st.err.Msg, st.err.Raised
	}
	return "", re
}

// reserved are the variables Render sets itself.
var reserved = map[string]bool{"messages": true, "tools": true, "add_generation_prompt": true}

func (t *Template) variables(in Input) (map[string]any, *renderState, error) {
	st := &renderState{}
	msgs, err := decodeMessages(in.Messages)
	if err != nil {
		return nil, nil, fmt.Errorf("chat template %q: messages: %w", t.name, err)
	}
	var tools any = pyNone
	if trimmed := strings.TrimSpace(string(in.Tools)); trimmed != "" && trimmed != "null" {
		tv, err := decodeJSON(in.Tools)
		if err != nil {
			return nil, nil, fmt.Errorf("chat template %q: tools: %w", t.name, err)
		}
		if _, ok := tv.(pyList); !ok {
			return nil, nil, fmt.Errorf("chat template %q: tools: want a JSON array, got %s", t.name, typeName(tv))
		}
		tools = tv
	}
	now := time.Now
	var strftime pyFunc
	vars := map[string]any{}
	for k, v := range in.Vars {
		if reserved[k] {
			return nil, nil, fmt.Errorf("chat template %q: Vars[%q]: Render sets this variable itself", t.name, k)
		}
		if k == "strftime_now" {
			switch f := v.(type) {
			case time.Time:
				now = func() time.Time { return f }
				continue
			case func() time.Time:
				now = f
				continue
			case func(string) string:
				strftime = func(va *exec.VarArgs) *exec.Value { return ret(f(pyStr(arg(va, 0)))) }
				continue
			}
		}
		pv, err := toPython(v, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("chat template %q: Vars[%q]: %w", t.name, k, err)
		}
		vars[k] = pv
	}
	data := st.globals(now)
	if strftime != nil {
		data["strftime_now"] = st.wrap(strftime)
	}
	for k, v := range t.special {
		data[k] = v
	}
	data["documents"] = pyNone
	for k, v := range vars {
		data[k] = v
	}
	data["messages"] = msgs
	data["tools"] = tools
	data["add_generation_prompt"] = in.AddGenerationPrompt
	return data, st, nil
}

// decodeMessages decodes and normalizes the OpenAI-style message array.
func decodeMessages(raw json.RawMessage) (pyList, error) {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil, errors.New("no messages")
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	msgs, ok := v.(pyList)
	if !ok {
		return nil, fmt.Errorf("want a JSON array, got %s", typeName(v))
	}
	out := make(pyList, len(msgs))
	for i, m := range msgs {
		out[i] = normalizeMessage(m)
	}
	return out, nil
}

func normalizeMessage(m any) any {
	d, ok := m.(pyDict)
	if !ok {
		return m
	}
	d = append(pyDict(nil), d...)
	for i := range d {
		switch d[i].Key {
		case "content":
			if parts, ok := d[i].Value.(pyList); ok && len(parts) > 0 && allTextParts(parts) {
				texts := make([]string, len(parts))
				for j, p := range parts {
					text, _ := p.(pyDict).lookup("text")
					texts[j] = pyStr(text)
				}
				d[i].Value = strings.Join(texts, "\n")
			}
		case "tool_calls":
			if calls, ok := d[i].Value.(pyList); ok {
				nc := make(pyList, len(calls))
				for j, c := range calls {
					nc[j] = normalizeToolCall(c)
				}
				d[i].Value = nc
			}
		}
	}
	return d
}

func allTextParts(parts pyList) bool {
	for _, p := range parts {
		pd, ok := p.(pyDict)
		if !ok {
			return false
		}
		if typ, _ := pd.lookup("type"); typ != "text" {
			return false
		}
	}
	return true
}

func normalizeToolCall(c any) any {
	call, ok := c.(pyDict)
	if !ok {
		return c
	}
	fn, ok := call.lookup("function")
	fd, isDict := fn.(pyDict)
	if !ok || !isDict {
		return c
	}
	args, _ := fd.lookup("arguments")
	s, isStr := args.(string)
	if !isStr {
		return c
	}
	parsed, err := decodeJSON([]byte(s))
	if err != nil {
		return c
	}
	obj, isObj := parsed.(pyDict)
	if !isObj {
		return c
	}
	return call.with("function", fd.with("arguments", obj))
}

// toPython converts a Go value into the template value model.
func toPython(v any, depth int) (any, error) {
	if depth > 100 {
		return nil, errors.New("value nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		return pyNone, nil
	case bool, string, int, float64:
		return x, nil
	case json.RawMessage:
		return decodeJSON(x)
	case json.Number:
		return numberValue(string(x)), nil
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32:
		return fromGonja(x), nil
	case func(string) string:
		return pyFunc(func(va *exec.VarArgs) *exec.Value { return ret(x(pyStr(arg(va, 0)))) }), nil
	case pyFunc:
		return x, nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			break
		}
		out := make(pyList, rv.Len())
		for i := range rv.Len() {
			e, err := toPython(rv.Index(i).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		out := make(pyDict, 0, len(keys))
		for _, k := range keys {
			e, err := toPython(rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key())).Interface(), depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, dictItem{k, e})
		}
		return out, nil
	case reflect.Pointer:
		if rv.IsNil() {
			return pyNone, nil
		}
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("unsupported value of type %T: %w", v, err)
	}
	return decodeJSON(data)
}

// specialTokenKeys are the tokenizer_config.json special-token entries
// transformers exposes to templates.
var specialTokenKeys = []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}

// Load loads a model's chat template(s) from a directory holding
// tokenizer_config.json and/or chat_template.jinja, like transformers:
//
//   - chat_template.jinja, when present, is the default template;
//   - otherwise tokenizer_config.json "chat_template" is: a string (the
//     default template), or a list of {"name", "template"} whose "default"
//     entry is the default and whose other entries (e.g. "tool_use") are
//     available through Variant;
//   - additional_chat_templates/NAME.jinja files are variants too.
//
// Special tokens come from tokenizer_config.json (string values or
// {"content": ...} objects; null ones are left out).
func Load(dir string) (*Template, error) {
	special := map[string]string{}
	named := map[string]string{}
	names := map[string]string{}
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	if data, err := os.ReadFile(cfgPath); err == nil {
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("chat: %s: %w", cfgPath, err)
		}
		for _, k := range specialTokenKeys {
			if tok, ok := specialToken(cfg[k]); ok {
				special[k] = tok
			}
		}
		if raw, ok := cfg["chat_template"]; ok {
			var single string
			var list []struct {
				Name     string `json:"name"`
				Template string `json:"template"`
			}
			switch {
			case json.Unmarshal(raw, &single) == nil:
				named["default"] = single
				names["default"] = cfgPath + ": chat_template"
			case json.Unmarshal(raw, &list) == nil:
				for _, e := range list {
					named[e.Name] = e.Template
					names[e.Name] = fmt.Sprintf("%s: chat_template[%s]", cfgPath, e.Name)
				}
			case string(raw) == "null":
			default:
				return nil, fmt.Errorf("chat: %s: chat_template is neither a string nor a list of {name, template}", cfgPath)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("chat: %w", err)
	}
	jinjaPath := filepath.Join(dir, "chat_template.jinja")
	if data, err := os.ReadFile(jinjaPath); err == nil {
		named["default"] = string(data)
		names["default"] = jinjaPath
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("chat: %w", err)
	}
	extra, _ := filepath.Glob(filepath.Join(dir, "additional_chat_templates", "*.jinja"))
	for _, p := range extra {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("chat: %w", err)
		}
		n := strings.TrimSuffix(filepath.Base(p), ".jinja")
		named[n] = string(data)
		names[n] = p
	}
	if len(named) == 0 {
		return nil, fmt.Errorf("chat: %s has no chat template (tokenizer_config.json chat_template or chat_template.jinja)", dir)
	}
	if _, ok := named["default"]; !ok {
		list := make([]string, 0, len(named))
		for n := range named {
			list = append(list, n)
		}
		sort.Strings(list)
		return nil, fmt.Errorf("chat: %s: several chat templates (%s) and none named \"default\"", dir, strings.Join(list, ", "))
	}
	variants := map[string]*Template{}
	for n, src := range named {
		t, err := NewNamed(names[n], src, special)
		if err != nil {
			return nil, err
		}
		variants[n] = t
	}
	for _, t := range variants {
		t.variants = variants
	}
	return variants["default"], nil
}

func specialToken(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Content != nil {
		return *obj.Content, true
	}
	return "", false
}
