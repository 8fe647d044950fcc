package tokenizer

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"testing"
)

// synthMerges are the merges of the small byte-level tokenizer below.
var synthMerges = [][2]string{
	{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "t"}, {"Ġt", "he"},
	{"Ġ", "w"}, {"o", "r"}, {"Ġw", "or"}, {"l", "d"}, {"Ġwor", "ld"},
}

// synthJSON builds a small byte-level BPE tokenizer.json: the 256 byte
// characters (id = byte), the merges above, a Lowercase normalizer and
// added tokens with every flag.
func synthJSON(t testing.TB, mergesAsPairs bool) []byte {
	t.Helper()
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[byteToStr[b]] = b
	}
	var merges []any
	for _, m := range synthMerges {
		vocab[m[0]+m[1]] = len(vocab)
		if mergesAsPairs {
			merges = append(merges, []string{m[0], m[1]})
		} else {
			merges = append(merges, m[0]+" "+m[1])
		}
	}
	n := len(vocab)
	type at = map[string]any
	added := []at{
		{"id": n, "content": "<mask>", "single_word": true, "lstrip": true, "rstrip": true, "normalized": false, "special": true},
		{"id": n + 1, "content": "[SEP]", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true},
		{"id": n + 2, "content": "ab", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
		{"id": n + 3, "content": "<|x|>", "single_word": false, "lstrip": false, "rstrip": true, "normalized": false, "special": false},
		{"id": n + 4, "content": "<|x|>y", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
		{"id": n + 5, "content": "HELLO", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false},
		{"id": n + 6, "content": "<|eot|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
		{"id": n + 7, "content": "<|bos|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
	}
	tok := map[string]any{
		"version":      "1.0",
		"added_tokens": added,
		"normalizer":   map[string]any{"type": "Lowercase"},
		"pre_tokenizer": map[string]any{
			"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true,
		},
		"post_processor": map[string]any{
			"type": "TemplateProcessing",
			"single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<|bos|>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "<|eot|>", "type_id": 0}},
			},
			"pair": []any{},
			"special_tokens": map[string]any{
				"<|bos|>": map[string]any{"id": "<|bos|>", "ids": []int{n + 7}, "tokens": []string{"<|bos|>"}},
				"<|eot|>": map[string]any{"id": "<|eot|>", "ids": []int{n + 6}, "tokens": []string{"<|eot|>"}},
			},
		},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": vocab, "merges": merges,
		},
	}
	b, err := json.Marshal(tok)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pbWriter writes protobuf wire format for synthetic SentencePiece models.
type pbWriter struct{ b []byte }

func (w *pbWriter) key(field, wire int) { w.varint(uint64(field<<3 | wire)) }
func (w *pbWriter) varint(v uint64)     { w.b = binary.AppendUvarint(w.b, v) }
func (w *pbWriter) bytes(field int, b []byte) {
	w.key(field, 2)
	w.varint(uint64(len(b)))
	w.b = append(w.b, b...)
}
func (w *pbWriter) int(field int, v int64) {
	w.key(field, 0)
	w.varint(uint64(v))
}
func (w *pbWriter) float(field int, f float32) {
	w.key(field, 5)
	w.b = binary.LittleEndian.AppendUint32(w.b, math.Float32bits(f))
}

// spmOptions configure a synthetic SentencePiece model.
type spmOptions struct {
	byteFallback   bool
	removeExtraWS  bool
	addDummyPrefix bool
	modelType      int
}

// synthSPM builds a serialized ModelProto: <unk>, <s>, </s>, optional byte
// pieces, then pieces with the given scores and types.
func synthSPM(pieces []spmPiece, o spmOptions) []byte {
	all := []spmPiece{{"<unk>", 0, spmUnknown}, {"<s>", 0, spmControl}, {"</s>", 0, spmControl}}
	if o.byteFallback {
		for b := 0; b < 256; b++ {
			all = append(all, spmPiece{byteFallbackName(byte(b)), 0, spmByte})
		}
	}
	all = append(all, pieces...)
	var w pbWriter
	for _, p := range all {
		var pw pbWriter
		pw.bytes(1, []byte(p.text))
		pw.float(2, p.score)
		pw.int(3, int64(p.typ))
		w.bytes(1, pw.b)
	}
	var ts pbWriter
	mt := o.modelType
	if mt == 0 {
		mt = spmModelBPE
	}
	ts.int(3, int64(mt))
	ts.int(35, b2i(o.byteFallback))
	ts.int(40, 0)
	ts.int(41, 1)
	ts.int(42, 2)
	ts.int(43, -1)
	w.bytes(2, ts.b)
	var ns pbWriter
	ns.bytes(1, []byte("identity"))
	ns.int(3, b2i(o.addDummyPrefix))
	ns.int(4, b2i(o.removeExtraWS))
	ns.int(5, 1)
	w.bytes(3, ns.b)
	return w.b
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// synthPieces are the normal, user-defined and unused pieces of the
// synthetic SentencePiece models.
var synthPieces = []spmPiece{
	{"\u2581", -1, spmNormal}, {"a", -5, spmNormal}, {"b", -5, spmNormal}, {"c", -5, spmNormal},
	{"\u2581a", -2, spmNormal}, {"ab", -0.5, spmNormal}, {"bc", -0.5, spmNormal}, {"abc", -3, spmNormal},
	{"\u2581ab", -1.5, spmNormal}, {"<sep>", 0, spmUserDefined}, {"cc", 0, spmUnused},
	{"ccc", -4, spmNormal}, {"\u2581\u2581", -6, spmNormal}, {"é", -5, spmNormal},
}
