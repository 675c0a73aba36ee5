package embedkafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.uber.org/zap"
)

// journalName is the registry journal's file name inside Options.DataDir.
const journalName = "schema-registry.jsonl"

// maxSchemaBody bounds a registration body we buffer for the journal; srfake
// itself rejects bodies over 1 MiB.
const maxSchemaBody = 1 << 20

// registry serves srfake over HTTP and, with a DataDir, journals every
// successful registration so that schema ids survive a restart.
type registry struct {
	url  string
	srv  *http.Server
	done chan struct{} // closed when the Serve goroutine returns
	log  *zap.Logger

	reg   *srfake.Registry
	inner http.Handler

	// mu serializes registrations while a journal is open, so the journal
	// order is the registry's id and version assignment order and replay
	// reproduces the same versions. Registrations are rare; nothing else
	// takes mu.
	persist bool // a journal was opened at start; never changes
	mu      sync.Mutex
	journal *os.File // guarded by mu; nil when in memory or after close
}

// journalEntry is one line of the journal: a registration as srfake answered
// it.
type journalEntry struct {
	Subject string    `json:"subject"`
	Version int       `json:"version"`
	ID      int       `json:"id"`
	Schema  sr.Schema `json:"schema"`
}

func startRegistry(ctx context.Context, opts Options) (*registry, error) {
	r := &registry{
		reg:  srfake.NewRegistry(),
		done: make(chan struct{}),
		log:  opts.Logger.Named("registry"),
	}
	r.inner = r.reg.Handler()
	if opts.DataDir != "" {
		if err := r.openJournal(ctx, filepath.Join(opts.DataDir, journalName)); err != nil {
			return nil, err
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", opts.RegistryPort)
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		r.closeJournal()
		return nil, fmt.Errorf("embedkafka: listen for the schema registry on %s: %w; pick another RegistryPort or 0 for a free one", addr, err)
	}
	r.url = "http://" + ln.Addr().String()
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(r.log)}
	go func() {
		defer close(r.done)
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("schema registry server stopped", zap.Error(err))
		}
	}()
	return r, nil
}

// ServeHTTP passes everything to srfake and journals successful
// POST /subjects/{subject}/versions.
func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	subject, ok := registrationSubject(req)
	if !ok || !r.persist {
		r.inner.ServeHTTP(w, req)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxSchemaBody+1))
	if err != nil {
		http.Error(w, fmt.Sprintf("read schema body: %v", err), http.StatusBadRequest)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))

	r.mu.Lock()
	defer r.mu.Unlock()
	// Buffer srfake's answer: the client must not see an id we failed to
	// journal, or a restart would hand that id to another schema.
	rec := httptest.NewRecorder()
	r.inner.ServeHTTP(rec, req)
	if rec.Code == http.StatusOK {
		if err := r.journalLocked(subject, body); err != nil {
			r.log.Error("journal schema registration", zap.String("subject", subject), zap.Error(err))
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// registrationSubject reports whether req registers a schema, and under
// which subject. Subjects in a schema context (":.ctx:subject") are
// journaled under their full name like any other.
func registrationSubject(req *http.Request) (string, bool) {
	if req.Method != http.MethodPost {
		return "", false
	}
	rest, ok := strings.CutPrefix(req.URL.Path, "/subjects/")
	if !ok {
		return "", false
	}
	subject, ok := strings.CutSuffix(rest, "/versions")
	return subject, ok && subject != ""
}

// journalLocked appends the registration srfake just accepted. srfake's
// response carries only the id, so we ask srfake again: RegisterSchema of a
// schema already live under the subject changes nothing and returns its id
// and version.
func (r *registry) journalLocked(subject string, body []byte) error {
	var sch sr.Schema
	if err := json.Unmarshal(body, &sch); err != nil {
		return fmt.Errorf("embedkafka: decode registered schema for subject %q: %w", subject, err)
	}
	id, version, err := r.reg.RegisterSchema(subject, sch)
	if err != nil {
		return fmt.Errorf("embedkafka: look up registered schema for subject %q: %w", subject, err)
	}
	if r.journal == nil {
		return fmt.Errorf("embedkafka: schema registry is closing; retry against the next start")
	}
	line, err := json.Marshal(journalEntry{Subject: subject, Version: version, ID: id, Schema: sch})
	if err != nil {
		return fmt.Errorf("embedkafka: encode journal entry for subject %q: %w", subject, err)
	}
	if _, err := r.journal.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("embedkafka: append to %s: %w; check the disk", r.journal.Name(), err)
	}
	if err := r.journal.Sync(); err != nil {
		return fmt.Errorf("embedkafka: sync %s: %w; check the disk", r.journal.Name(), err)
	}
	return nil
}

// openJournal replays path into the registry, then opens it for appending.
func (r *registry) openJournal(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("embedkafka: create data dir %s: %w", filepath.Dir(path), err)
	}
	entries, err := readJournal(path, r.log)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("embedkafka: replay %s canceled: %w", path, err)
		}
		if err := r.replay(e); err != nil {
			return fmt.Errorf("embedkafka: replay %s: %w; delete the file to start with an empty registry "+
				"(records already written with its schema ids will then not decode)", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("embedkafka: open %s: %w; check permissions on the data dir", path, err)
	}
	r.journal = f
	r.persist = true
	if len(entries) > 0 {
		r.log.Info("schema registry restored", zap.String("journal", path), zap.Int("registrations", len(entries)))
	}
	return nil
}

// readJournal reads every entry of path and truncates a torn last line (a
// crash mid-append, never acknowledged to a client) so the next append starts
// on a fresh line. A bad line elsewhere is an error.
func readJournal(path string, log *zap.Logger) ([]journalEntry, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedkafka: read %s: %w", path, err)
	}
	complete := raw[:bytes.LastIndexByte(raw, '\n')+1]
	if len(complete) < len(raw) {
		log.Warn("truncating torn last line of the schema registry journal", zap.String("journal", path))
		if err := os.Truncate(path, int64(len(complete))); err != nil {
			return nil, fmt.Errorf("embedkafka: truncate torn line of %s: %w; check permissions", path, err)
		}
	}
	var entries []journalEntry
	for n, line := range bytes.Split(bytes.TrimSuffix(complete, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("embedkafka: %s line %d: %w; fix or delete the line", path, n+1, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// replay restores one registration with its original id and version.
func (r *registry) replay(e journalEntry) (err error) {
	if _, ok := r.reg.GetSchema(e.Subject, e.Version); ok {
		return nil // a duplicate line; the registration is already there
	}
	// An id shared by several subjects is seeded once; later subjects
	// register the same schema, which srfake maps to the existing id with
	// the subject's next version.
	if r.idInUse(e.ID) {
		id, version, err := r.reg.RegisterSchema(e.Subject, e.Schema)
		if err != nil {
			return fmt.Errorf("subject %q version %d id %d: %w", e.Subject, e.Version, e.ID, err)
		}
		if id != e.ID || version != e.Version {
			r.log.Warn("schema registry replay assigned a different id or version",
				zap.String("subject", e.Subject), zap.Int("want_id", e.ID), zap.Int("got_id", id),
				zap.Int("want_version", e.Version), zap.Int("got_version", version))
		}
		return nil
	}
	// SeedSchema panics on invalid input instead of returning an error.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("subject %q version %d id %d: %v", e.Subject, e.Version, e.ID, p)
		}
	}()
	r.reg.SeedSchema(e.Subject, e.Version, e.ID, e.Schema)
	return nil
}

// idInUse reports whether srfake already holds a schema with id, asking
// through its HTTP handler in process: srfake has no Go accessor by id.
func (r *registry) idInUse(id int) bool {
	rec := httptest.NewRecorder()
	r.inner.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/schemas/ids/%d", id), nil))
	return rec.Code == http.StatusOK
}

func (r *registry) closeJournal() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.journal == nil {
		return nil
	}
	err := r.journal.Close()
	r.journal = nil
	if err != nil {
		return fmt.Errorf("embedkafka: close schema registry journal: %w", err)
	}
	return nil
}

// close shuts the HTTP server down, waits for the Serve goroutine, then
// closes the journal. srfake answers from memory in microseconds, so the grace
// period mostly waits on connections a client dialed but never used (Go's
// transport dials speculatively); Shutdown counts those as active for up to
// 5s. After a short grace we cut them: no request is lost that a client
// would not retry.
func (r *registry) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		r.log.Debug("schema registry connections outlived the grace period; closing them", zap.Error(err))
		_ = r.srv.Close()
	}
	<-r.done
	return r.closeJournal()
}
