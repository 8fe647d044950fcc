package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is a token matched in the text before the model runs, like
// Hugging Face's AddedToken.
type addedToken struct {
	id         int32
	content    string
	special    bool
	lstrip     bool // swallow whitespace on the left
	rstrip     bool // swallow whitespace on the right
	singleWord bool // match only when not inside a word
	normalized bool // match against the normalized text
}

// trieNode is one node of the byte trie used to find added tokens.
type trieNode struct {
	next map[byte]*trieNode
	tok  *addedToken
}

// addedMatcher finds added tokens in text, leftmost first and longest
// among those starting at the same place.
type addedMatcher struct {
	root  trieNode
	first [256]bool
	// only is the single possible first byte, or -1.
	only int
	n    int
}

func newAddedMatcher() *addedMatcher { return &addedMatcher{only: -1} }

// add registers pattern as the text that stands for tok. An earlier
// registration of the same pattern wins.
func (m *addedMatcher) add(pattern string, tok *addedToken) {
	if pattern == "" {
		return
	}
	n := &m.root
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if n.next == nil {
			n.next = make(map[byte]*trieNode)
		}
		child := n.next[c]
		if child == nil {
			child = &trieNode{}
			n.next[c] = child
		}
		n = child
	}
	if n.tok != nil {
		return
	}
	n.tok = tok
	c := pattern[0]
	if !m.first[c] {
		m.first[c] = true
		if m.n == 0 {
			m.only = int(c)
		} else {
			m.only = -1
		}
	}
	m.n++
}

// longestAt returns the longest pattern that starts at s[i:].
func (m *addedMatcher) longestAt(s string, i int) (*addedToken, int) {
	n := &m.root
	var best *addedToken
	end := 0
	for j := i; j < len(s); j++ {
		n = n.next[s[j]]
		if n == nil {
			break
		}
		if n.tok != nil {
			best, end = n.tok, j+1
		}
		if n.next == nil {
			break
		}
	}
	return best, end
}

// next finds the first match at or after from.
func (m *addedMatcher) next(s string, from int) (tok *addedToken, start, end int) {
	if m.n == 0 {
		return nil, 0, 0
	}
	for i := from; i < len(s); i++ {
		if m.only >= 0 {
			k := strings.IndexByte(s[i:], byte(m.only))
			if k < 0 {
				return nil, 0, 0
			}
			i += k
		} else if !m.first[s[i]] {
			continue
		}
		if t, e := m.longestAt(s, i); t != nil {
			return t, i, e
		}
	}
	return nil, 0, 0
}

// segment is a piece of the input: either plain text (tok == nil) or an
// added token.
type segment struct {
	start, end int
	tok        *addedToken
}

// splitAdded cuts s into plain-text and added-token segments, applying the
// single_word, lstrip and rstrip rules the way Hugging Face tokenizers
// does. Empty text segments are left out.
func (m *addedMatcher) splitAdded(s string, dst []segment) []segment {
	if m == nil || m.n == 0 {
		if s != "" {
			dst = append(dst, segment{0, len(s), nil})
		}
		return dst
	}
	startOffset := 0
	pos := 0
	for pos < len(s) {
		tok, start, stop := m.next(s, pos)
		if tok == nil {
			break
		}
		pos = stop
		if start < startOffset {
			// The previous token's rstrip already ate this text.
			continue
		}
		if tok.singleWord {
			startSpace := start == 0 || !endsWithWord(s[:start])
			stopSpace := stop == len(s) || !startsWithWord(s[stop:])
			if !startSpace || !stopSpace {
				continue
			}
		}
		if tok.lstrip {
			newStart := leadingSpaceStartAtEnd(s[:start])
			start = max(newStart, startOffset)
		}
		if tok.rstrip {
			stop += spaceLenAtStart(s[stop:])
		}
		if startOffset < start {
			dst = append(dst, segment{startOffset, start, nil})
		}
		dst = append(dst, segment{start, stop, tok})
		startOffset = stop
	}
	if startOffset < len(s) {
		dst = append(dst, segment{startOffset, len(s), nil})
	}
	return dst
}

// isWordRune reports whether r is matched by \w in Unicode regular
// expressions (Alphabetic, marks, decimal digits, connector punctuation,
// join controls).
func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Pc, r) ||
		unicode.Is(unicode.Other_Alphabetic, r) || r == 0x200C || r == 0x200D
}

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordRune(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordRune(r)
}

// leadingSpaceStartAtEnd returns where the run of whitespace that ends s
// starts (len(s) when s does not end with whitespace).
func leadingSpaceStartAtEnd(s string) int {
	i := len(s)
	for i > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:i])
		if !unicode.IsSpace(r) || (r == utf8.RuneError && n == 1) {
			break
		}
		i -= n
	}
	return i
}

// spaceLenAtStart returns the byte length of the whitespace that starts s.
func spaceLenAtStart(s string) int {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) || (r == utf8.RuneError && n == 1) {
			break
		}
		i += n
	}
	return i
}
