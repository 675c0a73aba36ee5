package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// nodeWalk walks the YAML node tree alongside the Config type. It records the line of every key
// path and reports unknown keys with a suggestion. The strict decoder (KnownFields) would catch
// unknown keys too, but it knows neither the path nor the valid spellings.
type nodeWalk struct {
	lines    map[string]int
	problems []Problem
}

func (w *nodeWalk) walk(n *yaml.Node, t reflect.Type, path string) {
	n = resolveAlias(n)
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		w.mapping(n, t, path)
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			p := indexPath(path, i)
			w.lines[p] = item.Line
			w.walk(item, t.Elem(), p)
		}
	}
}

func (w *nodeWalk) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" { // merge key: its values are checked by the strict decoder
			continue
		}
		p := joinPath(path, k.Value)
		f, ok := fields[k.Value]
		if !ok {
			w.problems = append(w.problems, Problem{Path: p, Line: k.Line, Message: unknownKeyMessage(k.Value, fields)})
			continue
		}
		w.lines[p] = k.Line
		w.walk(v, f, p)
	}
}

func unknownKeyMessage(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	msg := fmt.Sprintf("unknown key %q", key)
	if s := closest(key, names); s != "" {
		return msg + fmt.Sprintf("; did you mean %q?", s)
	}
	return msg + "; known keys here: " + strings.Join(names, ", ")
}

// yamlFields maps the YAML key of each field of struct type t to the field's type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// pathAtLine returns the deepest recorded path on line, so that decoder errors, which carry only
// a line, get a path too.
func pathAtLine(lines map[string]int, line int) string {
	best := ""
	for p, l := range lines {
		if l == line && len(p) > len(best) {
			best = p
		}
	}
	return best
}
