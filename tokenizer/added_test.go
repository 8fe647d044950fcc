package tokenizer

import (
	"testing"
)

// The expected ids below come from Hugging Face tokenizers (0.23) run on
// the same synthetic tokenizer.json (synthJSON).
func TestAddedTokenFlags(t *testing.T) {
	for _, pairs := range []bool{false, true} {
		tk, err := LoadHFJSON(synthJSON(t, pairs))
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			text string
			ids  []int32
		}{
			{"hello world", []int32{272, 266}}, // normalized token "HELLO" matches lowercased text
			{"Hello World HELLO hello", []int32{272, 266, 32, 272, 32, 272}},
			{"a <mask> b", []int32{97, 267, 98}},                     // lstrip + rstrip swallow the spaces
			{"a<mask>b", []int32{97, 60, 109, 97, 115, 107, 62, 98}}, // single_word: inside a word, no match
			{"x  <mask>  y", []int32{120, 267, 121}},
			{"<mask>, <mask>- ◌̰<mask>", []int32{267, 44, 267, 45, 32, 226, 151, 140, 204, 176, 60, 109, 97, 115, 107, 62}},
			{"[SEP]", []int32{268}},
			{"a [SEP] b", []int32{97, 268, 32, 98}}, // lstrip only
			{"a\t[SEP]\tb", []int32{97, 268, 9, 98}},
			{"  [SEP]", []int32{268}},
			{"ab", []int32{269}},
			{"ab cd", []int32{269, 32, 99, 100}},
			{"xab", []int32{120, 97, 98}},
			{"ab_", []int32{97, 98, 95}},
			{"(ab)", []int32{40, 269, 41}},
			{"<|x|>   y", []int32{270, 121}}, // rstrip
			{"<|x|>y", []int32{271}},         // longest match wins
			{"<|x|> y", []int32{270, 121}},
			{"The <|eot|>", []int32{116, 256, 32, 273}},
			{"<|bos|>the world<|eot|>", []int32{274, 116, 256, 266, 273}},
			{"", nil},
		}
		for _, c := range cases {
			if got := tk.Encode(c.text, false); !equalIDs(got, c.ids) {
				t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.ids)
			}
			want := append(append([]int32{274}, c.ids...), 273)
			if got := tk.Encode(c.text, true); !equalIDs(got, want) {
				t.Errorf("Encode(%q, true) = %v, want %v", c.text, got, want)
			}
		}
		decodes := []struct {
			ids  []int32
			skip bool
			want string
		}{
			{[]int32{275, 259, 266, 274}, false, "hello world<|bos|>"},
			{[]int32{275, 259, 266, 274}, true, "hello world"},
			{[]int32{262, 104, 266}, false, " wh world"},
			{[]int32{267, 32, 268, 269}, false, "<mask> [SEP]ab"},
			{[]int32{267, 32, 268, 269}, true, " ab"},
		}
		for _, d := range decodes {
			if got := tk.Decode(d.ids, d.skip); got != d.want {
				t.Errorf("Decode(%v, %v) = %q, want %q", d.ids, d.skip, got, d.want)
			}
		}
		if bos, ok := tk.BOS(); !ok || bos != 274 {
			t.Errorf("BOS = %d, %v", bos, ok)
		}
		if eos, ok := tk.EOS(); !ok || eos != 273 {
			t.Errorf("EOS = %d, %v", eos, ok)
		}
		if !tk.IsSpecial(267) || tk.IsSpecial(269) || tk.IsSpecial(100) {
			t.Error("IsSpecial is wrong")
		}
		if tk.VocabSize() != 275 {
			t.Errorf("VocabSize = %d", tk.VocabSize())
		}
		if id, ok := tk.TokenID("Ġworld"); !ok || id != 266 || tk.Token(266) != "Ġworld" {
			t.Errorf("TokenID/Token broken: %d %v %q", id, ok, tk.Token(266))
		}
		if string(tk.TokenBytes(266)) != " world" {
			t.Errorf("TokenBytes(266) = %q", tk.TokenBytes(266))
		}
	}
}
