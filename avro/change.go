package avro

import (
	"strconv"
	"time"
)

// Column is one table column as pgoutput's Relation message plus a pg_type
// lookup report it. Domains must be resolved to their base type by the
// caller: the encoder only knows built-in type names, enums and arrays.
type Column struct {
	Name         string
	TypeOID      uint32
	TypeName     string // pg_type.typname: "int4", "numeric", "_text", "timestamptz", an enum's name...
	TypeMod      int32  // atttypmod (-1 when none): numeric precision/scale, varchar length
	IsEnum       bool   // a user enum type → string
	ElemTypeName string // arrays: the element's typname ("int4" for "_int4"); "" otherwise
	ElemIsEnum   bool
	Nullable     bool
	Key          bool // part of the replica identity key (pgoutput flag 1)
}

// Table is one version of a published table's shape.
type Table struct {
	Schema, Name string
	Columns      []Column
}

// FullName is the PostgreSQL qualified name, "incident.timeline".
func (t Table) FullName() string { return t.Schema + "." + t.Name }

// Op is the kind of change. Its numeric value minus one is the Avro enum
// index, so the order of the constants is part of the wire format.
type Op uint8

// The change kinds. OpRead is a row of the initial snapshot.
const (
	OpCreate Op = iota + 1
	OpUpdate
	OpDelete
	OpRead
)

// opSymbols are the Avro enum symbols, indexed by Op-1.
var opSymbols = [...]string{"create", "update", "delete", "read"}

func (o Op) valid() bool { return o >= OpCreate && o <= OpRead }

func (o Op) String() string {
	if !o.valid() {
		return "op(" + strconv.Itoa(int(o)) + ")"
	}
	return opSymbols[o-1]
}

// CellKind says what pgoutput sent for one column of a tuple.
type CellKind uint8

// The cell kinds of pgoutput's TupleData ('n', 'u', 't').
const (
	CellNull      CellKind = iota
	CellUnchanged          // unchanged TOAST value: pgoutput did not send it
	CellText
)

// Cell is one column value as pgoutput sends it (text format); Data aliases
// the network buffer and is only read during AppendChange.
type Cell struct {
	Kind CellKind
	Data []byte
}

// ChangeHeader carries the per-row metadata of a change record.
type ChangeHeader struct {
	Op        Op
	CommitLSN uint64
	Xid       uint32
	// CommitTime is encoded as microseconds since the Unix epoch (UTC);
	// sub-microsecond precision is dropped, like PostgreSQL has none.
	CommitTime time.Time
	Index      int64 // the row's index within its source transaction (0-based)
}
