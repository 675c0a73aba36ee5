package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "walhook dev") || !strings.Contains(out.String(), "go1.") {
		t.Fatalf("walhook version printed %q, want the version and the Go toolchain", out.String())
	}
}
