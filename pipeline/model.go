package pipeline

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/walhook/walhook/avro"
	"github.com/walhook/walhook/config"
)

// rootModel is one configured root compiled for the stage: its topics, its tables by name and the
// columns its payload leaves out.
type rootModel struct {
	cfg           *config.Root
	index         int    // position in cfg.Model.Roots; part of the state key
	changeTopic   string // input
	snapshotTopic string // output
	eventBase     string // "incident_instance": event types are eventBase + "_" + verb
	root          *tableModel
	tables        map[string]*tableModel // the root table and every subordinate, by table name
	refs          []*config.Reference
	refCols       [][]int // per reference, its columns' indexes in the stored versions (newRefLayout)
}

// tableModel is the root table or one subordinate table of a root.
type tableModel struct {
	table      string
	key        string
	parentCol  string // "" for the root table
	orderBy    string
	softDelete string          // "" when the table has none
	hidden     map[string]bool // columns never in a payload
	array      string          // payload field of a subordinate
	sub        *config.Subordinate
	depth      int // 0 for the root, 1 for its direct subordinates
	children   []*tableModel
	// cols is the column list of the rows last built (rowFrom): the rows of a table share it
	// instead of each holding a copy. Partition workers build rows concurrently.
	cols atomic.Pointer[[]string]
}

// columns returns cols, or t's shared list when it is equal to it.
func (t *tableModel) columns(cols []string) []string {
	if last := t.cols.Load(); last != nil && slices.Equal(*last, cols) {
		return *last
	}
	own := slices.Clone(cols)
	t.cols.Store(&own)
	return own
}

func compileRoots(m *config.Model, k config.Kafka) ([]*rootModel, error) {
	out := make([]*rootModel, 0, len(m.Roots))
	for i := range m.Roots {
		r := &m.Roots[i]
		rm := &rootModel{
			cfg: r, index: i,
			changeTopic:   k.ChangeTopic(*r),
			snapshotTopic: k.SnapshotTopic(*r),
			eventBase:     strings.ReplaceAll(r.EventPrefix, ".", "_"),
			tables:        map[string]*tableModel{},
		}
		softDelete := ""
		if r.HasSoftDelete() {
			softDelete = r.SoftDeleteColumn
		}
		rm.root = &tableModel{
			table: r.Table, key: r.Key, orderBy: r.Key, softDelete: softDelete,
			hidden: hiddenSet(r.TenantColumn, softDelete, "", r.Exclude),
		}
		rm.tables[r.Table] = rm.root
		if err := rm.addSubs(rm.root, r.Subordinates, 1); err != nil {
			return nil, err
		}
		for j := range r.References {
			rm.refs = append(rm.refs, &r.References[j])
		}
		out = append(out, rm)
	}
	return out, nil
}

func (rm *rootModel) addSubs(parent *tableModel, subs []config.Subordinate, depth int) error {
	for i := range subs {
		s := &subs[i]
		if _, dup := rm.tables[s.Table]; dup {
			return fmt.Errorf("pipeline: root %s: table %s appears twice in the model; a table can be in a root once", rm.cfg.Table, s.Table)
		}
		softDelete := ""
		if s.HasSoftDelete() {
			softDelete = s.SoftDeleteColumn
		}
		orderBy := s.OrderBy
		if orderBy == "" {
			orderBy = s.Key
		}
		tm := &tableModel{
			table: s.Table, key: s.Key, parentCol: s.ParentColumn, orderBy: orderBy, softDelete: softDelete,
			hidden: hiddenSet(s.TenantColumn, softDelete, s.ParentColumn, s.Exclude),
			array:  s.Array, sub: s, depth: depth,
		}
		parent.children = append(parent.children, tm)
		rm.tables[s.Table] = tm
		if err := rm.addSubs(tm, s.Subordinates, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func hiddenSet(tenant, softDelete, parent string, exclude []string) map[string]bool {
	h := map[string]bool{}
	for _, c := range append([]string{tenant, softDelete, parent}, exclude...) {
		if c != "" && c != config.NoColumn {
			h[c] = true
		}
	}
	return h
}

// eventType is the underscore spelling of the event ("incident_instance_updated").
func (rm *rootModel) eventType(v avro.Verb) string { return rm.eventBase + "_" + v.String() }
