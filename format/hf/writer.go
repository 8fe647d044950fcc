package hf

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/marlin-llm/marlin/format/safetensors"
)

// DefaultShardBytes is the default largest amount of tensor data per shard.
const DefaultShardBytes = 4 << 30

// shardPrefix names shard files while they are written, before their final
// names are known; user files may not use it.
const shardPrefix = ".marlin-shard-"

var shardName = regexp.MustCompile(`^model-\d{5}-of-\d{5}\.safetensors$`)

// Writer builds a model folder atomically: everything is written into a
// temporary sibling directory (outDir + ".tmp-<random>") that Commit renames
// into place, so outDir appears complete or not at all. A Writer is not safe
// for concurrent use.
type Writer struct {
	// ShardBytes is the most tensor data bytes per weight file; a tensor
	// larger than that gets a file of its own. 0 or less: a single file.
	// NewWriter sets it to DefaultShardBytes; change it before AddTensor.
	ShardBytes int64

	outDir string
	tmpDir string
	force  bool

	shard      *safetensors.Writer
	shardData  int64    // data bytes in the open shard
	shardFiles []string // temporary names of the shards, in order
	weightMap  map[string]int
	totalSize  int64
	files      map[string]bool // names written with WriteFile or CopyFile

	err   error // sticky: a write failed, the folder is incomplete
	state int
}

const (
	writing = iota
	committed
	aborted
)

// NewWriter starts building the model folder outDir. It refuses an existing
// outDir unless force is set, in which case Commit replaces it (and only
// then). The parent directory must exist.
func NewWriter(outDir string, force bool) (*Writer, error) {
	outDir = filepath.Clean(outDir)
	fi, err := os.Lstat(outDir)
	switch {
	case err == nil && !force:
		return nil, fmt.Errorf("hf: %s already exists (use force to replace it)", outDir)
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("hf: %s exists and is not a directory; refusing to replace it", outDir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("hf: %w", err)
	}
	parent, base := filepath.Split(outDir)
	if parent == "" {
		parent = "."
	}
	tmp, err := os.MkdirTemp(parent, base+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("hf: creating the folder for %s: %w", outDir, err)
	}
	return &Writer{
		ShardBytes: DefaultShardBytes,
		outDir:     outDir,
		tmpDir:     tmp,
		force:      force,
		weightMap:  make(map[string]int),
		files:      make(map[string]bool),
	}, nil
}

// TempDir returns the temporary directory the folder is built in.
func (w *Writer) TempDir() string { return w.tmpDir }

func (w *Writer) usable(op string) error {
	switch w.state {
	case committed:
		return fmt.Errorf("hf: %s: %s after Commit", w.outDir, op)
	case aborted:
		return fmt.Errorf("hf: %s: %s after Abort", w.outDir, op)
	}
	return w.err
}

// AddTensor appends a tensor to the weights, starting a new shard when the
// open one would grow beyond ShardBytes. Its data is written before
// AddTensor returns. An invalid or duplicate tensor is an error that leaves
// the Writer usable; a write error makes every later call, Commit included,
// fail.
func (w *Writer) AddTensor(t safetensors.Tensor) error {
	if err := w.usable("AddTensor"); err != nil {
		return err
	}
	if _, dup := w.weightMap[t.Name]; dup {
		return fmt.Errorf("hf: %s: duplicate tensor %q", w.outDir, t.Name)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("hf: %s: %w", w.outDir, err)
	}
	n := int64(len(t.Data))
	if w.shard != nil && w.ShardBytes > 0 && w.shardData > 0 && w.shardData+n > w.ShardBytes {
		if err := w.closeShard(); err != nil {
			return err
		}
	}
	if w.shard == nil {
		name := fmt.Sprintf("%s%05d.safetensors", shardPrefix, len(w.shardFiles)+1)
		sw, err := safetensors.Create(filepath.Join(w.tmpDir, name))
		if err != nil {
			return w.fail(err)
		}
		sw.SetMetadata(map[string]string{"format": "pt"}) // transformers refuses files without it
		w.shard, w.shardData = sw, 0
		w.shardFiles = append(w.shardFiles, name)
	}
	if err := w.shard.Add(t); err != nil {
		return w.fail(err)
	}
	w.weightMap[t.Name] = len(w.shardFiles) - 1
	w.shardData += n
	w.totalSize += n
	return nil
}

// fail records a write error that leaves the folder incomplete.
func (w *Writer) fail(err error) error {
	w.err = fmt.Errorf("hf: %s: %w", w.outDir, err)
	return w.err
}

func (w *Writer) closeShard() error {
	if w.shard == nil {
		return nil
	}
	sw := w.shard
	w.shard = nil
	if err := sw.Close(); err != nil {
		return w.fail(err)
	}
	return nil
}

// checkName validates the name of a file written into the folder.
func (w *Writer) checkName(name string) error {
	if !filepath.IsLocal(name) || strings.ContainsRune(name, '\\') {
		return fmt.Errorf("hf: %s: file name %q must be a relative path inside the folder", w.outDir, name)
	}
	name = filepath.ToSlash(filepath.Clean(name))
	if strings.HasPrefix(filepath.Base(name), shardPrefix) {
		return fmt.Errorf("hf: %s: file name %q is reserved", w.outDir, name)
	}
	if w.files[name] {
		return fmt.Errorf("hf: %s: file %q written twice", w.outDir, name)
	}
	return nil
}

// create opens a new file of the folder for writing.
func (w *Writer) create(name string) (*os.File, error) {
	path := filepath.Join(w.tmpDir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

// WriteFile writes a file into the folder (config.json, tokenizer files,
// generation_config.json, ...). name is relative to the folder; writing the
// same name twice is an error.
func (w *Writer) WriteFile(name string, data []byte) error {
	return w.writeWith(name, "WriteFile", func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// CopyFile copies the file src into the folder under name, streaming it.
func (w *Writer) CopyFile(name, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("hf: %s: CopyFile: %w", w.outDir, err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil {
		return fmt.Errorf("hf: %s: CopyFile: %w", w.outDir, err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("hf: %s: CopyFile: %s is not a regular file", w.outDir, src)
	}
	return w.writeWith(name, "CopyFile", func(f *os.File) error {
		_, err := io.Copy(f, in)
		return err
	})
}

func (w *Writer) writeWith(name, op string, write func(*os.File) error) error {
	if err := w.usable(op); err != nil {
		return err
	}
	if err := w.checkName(name); err != nil {
		return err
	}
	name = filepath.ToSlash(filepath.Clean(name))
	f, err := w.create(name)
	if err != nil {
		return w.fail(fmt.Errorf("%s %s: %w", op, name, err))
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return w.fail(fmt.Errorf("%s %s: %w", op, name, err))
	}
	w.files[name] = true
	return nil
}

// Commit finishes the folder: it closes the last shard, gives the shards
// their final names (model.safetensors for a single one, else
// model-00001-of-0000N.safetensors plus model.safetensors.index.json), syncs
// everything and renames the temporary directory to outDir — replacing an
// existing outDir only when the Writer was created with force, and only once
// the new folder is complete. On error the temporary directory is removed
// and outDir is left as it was.
func (w *Writer) Commit() error {
	if err := w.usable("Commit"); err != nil {
		w.Abort()
		return err
	}
	if err := w.commit(); err != nil {
		w.Abort()
		return err
	}
	w.state = committed
	return nil
}

func (w *Writer) commit() error {
	if err := w.closeShard(); err != nil {
		return err
	}
	n := len(w.shardFiles)
	final := make([]string, n)
	for i := range final {
		if n == 1 {
			final[i] = SingleWeightsFile
		} else {
			final[i] = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
		}
	}
	if n > 0 {
		for name := range w.files {
			if name == SingleWeightsFile || name == IndexFile || shardName.MatchString(name) {
				return fmt.Errorf("hf: %s: file %q written with WriteFile or CopyFile collides with the weight files generated from AddTensor", w.outDir, name)
			}
		}
	}
	for i, tmp := range w.shardFiles {
		if err := os.Rename(filepath.Join(w.tmpDir, tmp), filepath.Join(w.tmpDir, final[i])); err != nil {
			return fmt.Errorf("hf: %s: %w", w.outDir, err)
		}
	}
	if n > 1 {
		if err := w.writeIndex(final); err != nil {
			return err
		}
	}
	if err := os.Chmod(w.tmpDir, 0o755); err != nil {
		return fmt.Errorf("hf: %s: %w", w.outDir, err)
	}
	syncDir(w.tmpDir)
	if err := w.place(); err != nil {
		return fmt.Errorf("hf: %s: %w", w.outDir, err)
	}
	syncDir(filepath.Dir(w.outDir))
	return nil
}

// writeIndex writes model.safetensors.index.json as transformers does:
// sorted keys, two-space indent, trailing newline.
func (w *Writer) writeIndex(final []string) error {
	type index struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	idx := index{Metadata: map[string]int64{"total_size": w.totalSize}, WeightMap: make(map[string]string, len(w.weightMap))}
	for name, shard := range w.weightMap {
		idx.WeightMap[name] = final[shard]
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(idx); err != nil {
		return fmt.Errorf("hf: %s: index: %w", w.outDir, err)
	}
	if err := w.WriteFile(IndexFile, b.Bytes()); err != nil {
		return err
	}
	return nil
}

// place renames the finished temporary directory to outDir.
func (w *Writer) place() error {
	fi, err := os.Lstat(w.outDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if ok, err := renameNoReplace(w.tmpDir, w.outDir); ok {
			if errors.Is(err, fs.ErrExist) {
				return errors.New("the folder appeared while it was being written; not replacing it")
			}
			return err
		}
		return os.Rename(w.tmpDir, w.outDir)
	case err != nil:
		return err
	case !w.force:
		return errors.New("the folder appeared while it was being written; not replacing it (use force)")
	case !fi.IsDir():
		return errors.New("exists and is not a directory; refusing to replace it")
	}
	// Replace the old folder: swap atomically where the system can, else
	// move the old one aside first.
	if ok, err := renameExchange(w.tmpDir, w.outDir); ok {
		if err != nil {
			return err
		}
		os.RemoveAll(w.tmpDir) // now the old folder
		return nil
	}
	old := w.outDir + ".old-" + randomSuffix()
	if err := os.Rename(w.outDir, old); err != nil {
		return fmt.Errorf("moving the old folder aside: %w", err)
	}
	if err := os.Rename(w.tmpDir, w.outDir); err != nil {
		if rerr := os.Rename(old, w.outDir); rerr != nil {
			return fmt.Errorf("%w; the old folder is left at %s (%v)", err, old, rerr)
		}
		return err
	}
	os.RemoveAll(old)
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Abort discards everything written and removes the temporary directory.
// It does nothing after Commit or a previous Abort.
func (w *Writer) Abort() {
	if w.state != writing {
		return
	}
	w.state = aborted
	if w.shard != nil {
		w.shard.Abort()
		w.shard = nil
	}
	os.RemoveAll(w.tmpDir)
}

// Shards returns the number of weight files written so far (including the
// open one).
func (w *Writer) Shards() int { return len(w.shardFiles) }

// syncDir flushes directory entries to disk where the system supports it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
