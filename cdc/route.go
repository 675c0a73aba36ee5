package cdc

import (
	"fmt"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
)

// routeKind says how a table's rows are keyed.
type routeKind uint8

const (
	routeRoot   routeKind = iota // a root row: keyed by its own key column
	routeSub                     // a direct subordinate: keyed by its parent column (the root key)
	routeNested                  // a deeper subordinate: keyed by the root key found via the key index
	routeRef                     // a cross-service reference row: keyed by its key on the reference topic
)

// route is one way a table's rows are written (a table can be a subordinate and a reference).
type route struct {
	kind  routeKind
	topic string
	root  *config.Root // nil for routeRef
	// keyCol is the column whose text is the record key (routeRoot, routeRef) or leads to it
	// (routeSub: the parent column; routeNested: the parent column, looked up in via's index).
	keyCol int
	// via is the intermediate table whose key index maps keyCol's value to the root key.
	via string
	// ownCol is the row's own key column when the table is an intermediate subordinate whose
	// key→root-key mapping the index learns; -1 otherwise.
	ownCol int
}

// routes derives the routes of a table version from its roles in the model.
func routes(k config.Kafka, roles []config.TableRole, t avro.Table) ([]route, error) {
	col := func(name, what string) (int, error) {
		for i, c := range t.Columns {
			if c.Name == name {
				return i, nil
			}
		}
		return -1, fmt.Errorf("cdc: table %s has no column %q (%s in the model): fix the model or the table", t.FullName(), name, what)
	}
	var out []route
	for _, r := range roles {
		var rt route
		var err error
		rt.ownCol = -1
		switch {
		case r.Reference != nil:
			rt.kind, rt.topic = routeRef, k.ReferenceTopic(r.Table)
			rt.keyCol, err = col(r.Reference.Key, "reference key")
		case r.Subordinate == nil:
			rt.kind, rt.topic, rt.root = routeRoot, k.ChangeTopic(*r.Root), r.Root
			rt.keyCol, err = col(r.Root.Key, "root key")
		default:
			rt.topic, rt.root = k.ChangeTopic(*r.Root), r.Root
			rt.kind = routeSub
			if len(r.Path) > 1 {
				rt.kind, rt.via = routeNested, r.Path[len(r.Path)-2].Table
			}
			rt.keyCol, err = col(r.Subordinate.ParentColumn, "parent_column")
			if err == nil && len(r.Subordinate.Subordinates) > 0 {
				rt.ownCol, err = col(r.Subordinate.Key, "subordinate key")
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rt)
	}
	return out, nil
}

// cellText returns the text of column i of a tuple, or false when it is null, unchanged or
// missing.
func cellText(cells []avro.Cell, i int) ([]byte, bool) {
	if i < 0 || i >= len(cells) || cells[i].Kind != avro.CellText {
		return nil, false
	}
	return cells[i].Data, true
}

// rowKey returns the text of column i for a change: the new tuple's, or the old tuple's for a
// delete or when the new tuple left it unchanged (TOAST).
func rowKey(rc *rowChange, i int) ([]byte, bool) {
	if rc.op != avro.OpDelete {
		if b, ok := cellText(rc.new, i); ok {
			return b, true
		}
	}
	return cellText(rc.old, i)
}

// oldKey returns column i of the old tuple when it differs from the new one (a moved
// subordinate, a changed root key); only an update with an old tuple can have one.
func oldKey(rc *rowChange, i int) ([]byte, bool) {
	if rc.op != avro.OpUpdate || rc.old == nil {
		return nil, false
	}
	o, ok := cellText(rc.old, i)
	if !ok {
		return nil, false
	}
	n, ok := cellText(rc.new, i)
	if ok && string(n) == string(o) {
		return nil, false
	}
	return o, ok
}
