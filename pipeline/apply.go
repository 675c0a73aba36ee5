package pipeline

import (
	"fmt"
	"strconv"

	"github.com/walhook/walhook/avro"
)

// applyChange applies one row change of a root's source transaction to its state. It reports
// false when the change was skipped because its transaction is already applied (a replay after a
// CDC restart).
func applyChange(rm *rootModel, key string, s *rootState, c *avro.Change, emitReads bool) (bool, error) {
	t := rm.tables[c.Table]
	if t == nil {
		return false, fmt.Errorf("change of table %s on the change topic of root %s (key %q, LSN %s): the table is not part of this root in the model",
			c.Table, rm.cfg.Table, key, lsnText(c.CommitLSN))
	}
	if c.CommitLSN <= s.Applied && s.Applied != 0 {
		return false, nil
	}
	rootRow := t == rm.root && (c.Op == avro.OpCreate || c.Op == avro.OpRead)
	switch {
	case rootRow:
		s.Partial = false
	case s.fresh():
		s.Partial = true // the root existed before: the state lacks what was not streamed
	}
	if c.Op == avro.OpRead && !emitReads {
		// Initial snapshot rows build state without a transaction to end.
		return true, applyRow(rm, t, key, s, c)
	}
	s.pend(rm, c.CommitLSN)
	if t == rm.root {
		switch c.Op {
		case avro.OpCreate, avro.OpRead:
			s.Pending.Created = true
			s.Pending.HardDeleted = false
		case avro.OpDelete:
			s.Pending.HardDeleted = true
		}
	}
	return true, applyRow(rm, t, key, s, c)
}

// pend opens the source transaction committed at lsn on the root, unless it is open already.
func (s *rootState) pend(rm *rootModel, lsn uint64) {
	if s.Pending == nil || s.Pending.LSN != lsn {
		s.Pending = &pending{LSN: lsn, WasSoftDeleted: s.softDeleted(rm.root), Existed: s.Root != nil && !s.Gone}
	}
}

func applyRow(rm *rootModel, t *tableModel, key string, s *rootState, c *avro.Change) error {
	if t == rm.root {
		switch c.Op {
		case avro.OpDelete:
			s.Gone = true
		default:
			if c.After == nil {
				return fmt.Errorf("%s of root %s key %q at LSN %s has no row image", c.Op, c.Table, key, lsnText(c.CommitLSN))
			}
			s.Root = rowFrom(t, c.After, c.Unchanged, s.Root)
			s.Gone = false
		}
		return nil
	}
	img := c.After
	if c.Op == avro.OpDelete {
		img = c.Before
	}
	if img == nil {
		return fmt.Errorf("%s of %s under root %s key %q at LSN %s has no row image", c.Op, c.Table, rm.cfg.Table, key, lsnText(c.CommitLSN))
	}
	kv, ok := img.Get(t.key)
	if !ok || kv == nil {
		return fmt.Errorf("%s of %s under root %s key %q at LSN %s lacks its key column %q: set REPLICA IDENTITY so deletes carry it",
			c.Op, c.Table, rm.cfg.Table, key, lsnText(c.CommitLSN), t.key)
	}
	childKey := keyText(jsonValue(kv))
	rows := s.Subs[t.table]
	if c.Op == avro.OpDelete {
		delete(rows, childKey)
		return nil
	}
	if t.depth == 1 {
		// A row whose parent column points at another root has moved out of this one.
		if pv, ok := img.Get(t.parentCol); ok && keyText(jsonValue(pv)) != key {
			delete(rows, childKey)
			return nil
		}
	}
	if rows == nil {
		if s.Subs == nil {
			s.Subs = map[string]map[string]*row{}
		}
		rows = map[string]*row{}
		s.Subs[t.table] = rows
	}
	rows[childKey] = rowFrom(t, img, c.Unchanged, rows[childKey])
	return nil
}

// outcome is what the end of a source transaction does to a root.
type outcome struct {
	emit bool
	verb avro.Verb
	// orphan: the transaction changed a root whose state is incomplete (no root row, or not
	// read yet by the initial snapshot); it updated the state and emits nothing.
	orphan bool
}

// finishTxn closes the root's pending transaction at its end marker: it decides the verb, bumps
// the version and records the commit LSN as applied. It reports emit=false for a replayed
// transaction, a transaction of which nothing reached this root, and one that left no root row.
func finishTxn(rm *rootModel, s *rootState, end avro.TxnEnd) outcome {
	if end.CommitLSN <= s.Applied && s.Applied != 0 {
		return outcome{}
	}
	p := s.Pending
	s.Pending = nil
	if p == nil || p.LSN != end.CommitLSN {
		return outcome{}
	}
	s.Applied = end.CommitLSN
	if s.Root == nil || s.Partial {
		return outcome{orphan: true} // a root we never saw, or not read by the snapshot yet
	}
	if s.Gone && !p.HardDeleted {
		return outcome{} // subordinate rows of a deleted root
	}
	var v avro.Verb
	switch {
	case p.HardDeleted:
		if !p.Existed && !p.Created {
			return outcome{}
		}
		v = avro.VerbDeleted
	case p.Created:
		v = avro.VerbCreated
	case !p.WasSoftDeleted && s.softDeleted(rm.root):
		v = avro.VerbDeleted
	default:
		v = avro.VerbUpdated
	}
	s.Version++
	return outcome{emit: true, verb: v}
}

// lsnText formats an LSN the PostgreSQL way ("16/B374D848").
func lsnText(lsn uint64) string {
	b := make([]byte, 0, 17)
	b = appendUpperHex(b, lsn>>32)
	b = append(b, '/')
	return string(appendUpperHex(b, uint64(uint32(lsn))))
}

// appendUpperHex appends v in upper-case hexadecimal, as %X does.
func appendUpperHex(b []byte, v uint64) []byte {
	start := len(b)
	b = strconv.AppendUint(b, v, 16)
	for i := start; i < len(b); i++ {
		if c := b[i]; c >= 'a' {
			b[i] = c - 'a' + 'A'
		}
	}
	return b
}
