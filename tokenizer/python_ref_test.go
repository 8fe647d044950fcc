package tokenizer

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// refFile is the format of testdata/tokenizer/<name>.json.gz: ids from
// Python tokenizers' Tokenizer.from_file(<dir>/tokenizer.json)
// .encode(text, add_special_tokens=False). A case gives its text either
// directly or as the bytes [start, end) of a file under ../shared/data.
type refFile struct {
	Tokenizer string    `json:"tokenizer"` // relative to ../shared/data
	Cases     []refCase `json:"cases"`
}

type refCase struct {
	Text  *string `json:"text"`
	File  string  `json:"file"`
	Start int     `json:"start"`
	End   int     `json:"end"`
	IDs   []int32 `json:"ids"`
}

// TestPythonReference checks every case of every reference file in
// testdata/tokenizer (or in $MARLIN_TOKENIZER_REFDIR when set).
func TestPythonReference(t *testing.T) {
	dir := os.Getenv("MARLIN_TOKENIZER_REFDIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "testdata", "tokenizer")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json.gz"))
	if len(files) == 0 {
		t.Skipf("no reference files %s/*.json.gz yet (they are generated with Python tokenizers)", dir)
	}
	data := sharedData(t)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			ref := readRefFile(t, f)
			tk := loadRefTokenizer(t, filepath.Join(data, ref.Tokenizer))
			files := map[string][]byte{}
			bad := 0
			for i, c := range ref.Cases {
				text := caseText(t, data, files, i, &c)
				got := tk.Encode(text, false)
				if equalIDs(got, c.IDs) {
					continue
				}
				bad++
				if bad <= 10 {
					k := firstDiff(got, c.IDs)
					t.Errorf("case %d %q: first difference at id %d:\n got %v\nwant %v", i, clip(text, 200), k,
						window(got, k), window(c.IDs, k))
				}
			}
			if bad > 0 {
				t.Errorf("%s: %d of %d cases differ", name, bad, len(ref.Cases))
			} else {
				t.Logf("%s (%s): all %d cases match", name, ref.Tokenizer, len(ref.Cases))
			}
		})
	}
}

func readRefFile(t *testing.T, path string) *refFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var ref refFile
	if err := json.NewDecoder(zr).Decode(&ref); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if ref.Tokenizer == "" {
		t.Fatalf("%s: no \"tokenizer\" field", path)
	}
	return &ref
}

// loadRefTokenizer loads dir/tokenizer.json alone (no
// tokenizer_config.json, as Tokenizer.from_file does), or
// dir/tokenizer.model when there is no tokenizer.json.
func loadRefTokenizer(t *testing.T, dir string) *Tokenizer {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if os.IsNotExist(err) {
		raw, err = os.ReadFile(filepath.Join(dir, "tokenizer.model"))
		if err != nil {
			t.Fatal(err)
		}
		tk, err := LoadSentencePiece(raw)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	if err != nil {
		t.Fatal(err)
	}
	tk, err := LoadHFJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// caseText returns the text of a case, reading (and caching) the file it
// points into when it has no text of its own.
func caseText(t *testing.T, data string, files map[string][]byte, i int, c *refCase) string {
	t.Helper()
	if c.Text != nil {
		return *c.Text
	}
	if c.File == "" {
		t.Fatalf("case %d has neither text nor file", i)
	}
	b, ok := files[c.File]
	if !ok {
		var err error
		b, err = os.ReadFile(filepath.Join(data, c.File))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		files[c.File] = b
	}
	if c.Start < 0 || c.End < c.Start || c.End > len(b) {
		t.Fatalf("case %d: bytes [%d, %d) out of %s (%d bytes)", i, c.Start, c.End, c.File, len(b))
	}
	return string(b[c.Start:c.End])
}

func firstDiff(a, b []int32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// window shows the ids around position k.
func window(ids []int32, k int) []int32 {
	lo, hi := max(0, k-5), min(len(ids), k+15)
	return ids[lo:hi]
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
