package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/walhook/walhook/avro"
)

// rowChange is one decoded Insert, Update or Delete message. Its cells alias the message
// bytes: they are valid until the buffer the message came from is reused.
type rowChange struct {
	op    avro.Op
	relID uint32
	// xid is the (sub)transaction id pgoutput v2 puts in a change inside a stream; 0 outside.
	xid uint32
	// old is the old tuple ('K' key-only or 'O' full), nil when pgoutput sent none.
	old []avro.Cell
	// oldIsKey is set when old holds only the replica identity columns (the others are null).
	oldIsKey bool
	new      []avro.Cell
}

// decoder parses row messages without allocating per row: the cell slices are reused
// between calls, so a rowChange is valid until the next decode.
type decoder struct {
	oldCells, newCells []avro.Cell
}

// decodeRow parses an Insert ('I'), Update ('U') or Delete ('D') pgoutput message. inStream
// says the message came between Stream Start and Stream Stop, where v2 adds the xid.
func (d *decoder) decodeRow(msg []byte, inStream bool) (rowChange, error) {
	var rc rowChange
	if len(msg) == 0 {
		return rc, fmt.Errorf("pgoutput: empty row message")
	}
	typ, p := msg[0], msg[1:]
	switch typ {
	case 'I':
		rc.op = avro.OpCreate
	case 'U':
		rc.op = avro.OpUpdate
	case 'D':
		rc.op = avro.OpDelete
	default:
		return rc, fmt.Errorf("pgoutput: message type %q is not a row change", typ)
	}
	var err error
	if inStream {
		if rc.xid, p, err = readU32(p); err != nil {
			return rc, d.errf(typ, rc.relID, "xid", err)
		}
	}
	if rc.relID, p, err = readU32(p); err != nil {
		return rc, d.errf(typ, 0, "relation id", err)
	}
	if len(p) == 0 {
		return rc, d.errf(typ, rc.relID, "tuple tag", errShort)
	}
	tag := p[0]
	p = p[1:]
	if tag == 'K' || tag == 'O' {
		if typ == 'I' {
			return rc, d.errf(typ, rc.relID, "tuple tag", fmt.Errorf("unexpected old tuple %q in insert", tag))
		}
		d.oldCells, p, err = readTuple(d.oldCells[:0], p)
		if err != nil {
			return rc, d.errf(typ, rc.relID, "old tuple", err)
		}
		rc.old, rc.oldIsKey = d.oldCells, tag == 'K'
		if typ == 'D' {
			return rc, checkEnd(typ, rc.relID, p)
		}
		if len(p) == 0 {
			return rc, d.errf(typ, rc.relID, "new tuple tag", errShort)
		}
		tag, p = p[0], p[1:]
	}
	if tag != 'N' || typ == 'D' {
		return rc, d.errf(typ, rc.relID, "tuple tag", fmt.Errorf("unexpected tuple tag %q", tag))
	}
	d.newCells, p, err = readTuple(d.newCells[:0], p)
	if err != nil {
		return rc, d.errf(typ, rc.relID, "new tuple", err)
	}
	rc.new = d.newCells
	return rc, checkEnd(typ, rc.relID, p)
}

func (d *decoder) errf(typ byte, relID uint32, field string, err error) error {
	return fmt.Errorf("pgoutput: %s message (relation %d): %s: %w", msgName(typ), relID, field, err)
}

func checkEnd(typ byte, relID uint32, p []byte) error {
	if len(p) != 0 {
		return fmt.Errorf("pgoutput: %s message (relation %d): %d trailing bytes", msgName(typ), relID, len(p))
	}
	return nil
}

func msgName(typ byte) string {
	switch typ {
	case 'I':
		return "Insert"
	case 'U':
		return "Update"
	case 'D':
		return "Delete"
	}
	return fmt.Sprintf("%q", typ)
}

// readTuple parses a TupleData: Int16 column count, then per column a kind byte ('n', 'u',
// 't' or 'b') and, for 't' and 'b', an Int32 length and the bytes.
func readTuple(cells []avro.Cell, p []byte) ([]avro.Cell, []byte, error) {
	if len(p) < 2 {
		return cells, p, errShort
	}
	n := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	for i := 0; i < n; i++ {
		if len(p) < 1 {
			return cells, p, fmt.Errorf("column %d: %w", i, errShort)
		}
		kind := p[0]
		p = p[1:]
		switch kind {
		case 'n':
			cells = append(cells, avro.Cell{Kind: avro.CellNull})
		case 'u':
			cells = append(cells, avro.Cell{Kind: avro.CellUnchanged})
		case 't':
			var l uint32
			var err error
			if l, p, err = readU32(p); err != nil {
				return cells, p, fmt.Errorf("column %d length: %w", i, err)
			}
			if uint64(l) > uint64(len(p)) {
				return cells, p, fmt.Errorf("column %d: length %d past the end (%d bytes left)", i, l, len(p))
			}
			cells = append(cells, avro.Cell{Kind: avro.CellText, Data: p[:l:l]})
			p = p[l:]
		case 'b':
			return cells, p, fmt.Errorf("column %d: binary format is not requested and not supported", i)
		default:
			return cells, p, fmt.Errorf("column %d: unknown kind %q", i, kind)
		}
	}
	return cells, p, nil
}

var errShort = errors.New("message too short")

func readU32(p []byte) (uint32, []byte, error) {
	if len(p) < 4 {
		return 0, p, errShort
	}
	return binary.BigEndian.Uint32(p), p[4:], nil
}
