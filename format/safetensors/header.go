package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/marlin-llm/marlin/dtype"
)

// MaxHeaderSize is the largest header accepted, in bytes (the limit of the
// reference implementation).
const MaxHeaderSize = 100_000_000

// metadataKey is the header key of the free-form string metadata.
const metadataKey = "__metadata__"

// TensorInfo describes one tensor of a header: its element type, its shape
// and its byte range [Begin, End) relative to the start of the data section.
type TensorInfo struct {
	DType      dtype.DType
	Shape      []int
	Begin, End int64
}

// ParseHeader parses and validates a safetensors header (the JSON text that
// follows the 8-byte length; trailing space padding is allowed) for a data
// section of dataSize bytes. It returns the tensors by name and the
// "__metadata__" strings (nil when absent).
//
// It checks everything the reference reader checks: valid UTF-8 JSON object,
// no duplicate names, known dtypes, non-negative integer dimensions without
// overflow, byte lengths matching shape × element size, and offsets that tile
// [0, dataSize) exactly. It never panics.
func ParseHeader(header []byte, dataSize int64) (map[string]TensorInfo, map[string]string, error) {
	infos, meta, err := parseHeader(header, dataSize)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: header: %w", err)
	}
	return infos, meta, nil
}

func parseHeader(header []byte, dataSize int64) (map[string]TensorInfo, map[string]string, error) {
	if dataSize < 0 {
		return nil, nil, fmt.Errorf("negative data size %d", dataSize)
	}
	if len(header) > MaxHeaderSize {
		return nil, nil, fmt.Errorf("header is %d bytes, more than the limit of %d", len(header), MaxHeaderSize)
	}
	trimmed := bytes.TrimLeft(header, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, nil, errors.New(`empty (the smallest header is "{}")`)
	}
	if !utf8.Valid(header) {
		return nil, nil, fmt.Errorf("not valid UTF-8 (first bad byte at offset %d)", firstInvalidUTF8(header))
	}
	if trimmed[0] != '{' {
		return nil, nil, fmt.Errorf("not a JSON object: it starts with %q", summarize(trimmed, 16))
	}
	// Check the syntax of the whole header first: encoding/json reports the
	// exact offset of a syntax error this way.
	var probe json.RawMessage
	if err := json.Unmarshal(header, &probe); err != nil {
		return nil, nil, syntaxError(header, err)
	}

	// Walk the top-level object by hand to catch duplicate names, which
	// decoding into a map would silently merge.
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil { // the opening '{'
		return nil, nil, syntaxError(header, err)
	}
	raws := make(map[string]json.RawMessage)
	var order []string
	var meta map[string]string
	sawMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, syntaxError(header, err)
		}
		name, ok := tok.(string)
		if !ok { // cannot happen after the syntax check, but stay defensive
			return nil, nil, fmt.Errorf("invalid JSON near byte %d: object key is not a string", dec.InputOffset())
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("value of %q: %w", name, syntaxError(header, err))
		}
		if name == metadataKey {
			if sawMeta {
				return nil, nil, fmt.Errorf("duplicate key %q", metadataKey)
			}
			sawMeta = true
			m, err := parseMetadata(raw)
			if err != nil {
				return nil, nil, err
			}
			meta = m
			continue
		}
		if _, dup := raws[name]; dup {
			return nil, nil, fmt.Errorf("duplicate tensor name %q", name)
		}
		raws[name] = raw
		order = append(order, name)
	}

	infos := make(map[string]TensorInfo, len(raws))
	for _, name := range order {
		info, err := parseTensorInfo(raws[name], dataSize)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		infos[name] = info
	}
	if err := checkLayout(infos, order, dataSize); err != nil {
		return nil, nil, err
	}
	return infos, meta, nil
}

// parseMetadata decodes the "__metadata__" value: null or an object of strings.
func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("%q must be an object of strings, got %s", metadataKey, jsonKind(raw))
	}
	meta := make(map[string]string, len(fields))
	for k, v := range fields {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("%q: value of %q must be a string, got %s", metadataKey, k, jsonKind(v))
		}
		meta[k] = s
	}
	return meta, nil
}

// parseTensorInfo decodes and checks one tensor entry on its own.
func parseTensorInfo(raw json.RawMessage, dataSize int64) (TensorInfo, error) {
	var info TensorInfo
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return info, fmt.Errorf("entry must be an object with dtype, shape and data_offsets, got %s", jsonKind(raw))
	}
	for _, key := range [...]string{"dtype", "shape", "data_offsets"} {
		if _, ok := fields[key]; !ok {
			return info, fmt.Errorf("missing %q", key)
		}
	}

	var dt string
	if err := json.Unmarshal(fields["dtype"], &dt); err != nil {
		return info, fmt.Errorf("dtype must be a string, got %s", jsonKind(fields["dtype"]))
	}
	d, err := dtype.Parse(dt)
	if err != nil {
		return info, fmt.Errorf("unknown dtype %q", dt)
	}
	info.DType = d

	dims, err := parseIntList(fields["shape"], "shape")
	if err != nil {
		return info, err
	}
	info.Shape = make([]int, len(dims))
	for i, v := range dims {
		if v < 0 {
			return info, fmt.Errorf("shape %s: dimension %d is negative", rawText(fields["shape"]), i)
		}
		if uint64(v) > math.MaxInt {
			return info, fmt.Errorf("shape %s: dimension %d is too large for this platform", rawText(fields["shape"]), i)
		}
		info.Shape[i] = int(v)
	}

	offs, err := parseIntList(fields["data_offsets"], "data_offsets")
	if err != nil {
		return info, err
	}
	if len(offs) != 2 {
		return info, fmt.Errorf("data_offsets must hold 2 numbers [begin, end], got %d", len(offs))
	}
	info.Begin, info.End = offs[0], offs[1]
	if info.Begin < 0 || info.End < 0 {
		return info, fmt.Errorf("data_offsets [%d, %d] are negative", info.Begin, info.End)
	}
	if info.Begin > info.End {
		return info, fmt.Errorf("data_offsets [%d, %d] are reversed (begin > end)", info.Begin, info.End)
	}
	if info.End > dataSize {
		return info, fmt.Errorf("data_offsets [%d, %d] go beyond the end of the data (%d bytes): truncated file or corrupt offsets", info.Begin, info.End, dataSize)
	}

	n, ok := byteSize(info.DType, info.Shape)
	if !ok {
		return info, fmt.Errorf("shape %v × %s (%d bytes) overflows", info.Shape, info.DType, info.DType.Size())
	}
	if n != uint64(info.End-info.Begin) {
		return info, fmt.Errorf("shape %v × %s (%d bytes each) = %d bytes, but data_offsets [%d, %d] span %d bytes",
			info.Shape, info.DType, info.DType.Size(), n, info.Begin, info.End, info.End-info.Begin)
	}
	return info, nil
}

// checkLayout verifies that the tensors tile [0, dataSize) exactly, as the
// reference reader requires.
func checkLayout(infos map[string]TensorInfo, order []string, dataSize int64) error {
	names := append([]string(nil), order...)
	sort.SliceStable(names, func(i, j int) bool {
		a, b := infos[names[i]], infos[names[j]]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var pos int64
	prev := ""
	for _, name := range names {
		info := infos[name]
		switch {
		case info.Begin < pos:
			return fmt.Errorf("tensor %q (bytes [%d, %d)) overlaps tensor %q, which ends at byte %d",
				name, info.Begin, info.End, prev, pos)
		case info.Begin > pos:
			where := "at the start of the data"
			if prev != "" {
				where = fmt.Sprintf("after tensor %q", prev)
			}
			return fmt.Errorf("hole of %d bytes %s (bytes [%d, %d) belong to no tensor; the format forbids holes)",
				info.Begin-pos, where, pos, info.Begin)
		}
		if info.End > info.Begin || prev == "" {
			prev = name
		}
		pos = info.End
	}
	if pos != dataSize {
		return fmt.Errorf("the tensors cover %d bytes of data but the file holds %d: %d trailing bytes belong to no tensor",
			pos, dataSize, dataSize-pos)
	}
	return nil
}

// byteSize returns the number of bytes of a tensor of the given type and
// shape, and false if it does not fit in an int64.
func byteSize(d dtype.DType, shape []int) (uint64, bool) {
	n := uint64(d.Size())
	for _, dim := range shape {
		if dim < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(n, uint64(dim))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return n, true
}

// parseIntList decodes a JSON array of integers, strictly: no fractions,
// exponents, strings or nulls.
func parseIntList(raw json.RawMessage, field string) ([]int64, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || elems == nil {
		return nil, fmt.Errorf("%s must be an array of integers, got %s", field, jsonKind(raw))
	}
	out := make([]int64, len(elems))
	for i, e := range elems {
		s := string(bytes.TrimSpace(e))
		if !isIntLiteral(s) {
			return nil, fmt.Errorf("%s[%d] must be an integer, got %s", field, i, summarize([]byte(s), 32))
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s[%d] = %s is out of range", field, i, summarize([]byte(s), 32))
		}
		out[i] = v
	}
	return out, nil
}

func isIntLiteral(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// jsonKind names the JSON type of a raw value, for error messages.
func jsonKind(raw json.RawMessage) string {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
		return "nothing"
	}
	switch s[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string " + summarize(s, 40)
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "the number " + summarize(s, 40)
}

// rawText returns a raw JSON value as short text for messages.
func rawText(raw json.RawMessage) string { return summarize(bytes.TrimSpace(raw), 64) }

// summarize quotes at most n bytes of b for an error message.
func summarize(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// syntaxError rewords an encoding/json error with the offset it happened at
// and the text around it.
func syntaxError(header []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off := se.Offset
		if off < 0 || off > int64(len(header)) {
			off = int64(len(header))
		}
		lo := max(off-24, 0)
		hi := min(off+8, int64(len(header)))
		return fmt.Errorf("invalid JSON at byte %d near %q: %s", se.Offset, header[lo:hi], se.Error())
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("invalid JSON: unexpected end of header (%d bytes)", len(header))
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}
