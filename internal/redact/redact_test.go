package redact_test

import (
	"testing"

	"github.com/walhook/walhook/internal/redact"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example.com/x":                     "https://hooks.example.com/x",
		"https://user:s3cret@hooks.example.com/x":         "https://user:xxxxx@hooks.example.com/x",
		"https://user@hooks.example.com/x":                "https://user@hooks.example.com/x",
		"https://hooks.example.com/x?token=s3cret&team=a": "https://hooks.example.com/x?team=xxxxx&token=xxxxx",
		"https://a:s3cret@[::1]:8443/x?k=s3cret":          "https://a:xxxxx@[::1]:8443/x?k=xxxxx",
		"https://a:s3cret@bad host/x":                     "https://xxxxx",
		"not a url with s3cret\x7f":                       "xxxxx",
	} {
		if got := redact.URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}
