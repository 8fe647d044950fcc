package tokenizer

import (
	"strings"
	"testing"
)

// The expected ids come from the sentencepiece library run on the same
// synthetic models (synthSPM).
func TestSentencePieceSynthetic(t *testing.T) {
	texts := []string{"ab", "abc", "a b c", "  ab   c  ", "cc", "ccc", "cccc", "z", "a<sep>b", "<sep>",
		"bca", "abab", "", "é", "zéé", "a  b", " ", "\u2581"}
	models := []struct {
		name string
		opts spmOptions
		want [][]int32
	}{
		{"no byte fallback, remove extra whitespace", spmOptions{addDummyPrefix: true, removeExtraWS: true}, [][]int32{
			{11}, {11, 6}, {7, 3, 5, 3, 6}, {11, 3, 6}, {3, 6, 6}, {3, 14}, {3, 6, 6, 6, 6}, {3, 0}, {7, 12, 5}, {3, 12},
			{3, 9, 4}, {11, 8}, {}, {3, 16}, {3, 0, 16, 16}, {7, 3, 5}, {}, {},
		}},
		{"byte fallback, keep whitespace", spmOptions{byteFallback: true, addDummyPrefix: true}, [][]int32{
			{267}, {267, 262}, {263, 259, 261, 259, 262}, {271, 267, 271, 259, 262, 271}, {259, 262, 262}, {259, 270},
			{259, 262, 262, 262, 262}, {259, 125}, {263, 268, 261}, {259, 268}, {259, 265, 260}, {267, 264}, {}, {259, 272},
			{259, 125, 272, 272}, {263, 271, 261}, {271}, {271},
		}},
	}
	for _, m := range models {
		tk, err := LoadSentencePiece(synthSPM(synthPieces, m.opts))
		if err != nil {
			t.Fatal(err)
		}
		for i, text := range texts {
			if got := tk.Encode(text, false); !equalIDs(got, m.want[i]) {
				t.Errorf("%s: Encode(%q) = %v, want %v", m.name, text, got, m.want[i])
			}
		}
		if got := tk.Encode("ab", true); !equalIDs(got, append([]int32{1}, m.want[0]...)) {
			t.Errorf("%s: Encode with BOS = %v", m.name, got)
		}
	}
	// Decoding: "▁" becomes a space, the first one is dropped, bytes are joined.
	tk, _ := LoadSentencePiece(synthSPM(synthPieces, spmOptions{byteFallback: true, addDummyPrefix: true}))
	ids := tk.Encode("ab  é z<sep>", true)
	if got := tk.Decode(ids, true); got != "ab  é z<sep>" {
		t.Errorf("Decode = %q", got)
	}
	if got := tk.Decode(ids, false); got != "<s> ab  é z<sep>" { // as Hugging Face renders it
		t.Errorf("Decode without skipping = %q", got)
	}
	if bos, _ := tk.BOS(); bos != 1 {
		t.Errorf("BOS = %d", bos)
	}
	if eos, _ := tk.EOS(); eos != 2 {
		t.Errorf("EOS = %d", eos)
	}
}

func TestSentencePieceErrors(t *testing.T) {
	good := synthSPM(synthPieces, spmOptions{byteFallback: true, addDummyPrefix: true})
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no pieces"},
		{"truncated", good[:len(good)/2], "truncated"},
		{"unigram", synthSPM(synthPieces, spmOptions{modelType: spmModelUnigram}), "Unigram"},
		{"garbage", []byte("this is not a protobuf at all, just text"), ""},
		{"bad wire type", []byte{0x0b}, ""},
		{"duplicate", synthSPM([]spmPiece{{"a", 0, spmNormal}, {"a", 0, spmNormal}}, spmOptions{}), "defined twice"},
		{"bad byte piece", synthSPM([]spmPiece{{"<0xZZ>", 0, spmByte}}, spmOptions{}), "<0xNN>"},
	}
	for _, c := range cases {
		_, err := LoadSentencePiece(c.data)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "tokenizer.model") {
			t.Errorf("%s: error %q should mention %q", c.name, err, c.want)
		}
	}
}
