package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/walhook/walhook/config"
)

// composeFile is the part of the Compose specification deploy/compose uses.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Profiles    []string          `yaml:"profiles"`
}

// TestComposeFile checks deploy/compose/docker-compose.yml without Docker: PostgreSQL with
// logical WAL, Apache Kafka, and every walhook stage running a subcommand the binary knows with a
// config file walhook accepts.
func TestComposeFile(t *testing.T) {
	b, err := os.ReadFile("compose/docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	pg, kafka := f.Services["postgres"], f.Services["kafka"]
	if !strings.HasPrefix(pg.Image, "postgres:16") || !slices.Contains(pg.Command, "wal_level=logical") {
		t.Errorf("postgres service: image %q command %v; want postgres:16 with wal_level=logical", pg.Image, pg.Command)
	}
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") || !strings.Contains(kafka.Environment["KAFKA_PROCESS_ROLES"], "controller") {
		t.Errorf("kafka service: image %q; want apache/kafka in KRaft mode (broker,controller)", kafka.Image)
	}
	var running []string
	for name, s := range f.Services {
		if s.Image != "walhook:local" {
			continue
		}
		if len(s.Command) < 3 || !slices.Contains(walhookCommands, s.Command[0]) || s.Command[1] != "--config" {
			t.Errorf("service %s: command %v; want a walhook subcommand (%v) and --config FILE", name, s.Command, walhookCommands)
			continue
		}
		if len(s.Profiles) == 0 {
			running = append(running, s.Command[0])
		}
		if s.Environment["WALHOOK_HTTP_LISTEN"] != "0.0.0.0:9464" {
			t.Errorf("service %s: WALHOOK_HTTP_LISTEN=%q, want 0.0.0.0:9464", name, s.Environment["WALHOOK_HTTP_LISTEN"])
		}
		host := mountedFrom(s.Volumes, s.Command[2])
		if host == "" {
			t.Errorf("service %s: --config %s is not mounted from the host", name, s.Command[2])
			continue
		}
		data, err := os.ReadFile(filepath.Join("compose", host))
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		lookup := func(k string) (string, bool) { v, ok := s.Environment[k]; return v, ok }
		if _, err := config.ParseWith(data, "compose/"+host, config.Options{LookupEnv: lookup}); err != nil {
			t.Errorf("service %s: walhook rejects its config:\n%v", name, err)
		}
	}
	slices.Sort(running)
	if want := []string{"bubbleup", "cdc", "comply", "deliver"}; !slices.Equal(running, want) {
		t.Errorf("walhook services run %v, want every stage %v", running, want)
	}
	if b, err := os.ReadFile("../internal/demo/schema.sql"); err != nil || len(b) == 0 {
		t.Errorf("the postgres service mounts internal/demo/schema.sql: %v", err)
	}
}

// mountedFrom returns the host path of the volume mounted at target, "" when none is.
func mountedFrom(volumes []string, target string) string {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0]
		}
	}
	return ""
}
