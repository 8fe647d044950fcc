package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// jsonPattern is {"String": "..."} or {"Regex": "..."}.
type jsonPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func buildPattern(m map[string]json.RawMessage) (matcher, error) {
	var p jsonPattern
	if err := field(m, "pattern", &p); err != nil {
		return nil, err
	}
	switch {
	case p.String != nil:
		return literalMatcher(*p.String), nil
	case p.Regex != nil:
		return compilePattern(*p.Regex)
	}
	return nil, errors.New("pattern is neither String nor Regex")
}

func buildNormalizer(raw json.RawMessage) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, m, err := component(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var list []json.RawMessage
		if err := field(m, "normalizers", &list); err != nil {
			return nil, err
		}
		var seq seqNormalizer
		for i, r := range list {
			n, err := buildNormalizer(r)
			if err != nil {
				return nil, fmt.Errorf("normalizers[%d]: %w", i, err)
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return seq, nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "StripAccents":
		return stripAccentsNormalizer{}, nil
	case "Prepend":
		var s string
		if err := field(m, "prepend", &s); err != nil {
			return nil, err
		}
		return prependNormalizer{s}, nil
	case "Append":
		var s string
		if err := field(m, "append", &s); err != nil {
			return nil, err
		}
		return appendNormalizer{s}, nil
	case "Replace":
		p, err := buildPattern(m)
		if err != nil {
			return nil, err
		}
		var content string
		if err := field(m, "content", &content); err != nil {
			return nil, err
		}
		return replaceNormalizer{pattern: p, content: content}, nil
	case "Strip":
		left, right := true, true
		if err := field(m, "strip_left", &left); err != nil {
			return nil, err
		}
		if err := field(m, "strip_right", &right); err != nil {
			return nil, err
		}
		return stripNormalizer{left, right}, nil
	case "Precompiled":
		var cm string
		if err := field(m, "precompiled_charsmap", &cm); err != nil {
			return nil, err
		}
		if cm == "" {
			return nil, nil
		}
		return nil, errors.New("normalizer type \"Precompiled\" with a character map is not supported")
	}
	return nil, fmt.Errorf("normalizer type %q is not supported", typ)
}

func buildPreTokenizer(raw json.RawMessage) (*preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	p := &preTokenizer{}
	var lastByteLevel *byteLevelStep
	var add func(raw json.RawMessage, where string) error
	add = func(raw json.RawMessage, where string) error {
		typ, m, err := component(raw)
		if err != nil {
			return fmt.Errorf("%s%w", where, err)
		}
		if typ != "" && typ != "Sequence" {
			where += typ + ": "
		}
		lastByteLevel = nil
		var step preStep
		switch typ {
		case "Sequence":
			var list []json.RawMessage
			if err := field(m, "pretokenizers", &list); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			for i, r := range list {
				if err := add(r, fmt.Sprintf("%spretokenizers[%d]: ", where, i)); err != nil {
					return err
				}
			}
			return nil
		case "Split":
			pat, err := buildPattern(m)
			if err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			var behavior string
			var invert bool
			if err := field(m, "behavior", &behavior); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			if err := field(m, "invert", &invert); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			b, err := parseBehavior(behavior)
			if err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			step = &splitStep{m: pat, behavior: b, invert: invert}
		case "ByteLevel":
			prefix, useRegex := true, true
			if err := field(m, "add_prefix_space", &prefix); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			if err := field(m, "use_regex", &useRegex); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			bl := &byteLevelStep{addPrefixSpace: prefix, mapped: true}
			if useRegex {
				bl.re, _ = compilePattern(patternGPT2)
			}
			step, lastByteLevel = bl, bl
		case "Metaspace":
			var rep string
			if err := field(m, "replacement", &rep); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			if rep == "" {
				rep = spmSpace
			}
			ms := &metaspaceStep{replacement: rep, prepend: prependAlways, doSplit: true}
			var scheme string
			var addPrefix *bool
			if err := field(m, "prepend_scheme", &scheme); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			if err := field(m, "add_prefix_space", &addPrefix); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			if err := field(m, "split", &ms.doSplit); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			switch scheme {
			case "", "always":
			case "first":
				ms.prepend = prependFirst
			case "never":
				ms.prepend = prependNever
			default:
				return fmt.Errorf("%sunknown prepend_scheme %q", where, scheme)
			}
			if addPrefix != nil && !*addPrefix {
				ms.prepend = prependNever
			}
			step = ms
		case "Whitespace":
			step = &splitStep{m: whitespaceMatcher{}, behavior: splitRemoved, invert: true}
		case "WhitespaceSplit":
			step = &splitStep{m: runMatcher{pred: unicode.IsSpace}, behavior: splitRemoved}
		case "Digits":
			var individual bool
			if err := field(m, "individual_digits", &individual); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			if individual {
				step = &splitStep{m: runMatcher{pred: unicode.IsNumber, single: true}, behavior: splitIsolated}
			} else {
				step = &splitStep{m: runMatcher{pred: unicode.IsNumber}, behavior: splitIsolated}
			}
		case "Punctuation":
			behavior := "Isolated"
			if err := field(m, "behavior", &behavior); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			b, err := parseBehavior(behavior)
			if err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			step = &splitStep{m: runMatcher{pred: isPunct, single: true}, behavior: b}
		case "BertPreTokenizer":
			p.steps = append(p.steps,
				&splitStep{m: runMatcher{pred: unicode.IsSpace}, behavior: splitRemoved},
				&splitStep{m: runMatcher{pred: isPunct, single: true}, behavior: splitIsolated})
			return nil
		case "CharDelimiterSplit":
			var d string
			if err := field(m, "delimiter", &d); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
			step = &splitStep{m: literalMatcher(d), behavior: splitRemoved}
		default:
			return fmt.Errorf("%spre-tokenizer type %q is not supported", strings.TrimSuffix(where, typ+": "), typ)
		}
		p.steps = append(p.steps, step)
		return nil
	}
	if err := add(raw, ""); err != nil {
		return nil, err
	}
	if lastByteLevel != nil {
		// The model maps bytes itself (faster, and no copies).
		lastByteLevel.mapped = false
		p.byteLevel = true
		if !lastByteLevel.addPrefixSpace && lastByteLevel.re == nil {
			p.steps = p.steps[:len(p.steps)-1] // nothing left for it to do
		}
	}
	return p, nil
}

func parseBehavior(s string) (splitBehavior, error) {
	switch strings.ToLower(s) {
	case "removed":
		return splitRemoved, nil
	case "isolated", "":
		return splitIsolated, nil
	case "mergedwithprevious", "merged_with_previous":
		return splitMergedWithPrevious, nil
	case "mergedwithnext", "merged_with_next":
		return splitMergedWithNext, nil
	case "contiguous":
		return splitContiguous, nil
	}
	return 0, fmt.Errorf("unknown split behavior %q", s)
}

// buildPostProcessor returns the ids a post-processor puts around a single
// sequence.
func buildPostProcessor(raw json.RawMessage) (prefix, suffix []int32, err error) {
	if isNull(raw) {
		return nil, nil, nil
	}
	typ, m, err := component(raw)
	if err != nil {
		return nil, nil, err
	}
	switch typ {
	case "ByteLevel":
		return nil, nil, nil
	case "Sequence":
		var list []json.RawMessage
		if err := field(m, "processors", &list); err != nil {
			return nil, nil, err
		}
		for i, r := range list {
			p, s, err := buildPostProcessor(r)
			if err != nil {
				return nil, nil, fmt.Errorf("processors[%d]: %w", i, err)
			}
			prefix = append(p, prefix...)
			suffix = append(suffix, s...)
		}
		return prefix, suffix, nil
	case "TemplateProcessing":
		var single []map[string]struct {
			ID string `json:"id"`
		}
		var specials map[string]struct {
			IDs []int64 `json:"ids"`
		}
		if err := field(m, "single", &single); err != nil {
			return nil, nil, err
		}
		if err := field(m, "special_tokens", &specials); err != nil {
			return nil, nil, err
		}
		seen := false
		for i, item := range single {
			if _, ok := item["Sequence"]; ok {
				seen = true
				continue
			}
			st, ok := item["SpecialToken"]
			if !ok {
				return nil, nil, fmt.Errorf("single[%d] is neither SpecialToken nor Sequence", i)
			}
			sp, ok := specials[st.ID]
			if !ok {
				return nil, nil, fmt.Errorf("single[%d]: special token %q is not in special_tokens", i, st.ID)
			}
			for _, id := range sp.IDs {
				if id < 0 || id >= maxVocab {
					return nil, nil, fmt.Errorf("special token %q has bad id %d", st.ID, id)
				}
				if seen {
					suffix = append(suffix, int32(id))
				} else {
					prefix = append(prefix, int32(id))
				}
			}
		}
		return prefix, suffix, nil
	case "RobertaProcessing", "BertProcessing":
		var cls, sep []json.RawMessage
		if err := field(m, "cls", &cls); err != nil {
			return nil, nil, err
		}
		if err := field(m, "sep", &sep); err != nil {
			return nil, nil, err
		}
		var c, s int64
		if len(cls) != 2 || len(sep) != 2 || json.Unmarshal(cls[1], &c) != nil || json.Unmarshal(sep[1], &s) != nil ||
			c < 0 || s < 0 || c >= maxVocab || s >= maxVocab {
			return nil, nil, fmt.Errorf("%s: bad cls/sep", typ)
		}
		return []int32{int32(c)}, []int32{int32(s)}, nil
	}
	return nil, nil, fmt.Errorf("post-processor type %q is not supported", typ)
}

func buildDecoder(raw json.RawMessage) ([]decodeStep, error) {
	typ, m, err := component(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var list []json.RawMessage
		if err := field(m, "decoders", &list); err != nil {
			return nil, err
		}
		var steps []decodeStep
		for i, r := range list {
			s, err := buildDecoder(r)
			if err != nil {
				return nil, fmt.Errorf("decoders[%d]: %w", i, err)
			}
			steps = append(steps, s...)
		}
		return steps, nil
	case "ByteLevel":
		return []decodeStep{{kind: decByteLevel}}, nil
	case "ByteFallback":
		return []decodeStep{{kind: decByteFallback}}, nil
	case "Fuse":
		return []decodeStep{{kind: decFuse}}, nil
	case "Replace":
		var p jsonPattern
		if err := field(m, "pattern", &p); err != nil {
			return nil, err
		}
		st := decodeStep{kind: decReplace}
		if err := field(m, "content", &st.to); err != nil {
			return nil, err
		}
		switch {
		case p.String != nil:
			st.from = *p.String
		case p.Regex != nil:
			if st.pattern, err = compilePattern(*p.Regex); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("Replace: pattern is neither String nor Regex")
		}
		return []decodeStep{st}, nil
	case "Strip":
		st := decodeStep{kind: decStrip}
		var content string
		if err := field(m, "content", &content); err != nil {
			return nil, err
		}
		if err := field(m, "start", &st.start); err != nil {
			return nil, err
		}
		if err := field(m, "stop", &st.stop); err != nil {
			return nil, err
		}
		rs := []rune(content)
		if len(rs) != 1 {
			return nil, fmt.Errorf("Strip: content %q is not one character", content)
		}
		st.content = rs[0]
		return []decodeStep{st}, nil
	case "Metaspace":
		st := decodeStep{kind: decMetaspace, replacement: spmSpace, dropFirst: true}
		if err := field(m, "replacement", &st.replacement); err != nil {
			return nil, err
		}
		var scheme string
		var addPrefix *bool
		if err := field(m, "prepend_scheme", &scheme); err != nil {
			return nil, err
		}
		if err := field(m, "add_prefix_space", &addPrefix); err != nil {
			return nil, err
		}
		if scheme == "never" || (addPrefix != nil && !*addPrefix) {
			st.dropFirst = false
		}
		return []decodeStep{st}, nil
	}
	return nil, fmt.Errorf("decoder type %q is not supported", typ)
}
