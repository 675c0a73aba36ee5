package avro

import (
	"strings"
)

// kind is how one column (or array element) is parsed from pgoutput text and
// written as Avro.
type kind uint8

const (
	kString      kind = iota // text-like types, enums and every type without a better mapping
	kInt                     // int2, int4
	kLong                    // int8, oid
	kFloat                   // float4
	kDouble                  // float8
	kBool                    // bool
	kDecimal                 // numeric(p,s)
	kNumericText             // numeric without a usable typmod: kept as its text
	kTimestampTZ             // timestamptz
	kTimestamp               // timestamp without time zone
	kDate                    // date
	kTime                    // time without time zone
	kUUID                    // uuid
	kJSON                    // json, jsonb: string, pg.type tells readers it is JSON
	kBytes                   // bytea
	kArray                   // one-dimensional arrays of any of the above
)

// colType is the compiled encoding of one column.
type colType struct {
	kind      kind
	pgType    string // typname, written as "pg.type"
	precision int    // kDecimal
	scale     int    // kDecimal
	elem      *colType
	delim     byte // kArray: element delimiter (',' except box)
}

// scalarKinds maps built-in typnames to their encodings. Immutable.
var scalarKinds = map[string]kind{
	"int2": kInt, "int4": kInt,
	"int8": kLong, "oid": kLong,
	"float4": kFloat, "float8": kDouble,
	"bool":        kBool,
	"timestamptz": kTimestampTZ, "timestamp": kTimestamp,
	"date": kDate, "time": kTime,
	"uuid": kUUID,
	"json": kJSON, "jsonb": kJSON,
	"bytea": kBytes,
}

// columnType derives a column's encoding from its pg_type facts.
func columnType(c Column) colType {
	if c.ElemTypeName != "" && strings.HasPrefix(c.TypeName, "_") {
		elem := scalarType(c.ElemTypeName, c.ElemIsEnum, c.TypeMod)
		delim := byte(',')
		if c.ElemTypeName == "box" {
			delim = ';' // the only built-in type whose typdelim is not a comma
		}
		return colType{kind: kArray, pgType: c.TypeName, elem: &elem, delim: delim}
	}
	return scalarType(c.TypeName, c.IsEnum, c.TypeMod)
}

func scalarType(typname string, isEnum bool, typmod int32) colType {
	if isEnum {
		return colType{kind: kString, pgType: typname}
	}
	if typname == "numeric" {
		return numericType(typmod)
	}
	return colType{kind: scalarKinds[typname], pgType: typname} // unknown → kString (zero value)
}

// numericType decodes numeric's typmod. Without one, or with a scale Avro's
// decimal cannot express (negative, or above the precision, both legal since
// PostgreSQL 15), the value is kept as text: an Avro decimal has one fixed
// scale, and an unconstrained numeric column mixes scales row by row.
func numericType(typmod int32) colType {
	const varhdrsz = 4
	if typmod < varhdrsz {
		return colType{kind: kNumericText, pgType: "numeric"}
	}
	precision := int((typmod - varhdrsz) >> 16 & 0xffff)
	scale := int((((typmod - varhdrsz) & 0x7ff) ^ 1024) - 1024) // PostgreSQL 15's signed 11-bit scale
	if precision < 1 || scale < 0 || scale > precision {
		return colType{kind: kNumericText, pgType: "numeric"}
	}
	return colType{kind: kDecimal, pgType: "numeric", precision: precision, scale: scale}
}

// avroType is the non-null branch of a column's union as a JSON value.
func (t *colType) avroType() any {
	switch t.kind {
	case kInt:
		return "int"
	case kLong:
		return "long"
	case kFloat:
		return "float"
	case kDouble:
		return "double"
	case kBool:
		return "boolean"
	case kBytes:
		return "bytes"
	case kDecimal:
		return obj{{"type", "bytes"}, {"logicalType", "decimal"}, {"precision", t.precision}, {"scale", t.scale}}
	case kTimestampTZ:
		return logical("long", "timestamp-micros")
	case kTimestamp:
		return logical("long", "local-timestamp-micros")
	case kDate:
		return logical("int", "date")
	case kTime:
		return logical("long", "time-micros")
	case kUUID:
		return logical("string", "uuid")
	case kArray:
		return obj{{"type", "array"}, {"items", []any{"null", t.elem.avroType()}}}
	default:
		return "string"
	}
}

func logical(typ, lt string) obj { return obj{{"type", typ}, {"logicalType", lt}} }
