package bytebpe

// The byte-level alphabet: every byte value is shown as one printable rune so
// that merges and vocabulary files can hold arbitrary bytes as text. Bytes
// that are already printable and not whitespace ('!'..'~', '¡'..'¬',
// '®'..'ÿ') stand for themselves; the other 68 take the runes U+0100,
// U+0101, ... in increasing byte order. The space byte thus becomes 'Ġ'
// (U+0120) and the newline 'Ċ' (U+010A), as in GPT-2's files.

var (
	// byteToRune maps a byte to its rune in the byte-level alphabet.
	byteToRune [256]rune
	// runeToByte maps a rune of the alphabet back to its byte; runes outside
	// the alphabet are absent.
	runeToByte = make(map[rune]byte, 256)
	// alphabetOrder lists the 256 bytes sorted by their rune: the order of
	// the first 256 ids in GPT-2's encoder.json.
	alphabetOrder [256]byte
)

func init() {
	printable := func(b int) bool {
		return ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
	}
	next := rune(256)
	for b := 0; b < 256; b++ {
		if printable(b) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = next
			next++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
	i := 0
	for r := rune(0); r < next; r++ {
		if b, ok := runeToByte[r]; ok {
			alphabetOrder[i] = b
			i++
		}
	}
}

// byteSymbol is the one-rune token that stands for byte b.
func byteSymbol(b byte) string { return string(byteToRune[b]) }

// ByteLevelString turns raw bytes into their byte-level text, the form tokens
// take in vocab.json and merges.txt ("Ġhello" for " hello").
func ByteLevelString(raw string) string {
	out := make([]rune, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		out = append(out, byteToRune[raw[i]])
	}
	return string(out)
}

// bytesOfSymbols decodes byte-level text back to raw bytes. ok is false when s
// holds a rune outside the byte-level alphabet.
func bytesOfSymbols(s string) (raw string, ok bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		b, found := runeToByte[r]
		if !found {
			return "", false
		}
		out = append(out, b)
	}
	return string(out), true
}
