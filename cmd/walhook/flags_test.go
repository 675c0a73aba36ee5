package main

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/walhook/walhook/config"
)

// TestEveryCommandTakesTheConfigFlags: every subcommand that reads the config or a server finds
// the config and takes the overrides the same way.
func TestEveryCommandTakesTheConfigFlags(t *testing.T) {
	var checked []string
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Runnable() {
			path := c.CommandPath()
			switch c.Name() {
			case "version", "init", "help", "completion", "bash", "zsh", "fish", "powershell":
				return
			}
			for _, f := range []string{"config", "pg-url", "brokers", "registry"} {
				if c.Flags().Lookup(f) == nil {
					t.Errorf("%s has no --%s", path, f)
				}
			}
			checked = append(checked, path)
		}
	}
	walk(newRootCommand())
	for _, want := range []string{"walhook cdc", "walhook cdc resnapshot", "walhook bubbleup", "walhook deliver", "walhook comply",
		"walhook status", "walhook tail", "walhook config validate", "walhook config show", "walhook dev",
		"walhook hooks subscribe", "walhook hooks list", "walhook hooks log"} {
		found := false
		for _, c := range checked {
			found = found || c == want
		}
		if !found {
			t.Errorf("%s was not checked (checked %v)", want, checked)
		}
	}
}

// TestEffectiveConfigAtDebugInYAMLKeys: a stage logs what it runs with only at debug level,
// with the file's key names and durations as written, secrets masked.
func TestEffectiveConfigAtDebugInYAMLKeys(t *testing.T) {
	cfg, err := config.ParseWith([]byte(`postgres: {url: "postgres://walhook:s3cret@db:5432/app"}
kafka: {brokers: ["k:9092"]}
log: {level: debug}
model: {roots: [{table: incident.instance, key: id}]}
`), "test", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logged := func(level string) string {
		cfg.Log.Level = level
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = w
		p, err := newProcess(cfg)
		os.Stderr = stderr
		if err != nil {
			t.Fatal(err)
		}
		_ = p.log.Sync()
		_ = w.Close()
		out, _ := io.ReadAll(r)
		return string(out)
	}
	out := logged("debug")
	for _, want := range []string{`"effective configuration"`, `"status_interval":"1s"`, `"topic_prefix":"walhook."`, `"url":"postgres://walhook:xxxxx@db:5432/app"`} {
		if !strings.Contains(out, want) {
			t.Errorf("debug log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "StatusInterval") {
		t.Errorf("debug log shows a secret or Go field names:\n%s", out)
	}
	if out := logged("info"); strings.Contains(out, "effective configuration") {
		t.Errorf("the effective config is logged at info:\n%s", out)
	}
}
