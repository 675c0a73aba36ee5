package compliance

import (
	"context"

	"github.com/walhook/walhook/config"
)

// Column is a table column as PostgreSQL's catalog describes it (domains resolved to their
// base type), in the order the pipeline writes columns to payloads. The event catalog
// (internal/catalog) derives its JSON Schemas from the same facts the sink derives its Avro
// schemas from.
type Column = column

// TableColumns reads the live columns of every table the root's payload is made of (the root,
// its subordinates at every depth, its references' tables), by table.
func TableColumns(ctx context.Context, pgURL string, root *config.Root) (map[string][]Column, error) {
	return catalog{url: pgURL}.columns(ctx, tables(root))
}

// TopicSchemas are the Avro value schemas the sink writes to one root's compliance topics,
// derived from cols exactly as it derives them before registering them.
type TopicSchemas struct {
	Log, Latest string
}

// ValueSchemas derives the schemas of root's log and latest topics under cfg's compliance
// settings (keep_columns decides whether the tenant column is kept).
func ValueSchemas(cfg *config.Config, root *config.Root, cols map[string][]Column) (TopicSchemas, error) {
	c := cfg.Compliance
	logSchema, err := compile(root, cols, len(c.Log.KeepColumns) > 0)
	if err != nil {
		return TopicSchemas{}, err
	}
	latestSchema, err := compile(root, cols, len(c.Latest.KeepColumns) > 0)
	if err != nil {
		return TopicSchemas{}, err
	}
	return TopicSchemas{Log: logSchema.schema.JSON, Latest: latestSchema.schema.JSON}, nil
}
