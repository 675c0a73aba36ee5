package compliance

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// backward reports why readers using schema next could not read records written with schema
// prev (Avro schema resolution, the registry's BACKWARD rule), or nil. The sink checks it itself
// because some registries (srfake, a registry set to NONE) accept anything.
//
// It covers what the sink writes: records, arrays, unions with null, primitives with their
// promotions (int→long→float→double, string↔bytes) and enums; logical types resolve by their
// base type.
func backward(next, prev string) error {
	var r, w any
	if err := json.Unmarshal([]byte(next), &r); err != nil {
		return fmt.Errorf("new schema is not JSON: %w", err)
	}
	if err := json.Unmarshal([]byte(prev), &w); err != nil {
		return fmt.Errorf("previous schema is not JSON: %w", err)
	}
	c := resolver{rNames: map[string]any{}, wNames: map[string]any{}}
	collectNames(r, "", c.rNames)
	collectNames(w, "", c.wNames)
	return c.check(r, w, "")
}

type resolver struct {
	rNames, wNames map[string]any // named types by full and short name
}

func collectNames(s any, ns string, into map[string]any) {
	switch x := s.(type) {
	case []any:
		for _, b := range x {
			collectNames(b, ns, into)
		}
	case map[string]any:
		if n, ok := x["namespace"].(string); ok {
			ns = n
		}
		if name, ok := x["name"].(string); ok && x["type"] != nil && isNamed(x["type"]) {
			into[name] = x
			if ns != "" && !strings.Contains(name, ".") {
				into[ns+"."+name] = x
			}
		}
		if fields, ok := x["fields"].([]any); ok {
			for _, f := range fields {
				if fm, ok := f.(map[string]any); ok {
					collectNames(fm["type"], ns, into)
				}
			}
		}
		if items, ok := x["items"]; ok {
			collectNames(items, ns, into)
		}
	}
}

func isNamed(t any) bool {
	s, _ := t.(string)
	return s == "record" || s == "enum" || s == "fixed"
}

// base returns the type name of s ("record", "long", "array", "union", ...) and s with named
// references resolved.
func base(s any, names map[string]any) (string, any) {
	switch x := s.(type) {
	case []any:
		return "union", x
	case string:
		if def, ok := names[x]; ok {
			return base(def, names)
		}
		return x, x
	case map[string]any:
		t := x["type"]
		if ts, ok := t.(string); ok && !isNamed(ts) && ts != "array" && ts != "map" {
			return ts, x // a primitive with a logical type or properties
		}
		if ts, ok := t.(string); ok {
			return ts, x
		}
		return base(t, names)
	}
	return "", s
}

var promotions = map[string][]string{
	"int":    {"long", "float", "double"},
	"long":   {"float", "double"},
	"float":  {"double"},
	"string": {"bytes"},
	"bytes":  {"string"},
}

func (c resolver) check(r, w any, path string) error {
	rt, rs := base(r, c.rNames)
	wt, ws := base(w, c.wNames)
	if wt == "union" {
		for _, b := range ws.([]any) {
			if err := c.check(r, b, path); err != nil {
				return err
			}
		}
		return nil
	}
	if rt == "union" {
		var first error
		for _, b := range rs.([]any) {
			err := c.check(b, w, path)
			if err == nil {
				return nil
			}
			if first == nil {
				first = err
			}
		}
		return fmt.Errorf("%s: no branch of the new union reads the old %s (%w)", pathOr(path), wt, first)
	}
	if rt != wt && !slices.Contains(promotions[wt], rt) {
		return fmt.Errorf("%s: type changed from %s to %s", pathOr(path), wt, rt)
	}
	switch rt {
	case "record":
		return c.record(rs.(map[string]any), ws.(map[string]any), path)
	case "array":
		return c.check(rs.(map[string]any)["items"], ws.(map[string]any)["items"], path+"[]")
	case "map":
		return c.check(rs.(map[string]any)["values"], ws.(map[string]any)["values"], path+"{}")
	case "enum":
		rsym, _ := rs.(map[string]any)["symbols"].([]any)
		wsym, _ := ws.(map[string]any)["symbols"].([]any)
		_, hasDefault := rs.(map[string]any)["default"]
		for _, s := range wsym {
			if !slices.Contains(rsym, s) && !hasDefault {
				return fmt.Errorf("%s: enum symbol %v was removed", pathOr(path), s)
			}
		}
	}
	return nil
}

func (c resolver) record(r, w map[string]any, path string) error {
	wf := map[string]map[string]any{}
	for _, f := range asList(w["fields"]) {
		wf[f["name"].(string)] = f
	}
	for _, f := range asList(r["fields"]) {
		name, _ := f["name"].(string)
		p := strings.TrimPrefix(path+"."+name, ".")
		old, ok := wf[name]
		if !ok {
			if _, hasDefault := f["default"]; !hasDefault {
				return fmt.Errorf("%s: new field without a default; old records cannot be read (make the column nullable)", p)
			}
			continue
		}
		if err := c.check(f["type"], old["type"], p); err != nil {
			return err
		}
	}
	return nil
}

func asList(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func pathOr(p string) string {
	if p == "" {
		return "record"
	}
	return p
}
