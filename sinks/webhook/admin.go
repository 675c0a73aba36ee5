package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrUnknownSubscription: no subscription has the given uuid.
var ErrUnknownSubscription = errors.New("webhook: unknown subscription uuid")

// Admin manages applications and subscriptions in the hook schema (`walhook hooks`). Running
// sinks see its changes through the subscription trigger's NOTIFY.
type Admin struct {
	conn *pgx.Conn
}

// OpenAdmin connects to the database holding the hook schema.
func OpenAdmin(ctx context.Context, pgURL string) (*Admin, error) {
	if pgURL == "" {
		return nil, errors.New("webhook: no database: pass --pg-url or set WALHOOK_PG_URL")
	}
	c, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return nil, fmt.Errorf("webhook: connect to %s: %w", redactPG(pgURL), err)
	}
	return &Admin{conn: c}, nil
}

// Close closes the connection.
func (a *Admin) Close() { _ = a.conn.Close(context.Background()) }

// App is a registered application.
type App struct {
	ID   int64
	UUID string
	Name string
}

// RegisterApp registers an application by name.
func (a *Admin) RegisterApp(ctx context.Context, name string) (App, error) {
	if strings.TrimSpace(name) == "" {
		return App{}, errors.New("webhook: application name is empty; pass --name")
	}
	app := App{Name: name}
	err := a.conn.QueryRow(ctx, `INSERT INTO hook.application (name) VALUES ($1) RETURNING id, uuid::text`, name).Scan(&app.ID, &app.UUID)
	if err != nil {
		return App{}, fmt.Errorf("webhook: register application %q: %w", name, err)
	}
	return app, nil
}

// SubscribeRequest is a new subscription.
type SubscribeRequest struct {
	AppID   int64
	Tenant  string
	Event   string // dot or underscore spelling
	URL     string
	Method  string // POST (default), PUT or PATCH
	Headers map[string]string
	Format  string // bare (default) or envelope
	Ordered bool
}

var eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*_(created|updated|deleted)$`)

// EventType normalizes a subscription key ("incident.instance.updated") or event type to the
// underscore spelling.
func EventType(key string) (string, error) {
	et := strings.ReplaceAll(strings.TrimSpace(key), ".", "_")
	if !eventTypeRE.MatchString(et) {
		return "", fmt.Errorf("webhook: event %q is not <service>.<resource>.<created|updated|deleted> (or the same with underscores)", key)
	}
	return et, nil
}

// Subscribe creates a subscription with a fresh secret and returns it.
func (a *Admin) Subscribe(ctx context.Context, r SubscribeRequest) (*Subscription, error) {
	et, err := EventType(r.Event)
	if err != nil {
		return nil, err
	}
	if r.Tenant == "" {
		return nil, errors.New("webhook: --tenant is required: every subscription belongs to one tenant")
	}
	if r.Method == "" {
		r.Method = http.MethodPost
	}
	r.Method = strings.ToUpper(r.Method)
	if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch {
		return nil, fmt.Errorf("webhook: method %q; use POST, PUT or PATCH", r.Method)
	}
	if r.Format == "" {
		r.Format = "bare"
	}
	if r.Format != "bare" && r.Format != "envelope" {
		return nil, fmt.Errorf("webhook: format %q; use bare or envelope", r.Format)
	}
	if !strings.HasPrefix(r.URL, "https://") && !strings.HasPrefix(r.URL, "http://") {
		return nil, fmt.Errorf("webhook: url %q must be https:// (http:// only reaches loopback receivers in development)", r.URL)
	}
	headers, _ := json.Marshal(r.Headers)
	if r.Headers == nil {
		headers = []byte("{}")
	}
	secret := NewSecret()
	row := a.conn.QueryRow(ctx, `INSERT INTO hook.subscription
		(application_id, tenant_id, event_type, url, method, headers, format, ordered, secret)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+subscriptionColumns,
		r.AppID, r.Tenant, et, r.URL, r.Method, headers, r.Format, r.Ordered, secret)
	sub, err := scanSubscription(row)
	if err != nil {
		return nil, fmt.Errorf("webhook: subscribe (application %d, tenant %s, %s): %w", r.AppID, r.Tenant, et, err)
	}
	return sub, nil
}

const subscriptionColumns = `id, uuid::text, application_id, tenant_id, event_type, url, method, headers, format, ordered,
	is_enabled, secret, coalesce(previous_secret, ''), coalesce(previous_secret_expires_at, 'epoch'),
	coalesce(failing_since, 'epoch'), coalesce(disabled_reason, ''), created_at`

// Unsubscribe disables a subscription (the row is kept).
func (a *Admin) Unsubscribe(ctx context.Context, uuid string) error {
	tag, err := a.conn.Exec(ctx, `UPDATE hook.subscription SET is_enabled = false, disabled_at = now(),
		disabled_reason = 'unsubscribed', updated_at = now() WHERE uuid::text = $1`, uuid)
	if err != nil {
		return fmt.Errorf("webhook: unsubscribe %s: %w", uuid, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrUnknownSubscription, uuid)
	}
	return nil
}

// List returns every subscription, oldest first.
func (a *Admin) List(ctx context.Context) ([]*Subscription, error) {
	return loadAllConn(ctx, a.conn)
}

// Get returns one subscription.
func (a *Admin) Get(ctx context.Context, uuid string) (*Subscription, error) {
	sub, err := scanSubscription(a.conn.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM hook.subscription WHERE uuid::text = $1`, uuid))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownSubscription, uuid)
	}
	return sub, err
}

// RotateSecret gives a subscription a new secret; the old one keeps signing (both signatures
// are sent) for grace.
func (a *Admin) RotateSecret(ctx context.Context, uuid string, grace time.Duration) (string, error) {
	secret := NewSecret()
	tag, err := a.conn.Exec(ctx, `UPDATE hook.subscription SET previous_secret = secret,
		previous_secret_expires_at = now() + $2::interval, secret = $3, updated_at = now() WHERE uuid::text = $1`,
		uuid, fmt.Sprintf("%d microseconds", grace.Microseconds()), secret)
	if err != nil {
		return "", fmt.Errorf("webhook: rotate secret of %s: %w", uuid, err)
	}
	if tag.RowsAffected() == 0 {
		return "", fmt.Errorf("%w: %s", ErrUnknownSubscription, uuid)
	}
	return secret, nil
}

// redactPG drops the password from a connection URL for messages.
func redactPG(u string) string {
	if i := strings.Index(u, "@"); i > 0 {
		if j := strings.Index(u, "://"); j > 0 && j < i {
			return u[:j+3] + "…" + u[i:]
		}
	}
	return u
}
