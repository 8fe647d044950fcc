package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/internal/shared"
)

// rawFile assembles a file in the reference layout: 8-byte little-endian
// header length, header, data.
func rawFile(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func writeTemp(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sharedData returns ../shared/data, or skips the test when it is absent.
func sharedData(t *testing.T) string { return shared.Data(t) }

var allDTypes = []dtype.DType{dtype.F64, dtype.F32, dtype.F16, dtype.BF16, dtype.F8E4M3, dtype.F8E5M2,
	dtype.I64, dtype.I32, dtype.I16, dtype.I8, dtype.U8, dtype.Bool}

func randomTensors(rng *rand.Rand, n int) []Tensor {
	var ts []Tensor
	for i := 0; i < n; i++ {
		d := allDTypes[rng.Intn(len(allDTypes))]
		rank := rng.Intn(4) // 0 = scalar
		shape := make([]int, rank)
		count := 1
		for k := range shape {
			shape[k] = rng.Intn(7)
			if rng.Intn(10) == 0 {
				shape[k] = 0
			}
			count *= shape[k]
		}
		data := make([]byte, count*d.Size())
		rng.Read(data)
		ts = append(ts, Tensor{Name: fmt.Sprintf("layers.%d.w<&>\"é", i), DType: d, Shape: shape, Data: data})
	}
	return ts
}

func TestRoundTrip(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		ts := randomTensors(rng, 1+rng.Intn(30))
		path := filepath.Join(t.TempDir(), "m.safetensors")
		w, err := Create(path)
		if err != nil {
			t.Fatal(err)
		}
		meta := map[string]string{"format": "pt", "note": "<é>"}
		w.SetMetadata(meta)
		for _, x := range ts {
			if err := w.Add(x); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Fatalf("seed %d: directory holds %d entries after Close, want only the file", seed, len(entries))
		}
		raw, _ := os.ReadFile(path)
		if n := binary.LittleEndian.Uint64(raw); n%8 != 0 {
			t.Errorf("seed %d: header length %d is not a multiple of 8", seed, n)
		}

		f, err := Open(path)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if got := f.Metadata(); fmt.Sprint(got) != fmt.Sprint(meta) {
			t.Errorf("metadata = %v, want %v", got, meta)
		}
		names := f.Names()
		if len(names) != len(ts) {
			t.Fatalf("seed %d: %d names, want %d", seed, len(names), len(ts))
		}
		for i := 1; i < len(names); i++ {
			if names[i-1] >= names[i] {
				t.Fatalf("names not sorted: %q", names)
			}
		}
		for _, want := range ts {
			got, ok := f.Tensor(want.Name)
			if !ok {
				t.Fatalf("seed %d: tensor %q missing", seed, want.Name)
			}
			if got.DType != want.DType || fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("seed %d: tensor %q: got %v %v %d bytes, want %v %v %d bytes", seed, want.Name,
					got.DType, got.Shape, len(got.Data), want.DType, want.Shape, len(want.Data))
			}
			if !got.Aligned() {
				t.Errorf("seed %d: tensor %q (%v) written unaligned", seed, want.Name, want.DType)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, ok := f.Tensor(ts[0].Name); ok {
			t.Error("Tensor after Close succeeded")
		}
	}
}

// TestReferenceLayout reads a file laid out by hand exactly as the Python
// reference writes it (sorted by dtype size then name, header padded with
// spaces to a multiple of 8, "__metadata__" first).
func TestReferenceLayout(t *testing.T) {
	var data bytes.Buffer
	le := binary.LittleEndian
	for _, v := range []float32{1.5, -2, 3.25, 0, 1e-3, 65504} { // "a": F32 [2,3]
		binary.Write(&data, le, math.Float32bits(v))
	}
	for _, v := range []uint16{0x3c00, 0xc000, 0x7c00} { // "b": F16 [3] = 1, -2, +Inf
		binary.Write(&data, le, v)
	}
	for _, v := range []uint16{0x3f80, 0x4049} { // "c": BF16 [2] = 1, 3.140625
		binary.Write(&data, le, v)
	}
	data.WriteByte(7) // "d": U8 scalar
	header := `{"__metadata__":{"format":"pt"},` +
		`"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},` +
		`"b":{"dtype":"F16","shape":[3],"data_offsets":[24,30]},` +
		`"c":{"dtype":"BF16","shape":[2],"data_offsets":[30,34]},` +
		`"d":{"dtype":"U8","shape":[],"data_offsets":[34,35]}}`
	for (len(header))%8 != 0 {
		header += " "
	}
	f, err := Open(writeTemp(t, rawFile(header, data.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := strings.Join(f.Names(), ","); got != "a,b,c,d" {
		t.Fatalf("names = %s", got)
	}
	if f.Metadata()["format"] != "pt" {
		t.Errorf("metadata = %v", f.Metadata())
	}
	if f.DataOffset() != int64(8+len(header)) {
		t.Errorf("DataOffset = %d", f.DataOffset())
	}
	check := func(name string, want []float32) {
		t.Helper()
		x, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("no tensor %q", name)
		}
		got, err := x.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("a", []float32{1.5, -2, 3.25, 0, 1e-3, 65504})
	check("b", []float32{1, -2, float32(math.Inf(1))})
	check("c", []float32{1, 3.140625})
	a, _ := f.Tensor("a")
	if fmt.Sprint(a.Shape) != "[2 3]" || a.DType != dtype.F32 || a.NumElements() != 6 {
		t.Errorf("a: %v %v", a.DType, a.Shape)
	}
	v, ok := a.Float32View()
	if !ok || len(v) != 6 || v[2] != 3.25 {
		t.Errorf("Float32View = %v, %v", v, ok)
	}
	b, _ := f.Tensor("b")
	u, ok := b.Uint16s()
	if !ok || fmt.Sprint(u) != "[15360 49152 31744]" {
		t.Errorf("Uint16s = %v, %v", u, ok)
	}
	d, _ := f.Tensor("d")
	if len(d.Shape) != 0 || len(d.Data) != 1 || d.Data[0] != 7 {
		t.Errorf("d = %+v", d)
	}
	info, ok := f.Info("c")
	if !ok || info.Begin != 30 || info.End != 34 || info.DType != dtype.BF16 {
		t.Errorf("Info(c) = %+v", info)
	}
}

func TestUnalignedData(t *testing.T) {
	// One byte of U8 first puts the F32 and F16 tensors at odd offsets.
	var data []byte
	data = append(data, 9)
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(2.5))
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(-1))
	data = binary.LittleEndian.AppendUint16(data, 0x3800) // 0.5 in F16
	header := `{"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},` +
		`"f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},` +
		`"h":{"dtype":"F16","shape":[1],"data_offsets":[9,11]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	f, err := Open(writeTemp(t, rawFile(header, data)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, _ := f.Tensor("f")
	if x.Aligned() {
		t.Fatal("expected unaligned F32 data")
	}
	if _, ok := x.Float32View(); ok {
		t.Error("Float32View succeeded on unaligned data")
	}
	got, err := x.Float32s()
	if err != nil || fmt.Sprint(got) != "[2.5 -1]" {
		t.Errorf("Float32s = %v, %v", got, err)
	}
	h, _ := f.Tensor("h")
	if _, ok := h.Uint16s(); ok {
		t.Error("Uint16s succeeded on unaligned data")
	}
	if got, err := h.Float32s(); err != nil || got[0] != 0.5 {
		t.Errorf("Float32s(h) = %v, %v", got, err)
	}
	u, _ := f.Tensor("u")
	if _, err := u.Float32s(); err == nil {
		t.Error("Float32s of U8 succeeded")
	}
}

func TestConversions(t *testing.T) {
	le := binary.LittleEndian
	f64 := le.AppendUint64(nil, math.Float64bits(0.1))
	f64 = le.AppendUint64(f64, math.Float64bits(-3))
	cases := []struct {
		d    dtype.DType
		data []byte
		want string
	}{
		{dtype.F64, f64, "[0.1 -3]"},
		{dtype.F8E4M3, []byte{0x38, 0xb8, 0x7e}, "[1 -1 448]"},
		{dtype.F8E5M2, []byte{0x3c, 0xc0, 0x7b}, "[1 -2 57344]"},
		{dtype.BF16, le.AppendUint16(nil, 0xbf80), "[-1]"},
	}
	for _, c := range cases {
		n := len(c.data) / c.d.Size()
		x := Tensor{Name: c.d.String(), DType: c.d, Shape: []int{n}, Data: c.data}
		got, err := x.Float32s()
		if err != nil || fmt.Sprint(got) != c.want {
			t.Errorf("%v: got %v, %v; want %s", c.d, got, err, c.want)
		}
	}
	bad := Tensor{Name: "bad", DType: dtype.F32, Shape: []int{3}, Data: make([]byte, 8)}
	if _, err := bad.Float32s(); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("size mismatch: %v", err)
	}
	empty := Tensor{Name: "e", DType: dtype.F32, Shape: []int{0}}
	if v, ok := empty.Float32View(); !ok || len(v) != 0 {
		t.Errorf("empty view = %v, %v", v, ok)
	}
	if v, ok := (Tensor{DType: dtype.BF16, Shape: []int{0}}).Uint16s(); !ok || len(v) != 0 {
		t.Errorf("empty Uint16s = %v, %v", v, ok)
	}
	if _, ok := (Tensor{DType: dtype.I16, Shape: []int{1}, Data: make([]byte, 2)}).Uint16s(); ok {
		t.Error("Uint16s accepted I16")
	}
}

func TestTinyStories(t *testing.T) {
	path := filepath.Join(sharedData(t), "models", "tinystories-656k", "model.safetensors")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := len(f.Names()); n != 20 {
		t.Errorf("%d tensors, want 20", n)
	}
	if f.Metadata()["format"] != "pt" {
		t.Errorf("metadata = %v", f.Metadata())
	}
	x, ok := f.Tensor("model.layers.0.self_attn.k_proj.weight")
	if !ok || x.DType != dtype.F32 || fmt.Sprint(x.Shape) != "[64 128]" {
		t.Fatalf("k_proj = %v %v %v", ok, x.DType, x.Shape)
	}
	norm, _ := f.Tensor("model.norm.weight")
	v, ok := norm.Float32View()
	if !ok || len(v) != 128 {
		t.Fatalf("norm view: %v %d", ok, len(v))
	}
	for _, w := range v {
		if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
			t.Fatalf("norm weight %v", w)
		}
	}
}

// TestMmapAliases checks that tensor data is not copied: it lies inside the
// file's mapping, and on Linux that mapping is a mapping of the file.
func TestMmapAliases(t *testing.T) {
	if !mapped {
		t.Skip("no mmap on " + runtime.GOOS)
	}
	w, path := newWriter(t)
	data := make([]byte, 1<<16)
	rand.New(rand.NewSource(1)).Read(data)
	add(t, w, Tensor{Name: "w", DType: dtype.F16, Shape: []int{1 << 15}, Data: data})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, _ := f.Tensor("w")
	p := uintptr(unsafe.Pointer(unsafe.SliceData(x.Data)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(f.buf)))
	if p < lo || p+uintptr(len(x.Data)) > lo+uintptr(len(f.buf)) {
		t.Fatalf("Data at %#x is outside the mapping [%#x, %#x)", p, lo, lo+uintptr(len(f.buf)))
	}
	if p != lo+uintptr(f.DataOffset()) {
		t.Errorf("Data at %#x, want mapping + data offset %#x", p, lo+uintptr(f.DataOffset()))
	}
	if lo%4096 != 0 {
		t.Errorf("mapping at %#x is not page-aligned", lo)
	}
	if cap(x.Data) != len(x.Data) {
		t.Errorf("cap(Data) = %d, want %d (appends must not reach the next tensor)", cap(x.Data), len(x.Data))
	}
	if runtime.GOOS != "linux" {
		return
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps")
	}
	defer maps.Close()
	abs, _ := filepath.Abs(path)
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[len(fields)-1] != abs {
			continue
		}
		r := strings.SplitN(fields[0], "-", 2)
		a, _ := strconv.ParseUint(r[0], 16, 64)
		b, _ := strconv.ParseUint(r[1], 16, 64)
		if uint64(p) >= a && uint64(p)+uint64(len(x.Data)) <= b {
			if !strings.HasPrefix(fields[1], "r-") {
				t.Errorf("mapping permissions %s, want read-only", fields[1])
			}
			return
		}
	}
	t.Fatalf("tensor data at %#x is not inside a mapping of %s", p, abs)
}

func newWriter(t *testing.T) (*Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.safetensors")
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	return w, path
}

func add(t *testing.T, w *Writer, x Tensor) {
	t.Helper()
	if err := w.Add(x); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	f4 := func(n int) []byte { return make([]byte, 4*n) }
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	valid := rawFile(ok, f4(2))
	long := make([]byte, 8)
	binary.LittleEndian.PutUint64(long, 1<<40)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "too short"},
		{"short file", []byte{1, 2, 3}, "too short"},
		{"header length beyond file", append(long, '{', '}'), "beyond the end of the file"},
		{"header length just beyond", valid[:8+len(ok)-1], "beyond the end of the file"},
		{"truncated data", valid[:len(valid)-3], "go beyond the end of the data"},
		{"trailing bytes", append(append([]byte{}, valid...), 0, 0), "2 trailing bytes"},
		{"invalid JSON", rawFile(`{"a":{"dtype":"F32",}`, nil), "invalid JSON"},
		{"truncated JSON", rawFile(`{"a":{"dtype"`, nil), "invalid JSON"},
		{"garbage after object", rawFile(`{} x`, nil), "after top-level value"},
		{"second object", rawFile(`{} {}`, nil), "after top-level value"},
		{"not an object", rawFile(`[1,2]`, nil), "not a JSON object"},
		{"empty header", rawFile(``, nil), "header: empty"},
		{"spaces only", rawFile(`        `, nil), "header: empty"},
		{"bad utf8", rawFile("{\"a\xff\":1}", nil), "not valid UTF-8"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}`, f4(2)), `tensor "a": unknown dtype "F17"`},
		{"dtype not string", rawFile(`{"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}}`, f4(2)), "dtype must be a string"},
		{"missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, f4(2)), `missing "shape"`},
		{"missing offsets", rawFile(`{"a":{"dtype":"F32","shape":[2]}}`, f4(2)), `missing "data_offsets"`},
		{"entry not object", rawFile(`{"a":[1]}`, nil), `tensor "a": entry must be an object`},
		{"entry null", rawFile(`{"a":null}`, nil), `tensor "a": entry must be an object`},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, f4(2)), "= 12 bytes, but data_offsets [0, 8] span 8 bytes"},
		{"negative dim", rawFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, f4(2)), "dimension 0 is negative"},
		{"fractional dim", rawFile(`{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, f4(2)), "shape[0] must be an integer"},
		{"string dim", rawFile(`{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, f4(2)), "shape[0] must be an integer"},
		{"huge dim", rawFile(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}`, f4(2)), "out of range"},
		{"shape overflow", rawFile(`{"a":{"dtype":"F32","shape":[65536,65536,65536,65536],"data_offsets":[0,8]}}`, f4(2)), "overflows"},
		{"shape not array", rawFile(`{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, f4(2)), "shape must be an array"},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, f4(2)), "must hold 2 numbers"},
		{"negative offset", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, f4(2)), "negative"},
		{"reversed offsets", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, f4(2)), "reversed"},
		{"offsets out of range", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, f4(2)), "go beyond the end of the data (8 bytes)"},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f4(2)), "overlaps"},
		{"hole", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, f4(3)), `hole of 4 bytes after tensor "a"`},
		{"hole at start", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f4(2)), "hole of 4 bytes at the start"},
		{"duplicate name", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f4(2)), `duplicate tensor name "a"`},
		{"duplicate metadata", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), "duplicate key"},
		{"metadata not object", rawFile(`{"__metadata__":[1]}`, nil), "must be an object of strings"},
		{"metadata value not string", rawFile(`{"__metadata__":{"k":1}}`, nil), `value of "k" must be a string`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, c.file)
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error containing %q", c.want)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open of a directory: %v", err)
	}
}

// TestHeaderTooLarge uses a sparse file longer than the header limit.
func TestHeaderTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.safetensors")
	if err := os.WriteFile(path, binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 8+MaxHeaderSize+16); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("Open: %v", err)
	}
}

func TestEdgeCasesAccepted(t *testing.T) {
	cases := []struct {
		name   string
		file   []byte
		tensor int
	}{
		{"no tensors", rawFile(`{}`, nil), 0},
		{"null metadata", rawFile(`{"__metadata__":null}`, nil), 0},
		{"padding", rawFile(`{}      `, nil), 0},
		{"zero-size tensors", rawFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"c":{"dtype":"F16","shape":[2,0],"data_offsets":[4,4]}}`, make([]byte, 4)), 3},
		{"unknown fields", rawFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":true}}`, []byte{1}), 1},
		{"any order", rawFile(`{"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1, 2}), 2},
	}
	for _, c := range cases {
		f, err := Open(writeTemp(t, c.file))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if len(f.Names()) != c.tensor {
			t.Errorf("%s: %d tensors, want %d", c.name, len(f.Names()), c.tensor)
		}
		f.Close()
	}
}

func TestWriterErrors(t *testing.T) {
	w, path := newWriter(t)
	dir := filepath.Dir(path)
	good := Tensor{Name: "a", DType: dtype.F32, Shape: []int{2}, Data: make([]byte, 8)}
	add(t, w, good)
	bad := []struct {
		t    Tensor
		want string
	}{
		{good, `duplicate tensor "a"`},
		{Tensor{Name: "", DType: dtype.U8, Shape: []int{1}, Data: []byte{1}}, "empty name"},
		{Tensor{Name: "__metadata__", DType: dtype.U8, Shape: []int{1}, Data: []byte{1}}, "reserved"},
		{Tensor{Name: "x\xff", DType: dtype.U8, Shape: []int{1}, Data: []byte{1}}, "UTF-8"},
		{Tensor{Name: "b", DType: dtype.F32, Shape: []int{3}, Data: make([]byte, 8)}, "= 12 bytes, but Data holds 8"},
		{Tensor{Name: "c", DType: dtype.Invalid, Shape: []int{1}, Data: []byte{1}}, "invalid dtype"},
		{Tensor{Name: "d", DType: dtype.F32, Shape: []int{-1}, Data: nil}, "dimension 0 is negative"},
		{Tensor{Name: "e", DType: dtype.F32, Shape: []int{1 << 30, 1 << 30, 1 << 30}, Data: nil}, "overflows"},
	}
	for _, c := range bad {
		if err := w.Add(c.t); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%q): %v, want error containing %q", c.t.Name, err, c.want)
		}
	}
	// The validation errors above leave the writer usable.
	add(t, w, Tensor{Name: "b", DType: dtype.U8, Shape: []int{3}, Data: []byte{1, 2, 3}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(good); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Add after Close: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded")
	}
	w.Abort() // harmless after Close
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Names()) != "[a b]" {
		t.Errorf("names %v", f.Names())
	}
	f.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d directory entries, want 1", len(entries))
	}
}

func TestWriterAbort(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	add(t, w, Tensor{Name: "a", DType: dtype.U8, Shape: []int{1}, Data: []byte{1}})
	w.Abort()
	w.Abort()
	if err := w.Add(Tensor{Name: "b", DType: dtype.U8, Shape: []int{1}, Data: []byte{1}}); err == nil {
		t.Error("Add after Abort succeeded")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d entries left after Abort", len(entries))
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("destination changed by an aborted writer: %q", b)
	}
}

// TestWriterFailedClose makes the final rename fail (the destination is a
// non-empty directory) and checks that nothing is left behind.
func TestWriterFailedClose(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	if err := os.MkdirAll(filepath.Join(path, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	add(t, w, Tensor{Name: "a", DType: dtype.U8, Shape: []int{1}, Data: []byte{1}})
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Close onto a directory: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !entries[0].IsDir() {
		t.Errorf("left behind: %v", entries)
	}
	if _, err := Create(filepath.Join(dir, "nope", "x.safetensors")); err == nil {
		t.Error("Create in a missing directory succeeded")
	}
}

// TestWriterLayout checks the header the writer produces: reference-style
// keys, padding, and order by decreasing element size.
func TestWriterLayout(t *testing.T) {
	w, path := newWriter(t)
	add(t, w, Tensor{Name: "u8", DType: dtype.U8, Shape: []int{3}, Data: []byte{1, 2, 3}})
	add(t, w, Tensor{Name: "f32", DType: dtype.F32, Shape: []int{1}, Data: []byte{0, 0, 128, 63}})
	add(t, w, Tensor{Name: "f16", DType: dtype.F16, Shape: []int{1}, Data: []byte{0, 60}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	n := binary.LittleEndian.Uint64(raw)
	header := string(raw[8 : 8+n])
	want := `{"f32":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"f16":{"dtype":"F16","shape":[1],"data_offsets":[4,6]},"u8":{"dtype":"U8","shape":[3],"data_offsets":[6,9]}}`
	if strings.TrimRight(header, " ") != want {
		t.Errorf("header\n%s\nwant\n%s", header, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(header), &m); err != nil {
		t.Error(err)
	}
	if got := raw[8+n:]; !bytes.Equal(got, []byte{0, 0, 128, 63, 0, 60, 1, 2, 3}) {
		t.Errorf("data %v", got)
	}
}
