package config

import (
	"fmt"
	"slices"
	"strings"
)

// dbChecker walks the model against a catalog, adding a problem per mismatch.
type dbChecker struct {
	checker
	cat    *catalog
	report *DatabaseCheck  // counts what was checked
	tables map[string]bool // tables found, counted once however often the model names them
}

func (d *dbChecker) root(r *Root, path string) {
	t := d.table(path+".table", r.Table)
	if t == nil {
		return
	}
	key := d.key(t, path+".key", r.Key)
	d.column(t, path+".tenant_column", r.TenantColumn)
	if r.HasSoftDelete() {
		d.softDelete(t, path+".soft_delete_column", r.SoftDeleteColumn)
	}
	d.columnList(t, path+".exclude", r.Exclude)
	for i := range r.Subordinates {
		d.subordinate(&r.Subordinates[i], indexPath(path+".subordinates", i), t, key, r.Exclude)
	}
	for i := range r.References {
		d.reference(&r.References[i], indexPath(path+".references", i), t, r.Exclude)
	}
}

// subordinate checks s against its parent table, whose key column is parentKey (nil when the
// parent key itself is missing, which was reported already).
func (d *dbChecker) subordinate(s *Subordinate, path string, parent *tableInfo, parentKey *columnInfo, parentExclude []string) {
	d.collision(parent, path+".array", s.Array, parentExclude)
	t := d.table(path+".table", s.Table)
	if t == nil {
		return
	}
	key := d.key(t, path+".key", s.Key)
	if pc, ok := d.column(t, path+".parent_column", s.ParentColumn); ok && parentKey != nil {
		d.compatible(path+".parent_column", t, s.ParentColumn, pc, parent, *parentKey)
	}
	d.column(t, path+".order_by", s.OrderBy)
	d.column(t, path+".tenant_column", s.TenantColumn)
	if s.HasSoftDelete() {
		d.softDelete(t, path+".soft_delete_column", s.SoftDeleteColumn)
	}
	d.columnList(t, path+".exclude", s.Exclude)
	for i := range s.Subordinates {
		d.subordinate(&s.Subordinates[i], indexPath(path+".subordinates", i), t, key, s.Exclude)
	}
}

func (d *dbChecker) reference(ref *Reference, path string, root *tableInfo, rootExclude []string) {
	d.collision(root, path+".field", ref.Field, rootExclude)
	col, colOK := d.column(root, path+".column", ref.Column)
	t := d.table(path+".table", ref.Table)
	if t == nil {
		return
	}
	key := d.key(t, path+".key", ref.Key)
	if colOK && key != nil {
		d.compatible(path+".column", root, ref.Column, col, t, *key)
	}
	d.columnList(t, path+".columns", ref.Columns)
}

// table returns the table's columns, or nil after reporting that it does not exist.
func (d *dbChecker) table(path, name string) *tableInfo {
	if t := d.cat.tables[name]; t != nil {
		if !d.tables[name] {
			d.tables[name] = true
			d.report.Tables++
		}
		return t
	}
	if name == "" {
		return nil // reported by Validate
	}
	msg := fmt.Sprintf("table %s does not exist", name)
	if s := closest(name, d.cat.all); s != "" {
		msg += fmt.Sprintf("; did you mean %s?", s)
	} else {
		msg += "; create it (for the demo, apply internal/demo/schema.sql) or fix the name"
	}
	d.add(path, "%s", msg)
	return nil
}

// column returns the column, reporting it when it does not exist. An empty name is skipped
// (Validate reports required ones).
func (d *dbChecker) column(t *tableInfo, path, name string) (columnInfo, bool) {
	if name == "" {
		return columnInfo{}, false
	}
	d.report.Columns++
	c, ok := t.columns[name]
	if !ok {
		d.add(path, "%s", missingColumn(t, name))
	}
	return c, ok
}

func missingColumn(t *tableInfo, name string) string {
	msg := fmt.Sprintf("column %s does not exist in %s", name, t.name)
	if s := closest(name, t.order); s != "" {
		return msg + fmt.Sprintf("; did you mean %s?", s)
	}
	return msg + "; its columns are " + strings.Join(t.order, ", ")
}

func (d *dbChecker) columnList(t *tableInfo, path string, names []string) {
	for i, name := range names {
		d.column(t, indexPath(path, i), name)
	}
}

// key checks that name identifies a row of t and returns its column, or nil.
func (d *dbChecker) key(t *tableInfo, path, name string) *columnInfo {
	c, ok := d.column(t, path, name)
	if !ok {
		return nil
	}
	d.report.Keys++
	if !c.isKey() {
		fix := "make it the primary key or add a unique index and NOT NULL"
		if pk := t.primaryKey(); pk != "" {
			fix = "set key: " + pk + " (the primary key)"
		}
		d.add(path, "column %s of %s is neither the primary key nor a unique NOT NULL column; %s", name, t.name, fix)
	}
	return &c
}

func (d *dbChecker) softDelete(t *tableInfo, path, name string) {
	c, ok := d.column(t, path, name)
	if ok && c.typname != "bool" {
		d.add(path, "column %s of %s is %s, not boolean; name a boolean column, or write %q if the table has none", name, t.name, c.typ, NoColumn)
	}
}

func (d *dbChecker) compatible(path string, t *tableInfo, name string, c columnInfo, target *tableInfo, key columnInfo) {
	if !compatible(c, key) {
		d.add(path, "column %s of %s is %s but the key of %s it points at is %s; use a column of a matching type",
			name, t.name, c.typ, target.name, key.typ)
	}
}

// collision reports a payload field (array or reference) that has the name of a column the
// payload already shows, since one would overwrite the other.
func (d *dbChecker) collision(t *tableInfo, path, field string, exclude []string) {
	if _, ok := t.columns[field]; ok && field != "" && !slices.Contains(exclude, field) {
		d.add(path, "%q is also a column of %s; rename the field or exclude the column", field, t.name)
	}
}
