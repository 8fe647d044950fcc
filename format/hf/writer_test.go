package hf

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/safetensors"
)

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func u8(name string, n int) safetensors.Tensor {
	return safetensors.Tensor{Name: name, DType: dtype.U8, Shape: []int{n}, Data: make([]byte, n)}
}

func TestWriterAbortLeavesNothing(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	w, err := NewWriter(out, false)
	if err != nil {
		t.Fatal(err)
	}
	w.ShardBytes = 10
	for i := 0; i < 5; i++ {
		must(t, w.AddTensor(u8(fmt.Sprint("t", i), 8)))
	}
	must(t, w.WriteFile("config.json", []byte("{}")))
	must(t, w.WriteFile("original/params.json", []byte("{}")))
	if w.Shards() != 5 {
		t.Errorf("%d shards", w.Shards())
	}
	if got := listDir(t, parent); len(got) != 1 || !strings.HasPrefix(got[0], "model.tmp-") {
		t.Errorf("while writing, parent holds %v; want only the temporary folder", got)
	}
	w.Abort()
	w.Abort()
	if got := listDir(t, parent); len(got) != 0 {
		t.Errorf("after Abort, parent holds %v", got)
	}
	if err := w.AddTensor(u8("x", 1)); err == nil || !strings.Contains(err.Error(), "after Abort") {
		t.Errorf("AddTensor after Abort: %v", err)
	}
	if err := w.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	if got := listDir(t, parent); len(got) != 0 {
		t.Errorf("after Commit of an aborted writer, parent holds %v", got)
	}
}

func TestWriterRefusesExisting(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	must(t, os.Mkdir(out, 0o755))
	if _, err := NewWriter(out, false); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("NewWriter on an existing folder: %v", err)
	}
	file := filepath.Join(parent, "file")
	must(t, os.WriteFile(file, nil, 0o644))
	if _, err := NewWriter(file, true); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("NewWriter(force) on a file: %v", err)
	}
	if _, err := NewWriter(filepath.Join(parent, "no", "such", "dir"), false); err == nil {
		t.Error("NewWriter in a missing parent succeeded")
	}
	if got := listDir(t, parent); fmt.Sprint(got) != "[file model]" {
		t.Errorf("parent holds %v", got)
	}
}

// TestWriterFailureMidway breaks the temporary folder under the writer: the
// write fails, every later call fails, and nothing is left behind.
func TestWriterFailureMidway(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	w, err := NewWriter(out, false)
	if err != nil {
		t.Fatal(err)
	}
	w.ShardBytes = 10
	must(t, w.AddTensor(u8("a", 8)))
	must(t, os.RemoveAll(w.TempDir()))
	if err := w.AddTensor(u8("b", 8)); err == nil { // needs a new shard
		t.Fatal("AddTensor into a removed folder succeeded")
	}
	if err := w.WriteFile("config.json", []byte("{}")); err == nil {
		t.Error("WriteFile after a failure succeeded")
	}
	if err := w.Commit(); err == nil {
		t.Error("Commit after a failure succeeded")
	}
	if got := listDir(t, parent); len(got) != 0 {
		t.Errorf("parent holds %v", got)
	}
}

func TestWriterValidation(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	w, err := NewWriter(out, false)
	if err != nil {
		t.Fatal(err)
	}
	must(t, w.AddTensor(u8("a", 4)))
	for _, c := range []struct {
		err  error
		want string
	}{
		{w.AddTensor(u8("a", 4)), `duplicate tensor "a"`},
		{w.AddTensor(safetensors.Tensor{Name: "b", DType: dtype.F32, Shape: []int{2}, Data: make([]byte, 7)}), "= 8 bytes, but Data holds 7"},
		{w.AddTensor(safetensors.Tensor{Name: "", DType: dtype.U8, Shape: []int{1}, Data: []byte{1}}), "empty name"},
		{w.WriteFile("../escape.json", nil), "relative path inside the folder"},
		{w.WriteFile("/abs.json", nil), "relative path inside the folder"},
		{w.WriteFile(".marlin-shard-00009.safetensors", nil), "reserved"},
		{w.CopyFile("x.json", filepath.Join(parent, "missing")), "CopyFile"},
		{w.CopyFile("x.json", parent), "not a regular file"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", c.err, c.want)
		}
	}
	must(t, w.WriteFile("config.json", []byte(`{}`)))
	if err := w.WriteFile("config.json", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "written twice") {
		t.Errorf("second WriteFile: %v", err)
	}
	// The errors above leave the writer usable.
	must(t, w.AddTensor(u8("b", 4)))
	must(t, w.Commit())
	if got := listDir(t, out); fmt.Sprint(got) != "[config.json model.safetensors]" {
		t.Errorf("folder holds %v", got)
	}
	if err := w.AddTensor(u8("c", 1)); err == nil || !strings.Contains(err.Error(), "after Commit") {
		t.Errorf("AddTensor after Commit: %v", err)
	}
	if err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	w.Abort() // harmless after Commit
	if got := listDir(t, parent); fmt.Sprint(got) != "[model]" {
		t.Errorf("parent holds %v", got)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o755 {
		t.Errorf("folder mode %v", fi.Mode())
	}
}

// TestWriterCollision: a file written by hand may not take the name of a
// generated weight file; the failed Commit leaves nothing.
func TestWriterCollision(t *testing.T) {
	for _, name := range []string{"model.safetensors", IndexFile, "model-00001-of-00002.safetensors"} {
		parent := t.TempDir()
		w, err := NewWriter(filepath.Join(parent, "model"), false)
		if err != nil {
			t.Fatal(err)
		}
		must(t, w.WriteFile(name, []byte("x")))
		must(t, w.AddTensor(u8("a", 1)))
		if err := w.Commit(); err == nil || !strings.Contains(err.Error(), "collides") {
			t.Errorf("%s: Commit: %v", name, err)
		}
		if got := listDir(t, parent); len(got) != 0 {
			t.Errorf("%s: parent holds %v", name, got)
		}
	}
	// Without tensors those names are free: the caller provides the weights.
	parent := t.TempDir()
	w, _ := NewWriter(filepath.Join(parent, "model"), false)
	must(t, w.WriteFile("model.safetensors", safetensorsFile("a")))
	must(t, w.WriteFile("config.json", []byte("{}")))
	must(t, w.Commit())
	c, err := Open(filepath.Join(parent, "model"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestWriterForceReplace(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	must(t, os.Mkdir(out, 0o755))
	must(t, os.WriteFile(filepath.Join(out, "old.txt"), []byte("old"), 0o644))

	// A failed replacement keeps the old folder.
	w, err := NewWriter(out, true)
	if err != nil {
		t.Fatal(err)
	}
	must(t, w.AddTensor(u8("a", 1)))
	must(t, w.WriteFile("model.safetensors", nil))
	if err := w.Commit(); err == nil {
		t.Fatal("Commit with a collision succeeded")
	}
	if got := listDir(t, out); fmt.Sprint(got) != "[old.txt]" {
		t.Errorf("old folder now holds %v", got)
	}

	w, err = NewWriter(out, true)
	if err != nil {
		t.Fatal(err)
	}
	must(t, w.AddTensor(u8("a", 1)))
	must(t, w.WriteFile("config.json", []byte("{}")))
	if got := listDir(t, out); fmt.Sprint(got) != "[old.txt]" {
		t.Errorf("old folder changed before Commit: %v", got)
	}
	must(t, w.Commit())
	if got := listDir(t, out); fmt.Sprint(got) != "[config.json model.safetensors]" {
		t.Errorf("replaced folder holds %v", got)
	}
	if got := listDir(t, parent); fmt.Sprint(got) != "[model]" {
		t.Errorf("parent holds %v", got)
	}
}

// TestWriterRace: a folder that appears while writing without force is
// left alone.
func TestWriterRace(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "model")
	w, err := NewWriter(out, false)
	if err != nil {
		t.Fatal(err)
	}
	must(t, w.AddTensor(u8("a", 1)))
	must(t, os.Mkdir(out, 0o755))
	if err := w.Commit(); err == nil || !strings.Contains(err.Error(), "appeared") {
		t.Errorf("Commit: %v", err)
	}
	if got := listDir(t, parent); fmt.Sprint(got) != "[model]" {
		t.Errorf("parent holds %v", got)
	}
	if got := listDir(t, out); len(got) != 0 {
		t.Errorf("the other folder was changed: %v", got)
	}
}

// TestCommitAtomic watches the destination while Commit runs (several
// times, with and without an old folder to replace): whenever it exists it
// is either the old folder or the complete new one.
func TestCommitAtomic(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	ts := randomTensors(rng, 12)
	for round := 0; round < 6; round++ {
		parent := t.TempDir()
		out := filepath.Join(parent, "model")
		force := round%2 == 1
		if force {
			must(t, os.Mkdir(out, 0o755))
			must(t, os.WriteFile(filepath.Join(out, "old.txt"), nil, 0o644))
		}
		w, err := NewWriter(out, force)
		if err != nil {
			t.Fatal(err)
		}
		w.ShardBytes = 4000
		for _, x := range ts {
			must(t, w.AddTensor(x))
		}
		must(t, w.WriteFile("config.json", []byte("{}")))

		var stop atomic.Bool
		var bad atomic.Value
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				entries, ok := listIfStill(out)
				if !ok {
					continue // absent, or swapped away while listed: fine
				}
				names := make(map[string]bool)
				for _, e := range entries {
					names[e.Name()] = true
				}
				if names["old.txt"] && len(names) == 1 {
					continue
				}
				if !names["config.json"] || !names[IndexFile] || names["old.txt"] {
					bad.Store(fmt.Sprint(names))
				}
			}
		}()
		err = w.Commit()
		stop.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if v := bad.Load(); v != nil {
			t.Fatalf("round %d: saw a partial folder: %v", round, v)
		}
		c, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Names()) != len(ts) || len(c.Files()) < 2 {
			t.Errorf("round %d: %d tensors in %d files", round, len(c.Names()), len(c.Files()))
		}
		c.Close()
	}
}

// listIfStill lists the folder at path and reports whether that same folder
// was still at path after the listing. A listing of a folder that was
// swapped away meanwhile (the old one, being deleted) says nothing about
// what path shows.
func listIfStill(path string) ([]os.DirEntry, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return nil, false
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, false
	}
	after, err := os.Stat(path)
	if err != nil || !os.SameFile(before, after) {
		return nil, false
	}
	return entries, true
}

func TestWriterNoTensors(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "tok")
	w, err := NewWriter(out, false)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(parent, "src.json")
	must(t, os.WriteFile(src, []byte(`{"a":1}`), 0o644))
	must(t, w.CopyFile("tokenizer.json", src))
	must(t, w.Commit())
	if got := listDir(t, out); fmt.Sprint(got) != "[tokenizer.json]" {
		t.Errorf("folder holds %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "tokenizer.json")); string(b) != `{"a":1}` {
		t.Errorf("copied %q", b)
	}
}
