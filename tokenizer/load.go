package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// maxVocab bounds token ids read from files, so a corrupt file cannot make
// us allocate without limit.
const maxVocab = 1 << 22

// Load reads the tokenizer in dir: tokenizer.json (Hugging Face), else
// tokenizer.model (SentencePiece), else encoder.json + vocab.bpe (GPT-2).
// A tokenizer_config.json (and special_tokens_map.json) next to it is used
// for BOS/EOS and for whether Encode adds them. dir may also name one of
// those files directly.
func Load(dir string) (*Tokenizer, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if !st.IsDir() {
		return LoadFile(dir)
	}
	for _, name := range []string{"tokenizer.json", "tokenizer.model"} {
		p := filepath.Join(dir, name)
		if fileExists(p) {
			return LoadFile(p)
		}
	}
	enc, bpe := filepath.Join(dir, "encoder.json"), filepath.Join(dir, "vocab.bpe")
	if fileExists(enc) && fileExists(bpe) {
		return LoadGPT2(enc, bpe)
	}
	return nil, fmt.Errorf("tokenizer: %s holds no tokenizer.json, tokenizer.model or encoder.json + vocab.bpe", dir)
}

// LoadFile reads a tokenizer.json (any name ending in .json) or a
// SentencePiece model (any other name), plus the tokenizer_config.json in
// the same folder when there is one.
func LoadFile(path string) (*Tokenizer, error) {
	var t *Tokenizer
	var err error
	if strings.HasSuffix(path, ".json") {
		t, err = loadHFFile(path)
	} else {
		t, err = loadSPMFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if err := t.applyConfig(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t.finish()
	return t, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// LoadHFJSON builds a Tokenizer from the bytes of a tokenizer.json, without
// any tokenizer_config.json.
func LoadHFJSON(data []byte) (*Tokenizer, error) {
	t, err := parseHF(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	t.inferSpecialIDs()
	t.finish()
	return t, nil
}

// LoadSentencePiece builds a Tokenizer from the bytes of a SentencePiece
// tokenizer.model.
func LoadSentencePiece(data []byte) (*Tokenizer, error) {
	t, err := newSPMTokenizer(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.model: %w", err)
	}
	t.finish()
	return t, nil
}

func loadHFFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := parseHF(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// jsonAddedToken is an entry of added_tokens (tokenizer.json) or
// added_tokens_decoder (tokenizer_config.json).
type jsonAddedToken struct {
	ID         *int64 `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

func (j *jsonAddedToken) token(id int32) *addedToken {
	normalized := !j.Special
	if j.Normalized != nil {
		normalized = *j.Normalized
	}
	return &addedToken{
		id: id, content: j.Content, special: j.Special,
		lstrip: j.LStrip, rstrip: j.RStrip, singleWord: j.SingleWord, normalized: normalized,
	}
}

type jsonTokenizer struct {
	AddedTokens   []jsonAddedToken `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
}

type jsonBPE struct {
	Type                    string           `json:"type"`
	Vocab                   map[string]int64 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
	UnkToken                *string          `json:"unk_token"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	FuseUnk                 bool             `json:"fuse_unk"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// component reads the "type" of a tokenizer.json component.
func component(raw json.RawMessage) (string, map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var typ string
	if t, ok := m["type"]; ok {
		if err := json.Unmarshal(t, &typ); err != nil {
			return "", nil, fmt.Errorf("bad \"type\": %w", err)
		}
	}
	return typ, m, nil
}

// field decodes m[key] into v when present and not null.
func field(m map[string]json.RawMessage, key string, v any) error {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("field %q: %w", key, err)
	}
	return nil
}

func parseHF(data []byte) (*Tokenizer, error) {
	var j jsonTokenizer
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("not valid tokenizer JSON: %w", err)
	}
	if isNull(j.Model) {
		return nil, errors.New("no \"model\"")
	}
	var mj jsonBPE
	if err := json.Unmarshal(j.Model, &mj); err != nil {
		typ, _, _ := component(j.Model)
		if typ != "" && typ != "BPE" {
			return nil, fmt.Errorf("model type %q is not supported (only BPE)", typ)
		}
		return nil, fmt.Errorf("model: %w", err)
	}
	if mj.Type == "" && mj.Merges != nil {
		mj.Type = "BPE"
	}
	if mj.Type != "BPE" {
		return nil, fmt.Errorf("model type %q is not supported (only BPE)", mj.Type)
	}
	size := 0
	for tok, id := range mj.Vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("model.vocab: token %q has id %d out of range", tok, id)
		}
		size = max(size, int(id)+1)
	}
	for i, at := range j.AddedTokens {
		if at.ID == nil || *at.ID < 0 || *at.ID >= maxVocab {
			return nil, fmt.Errorf("added_tokens[%d] (%q): missing or bad id", i, at.Content)
		}
		if at.Content == "" {
			return nil, fmt.Errorf("added_tokens[%d]: empty content", i)
		}
		size = max(size, int(*at.ID)+1)
	}
	t := newTokenizer(size)
	for tok, id := range mj.Vocab {
		t.ids[tok] = int32(id)
		if old := t.vocab[id]; old == "" || tok < old {
			t.vocab[id] = tok
		}
	}
	m, err := buildBPE(&mj, t.ids)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	t.model = m
	t.addJSONAddedTokens(j.AddedTokens, len(mj.Vocab))
	if t.normalizer, err = buildNormalizer(j.Normalizer); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	if t.pre, err = buildPreTokenizer(j.PreTokenizer); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if t.pre == nil && !m.ignoreMerges && m.prefix == "" && m.suffix == "" {
		// SentencePiece-style BPE runs on whole texts; cut them where no
		// merge can reach across.
		m.chunks = newChunker(spmSpace, m.vocab)
	}
	if t.prefix, t.suffix, err = buildPostProcessor(j.PostProcessor); err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	if !isNull(j.Decoder) {
		t.dec = &decoder{}
		if t.dec.steps, err = buildDecoder(j.Decoder); err != nil {
			return nil, fmt.Errorf("decoder: %w", err)
		}
	}
	return t, nil
}

// addJSONAddedTokens registers added tokens the way Hugging Face does when
// it reads tokenizer.json: the "id" written in the file is not used; a
// token whose text is already in the vocabulary keeps that id, and a new
// one gets the next free id after the model's vocabulary (for well-formed
// files that is the id written in the file).
func (t *Tokenizer) addJSONAddedTokens(list []jsonAddedToken, modelSize int) {
	maxAdded := int32(-1)
	for i := range list {
		at := &list[i]
		tok := at.token(0)
		if old, ok := t.added[tok.content]; ok && *old == (addedToken{id: old.id, content: tok.content,
			special: tok.special, lstrip: tok.lstrip, rstrip: tok.rstrip, singleWord: tok.singleWord,
			normalized: tok.normalized}) {
			continue // the very same token again
		}
		id, ok := t.TokenID(tok.content)
		if !ok {
			switch {
			case maxAdded < 0:
				id = int32(modelSize)
			case int(maxAdded) >= modelSize || modelSize == 0:
				id = maxAdded + 1
			default:
				id = int32(modelSize)
			}
		}
		tok.id = id
		t.addAddedToken(tok)
		maxAdded = max(maxAdded, id)
	}
}

// buildBPE makes the BPE model from its JSON form.
func buildBPE(mj *jsonBPE, vocab map[string]int32) (*bpeModel, error) {
	m := &bpeModel{
		vocab:        vocab,
		unk:          -1,
		fuseUnk:      mj.FuseUnk,
		byteFallback: mj.ByteFallback,
		ignoreMerges: mj.IgnoreMerges,
	}
	if mj.ContinuingSubwordPrefix != nil {
		m.prefix = *mj.ContinuingSubwordPrefix
	}
	if mj.EndOfWordSuffix != nil {
		m.suffix = *mj.EndOfWordSuffix
	}
	if mj.UnkToken != nil {
		id, ok := vocab[*mj.UnkToken]
		if !ok {
			return nil, fmt.Errorf("unk_token %q is not in the vocabulary", *mj.UnkToken)
		}
		m.unk = id
	}
	pairs, err := parseMerges(mj.Merges)
	if err != nil {
		return nil, err
	}
	m.merges = make(map[uint64]mergeVal, len(pairs))
	for rank, p := range pairs {
		a, ok1 := vocab[p[0]]
		b, ok2 := vocab[p[1]]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("merges[%d] (%q %q): token not in the vocabulary", rank, p[0], p[1])
		}
		right := p[1]
		if len(right) >= len(m.prefix) {
			right = right[len(m.prefix):]
		}
		id, ok := vocab[p[0]+right]
		if !ok {
			return nil, fmt.Errorf("merges[%d] (%q %q): merged token %q not in the vocabulary", rank, p[0], p[1], p[0]+right)
		}
		m.merges[pairKey(a, b)] = mergeVal{rank: int32(rank), id: id}
	}
	m.initFast()
	return m, nil
}

// parseMerges accepts both ["a b", ...] and [["a", "b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		out := make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("merges[%d] %q is not two tokens separated by a space", i, s)
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	var lists [][]string
	if err := json.Unmarshal(raw, &lists); err != nil {
		return nil, fmt.Errorf("merges is neither a list of strings nor a list of pairs: %w", err)
	}
	out := make([][2]string, len(lists))
	for i, l := range lists {
		if len(l) != 2 {
			return nil, fmt.Errorf("merges[%d] has %d parts, want 2", i, len(l))
		}
		out[i] = [2]string{l[0], l[1]}
	}
	return out, nil
}
