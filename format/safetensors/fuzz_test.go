package safetensors

import (
	"testing"
)

var headerSeeds = []struct {
	header string
	size   int64
}{
	{`{}`, 0},
	{`{"__metadata__":{"format":"pt"}}      `, 0},
	{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8},
	{`{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"U8","shape":[],"data_offsets":[12,13]}}`, 13},
	{`{"a":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, 8},
	{`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, 8},
	{`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8},
	{`{"a":{"dtype":"F8_E4M3","shape":[-1],"data_offsets":[0,1]}}`, 1},
	{`{"a":{"dtype":"F64","shape":[1],"data_offsets":[8,0]}}`, 8},
	{`{"__metadata__":{"k":1}}`, 0},
	{`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}`, 6},
	{"{\"\xff\":1}", 0},
	{`[]`, 0},
}

// FuzzParseHeader checks that ParseHeader never panics and that whatever it
// accepts is self-consistent: each tensor's bytes match its shape, and the
// tensors tile the data.
func FuzzParseHeader(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s.header), s.size)
	}
	f.Fuzz(func(t *testing.T, header []byte, dataSize int64) {
		infos, _, err := ParseHeader(header, dataSize)
		if err != nil {
			return
		}
		var total int64
		for name, info := range infos {
			if info.Begin < 0 || info.Begin > info.End || info.End > dataSize {
				t.Fatalf("tensor %q: accepted offsets [%d, %d] for %d data bytes", name, info.Begin, info.End, dataSize)
			}
			n, ok := byteSize(info.DType, info.Shape)
			if !ok || int64(n) != info.End-info.Begin {
				t.Fatalf("tensor %q: accepted shape %v × %v for %d bytes", name, info.Shape, info.DType, info.End-info.Begin)
			}
			total += info.End - info.Begin
		}
		if total != dataSize {
			t.Fatalf("accepted tensors covering %d of %d bytes", total, dataSize)
		}
	})
}

// FuzzParseFile feeds whole files (length prefix, header, data) and reads
// every tensor of those it accepts.
func FuzzParseFile(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add(rawFile(s.header, make([]byte, s.size)))
	}
	f.Add([]byte{})
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := parseFile(b)
		if err != nil {
			return
		}
		for _, name := range sf.Names() {
			x, ok := sf.Tensor(name)
			if !ok {
				t.Fatalf("listed tensor %q not found", name)
			}
			if uint64(len(x.Data)) != uint64(x.NumElements())*uint64(x.DType.Size()) {
				t.Fatalf("tensor %q: %d bytes for shape %v × %v", name, len(x.Data), x.Shape, x.DType)
			}
			_, _ = x.Float32s()
			_, _ = x.Float32View()
			_, _ = x.Uint16s()
		}
		_ = sf.Metadata()
	})
}
