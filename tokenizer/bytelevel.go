package tokenizer

import "unicode/utf8"

// byteToRune maps each byte to the printable character GPT-2's byte-level
// BPE uses for it; runeToByte is its inverse.
var (
	byteToRune [256]rune
	byteToStr  [256]string
	runeToByte map[rune]byte
)

func init() {
	runeToByte = make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		var r rune
		switch {
		case b >= '!' && b <= '~', b >= 0xA1 && b <= 0xAC, b >= 0xAE && b <= 0xFF:
			r = rune(b)
		default:
			r = rune(256 + n)
			n++
		}
		byteToRune[b] = r
		byteToStr[b] = string(r)
		runeToByte[r] = byte(b)
	}
}

// byteLevelEncode maps raw bytes to their byte-level characters.
func byteLevelEncode(dst []byte, raw string) []byte {
	for i := 0; i < len(raw); i++ {
		dst = utf8.AppendRune(dst, byteToRune[raw[i]])
	}
	return dst
}

// byteLevelDecode maps a byte-level token back to raw bytes. ok is false
// when some character is not one of the 256 byte characters.
func byteLevelDecode(dst []byte, tok string) (out []byte, ok bool) {
	n := len(dst)
	for _, r := range tok {
		b, found := runeToByte[r]
		if !found {
			return dst[:n], false
		}
		dst = append(dst, b)
	}
	return dst, true
}
