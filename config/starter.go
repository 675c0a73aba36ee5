package config

import _ "embed"

// Starter is the commented config file `walhook config init` writes: every section with its
// main keys and the demo model. It validates as it is.
//
//go:embed starter.yaml
var Starter string
