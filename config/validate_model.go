package config

import (
	"regexp"
	"strings"
)

// tableRE is a schema-qualified table name made of unquoted identifiers.
var tableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]{0,62}\.[A-Za-z_][A-Za-z0-9_$]{0,62}$`)

// eventPrefixRE is the contract's "<service>.<resource>".
var eventPrefixRE = regexp.MustCompile(`^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$`)

func (v *checker) model(m *Model) {
	if len(m.Roots) == 0 {
		v.add("model.roots", "no roots; declare at least one root, e.g. roots: [{table: incident.instance, key: id}]")
	}
	prefixes := map[string]string{}
	for i := range m.Roots {
		path := indexPath("model.roots", i)
		r := &m.Roots[i]
		v.root(r, path)
		if first, dup := prefixes[r.EventPrefix]; dup && r.EventPrefix != "" {
			v.add(path+".event_prefix", "%q is already the event prefix of %s; every root needs its own, e.g. service.resource", r.EventPrefix, first)
			continue
		}
		prefixes[r.EventPrefix] = path
	}
}

func (v *checker) root(r *Root, path string) {
	v.table(path+".table", r.Table, "root")
	v.requiredColumn(path+".key", r.Key, "set the root table's primary-key column, e.g. key: id")
	v.column(path+".tenant_column", r.TenantColumn)
	v.softDelete(path+".soft_delete_column", r.SoftDeleteColumn)
	v.columns(path+".exclude", r.Exclude)
	if !eventPrefixRE.MatchString(r.EventPrefix) {
		v.add(path+".event_prefix", "%q must be <service>.<resource>: two lowercase words joined by one dot, e.g. incident.instance", r.EventPrefix)
	}
	if r.SnapshotForm != FormBare && r.SnapshotForm != FormOldNew {
		v.add(path+".snapshot_form", "%q is not a snapshot form; use bare (the current object) or old_new ({old, new})", r.SnapshotForm)
	}
	names := fieldNames{}
	tree := &tableTree{seen: map[string]string{}}
	tree.enter(r.Table, path)
	v.subordinates(r.Subordinates, path, tree, names)
	for j := range r.References {
		v.reference(&r.References[j], indexPath(path+".references", j), names)
	}
}

func (v *checker) subordinates(subs []Subordinate, parent string, tree *tableTree, names fieldNames) {
	for i := range subs {
		s := &subs[i]
		path := indexPath(parent+".subordinates", i)
		v.subordinate(s, path)
		if s.Array != "" {
			v.claim(names, s.Array, path+".array", "array")
		}
		if s.Table != "" {
			v.placeTable(tree, s.Table, path)
		}
		tree.push(s.Table)
		v.subordinates(s.Subordinates, path, tree, fieldNames{})
		tree.pop()
	}
}

func (v *checker) subordinate(s *Subordinate, path string) {
	v.table(path+".table", s.Table, "subordinate")
	v.requiredColumn(path+".parent_column", s.ParentColumn, "set the column of this table that holds the parent's key, e.g. parent_column: incident_instance_id")
	if s.Array == "" {
		v.add(path+".array", "missing; set the field name of this table's rows in the parent's payload, e.g. array: timeline")
	} else if !identRE.MatchString(s.Array) {
		v.add(path+".array", "%q is not a valid field name; use letters, digits and underscores", s.Array)
	}
	v.column(path+".key", s.Key)
	v.column(path+".order_by", s.OrderBy)
	v.column(path+".tenant_column", s.TenantColumn)
	v.softDelete(path+".soft_delete_column", s.SoftDeleteColumn)
	v.columns(path+".exclude", s.Exclude)
}

func (v *checker) reference(ref *Reference, path string, names fieldNames) {
	if ref.Table == "" {
		v.add(path+".table", "missing; set the referenced table, e.g. table: session.instance")
	} else {
		v.table(path+".table", ref.Table, "referenced")
	}
	v.requiredColumn(path+".column", ref.Column, "set the root's column holding the referenced row's key, e.g. column: session_instance_id")
	v.column(path+".key", ref.Key)
	switch {
	case ref.Field == "":
		v.add(path+".field", "missing; set the payload field that shows the referenced row, e.g. field: session")
	case !identRE.MatchString(ref.Field):
		v.add(path+".field", "%q is not a valid field name; use letters, digits and underscores", ref.Field)
	default:
		v.claim(names, ref.Field, path+".field", "reference field")
	}
	if len(ref.Columns) == 0 {
		v.add(path+".columns", "empty; list the referenced table's columns to show, e.g. columns: [id, status]")
	}
	v.columns(path+".columns", ref.Columns)
}

// table checks a schema-qualified table name; role words the message ("root table").
func (v *checker) table(path, table, role string) {
	switch {
	case table == "":
		v.add(path, "missing; set the %s table as schema.table, e.g. incident.instance", role)
	case !strings.Contains(table, "."):
		v.add(path, "%q is not schema-qualified; write schema.table, e.g. public.%s", table, table)
	case !tableRE.MatchString(table):
		v.add(path, "%q is not a plain schema.table name; use unquoted identifiers (letters, digits, underscores)", table)
	}
}

func (v *checker) requiredColumn(path, col, fix string) {
	if col == "" {
		v.add(path, "missing; %s", fix)
		return
	}
	v.column(path, col)
}

// column checks an optional column name; empty is left to defaults or to the caller.
func (v *checker) column(path, col string) {
	if col != "" && !identRE.MatchString(col) {
		v.add(path, "%q is not a plain column name; use an unquoted identifier (letters, digits, underscores)", col)
	}
}

func (v *checker) softDelete(path, col string) {
	if col != NoColumn {
		v.column(path, col)
	}
}

func (v *checker) columns(path string, cols []string) {
	for i, c := range cols {
		if c == "" {
			v.add(indexPath(path, i), "empty column name; remove it or name a column")
			continue
		}
		v.column(indexPath(path, i), c)
	}
}

// fieldNames are the payload fields one object gets from the model (arrays and reference
// fields), mapped to the path that declared them, so two declarations cannot overwrite each
// other in the payload.
type fieldNames map[string]string

func (v *checker) claim(names fieldNames, name, path, what string) {
	if first, dup := names[name]; dup {
		v.add(path, "%s name %q is already used by %s; give each array and reference field its own name", what, name, first)
		return
	}
	names[name] = path
}

// tableTree tracks one root's tree while walking it: the chain of ancestors (for cycles) and
// every table placed so far (a table may appear once per root, or its rows would be ambiguous).
type tableTree struct {
	chain []string
	seen  map[string]string
}

func (t *tableTree) enter(table, path string) {
	t.chain = append(t.chain, table)
	t.seen[table] = path
}

func (t *tableTree) push(table string) { t.chain = append(t.chain, table) }
func (t *tableTree) pop()              { t.chain = t.chain[:len(t.chain)-1] }

func (v *checker) placeTable(t *tableTree, table, path string) {
	for i, anc := range t.chain {
		if anc == table {
			cycle := append(append([]string(nil), t.chain[i:]...), table)
			v.add(path+".table", "cyclic nesting %s; a table cannot be nested under itself, remove this subordinate", strings.Join(cycle, " → "))
			return
		}
	}
	if first, dup := t.seen[table]; dup {
		v.add(path+".table", "table %s is already used at %s; a table may appear once in a root's tree", table, first)
		return
	}
	t.seen[table] = path
}
