package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Writer writes a safetensors file tensor by tensor, with memory bounded by
// the tensor being added: Add appends each tensor's bytes to a temporary data
// file next to the destination, and Close writes the header followed by the
// data into a second temporary file, syncs it and renames it over the
// destination. The destination therefore either keeps its old content or
// gets the complete new file, never a partial one.
//
// Close lays the tensors out by decreasing element size (keeping the order of
// Add among equal sizes), and the header is padded with spaces to a multiple
// of 8 bytes as the reference writer does, so every tensor of a file written
// here is aligned for its element type.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	path    string
	data    *os.File // temporary data file
	entries []entry
	names   map[string]struct{}
	off     int64
	meta    map[string]string
	err     error // sticky I/O error: the data file is in an unknown state
	done    bool  // Close or Abort was called
}

type entry struct {
	name  string
	dtype string
	size  int // element size
	shape []int
	off   int64 // offset in the temporary data file
	n     int64 // byte length
}

// Create starts writing a safetensors file at path. Nothing appears at path
// until Close succeeds; the temporary files live in the same directory.
func Create(path string) (*Writer, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return nil, fmt.Errorf("safetensors: create %q: no file name", path)
	}
	data, err := os.CreateTemp(dir, "."+base+".data-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	return &Writer{path: path, data: data, names: make(map[string]struct{})}, nil
}

// SetMetadata sets the "__metadata__" strings written by Close (none when m
// is empty). The map is copied.
func (w *Writer) SetMetadata(m map[string]string) {
	if len(m) == 0 {
		w.meta = nil
		return
	}
	w.meta = make(map[string]string, len(m))
	for k, v := range m {
		w.meta[k] = v
	}
}

// Add appends a tensor. Its Data is written out before Add returns and is
// not retained. Add checks that the name is new, non-empty and valid UTF-8,
// that the dtype is known and that Data holds exactly shape × element size
// bytes; such an error leaves the Writer usable. A write error makes every
// later call fail.
func (w *Writer) Add(t Tensor) error {
	if w.done {
		return fmt.Errorf("safetensors: %s: Add of tensor %q after Close or Abort", w.path, t.Name)
	}
	if w.err != nil {
		return w.err
	}
	if _, dup := w.names[t.Name]; dup {
		return fmt.Errorf("safetensors: %s: duplicate tensor %q", w.path, t.Name)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%w (writing %s)", err, w.path)
	}
	if _, err := w.data.Write(t.Data); err != nil {
		w.err = fmt.Errorf("safetensors: %s: writing tensor %q: %w", w.path, t.Name, err)
		return w.err
	}
	w.names[t.Name] = struct{}{}
	w.entries = append(w.entries, entry{
		name:  t.Name,
		dtype: t.DType.String(),
		size:  t.DType.Size(),
		shape: append([]int(nil), t.Shape...),
		off:   w.off,
		n:     int64(len(t.Data)),
	})
	w.off += int64(len(t.Data))
	return nil
}

// Len returns the number of tensors added so far.
func (w *Writer) Len() int { return len(w.entries) }

// DataSize returns the number of data bytes added so far.
func (w *Writer) DataSize() int64 { return w.off }

// Close writes the file: the header, then the data, then it syncs the file
// and atomically renames it into place. On error nothing is left behind and
// the destination is untouched. Calling Close twice is an error.
func (w *Writer) Close() error {
	if w.done {
		return fmt.Errorf("safetensors: %s: Close after Close or Abort", w.path)
	}
	w.done = true
	dataName := w.data.Name()
	defer func() {
		w.data.Close()
		os.Remove(dataName)
	}()
	if w.err != nil {
		return w.err
	}
	if err := w.finish(); err != nil {
		return fmt.Errorf("safetensors: %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) finish() error {
	order := make([]int, len(w.entries))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return w.entries[order[i]].size > w.entries[order[j]].size })

	header, err := w.header(order)
	if err != nil {
		return err
	}
	dir, base := filepath.Split(w.path)
	if dir == "" {
		dir = "."
	}
	out, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			os.Remove(out.Name())
		}
	}()

	prefix := make([]byte, 8, 8+len(header))
	binary.LittleEndian.PutUint64(prefix, uint64(len(header)))
	if _, err := out.Write(append(prefix, header...)); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	// Copy the data in file order, merging runs that are contiguous in the
	// temporary file (all of it when Add order is already the file order).
	for i := 0; i < len(order); {
		start, n := w.entries[order[i]].off, w.entries[order[i]].n
		j := i + 1
		for j < len(order) && w.entries[order[j]].off == start+n {
			n += w.entries[order[j]].n
			j++
		}
		if err := copyRange(out, w.data, start, n); err != nil {
			return fmt.Errorf("copying data of tensor %q: %w", w.entries[order[i]].name, err)
		}
		i = j
	}
	if err := out.Chmod(0o644); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Rename(out.Name(), w.path); err != nil {
		return err
	}
	ok = true
	syncDir(dir)
	return nil
}

// copyRange copies n bytes at offset off of src to the end of dst; on Linux
// io.CopyN between files uses copy_file_range, which avoids user space.
func copyRange(dst, src *os.File, off, n int64) error {
	if _, err := src.Seek(off, io.SeekStart); err != nil {
		return err
	}
	m, err := io.CopyN(dst, src, n)
	if err != nil {
		return err
	}
	if m != n {
		return fmt.Errorf("short copy: %d of %d bytes", m, n)
	}
	return nil
}

// header builds the JSON header for the tensors in the given order, padded
// with spaces to a multiple of 8 bytes.
func (w *Writer) header(order []int) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if len(w.meta) > 0 {
		keys := make([]string, 0, len(w.meta))
		for k := range w.meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(`"__metadata__":{`)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSONString(&b, k); err != nil {
				return nil, fmt.Errorf("metadata key %q: %w", k, err)
			}
			b.WriteByte(':')
			if err := writeJSONString(&b, w.meta[k]); err != nil {
				return nil, fmt.Errorf("metadata value of %q: %w", k, err)
			}
		}
		b.WriteByte('}')
		first = false
	}
	var pos int64
	for _, i := range order {
		e := w.entries[i]
		if !first {
			b.WriteByte(',')
		}
		first = false
		if err := writeJSONString(&b, e.name); err != nil {
			return nil, err
		}
		b.WriteString(`:{"dtype":"`)
		b.WriteString(e.dtype)
		b.WriteString(`","shape":[`)
		for k, d := range e.shape {
			if k > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(pos, 10))
		b.WriteByte(',')
		pos += e.n
		b.WriteString(strconv.FormatInt(pos, 10))
		b.WriteString("]}")
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the limit of %d (too many tensors or too much metadata)", b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

func writeJSONString(b *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("string is not valid UTF-8")
	}
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode appends a newline
	return nil
}

// Abort stops writing and removes the temporary files; the destination is
// untouched. It does nothing after Close.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.data.Close()
	os.Remove(w.data.Name())
}

// Validate checks that the tensor can be written: its name is non-empty,
// valid UTF-8 and not "__metadata__", its dtype is known, its dimensions are
// non-negative and Data holds exactly shape × element size bytes.
func (t Tensor) Validate() error {
	switch {
	case t.Name == "":
		return errors.New("safetensors: tensor with an empty name")
	case t.Name == metadataKey:
		return fmt.Errorf("safetensors: %q is reserved and cannot name a tensor", metadataKey)
	case !utf8.ValidString(t.Name):
		return fmt.Errorf("safetensors: tensor name %q is not valid UTF-8", t.Name)
	}
	return t.checkSize()
}

// syncDir flushes a directory entry change (a rename) to disk, where the
// system supports it; errors are ignored since some systems cannot.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
