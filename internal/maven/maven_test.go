package maven

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJavaMajor(t *testing.T) {
	for out, want := range map[string]int{
		`openjdk version "17.0.15" 2025-04-15`: 17,
		`openjdk version "25" 2025-09-16`:      25,
		`java version "1.8.0_392"`:             8,
		`no version here`:                      0,
	} {
		if got := JavaMajor([]byte(out)); got != want {
			t.Errorf("JavaMajor(%q) = %d, want %d", out, got, want)
		}
	}
}

func TestPomListsEveryArtifact(t *testing.T) {
	pom := pomXML([]Artifact{{"org.apache.kafka", "kafka_2.13", "4.4.0"}, {"io.debezium", "debezium-connector-postgres", "3.6.1.Final"}})
	for _, want := range []string{"<artifactId>kafka_2.13</artifactId><version>4.4.0</version>", "<groupId>io.debezium</groupId>"} {
		if !strings.Contains(pom, want) {
			t.Fatalf("pom lacks %s:\n%s", want, pom)
		}
	}
}

// A dir with the complete marker is returned without Maven: later runs need no network.
func TestResolvedDirNeedsNoMaven(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x")
	if err := os.MkdirAll(filepath.Join(dir, "libs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, completeMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	libs, err := Resolve(context.Background(), dir, "test", Artifact{"g", "a", "1"})
	if err != nil || libs != filepath.Join(dir, "libs") {
		t.Fatalf("Resolve = %q, %v", libs, err)
	}
	_, err = Resolve(context.Background(), filepath.Join(t.TempDir(), "y"), "test", Artifact{"g", "a", "1"})
	if !IsMissingTool(err) || !strings.Contains(err.Error(), "Maven (mvn) is not on PATH") {
		t.Fatalf("without mvn: %v", err)
	}
}
