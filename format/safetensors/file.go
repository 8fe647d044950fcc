package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"sort"
)

// File is an open safetensors file. Its methods may be called from several
// goroutines at once, except Close, which must not run concurrently with the
// others. The file must not be truncated or rewritten in place while it is
// open: on unix, reading a mapped page past the new end of the file raises
// SIGBUS. (Replacing it by rename, as Writer does, is safe.)
type File struct {
	path  string
	buf   []byte // the whole file: the mapping, or its contents where there is no mmap
	unmap func() error
	data  int64 // offset of the data section in buf: 8 + header length
	infos map[string]TensorInfo
	names []string
	meta  map[string]string
}

// Open opens a safetensors file and validates its header. On unix systems the
// file is memory-mapped read-only and tensor data is never copied; elsewhere
// it is read into memory once. Errors name the file and what is wrong.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors: %s: not a regular file", path)
	}
	size := fi.Size()
	if size < 8 {
		return nil, fmt.Errorf("safetensors: %s: file is %d bytes, too short to hold the 8-byte header length (truncated file?)", path, size)
	}
	if uint64(size) > math.MaxInt {
		return nil, fmt.Errorf("safetensors: %s: file of %d bytes is too large for this platform", path, size)
	}
	buf, unmap, err := mapFile(f, size)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	sf, err := parseFile(buf)
	if err != nil {
		_ = unmap()
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	sf.path = path
	sf.unmap = unmap
	return sf, nil
}

// parseFile parses a whole safetensors file held in buf.
func parseFile(buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, fmt.Errorf("file is %d bytes, too short to hold the 8-byte header length (truncated file?)", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	rest := uint64(len(buf) - 8)
	if n > MaxHeaderSize {
		if n > rest {
			return nil, fmt.Errorf("header length %d goes beyond the end of the file (%d bytes follow the length): corrupt length or truncated file", n, rest)
		}
		return nil, fmt.Errorf("header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > rest {
		return nil, fmt.Errorf("header length %d goes beyond the end of the file (%d bytes follow the length): corrupt length or truncated file", n, rest)
	}
	dataStart := 8 + int64(n)
	infos, meta, err := parseHeader(buf[8:dataStart], int64(len(buf))-dataStart)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	names := make([]string, 0, len(infos))
	for name := range infos {
		names = append(names, name)
	}
	sort.Strings(names)
	return &File{buf: buf, data: dataStart, infos: infos, names: names, meta: meta}, nil
}

// Close releases the mapping. Tensor data obtained from the file must not be
// used afterwards (on unix, touching it faults). Closing twice is harmless.
func (f *File) Close() error {
	if f == nil || f.buf == nil {
		return nil
	}
	unmap := f.unmap
	f.buf, f.unmap = nil, nil
	if unmap != nil {
		if err := unmap(); err != nil {
			return fmt.Errorf("safetensors: %s: unmap: %w", f.path, err)
		}
	}
	return nil
}

// Path returns the path the file was opened from.
func (f *File) Path() string { return f.path }

// Names returns the names of the file's tensors, sorted. The caller may
// modify the returned slice.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Info returns the header entry of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	info, ok := f.infos[name]
	if !ok {
		return TensorInfo{}, false
	}
	info.Shape = append([]int(nil), info.Shape...)
	return info, true
}

// Tensor returns the named tensor. Its Data aliases the file's read-only
// mapping: it must not be modified nor used after Close, and it may be
// unaligned for its element type (see the package documentation). It
// returns false when the file has no such tensor or is closed.
func (f *File) Tensor(name string) (Tensor, bool) {
	info, ok := f.infos[name]
	if !ok || f.buf == nil {
		return Tensor{}, false
	}
	lo, hi := f.data+info.Begin, f.data+info.End
	return Tensor{
		Name:   name,
		DType:  info.DType,
		Shape:  append([]int{}, info.Shape...),
		Data:   f.buf[lo:hi:hi],
		Mapped: mapped && f.unmap != nil,
	}, true
}

// Metadata returns a copy of the header's "__metadata__" strings (nil when
// the file has none).
func (f *File) Metadata() map[string]string {
	if f.meta == nil {
		return nil
	}
	m := make(map[string]string, len(f.meta))
	for k, v := range f.meta {
		m[k] = v
	}
	return m
}

// DataOffset returns the offset in the file of the data section (8 + the
// header length); TensorInfo offsets are relative to it.
func (f *File) DataOffset() int64 { return f.data }
