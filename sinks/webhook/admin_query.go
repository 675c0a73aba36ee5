package webhook

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// SubscriptionFilter selects subscriptions for ListPage. Zero fields select everything.
type SubscriptionFilter struct {
	Tenant string
	AppID  int64
	// EventType in either spelling.
	EventType string
	Enabled   *bool
	// After is the id of the last subscription of the previous page; 0 starts at the oldest.
	After int64
	// Limit is the page size, 1 to MaxPageSize; 0 is DefaultPageSize.
	Limit int
}

// Page sizes of ListPage.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// ListPage returns the subscriptions matching f, oldest first, and the After of the next page
// (0 when this is the last one).
func (a *Admin) ListPage(ctx context.Context, f SubscriptionFilter) ([]*Subscription, int64, error) {
	switch {
	case f.Limit == 0:
		f.Limit = DefaultPageSize
	case f.Limit < 1 || f.Limit > MaxPageSize:
		return nil, 0, invalid("limit", "%d is out of range; use 1 to %d", f.Limit, MaxPageSize)
	}
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	arg("s.id > $?", f.After)
	if f.Tenant != "" {
		arg("s.tenant_id = $?", f.Tenant)
	}
	if f.AppID != 0 {
		arg("s.application_id = $?", f.AppID)
	}
	if f.EventType != "" {
		et, err := a.eventType(f.EventType)
		if err != nil {
			return nil, 0, err
		}
		arg("s.event_type = $?", et)
	}
	if f.Enabled != nil {
		arg("s.is_enabled = $?", *f.Enabled)
	}
	args = append(args, f.Limit+1)
	q := selectSubscriptions + " WHERE " + strings.Join(where, " AND ") + " ORDER BY s.id LIMIT $" + strconv.Itoa(len(args))
	rows, err := a.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, 0, dbError("list subscriptions", err)
	}
	defer rows.Close()
	out := []*Subscription{}
	for rows.Next() {
		s, err := scanSubscription(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("webhook: read hook.subscription: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, dbError("list subscriptions", err)
	}
	var next int64
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// AppsOf lists the applications of tenant ("" lists every application), oldest first.
func (a *Admin) AppsOf(ctx context.Context, tenant string) ([]App, error) {
	if tenant == "" {
		return a.Apps(ctx)
	}
	rows, err := a.conn.Query(ctx, `SELECT `+appColumns+` FROM hook.application a WHERE a.tenant_id = $1 ORDER BY a.id`, tenant)
	if err != nil {
		return nil, dbError("list applications", err)
	}
	defer rows.Close()
	apps := []App{}
	for rows.Next() {
		app, err := scanApp(rows)
		if err != nil {
			return nil, dbError("list applications", err)
		}
		apps = append(apps, app)
	}
	return apps, dbError("list applications", rows.Err())
}

// Tenants lists the distinct tenants that have subscriptions, sorted.
func (a *Admin) Tenants(ctx context.Context) ([]string, error) {
	rows, err := a.conn.Query(ctx, `SELECT DISTINCT tenant_id FROM hook.subscription ORDER BY 1`)
	if err != nil {
		return nil, dbError("list tenants", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, dbError("list tenants", err)
		}
		out = append(out, t)
	}
	return out, dbError("list tenants", rows.Err())
}

// Events are the dotted event keys the Admin accepts (the model's), nil when it has no config.
func (a *Admin) Events() []string { return a.events }
