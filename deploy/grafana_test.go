package deploy

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// registeredMetrics collects the names of the metrics the stages register, from their source:
// the Namespace/Subsystem/Name of every prometheus.*Opts literal and the name of every
// prometheus.NewDesc, in cdc/, pipeline/ and sinks/ (tests excluded).
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range []string{"../cdc", "../pipeline", "../sinks"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CompositeLit:
					if sel, ok := n.Type.(*ast.SelectorExpr); ok && isPkg(sel.X, "prometheus") && strings.HasSuffix(sel.Sel.Name, "Opts") {
						parts := map[string]string{}
						for _, e := range n.Elts {
							if kv, ok := e.(*ast.KeyValueExpr); ok {
								if k, ok := kv.Key.(*ast.Ident); ok {
									parts[k.Name] = stringLit(kv.Value)
								}
							}
						}
						if parts["Name"] != "" {
							var fq []string
							for _, p := range []string{parts["Namespace"], parts["Subsystem"], parts["Name"]} {
								if p != "" {
									fq = append(fq, p)
								}
							}
							names[strings.Join(fq, "_")] = true
						}
					}
				case *ast.CallExpr:
					if sel, ok := n.Fun.(*ast.SelectorExpr); ok && isPkg(sel.X, "prometheus") && sel.Sel.Name == "NewDesc" && len(n.Args) > 0 {
						if s := stringLit(n.Args[0]); s != "" {
							names[s] = true
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatalf("scan %s: %v", dir, err)
		}
	}
	return names
}

func isPkg(x ast.Expr, name string) bool {
	id, ok := x.(*ast.Ident)
	return ok && id.Name == name
}

func stringLit(e ast.Expr) string {
	if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
		s, _ := strconv.Unquote(bl.Value)
		return s
	}
	return ""
}

var metricRef = regexp.MustCompile(`\bwalhook_[a-z0-9_]+`)

// TestGrafanaDashboard decodes the dashboard and checks that every panel's PromQL names only
// metrics the code registers (a renamed metric fails here), and that the metrics an operator
// watches all have a panel.
func TestGrafanaDashboard(t *testing.T) {
	registered := registeredMetrics(t)
	for _, must := range []string{"walhook_cdc_slot_lag_bytes", "walhook_bubbleup_snapshots_total", "walhook_webhook_deliveries_total",
		"walhook_webhook_retry_backlog", "walhook_compliance_records_total"} {
		if !registered[must] {
			t.Fatalf("source scan missed %s (found %v): fix registeredMetrics", must, slices.Sorted(maps.Keys(registered)))
		}
	}
	b, err := os.ReadFile("grafana/walhook-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				Type string `json:"type"`
				UID  string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode dashboard: %v", err)
	}
	if d.SchemaVersion < 36 || d.UID == "" || d.Title == "" {
		t.Fatalf("dashboard schemaVersion %d uid %q title %q", d.SchemaVersion, d.UID, d.Title)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query any    `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Fatal("no Prometheus datasource variable named datasource")
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			refs := metricRef.FindAllString(tg.Expr, -1)
			if len(refs) == 0 {
				t.Errorf("panel %q: query %q names no walhook metric", p.Title, tg.Expr)
			}
			for _, r := range refs {
				base := r
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if trimmed, ok := strings.CutSuffix(r, suf); ok && registered[trimmed] {
						base = trimmed
					}
				}
				if !registered[base] {
					t.Errorf("panel %q: query %q uses %s, which no stage registers", p.Title, tg.Expr, r)
				}
				used[base] = true
			}
		}
	}
	for _, want := range []string{
		"walhook_cdc_slot_lag_bytes", "walhook_cdc_rows_total", "walhook_cdc_transactions_total", "walhook_cdc_produce_latency_seconds",
		"walhook_bubbleup_snapshots_total", "walhook_bubbleup_txn_commit_seconds", "walhook_bubbleup_restore_seconds", "walhook_bubbleup_state_bytes",
		"walhook_webhook_deliveries_total", "walhook_webhook_attempt_duration_seconds", "walhook_webhook_retry_backlog",
		"walhook_webhook_oldest_pending_seconds", "walhook_webhook_dead_letters_total", "walhook_webhook_disabled_subscriptions",
		"walhook_compliance_records_total",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}
