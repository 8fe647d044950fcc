package chat

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/internal/shared"
)

// sharedData returns ../shared/data, or skips the test when it is absent.
func sharedData(t testing.TB) string { return shared.Data(t) }

// testCases is chat/testdata/cases.json.
type testCases struct {
	Now       string `json:"now"`
	Templates map[string]struct {
		SpecialTokens map[string]string `json:"special_tokens"`
		Vars          map[string]any    `json:"vars"`
	} `json:"templates"`
	Tools json.RawMessage `json:"tools"`
	Cases []struct {
		Name                string          `json:"name"`
		AddGenerationPrompt bool            `json:"add_generation_prompt"`
		Tools               bool            `json:"tools"`
		Vars                map[string]any  `json:"vars"`
		Messages            json.RawMessage `json:"messages"`
	} `json:"cases"`
}

// expectedRender is one entry of chat/testdata/expected.json, written by
// scripts/chat_reference.py.
type expectedRender struct {
	Template      string            `json:"template"`
	Case          string            `json:"case"`
	SpecialTokens map[string]string `json:"special_tokens"`
	Vars          map[string]any    `json:"vars"`
	Expected      *string           `json:"expected"`
	Error         *string           `json:"error"`
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// templateSource reads a template the way chat_reference.py does: a .jinja
// file, or the default chat_template of a tokenizer_config.json.
func templateSource(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".json") {
		return string(data)
	}
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	var s string
	if json.Unmarshal(cfg.ChatTemplate, &s) == nil {
		return s
	}
	var list []struct{ Name, Template string }
	if err := json.Unmarshal(cfg.ChatTemplate, &list); err != nil {
		t.Fatalf("%s: chat_template: %v", path, err)
	}
	for _, e := range list {
		if e.Name == "default" {
			return e.Template
		}
	}
	t.Fatalf("%s: no default chat template", path)
	return ""
}

// knownGaps lists (template, case) pairs that cannot match transformers,
// with the reason. Every entry must be a case Python fails too.
var knownGaps = map[string]string{}

func TestExpectedRenders(t *testing.T) {
	data := sharedData(t)
	var cases testCases
	readJSON(t, filepath.Join("testdata", "cases.json"), &cases)
	var expected []expectedRender
	readJSON(t, filepath.Join("testdata", "expected.json"), &expected)
	if len(expected) == 0 {
		t.Fatal("testdata/expected.json is empty; run scripts/chat_reference.py")
	}
	now, err := time.Parse("2006-01-02T15:04:05", cases.Now)
	if err != nil {
		t.Fatalf("cases.json now: %v", err)
	}
	byName := map[string]int{}
	for i, c := range cases.Cases {
		byName[c.Name] = i
	}
	compiled := map[string]*Template{}
	type tally struct{ pass, total int }
	perTemplate := map[string]*tally{}
	perCase := map[string]*tally{}
	pass := 0
	for _, e := range expected {
		ci, ok := byName[e.Case]
		if !ok {
			t.Errorf("%s: case %q is not in cases.json", e.Template, e.Case)
			continue
		}
		c := cases.Cases[ci]
		if perTemplate[e.Template] == nil {
			perTemplate[e.Template] = &tally{}
		}
		if perCase[e.Case] == nil {
			perCase[e.Case] = &tally{}
		}
		perTemplate[e.Template].total++
		perCase[e.Case].total++
		ok = t.Run(strings.TrimSuffix(filepath.Base(filepath.Dir(e.Template))+"/"+filepath.Base(e.Template), ".jinja")+"/"+e.Case, func(t *testing.T) {
			key := e.Template + "#" + e.Case
			tpl, ok := compiled[e.Template]
			var newErr error
			if !ok {
				src := templateSource(t, filepath.Join(data, e.Template))
				tpl, newErr = NewNamed(e.Template, src, e.SpecialTokens)
				if newErr == nil {
					compiled[e.Template] = tpl
				}
			}
			in := Input{Messages: c.Messages, AddGenerationPrompt: c.AddGenerationPrompt, Vars: map[string]any{"strftime_now": now}}
			if c.Tools {
				in.Tools = cases.Tools
			}
			for k, v := range e.Vars {
				in.Vars[k] = v
			}
			var got string
			err := newErr
			if err == nil {
				got, err = tpl.Render(in)
			}
			if gap, ok := knownGaps[key]; ok {
				t.Skipf("known gap: %s", gap)
			}
			switch {
			case e.Error != nil && err == nil:
				t.Fatalf("Python fails with %q but Render succeeded:\n%s", *e.Error, got)
			case e.Error != nil:
				t.Logf("both fail: python %q, go %v", *e.Error, err)
			case err != nil:
				t.Fatalf("Render: %v", err)
			case got != *e.Expected:
				t.Fatalf("render differs from transformers\n%s", diff(*e.Expected, got))
			}
		})
		if ok {
			pass++
			perTemplate[e.Template].pass++
			perCase[e.Case].pass++
		}
	}
	var lines []string
	for name, n := range perTemplate {
		lines = append(lines, name+": "+itoa(n.pass)+"/"+itoa(n.total))
	}
	sort.Strings(lines)
	for name, n := range perCase {
		lines = append(lines, "case "+name+": "+itoa(n.pass)+"/"+itoa(n.total))
	}
	t.Logf("expected renders: %d/%d pass\n%s", pass, len(expected), strings.Join(lines, "\n"))
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// diff shows the first difference between want and got.
func diff(want, got string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	lo := max(0, i-120)
	show := func(s string) string {
		hi := min(len(s), i+120)
		if lo > len(s) {
			return ""
		}
		return s[lo:hi]
	}
	return "first difference at byte " + itoa(i) + "\n--- want ---\n" + show(want) + "\n--- got ---\n" + show(got) + "\n---"
}

func TestRenderErrorsAreTyped(t *testing.T) {
	tpl, err := New(`{% if messages|length > 1 %}{{ raise_exception("too many") }}{% endif %}ok`, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpl.Render(Input{Messages: json.RawMessage(`[{"role":"user","content":"a"},{"role":"user","content":"b"}]`)})
	var re *RenderError
	if !errors.As(err, &re) || !re.Raised || re.Msg != "too many" || re.Line != 1 {
		t.Fatalf("got %#v (%v)", re, err)
	}
}

// snippet is one entry of chat/testdata/snippets.json: a small template of
// our own pinning down one jinja2 behaviour.
type snippet struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Vars     json.RawMessage `json:"vars"`
}

type snippetResult struct {
	Name     string  `json:"name"`
	Expected *string `json:"expected"`
	Error    *string `json:"error"`
}

// TestSnippets compares small templates against jinja2 (as set up by
// transformers), rendered by scripts/chat_reference.py into
// testdata/snippets_expected.json.
func TestSnippets(t *testing.T) {
	var snippets []snippet
	readJSON(t, filepath.Join("testdata", "snippets.json"), &snippets)
	var results []snippetResult
	readJSON(t, filepath.Join("testdata", "snippets_expected.json"), &results)
	want := map[string]snippetResult{}
	for _, r := range results {
		want[r.Name] = r
	}
	now := time.Date(2024, 9, 15, 8, 30, 0, 0, time.UTC)
	pass := 0
	for _, s := range snippets {
		ok := t.Run(s.Name, func(t *testing.T) {
			w, ok := want[s.Name]
			if !ok {
				t.Fatalf("no expected result for %q; run scripts/chat_reference.py", s.Name)
			}
			got, err := renderSnippet(s.Template, s.Vars, now)
			switch {
			case w.Error != nil && err == nil:
				t.Fatalf("jinja2 fails with %q but Render succeeded: %q", *w.Error, got)
			case w.Error != nil:
				t.Logf("both fail: python %q, go %v", *w.Error, err)
			case err != nil:
				t.Fatalf("render: %v\nwant %q", err, *w.Expected)
			case got != *w.Expected:
				t.Fatalf("render differs from jinja2\nwant %q\ngot  %q", *w.Expected, got)
			}
		})
		if ok {
			pass++
		}
	}
	t.Logf("snippets: %d/%d pass", pass, len(snippets))
}
