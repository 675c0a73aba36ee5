package config

// Topic names are derived from the model so that every stage agrees on them without talking to
// the others. They are functions of the prefix and the root's event prefix only.

// ChangeTopic carries the row changes of a root table and all its subordinates, keyed by root key,
// with a transaction-end marker per root per source transaction.
func (k Kafka) ChangeTopic(r Root) string { return k.TopicPrefix + "changes." + r.EventPrefix }

// ReferenceTopic carries the rows of a cross-service reference table, keyed by the row's key,
// compacted, with LSN watermarks.
func (k Kafka) ReferenceTopic(table string) string { return k.TopicPrefix + "refs." + table }

// SnapshotTopic carries the versioned snapshots of a root.
func (k Kafka) SnapshotTopic(r Root) string { return k.TopicPrefix + "snapshots." + r.EventPrefix }

// TableRole says where a captured table sits in the model.
type TableRole struct {
	// Table is schema-qualified.
	Table string
	// Root is the root this table belongs to; nil for a reference table.
	Root *Root
	// Subordinate is set when the table is a subordinate (at any depth) of Root.
	Subordinate *Subordinate
	// Path is the chain of subordinates from the root down to this table (empty for the root).
	Path []*Subordinate
	// Reference is set when the table is a cross-service reference table.
	Reference *Reference
}

// TableRoles lists every captured table with its role, roots first, in model order. A table that
// is both a reference target and part of a root appears once per role.
func (m *Model) TableRoles() []TableRole {
	var roles []TableRole
	for i := range m.Roots {
		r := &m.Roots[i]
		roles = append(roles, TableRole{Table: r.Table, Root: r})
		var walk func(path []*Subordinate, subs []Subordinate)
		walk = func(path []*Subordinate, subs []Subordinate) {
			for j := range subs {
				s := &subs[j]
				p := append(append([]*Subordinate(nil), path...), s)
				roles = append(roles, TableRole{Table: s.Table, Root: r, Subordinate: s, Path: p})
				walk(p, s.Subordinates)
			}
		}
		walk(nil, r.Subordinates)
	}
	for i := range m.Roots {
		for j := range m.Roots[i].References {
			ref := &m.Roots[i].References[j]
			roles = append(roles, TableRole{Table: ref.Table, Reference: ref})
		}
	}
	return roles
}

// Tables lists every distinct captured table, in TableRoles order.
func (m *Model) Tables() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range m.TableRoles() {
		if !seen[r.Table] {
			seen[r.Table] = true
			out = append(out, r.Table)
		}
	}
	return out
}
