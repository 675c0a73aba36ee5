// Package demo holds the demo schema (the contract's incident model) and its entity-model YAML,
// applied by `walhook dev` and used by tests.
package demo

import _ "embed"

// SchemaSQL creates the demo schemas incident, session and hook. It is idempotent.
//
//go:embed schema.sql
var SchemaSQL string

// ModelYAML is the walhook config model section for the demo schema.
//
//go:embed model.yaml
var ModelYAML string
