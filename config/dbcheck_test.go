package config_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/demo"
)

// demoDatabase returns the URL of a fresh database holding the demo schema.
func demoDatabase(t *testing.T) string {
	t.Helper()
	url := newDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, demo.SchemaSQL); err != nil {
		t.Fatalf("apply the demo schema: %v", err)
	}
	return url
}

func demoConfig(t *testing.T, edit func(string) string) *config.Config {
	t.Helper()
	data, err := os.ReadFile("testdata/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, edit(string(data)), noEnv)
}

func keep(s string) string { return s }

// TestConfigCheckDatabase runs every case against one database: the checks only read it.
func TestConfigCheckDatabase(t *testing.T) {
	url := demoDatabase(t)
	report, err := config.CheckDatabaseReport(context.Background(), demoConfig(t, keep), url)
	if err != nil {
		t.Fatalf("the demo model should match the demo schema:\n%v", err)
	}
	// The demo model: 3 tables; keys of the root, the timeline and the session; its columns are
	// the keys, tenant and soft-delete columns, parent, order_by and reference columns.
	if report.Tables != 3 || report.Keys != 3 || report.Columns < 15 || report.Server == "" || report.Database == "" || report.Version == "" {
		t.Errorf("report = %+v; want 3 tables, 3 keys, the columns and the server", report)
	}
	if report.WALLevel != "logical" || !report.Replication || len(report.Warnings) != 0 {
		t.Errorf("report = %+v; the test cluster runs wal_level=logical as a replication user", report)
	}
	cases := []struct {
		name     string
		old, new string // an edit of testdata/demo.yaml
		path     string
		msg      string
	}{
		{"unknown reference table", "- table: session.instance", "- table: session.instnace",
			"model.roots[0].references[0].table", "table session.instnace does not exist; did you mean session.instance?"},
		{"unknown root table", "- table: incident.instance", "- table: billing.invoice",
			"model.roots[0].table", "table billing.invoice does not exist; create it"},
		{"unknown column", "parent_column: incident_instance_id", "parent_column: incident_id",
			"model.roots[0].subordinates[0].parent_column", "column incident_id does not exist in incident.timeline"},
		{"unknown reference column", "uuid, score", "uuid, scor",
			"model.roots[0].references[0].columns[2]", "column scor does not exist in session.instance; did you mean score?"},
		{"unknown excluded column", "snapshot_form: bare", "snapshot_form: bare\n      exclude: [externl_id]",
			"model.roots[0].exclude[0]", "did you mean external_id?"},
		{"key not unique", "      key: id\n      tenant_column", "      key: status\n      tenant_column",
			"model.roots[0].key", "column status of incident.instance is neither the primary key nor a unique NOT NULL column; set key: id"},
		{"parent column type", "parent_column: incident_instance_id", "parent_column: description",
			"model.roots[0].subordinates[0].parent_column", "column description of incident.timeline is text but the key of incident.instance it points at is integer"},
		{"soft delete not boolean", "soft_delete_column: is_deleted\n      snapshot_form", "soft_delete_column: name\n      snapshot_form",
			"model.roots[0].soft_delete_column", "column name of incident.instance is text, not boolean"},
		{"field collides with column", "field: session", "field: status",
			"model.roots[0].references[0].field", `"status" is also a column of incident.instance`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := demoConfig(t, func(s string) string {
				if !strings.Contains(s, c.old) {
					t.Fatalf("testdata/demo.yaml has no %q", c.old)
				}
				return strings.Replace(s, c.old, c.new, 1)
			})
			err := config.CheckDatabase(context.Background(), cfg, url)
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			p := findProblem(t, ve, c.path)
			if p.Line == 0 || !strings.Contains(p.Message, c.msg) {
				t.Errorf("got %s\nwant a line and %q", p, c.msg)
			}
		})
	}
}

const talentSchema = `
CREATE SCHEMA talent;
CREATE TABLE talent.candidate (id bigint PRIMARY KEY, name text, password_hash text,
    tenant_id text NOT NULL, is_deleted boolean NOT NULL DEFAULT false);
CREATE TABLE talent.project (id bigint PRIMARY KEY, candidate_id integer NOT NULL, started_on date,
    tenant_id text NOT NULL, is_deleted boolean NOT NULL DEFAULT false);
CREATE TABLE talent.project_technology (id bigint PRIMARY KEY, project_id text NOT NULL, name text,
    tenant_id text NOT NULL);`

// talentModel is the nested example of docs/configuration.md.
const talentModel = `  roots:
    - table: talent.candidate
      event_prefix: talent.candidate
      key: id
      exclude: [password_hash]
      snapshot_form: old_new
      subordinates:
        - table: talent.project
          parent_column: candidate_id
          array: projects
          order_by: started_on
          subordinates:
            - table: talent.project_technology
              parent_column: project_id
              array: technologies
              soft_delete_column: "-"
`

// TestConfigCheckDatabaseNested checks that a nested subordinate's parent_column is compared with
// its own parent's key (the project), and an int4 column may point at an int8 key.
func TestConfigCheckDatabaseNested(t *testing.T) {
	url := newDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, talentSchema); err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, head+talentModel, noEnv)
	err = config.CheckDatabase(ctx, cfg, url)
	var ve *config.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 {
		t.Fatalf("want exactly the text project_id problem, got %v", err)
	}
	p := ve.Problems[0]
	want := "column project_id of talent.project_technology is text but the key of talent.project it points at is bigint"
	if p.Path != "model.roots[0].subordinates[0].subordinates[0].parent_column" || p.Line != 19 || !strings.Contains(p.Message, want) {
		t.Errorf("got %s\nwant line 19 and %q", p, want)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE talent.project_technology ALTER project_id TYPE bigint USING project_id::bigint`); err != nil {
		t.Fatal(err)
	}
	if err := config.CheckDatabase(ctx, cfg, url); err != nil {
		t.Errorf("after fixing the type: %v", err)
	}
}
