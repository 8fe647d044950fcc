package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// jsonConfig holds what is read from tokenizer_config.json.
type jsonConfig struct {
	AddBOS             *bool                     `json:"add_bos_token"`
	AddEOS             *bool                     `json:"add_eos_token"`
	BOS                json.RawMessage           `json:"bos_token"`
	EOS                json.RawMessage           `json:"eos_token"`
	AddedTokensDecoder map[string]jsonAddedToken `json:"added_tokens_decoder"`
}

// tokenName reads a token that may be a string or {"content": ...}.
func tokenName(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "", errors.New("neither a string nor an object with \"content\"")
	}
	return obj.Content, nil
}

// applyConfig reads tokenizer_config.json and special_tokens_map.json in
// dir when present.
func (t *Tokenizer) applyConfig(dir string) error {
	var cfg jsonConfig
	path := filepath.Join(dir, "tokenizer_config.json")
	data, err := os.ReadFile(path)
	haveCfg := err == nil
	if haveCfg {
		if err := json.Unmarshal(data, &cfg); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	if cfg.BOS == nil || cfg.EOS == nil {
		// Older models keep these in special_tokens_map.json.
		smPath := filepath.Join(dir, "special_tokens_map.json")
		if data, err := os.ReadFile(smPath); err == nil {
			var sm jsonConfig
			if err := json.Unmarshal(data, &sm); err != nil {
				return fmt.Errorf("%s: %w", smPath, err)
			}
			if cfg.BOS == nil {
				cfg.BOS = sm.BOS
			}
			if cfg.EOS == nil {
				cfg.EOS = sm.EOS
			}
		}
	}
	for key, at := range cfg.AddedTokensDecoder {
		var id int64
		if _, err := fmt.Sscanf(key, "%d", &id); err != nil || id < 0 || id >= maxVocab {
			return fmt.Errorf("%s: added_tokens_decoder: bad id %q", path, key)
		}
		if at.Content == "" {
			return fmt.Errorf("%s: added_tokens_decoder[%s]: empty content", path, key)
		}
		if _, ok := t.addedByID[int32(id)]; ok {
			continue
		}
		if _, ok := t.added[at.Content]; ok {
			continue
		}
		t.addAddedToken(at.token(int32(id)))
	}
	bosName, err := tokenName(cfg.BOS)
	if err != nil {
		return fmt.Errorf("%s: bos_token: %w", path, err)
	}
	eosName, err := tokenName(cfg.EOS)
	if err != nil {
		return fmt.Errorf("%s: eos_token: %w", path, err)
	}
	t.inferSpecialIDs()
	if cfg.BOS != nil {
		t.bos = -1
		if id, ok := t.TokenID(bosName); ok && bosName != "" {
			t.bos = id
		}
	}
	if cfg.EOS != nil {
		t.eos = -1
		if id, ok := t.TokenID(eosName); ok && eosName != "" {
			t.eos = id
		}
	}
	if cfg.AddBOS != nil {
		t.prefix = nil
		if *cfg.AddBOS && t.bos >= 0 {
			t.prefix = []int32{t.bos}
		}
	}
	if cfg.AddEOS != nil {
		t.suffix = nil
		if *cfg.AddEOS && t.eos >= 0 {
			t.suffix = []int32{t.eos}
		}
	}
	return nil
}

// inferSpecialIDs guesses BOS and EOS from what Encode adds, then from
// common token names, when nothing says otherwise.
func (t *Tokenizer) inferSpecialIDs() {
	if t.bos < 0 && len(t.prefix) > 0 {
		t.bos = t.prefix[0]
	}
	if t.eos < 0 && len(t.suffix) > 0 {
		t.eos = t.suffix[len(t.suffix)-1]
	}
	if t.bos < 0 {
		for _, name := range []string{"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>"} {
			if tok, ok := t.added[name]; ok {
				t.bos = tok.id
				break
			}
		}
	}
	if t.eos < 0 {
		for _, name := range []string{"<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>"} {
			if tok, ok := t.added[name]; ok {
				t.eos = tok.id
				break
			}
		}
	}
}
