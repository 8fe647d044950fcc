package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// LoadGPT2 reads GPT-2's encoder.json (token -> id) and vocab.bpe (merges,
// one "a b" per line after a "#version" line). "<|endoftext|>" is the
// special BOS/EOS token; Encode adds nothing even with addSpecial, as with
// GPT-2 itself.
func LoadGPT2(encoderJSON, vocabBPE string) (*Tokenizer, error) {
	enc, err := os.ReadFile(encoderJSON)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	merges, err := os.ReadFile(vocabBPE)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := newGPT2(enc, merges)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return t, nil
}

func newGPT2(enc, mergesText []byte) (*Tokenizer, error) {
	var vocab map[string]int64
	if err := json.Unmarshal(enc, &vocab); err != nil {
		return nil, fmt.Errorf("encoder.json: %w", err)
	}
	size := 0
	for tok, id := range vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("encoder.json: token %q has id %d out of range", tok, id)
		}
		size = max(size, int(id)+1)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(mergesText))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || (lineNo == 1 && strings.HasPrefix(line, "#version")) {
			continue
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("vocab.bpe: %w", err)
	}
	mergesJSON, _ := json.Marshal(lines)
	t := newTokenizer(size)
	for tok, id := range vocab {
		t.ids[tok] = int32(id)
		if old := t.vocab[id]; old == "" || tok < old {
			t.vocab[id] = tok
		}
	}
	m, err := buildBPE(&jsonBPE{Type: "BPE", Merges: mergesJSON}, t.ids)
	if err != nil {
		return nil, fmt.Errorf("vocab.bpe: %w", err)
	}
	t.model = m
	re, _ := compilePattern(patternGPT2)
	t.pre = &preTokenizer{steps: []preStep{&byteLevelStep{re: re}}, byteLevel: true}
	t.dec = &decoder{steps: []decodeStep{{kind: decByteLevel}}}
	if id, ok := t.ids["<|endoftext|>"]; ok {
		t.addAddedToken(&addedToken{id: id, content: "<|endoftext|>", special: true})
		t.bos, t.eos = id, id
	}
	t.finish()
	return t, nil
}
