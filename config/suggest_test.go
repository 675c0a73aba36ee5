package config

import "testing"

func TestConfigEditDistance(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "abc", 0}, {"abc", "", 3}, {"instnace", "instance", 1},
		{"kitten", "sitting", 3}, {"parent_colum", "parent_column", 1},
	}
	for _, c := range cases {
		if got := editDistance(c.a, c.b); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestConfigClosest(t *testing.T) {
	tables := []string{"incident.instance", "incident.timeline", "session.instance"}
	if got := closest("incident.instnace", tables); got != "incident.instance" {
		t.Errorf("closest = %q", got)
	}
	if got := closest("billing.invoice", tables); got != "" {
		t.Errorf("closest of an unrelated name = %q, want none", got)
	}
}
