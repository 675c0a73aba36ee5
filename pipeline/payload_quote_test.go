package pipeline

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuoteKeepsHTMLAndEscapesJSON(t *testing.T) {
	for _, s := range []string{`<b>&amp;</b>`, "line\nbreak \"quoted\" back\\slash", "emoji 🎉 and ü", "", "plain text 123", "tab\there", "del\x7f", "\u2028",
		"\u2029 para", "bell\a nul\x00 esc\x1b", "\b\f\r", "bad utf8 \xff\xfe end", "cut rune \xe2\x82", strings.Repeat("long \"x\" \n ü ", 5000)} {
		got := quote(s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || (back != s && utf8.ValidString(s)) {
			t.Fatalf("quote(%q) = %s does not round-trip: %q, %v", s, got, back, err)
		}
		var want bytes.Buffer // the encoder's text, byte for byte (the fast path must not differ)
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		if quotedLen(s) != len(got) {
			t.Fatalf("quotedLen(%.40q) = %d, len(quote) = %d", s, quotedLen(s), len(got))
		}
		if w := bytes.TrimSuffix(want.Bytes(), []byte("\n")); !bytes.Equal(got, w) {
			t.Fatalf("quote(%q) = %s, the JSON encoder writes %s", s, got, w)
		}
	}
	if got := string(quote(`<b>&</b>`)); got != `"<b>&</b>"` {
		t.Fatalf("quote escaped HTML: %s", got)
	}
}
