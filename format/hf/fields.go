package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// fields reads typed values out of a decoded JSON object, remembering the
// first error. Absent keys and null values leave the destination unset.
type fields struct {
	raw    map[string]json.RawMessage
	prefix string // prepended to key names in errors, e.g. "rope_scaling."
	err    error
}

func (f *fields) fail(key, want string, raw json.RawMessage) {
	if f.err == nil {
		f.err = fmt.Errorf("field %q: want %s, got %s", f.prefix+key, want, describe(raw))
	}
}

// get returns the raw value of key, or nil when it is absent or null.
func (f *fields) get(key string) json.RawMessage {
	raw, ok := f.raw[key]
	if !ok || isNull(raw) {
		return nil
	}
	return raw
}

// present reports whether key is in the object (even as null).
func (f *fields) present(key string) bool {
	_, ok := f.raw[key]
	return ok
}

// intPtr reads an integer; nonNeg rejects negative values.
func (f *fields) intPtr(key string, nonNeg bool) *int {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	v, ok := parseInt(raw)
	want := "an integer"
	if nonNeg {
		want = "a non-negative integer"
	}
	if !ok || (nonNeg && v < 0) {
		f.fail(key, want, raw)
		return nil
	}
	return &v
}

// int reads an integer that is 0 when absent.
func (f *fields) int(key string, nonNeg bool) int {
	if p := f.intPtr(key, nonNeg); p != nil {
		return *p
	}
	return 0
}

// floatPtr reads a number; nonNeg rejects negative values.
func (f *fields) floatPtr(key string, nonNeg bool) *float64 {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	v, ok := parseFloat(raw)
	if !ok || (nonNeg && v < 0) {
		want := "a number"
		if nonNeg {
			want = "a non-negative number"
		}
		f.fail(key, want, raw)
		return nil
	}
	return &v
}

func (f *fields) boolPtr(key string) *bool {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	var v bool
	if err := json.Unmarshal(raw, &v); err != nil {
		f.fail(key, "true or false", raw)
		return nil
	}
	return &v
}

func (f *fields) string(key string) string {
	raw := f.get(key)
	if raw == nil {
		return ""
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		f.fail(key, "a string", raw)
	}
	return v
}

func (f *fields) strings(key string) []string {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	var v []string
	if err := json.Unmarshal(raw, &v); err != nil {
		f.fail(key, "a list of strings", raw)
		return nil
	}
	return v
}

func (f *fields) ints(key string, nonNeg bool) []int {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		f.fail(key, "a list of integers", raw)
		return nil
	}
	out := make([]int, 0, len(elems))
	for i, e := range elems {
		v, ok := parseInt(e)
		if !ok || (nonNeg && v < 0) {
			f.fail(fmt.Sprintf("%s[%d]", key, i), "a non-negative integer", e)
			return nil
		}
		out = append(out, v)
	}
	return out
}

func (f *fields) floats(key string) []float64 {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		f.fail(key, "a list of numbers", raw)
		return nil
	}
	out := make([]float64, 0, len(elems))
	for i, e := range elems {
		v, ok := parseFloat(e)
		if !ok {
			f.fail(fmt.Sprintf("%s[%d]", key, i), "a number", e)
			return nil
		}
		out = append(out, v)
	}
	return out
}

// tokenIDs reads a token id field that holds an integer or a list of them
// (eos_token_id). Null and absent give nil.
func (f *fields) tokenIDs(key string) []int {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	if v, ok := parseInt(raw); ok {
		return []int{v}
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		f.fail(key, "an integer or a list of integers", raw)
		return nil
	}
	out := make([]int, 0, len(elems))
	for i, e := range elems {
		v, ok := parseInt(e)
		if !ok {
			f.fail(fmt.Sprintf("%s[%d]", key, i), "an integer", e)
			return nil
		}
		out = append(out, v)
	}
	return out
}

// object reads an object value, returning its raw text (nil when absent or
// null).
func (f *fields) object(key string) json.RawMessage {
	raw := f.get(key)
	if raw == nil {
		return nil
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		f.fail(key, "an object", raw)
		return nil
	}
	return raw
}

// parseInt accepts a JSON integer, or a number with an integral value that
// fits in an int (Python sometimes writes 4096.0).
func parseInt(raw json.RawMessage) (int, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
		return 0, false
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		if v < math.MinInt || v > math.MaxInt {
			return 0, false
		}
		return int(v), true
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != math.Trunc(v) || math.Abs(v) > 1<<53 || v < math.MinInt || v > math.MaxInt {
		return 0, false
	}
	return int(v), true
}

// parseFloat accepts a JSON number.
func parseFloat(raw json.RawMessage) (float64, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// describe names the JSON type and value of raw for an error message.
func describe(raw json.RawMessage) string {
	s := bytes.TrimSpace(raw)
	if len(s) == 0 {
		return "nothing"
	}
	text := string(s)
	if len(text) > 40 {
		text = text[:40] + "…"
	}
	switch s[0] {
	case '{':
		return "an object"
	case '[':
		return "a list " + text
	case '"':
		return "the string " + text
	case 't', 'f':
		return text
	case 'n':
		return "null"
	}
	return text
}

// decodeObject decodes a JSON object into its raw fields.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	t := bytes.TrimSpace(data)
	if len(t) == 0 {
		return nil, fmt.Errorf("empty file (want a JSON object)")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil {
		return nil, jsonError(t, err)
	}
	if m == nil {
		return nil, fmt.Errorf("want a JSON object, got %s", describe(t))
	}
	return m, nil
}

// jsonError rewords an encoding/json error with its position.
func jsonError(data []byte, err error) error {
	switch e := err.(type) {
	case *json.SyntaxError:
		line, col := position(data, e.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %v", line, col, e)
	case *json.UnmarshalTypeError:
		return fmt.Errorf("want a JSON object, got %s", describe(data))
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col = 1, 1
	for _, c := range data[:max(off-1, 0)] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}
