package pipeline

import (
	"encoding/json"
	"testing"
)

func TestQuoteKeepsHTMLAndEscapesJSON(t *testing.T) {
	for _, s := range []string{`<b>&amp;</b>`, "line\nbreak \"quoted\" back\\slash", "emoji 🎉 and ü", ""} {
		got := quote(s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != s {
			t.Fatalf("quote(%q) = %s does not round-trip: %q, %v", s, got, back, err)
		}
	}
	if got := string(quote(`<b>&</b>`)); got != `"<b>&</b>"` {
		t.Fatalf("quote escaped HTML: %s", got)
	}
}
