package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/config"
	"github.com/walhook/walhook/internal/devreceiver"
	"github.com/walhook/walhook/sinks/webhook"
)

// devTenant is the tenant the demo subscriptions belong to; rows of other tenants are not
// delivered to the built-in receiver, which is the point of tenant isolation.
const devTenant = "acme"

// subscribeDemo points the demo tenant's subscriptions for every root event at the built-in
// receiver. The receiver's port is new on every run, so the previous run's subscriptions are
// disabled (rows kept, as unsubscribe does) and fresh ones with fresh secrets are created.
func subscribeDemo(ctx context.Context, pgURL string, cfg *config.Config, recv *devreceiver.Receiver) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return nil, fmt.Errorf("dev subscriptions: %w", err)
	}
	defer conn.Close(context.Background())
	var appID int64
	if err := conn.QueryRow(ctx, `INSERT INTO hook.application (name) VALUES ('walhook-dev')
		ON CONFLICT (name) DO UPDATE SET updated_at = now() RETURNING id`).Scan(&appID); err != nil {
		return nil, fmt.Errorf("dev subscriptions: register application walhook-dev: %w", err)
	}
	if _, err := conn.Exec(ctx, `UPDATE hook.subscription SET is_enabled = false, disabled_at = now(),
		disabled_reason = 'replaced by a newer walhook dev run' WHERE application_id = $1 AND is_enabled`, appID); err != nil {
		return nil, fmt.Errorf("dev subscriptions: disable the previous run's: %w", err)
	}
	adm, err := webhook.OpenAdmin(ctx, pgURL)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	var events []string
	for _, r := range cfg.Model.Roots {
		for _, verb := range []string{"created", "updated", "deleted"} {
			event := r.EventPrefix + "." + verb
			path := "/" + devTenant + "/" + strings.ReplaceAll(event, ".", "/")
			sub, err := adm.Subscribe(ctx, webhook.SubscribeRequest{AppID: appID, Tenant: devTenant, Event: event, URL: recv.URL() + path})
			if err != nil {
				return nil, err
			}
			if err := recv.Trust(path, sub.Secret); err != nil {
				return nil, err
			}
			events = append(events, event)
		}
	}
	return events, nil
}
