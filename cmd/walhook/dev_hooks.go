//go:build !nodev

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/api"
	"github.com/walhook/walhook/internal/devreceiver"
	"github.com/walhook/walhook/sinks/webhook"
)

// devTenant is the tenant the demo subscriptions belong to; rows of other tenants are not
// delivered to the built-in receiver, which is the point of tenant isolation.
const devTenant = "acme"

// devApp is the application that owns the demo's subscriptions.
const devApp = "walhook-dev"

// subscribeDemo points the demo tenant's subscription of every event of the model at the
// built-in receiver. The receiver's port is new on every run, so the previous run's
// subscriptions are moved to it (same uuid and secret, enabled again) rather than piling up
// as disabled rows; walhook-dev's subscriptions of events the model no longer has (another
// --config) are deleted.
func subscribeDemo(ctx context.Context, cfg *config.Config, recv *devreceiver.Receiver) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	adm, err := webhook.OpenAdmin(ctx, cfg.Postgres.URL, webhook.WithConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("dev subscriptions: %w", err)
	}
	defer adm.Close()
	app, err := adm.App(ctx, devApp)
	if errors.Is(err, webhook.ErrUnknownApp) {
		app, err = adm.RegisterApp(ctx, devApp)
	}
	if err != nil {
		return nil, fmt.Errorf("dev subscriptions: %w", err)
	}
	all, err := adm.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("dev subscriptions: %w", err)
	}
	previous := map[string]*webhook.Subscription{} // event type → the newest of walhook-dev's
	for _, s := range all {
		if s.AppID == app.ID && s.Tenant == devTenant {
			previous[s.EventType] = s // List is oldest first
		}
	}
	var events []string
	keep := []int64{}
	for _, event := range webhook.ModelEvents(cfg) {
		path := "/" + devTenant + "/" + strings.ReplaceAll(event, ".", "/")
		url := recv.URL() + path
		sub := previous[strings.ReplaceAll(event, ".", "_")]
		// A value above deliver.max_payload_bytes shows as a thin event in the terminal rather
		// than a dead letter nobody looks at in a demo.
		thin := webhook.OversizeThin
		switch {
		case sub == nil:
			sub, err = adm.Subscribe(ctx, webhook.SubscribeRequest{AppID: app.ID, Tenant: devTenant, Event: event, URL: url, Oversize: thin})
		default:
			if sub, err = adm.Update(ctx, sub.UUID, webhook.UpdateRequest{URL: &url, Oversize: &thin}); err == nil && !sub.Enabled {
				sub, err = adm.Enable(ctx, sub.UUID)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("dev subscriptions: %s: %w", event, err)
		}
		if err := recv.Trust(path, sub.Secret); err != nil {
			return nil, err
		}
		keep = append(keep, sub.ID)
		events = append(events, event)
	}
	if err := deleteStaleDevSubscriptions(ctx, cfg.Postgres.URL, app.ID, keep); err != nil {
		return nil, err
	}
	return events, nil
}

// deleteStaleDevSubscriptions removes walhook-dev's subscriptions other than keep: duplicates
// left by older walhook versions and events the current model does not have. Only the demo's own
// application is touched; unsubscribing a user's subscription disables it, never deletes it.
func deleteStaleDevSubscriptions(ctx context.Context, pgURL string, appID int64, keep []int64) error {
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("dev subscriptions: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `DELETE FROM hook.subscription WHERE application_id = $1 AND id <> ALL($2)`, appID, keep); err != nil {
		return fmt.Errorf("dev subscriptions: remove the stale ones: %w", err)
	}
	return nil
}

// devKeyName names the operator key walhook dev makes on every start (and revokes the
// previous run's).
const devKeyName = "walhook-dev"

// devAPIKey makes the demo's operator key: the keys are stored hashed, so the previous run's
// cannot be shown again; it is revoked and a new one made.
func devAPIKey(ctx context.Context, cfg *config.Config) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	keys, err := api.OpenKeys(ctx, cfg.Postgres.URL)
	if err != nil {
		return "", fmt.Errorf("dev API key: %w", err)
	}
	defer keys.Close()
	if err := keys.RevokeNamed(ctx, devKeyName); err != nil {
		return "", fmt.Errorf("dev API key: %w", err)
	}
	key, _, err := keys.Create(ctx, devKeyName, "", 0)
	if err != nil {
		return "", fmt.Errorf("dev API key: %w", err)
	}
	return key, nil
}
