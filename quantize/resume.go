package quantize

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/format/safetensors"
)

// A calibrated run journals every weight it quantizes in a folder beside
// the output, OUT.partial: the weight's tensors (one safetensors file,
// written atomically) and then an entry in journal.json (replaced
// atomically) naming it. A later run of the same job — the journal's key
// hashes the source checkpoint's config and its files' sizes and times,
// the options that change the result and the calibration tokens — takes
// the journaled weights, in the order
// they were done, instead of quantizing them again: the forward passes of
// the weights after them see the same quantized layers, so the run goes on
// where the other stopped and writes the same output. The folder is
// removed once the output is committed; a journal of another job is
// discarded (with a note).

// journalVersion changes when what a journal holds changes meaning.
const journalVersion = 1

type journal struct {
	dir     string
	Key     string         `json:"key"`
	Entries []journalEntry `json:"entries"`
}

// journalEntry is one quantized weight.
type journalEntry struct {
	Name    string      `json:"name"`    // the weight's prefix
	File    string      `json:"file"`    // its tensors, in dir
	Tensors []string    `json:"tensors"` // their names, in the order written
	Report  LayerReport `json:"report"`
	// Shape is the logical [out, in] of a weight stored padded (EXL3).
	Shape *[2]int `json:"shape,omitempty"`
}

// partialDir is the journal folder of the output folder dst.
func partialDir(dst string) string { return filepath.Clean(dst) + ".partial" }

// jobKey hashes what the quantized weights depend on: the source folder's
// config and tensor files (names, sizes and modification times: hashing
// the contents would mean reading the whole model), the method and its
// options, and the calibration token rows.
func jobKey(ck *hf.Checkpoint, src string, opt Options, seqs [][]int32, batchTokens int) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "marlin quantize journal %d\n", journalVersion)
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		return "", err
	}
	h.Write(cfg)
	files, _ := filepath.Glob(filepath.Join(src, "*.safetensors"))
	sort.Strings(files)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", filepath.Base(f), st.Size(), st.ModTime().UnixNano())
	}
	e := opt.EXL3 // (not where the search runs: Workers, GPU)
	job := struct {
		Method                 Method
		Spec                   any
		Head                   any
		GPTQ                   any
		Bits, OutScales        int
		Codebook               any
		Seed                   uint64
		Sigma                  float64
		NoScaleSearch, NoRefit bool
		AvgBits                float64
		BatchTokens            int
		FPTargets              bool
	}{opt.Method, opt.Spec, opt.Head, opt.GPTQ, e.Bits, e.OutScales, e.Codebook, e.Seed, e.Sigma, e.NoScaleSearch, e.NoRefit,
		opt.AvgBits, batchTokens, opt.FPTargets}
	b, err := json.Marshal(job)
	if err != nil {
		return "", err
	}
	h.Write(b)
	var n [4]byte
	for _, s := range seqs {
		binary.LittleEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		for _, t := range s {
			binary.LittleEndian.PutUint32(n[:], uint32(t))
			h.Write(n[:])
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// openJournal opens the journal of dst for the job key, keeping the
// entries of an earlier run of the same job (those whose files are there)
// and deleting the files of another job's. A folder there that is not a
// journal is left alone: an error says so.
func openJournal(dst, key string, warn func(string)) (*journal, error) {
	j := &journal{dir: partialDir(dst), Key: key}
	raw, err := os.ReadFile(filepath.Join(j.dir, "journal.json"))
	switch {
	case err == nil:
		var old journal
		if err := json.Unmarshal(raw, &old); err != nil || old.Key == "" {
			return nil, fmt.Errorf("%s/journal.json is not a marlin quantize journal; remove the folder", j.dir)
		}
		if old.Key == key {
			for _, e := range old.Entries {
				if _, err := os.Stat(filepath.Join(j.dir, e.File)); err != nil {
					break
				}
				j.Entries = append(j.Entries, e)
			}
			return j, nil
		}
		warnf(warn, "%s holds a partial run of another job (other source, options or calibration): starting over", j.dir)
		for _, e := range old.Entries {
			if filepath.Base(e.File) == e.File {
				os.Remove(filepath.Join(j.dir, e.File))
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		if ents, err := os.ReadDir(j.dir); err == nil && len(ents) > 0 {
			return nil, fmt.Errorf("%s exists and is not a marlin quantize journal; remove it", j.dir)
		}
		if err := os.MkdirAll(j.dir, 0o755); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	default:
		return nil, fmt.Errorf("journal: %w", err)
	}
	return j, j.save()
}

// add journals one quantized weight.
func (j *journal) add(name string, ts []safetensors.Tensor, rep LayerReport, shape *[2]int) error {
	e := journalEntry{Name: name, File: fmt.Sprintf("%05d.safetensors", len(j.Entries)), Report: rep, Shape: shape}
	w, err := safetensors.Create(filepath.Join(j.dir, e.File))
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	for _, t := range ts {
		if err := w.Add(t); err != nil {
			w.Abort()
			return fmt.Errorf("journal: %w", err)
		}
		e.Tensors = append(e.Tensors, t.Name)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.Entries = append(j.Entries, e)
	return j.save()
}

// save replaces journal.json.
func (j *journal) save() error {
	b, err := json.MarshalIndent(j, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(j.dir, ".journal-*.tmp")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(j.dir, "journal.json"))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// tensors reads back the tensors of an entry, in the order written, into
// memory.
func (j *journal) tensors(e journalEntry) ([]safetensors.Tensor, error) {
	f, err := safetensors.Open(filepath.Join(j.dir, e.File))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	ts := make([]safetensors.Tensor, len(e.Tensors))
	for i, n := range e.Tensors {
		t, ok := f.Tensor(n)
		if !ok {
			return nil, fmt.Errorf("journal: %s has no tensor %s", e.File, n)
		}
		t.Data, t.Mapped = append([]byte(nil), t.Data...), false
		ts[i] = t
	}
	return ts, nil
}

// remove deletes the journal's files and folder (the output is complete).
func (j *journal) remove() error {
	for _, e := range j.Entries {
		os.Remove(filepath.Join(j.dir, e.File))
	}
	os.Remove(filepath.Join(j.dir, "journal.json"))
	return os.Remove(j.dir)
}
