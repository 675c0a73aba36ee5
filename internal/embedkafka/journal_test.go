package embedkafka

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
)

func TestReadJournalTruncatesTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), journalName)
	good := `{"subject":"s","version":1,"id":1,"schema":{"schema":"\"string\""}}` + "\n"
	if err := os.WriteFile(path, []byte(good+`{"subject":"s","vers`), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := readJournal(path, zap.NewNop())
	if err != nil || len(entries) != 1 || entries[0].Subject != "s" {
		t.Fatalf("readJournal = %+v, %v; want the one complete entry", entries, err)
	}
	raw, _ := os.ReadFile(path)
	if string(raw) != good {
		t.Fatalf("journal after read is %q, want the torn line truncated", raw)
	}
}

func TestReadJournalRejectsCorruptMiddleLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), journalName)
	good := `{"subject":"s","version":1,"id":1,"schema":{"schema":"\"string\""}}` + "\n"
	if err := os.WriteFile(path, []byte("garbage\n"+good), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readJournal(path, zap.NewNop()); err == nil {
		t.Fatal("readJournal accepted a corrupt line 1")
	}
}
