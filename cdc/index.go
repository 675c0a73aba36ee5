package cdc

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
)

// keyIndex maps the key of an intermediate subordinate row (a project, under a candidate, with
// technologies under it) to its root's key, so that a nested row (a technology, which carries
// only its project's id) can be keyed by its root.
//
// It learns from the intermediate rows the stream sees and persists every new mapping to the
// compacted topic <prefix>cdc.index (key "<table>\x00<child key>", value the root key) as
// part of the transaction that taught it, so the mapping is acknowledged before the
// transaction is confirmed and survives restarts. On start the topic is read back in full.
// An unknown child key (a row older than the index) is looked up in PostgreSQL along the
// model path. Owned by the stream goroutine.
type keyIndex struct {
	m      map[string]map[string]string // table → child key → root key
	lookup map[string]string            // table → SQL giving the root key of a child key
}

func newKeyIndex(m *config.Model) *keyIndex {
	ix := &keyIndex{m: map[string]map[string]string{}, lookup: map[string]string{}}
	for _, r := range m.TableRoles() {
		if r.Subordinate != nil && len(r.Subordinate.Subordinates) > 0 {
			ix.m[r.Table] = map[string]string{}
			ix.lookup[r.Table] = rootKeySQL(r.Path)
		}
	}
	return ix
}

// needed reports whether the model has intermediate subordinates at all.
func (ix *keyIndex) needed() bool { return len(ix.m) > 0 }

// rootKeySQL walks from the last table of path up to the root: the first subordinate's parent
// column is the root key.
func rootKeySQL(path []*config.Subordinate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT t0.%s::text FROM %s t0", ident(path[0].ParentColumn), table(path[0].Table))
	for i := 1; i < len(path); i++ {
		fmt.Fprintf(&b, " JOIN %s t%d ON t%d.%s = t%d.%s", table(path[i].Table), i, i, ident(path[i].ParentColumn), i-1, ident(key(path[i-1])))
	}
	fmt.Fprintf(&b, " WHERE t%d.%s::text = $1", len(path)-1, ident(key(path[len(path)-1])))
	return b.String()
}

func key(s *config.Subordinate) string {
	if s.Key == "" {
		return "id"
	}
	return s.Key
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func table(qualified string) string {
	return pgx.Identifier(strings.SplitN(qualified, ".", 2)).Sanitize()
}

// learn records child→root for table; it reports whether the mapping is new or changed (and
// must be persisted).
func (ix *keyIndex) learn(table, child, root string) bool {
	m := ix.m[table]
	if m == nil || m[child] == root {
		return false
	}
	m[child] = root
	return true
}

// rootOf returns the root key of child in table, from the index or from PostgreSQL.
func (ix *keyIndex) rootOf(ctx context.Context, conn *pgx.Conn, table, child string) (string, error) {
	if r, ok := ix.m[table][child]; ok {
		return r, nil
	}
	var root string
	err := conn.QueryRow(ctx, ix.lookup[table], child).Scan(&root)
	if err != nil {
		return "", fmt.Errorf("cdc: root key of %s row %q is not in the key index and the lookup failed: %w; "+
			"the row was deleted before walhook saw it: re-snapshot the root (walhook cdc resnapshot)", table, child, err)
	}
	ix.m[table][child] = root
	return root, nil
}

// indexKey is the record key of a mapping in the index topic.
func indexKey(table, child string) []byte {
	return []byte(table + "\x00" + child)
}

// load restores one record of the index topic.
func (ix *keyIndex) load(k, v []byte) {
	t, child, ok := strings.Cut(string(k), "\x00")
	if !ok || ix.m[t] == nil {
		return
	}
	if v == nil {
		delete(ix.m[t], child)
		return
	}
	ix.m[t][child] = string(v)
}
