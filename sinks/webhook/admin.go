package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/config"
)

// Errors of the Admin an API maps to its status codes; each is wrapped with the specifics.
var (
	// ErrUnknownSubscription: no subscription has the given uuid.
	ErrUnknownSubscription = errors.New("webhook: unknown subscription uuid")
	// ErrUnknownApp: no application has the given id, uuid or name.
	ErrUnknownApp = errors.New("webhook: unknown application")
	// ErrAppExists: an application with that name is already registered.
	ErrAppExists = errors.New("webhook: application already exists")
	// ErrNoHookSchema: the database lacks the hook schema.
	ErrNoHookSchema = errors.New("webhook: the hook schema is missing")
)

// InvalidError is a request field the Admin refuses, with what is wrong and the fix. Field is
// the request's field name (url, event, tenant, method, header, format, name, app); the CLI
// shows it as its flag, an API as the JSON member.
type InvalidError struct {
	Field   string
	Message string
	// Err is ErrRefusedTarget for a URL the target policy refuses, else nil.
	Err error
}

func (e *InvalidError) Error() string { return "webhook: " + e.Field + ": " + e.Message }
func (e *InvalidError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Admin manages applications and subscriptions in the hook schema. It is the one
// implementation behind `walhook hooks` and the HTTP API: every check of a request (event against
// the model, URL against the delivery target policy, application, method, headers, format) is
// here, not in the commands. Running sinks see its changes through the subscription trigger's
// NOTIFY.
type Admin struct {
	conn  dbConn
	close func()
	// events are the dotted event keys of the model, in model order; nil accepts any
	// well-formed key (an Admin opened without a config).
	events []string
	policy *TargetPolicy
}

// AdminOption configures OpenAdmin.
type AdminOption func(*Admin) error

// WithConfig makes the Admin check events against cfg's model and endpoint URLs against cfg's
// deliver target policy (allow_loopback, allow_cidrs), as delivery will. Without it only the
// form of an event key and of a URL (scheme, host, no user info) is checked.
func WithConfig(cfg *config.Config) AdminOption {
	return func(a *Admin) error {
		p, err := NewTargetPolicy(cfg.Deliver)
		if err != nil {
			return err
		}
		a.policy = p
		a.events = ModelEvents(cfg)
		return nil
	}
}

// ModelEvents are the dotted event keys of cfg's roots: <event_prefix>.created, .updated and
// .deleted.
func ModelEvents(cfg *config.Config) []string {
	events := []string{}
	for _, r := range cfg.Model.Roots {
		for _, verb := range []string{"created", "updated", "deleted"} {
			events = append(events, r.EventPrefix+"."+verb)
		}
	}
	return events
}

// adminConnectTimeout bounds connecting, so an unreachable database is an error, not a hang.
const adminConnectTimeout = 10 * time.Second

// OpenAdmin connects to the database holding the hook schema.
func OpenAdmin(ctx context.Context, pgURL string, opts ...AdminOption) (*Admin, error) {
	a, err := newAdmin(pgURL, opts)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, adminConnectTimeout)
	defer cancel()
	c, err := pgx.Connect(cctx, pgURL)
	if err != nil {
		return nil, fmt.Errorf("webhook: connect to %s: %w", redactPG(pgURL), err)
	}
	a.conn = c
	a.close = func() { _ = c.Close(context.Background()) }
	return a, nil
}

func newAdmin(pgURL string, opts []AdminOption) (*Admin, error) {
	if pgURL == "" {
		return nil, errors.New("webhook: no database: pass --pg-url, set WALHOOK_PG_URL or postgres.url in the config")
	}
	a := &Admin{policy: formOnlyPolicy()}
	for _, o := range opts {
		if err := o(a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Close closes the connection (or the pool of OpenAdminPool).
func (a *Admin) Close() { a.close() }

// App is a registered application.
type App struct {
	ID   int64
	UUID string
	Name string
	// Tenant owns the application when a tenant registered it (through the API with a tenant
	// token); "" for the operator's applications, which only operators see.
	Tenant    string
	CreatedAt time.Time
	// Subscriptions and Enabled count its subscriptions (Apps fills them).
	Subscriptions, Enabled int
}

// RegisterApp registers an application by name; a name already taken is ErrAppExists.
func (a *Admin) RegisterApp(ctx context.Context, name string) (App, error) {
	return a.RegisterAppFor(ctx, name, "")
}

// RegisterAppFor registers an application owned by tenant ("" for the operator's).
func (a *Admin) RegisterAppFor(ctx context.Context, name, tenant string) (App, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return App{}, invalid("name", "empty; name the application, e.g. crm")
	}
	app := App{Name: name, Tenant: tenant}
	err := a.conn.QueryRow(ctx, `INSERT INTO hook.application (name, tenant_id) VALUES ($1, nullif($2, '')) ON CONFLICT (name) DO NOTHING
		RETURNING id, uuid::text, created_at`, name, tenant).Scan(&app.ID, &app.UUID, &app.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		existing, ferr := a.App(ctx, name)
		if ferr != nil {
			return App{}, ferr
		}
		if tenant != "" {
			// A tenant must not learn another owner's application id.
			return App{}, fmt.Errorf("%w: the name %q is taken; choose another name", ErrAppExists, name)
		}
		return App{}, fmt.Errorf("%w: %q is application %d; choose another name, or use --app %d", ErrAppExists, name, existing.ID, existing.ID)
	}
	if err != nil {
		return App{}, dbError("register application "+strconv.Quote(name), err)
	}
	return app, nil
}

const appColumns = `a.id, a.uuid::text, a.name, coalesce(a.tenant_id, ''), a.created_at,
	(SELECT count(*) FROM hook.subscription s WHERE s.application_id = a.id),
	(SELECT count(*) FROM hook.subscription s WHERE s.application_id = a.id AND s.is_enabled)`

func scanApp(row pgx.Row) (App, error) {
	var app App
	err := row.Scan(&app.ID, &app.UUID, &app.Name, &app.Tenant, &app.CreatedAt, &app.Subscriptions, &app.Enabled)
	return app, err
}

// Apps lists the applications with their subscription counts, oldest first.
func (a *Admin) Apps(ctx context.Context) ([]App, error) {
	rows, err := a.conn.Query(ctx, `SELECT `+appColumns+` FROM hook.application a ORDER BY a.id`)
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

// App finds an application by id, uuid or name.
func (a *Admin) App(ctx context.Context, ref string) (App, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return App{}, invalid("app", "empty; pass the application's id or name (`walhook hooks apps` lists them)")
	}
	app, err := scanApp(a.conn.QueryRow(ctx, `SELECT `+appColumns+` FROM hook.application a
		WHERE a.id::text = $1 OR a.uuid::text = $1 OR a.name = $1 ORDER BY (a.id::text = $1) DESC LIMIT 1`, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		return App{}, fmt.Errorf("%w %q; `walhook hooks apps` lists the applications, `walhook hooks register-app --name NAME` registers one", ErrUnknownApp, ref)
	}
	if err != nil {
		return App{}, dbError("find application "+strconv.Quote(ref), err)
	}
	return app, nil
}

// SubscribeRequest is a new subscription.
type SubscribeRequest struct {
	// AppID is the application's id; App, when AppID is 0, its id, uuid or name.
	AppID   int64
	App     string
	Tenant  string
	Event   string // dot or underscore spelling
	URL     string
	Method  string // POST (default), PUT or PATCH
	Headers map[string]string
	Format  string // bare (default) or envelope
	Ordered bool
	// Oversize is what a delivery above deliver.max_payload_bytes becomes: "dead_letter"
	// (default) or "thin" (a small event naming the root and version; see ThinBody).
	Oversize string
}

var eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]*_(created|updated|deleted)$`)

// EventType normalizes a subscription key ("incident.instance.updated") or event type to the
// underscore spelling.
func EventType(key string) (string, error) {
	et := strings.ReplaceAll(strings.TrimSpace(key), ".", "_")
	if !eventTypeRE.MatchString(et) {
		return "", invalid("event", "%q is not <service>.<resource>.<created|updated|deleted> (or the same with underscores)", key)
	}
	return et, nil
}

// eventType normalizes key and, when the Admin knows the model, checks that it is one of its
// events, listing them when it is not.
func (a *Admin) eventType(key string) (string, error) {
	et, err := EventType(key)
	if a.events == nil {
		return et, err
	}
	i := slices.IndexFunc(a.events, func(e string) bool { return strings.ReplaceAll(e, ".", "_") == et })
	if err == nil && i >= 0 {
		return et, nil
	}
	return "", invalid("event", "%q is not an event of the model; its events are %s (dot or underscore spelling)",
		key, strings.Join(a.events, ", "))
}

// CheckTarget checks an endpoint URL against the target policy, as Subscribe, Update and Enable
// do; the warnings are what may still fail (a name that does not resolve from here).
func (a *Admin) CheckTarget(ctx context.Context, url string) (warnings []string, err error) {
	warnings, err = a.policy.Check(ctx, url)
	if err != nil {
		return nil, &InvalidError{Field: "url", Message: strings.TrimPrefix(err.Error(), ErrRefusedTarget.Error()+": "), Err: ErrRefusedTarget}
	}
	return warnings, nil
}

func normalizeMethod(m string) (string, error) {
	if m == "" {
		return http.MethodPost, nil
	}
	m = strings.ToUpper(strings.TrimSpace(m))
	if m != http.MethodPost && m != http.MethodPut && m != http.MethodPatch {
		return "", invalid("method", "%q; use POST, PUT or PATCH", m)
	}
	return m, nil
}

func normalizeFormat(f string) (string, error) {
	switch f {
	case "":
		return "bare", nil
	case "bare", "envelope":
		return f, nil
	}
	return "", invalid("format", "%q; use bare (the payload object) or envelope ({event_type, payload, meta})", f)
}

// reservedHeaders are set by the sink on every request; a subscription's own value would be
// overwritten (or, for Host and Content-Length, ignored).
var reservedHeaders = []string{"content-type", "content-length", "host", "user-agent", "webhook-id",
	"webhook-timestamp", "webhook-signature", HeaderEventType, HeaderVersion, HeaderAttempt, "traceparent"}

// The values of a subscription's oversize setting.
const (
	OversizeDeadLetter = "dead_letter"
	OversizeThin       = "thin"
)

func normalizeOversize(o string) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(o)); v {
	case "":
		return OversizeDeadLetter, nil
	case OversizeDeadLetter, OversizeThin:
		return v, nil
	case "dead-letter":
		return OversizeDeadLetter, nil
	default:
		return "", invalid("oversize", "%q is not thin or dead_letter: a delivery above deliver.max_payload_bytes is sent as a thin event (thin) or dead-lettered with the reason (dead_letter, the default)", o)
	}
}

func checkHeaders(h map[string]string) error {
	for name := range h {
		if !validHeaderName(name) {
			return invalid("header", "%q is not a valid header name; use letters, digits and - (e.g. X-Team)", name)
		}
		if slices.Contains(reservedHeaders, strings.ToLower(name)) {
			return invalid("header", "%s is set by walhook on every delivery and cannot be overridden", name)
		}
	}
	return nil
}

// validHeaderName is RFC 9110's token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// CheckSubscribe checks r as Subscribe does, without writing anything, and returns the
// warnings of its URL (a name that does not resolve from here), so a caller can show them
// before it subscribes.
func (a *Admin) CheckSubscribe(ctx context.Context, r SubscribeRequest) (warnings []string, err error) {
	_, warnings, err = a.checkSubscribe(ctx, &r)
	return warnings, err
}

// checkSubscribe normalizes r in place and returns its event type.
func (a *Admin) checkSubscribe(ctx context.Context, r *SubscribeRequest) (string, []string, error) {
	et, err := a.eventType(r.Event)
	if err != nil {
		return "", nil, err
	}
	r.Tenant = strings.TrimSpace(r.Tenant)
	if r.Tenant == "" {
		return "", nil, invalid("tenant", "empty; every subscription belongs to one tenant")
	}
	if r.Method, err = normalizeMethod(r.Method); err != nil {
		return "", nil, err
	}
	if r.Format, err = normalizeFormat(r.Format); err != nil {
		return "", nil, err
	}
	if r.Oversize, err = normalizeOversize(r.Oversize); err != nil {
		return "", nil, err
	}
	if err := checkHeaders(r.Headers); err != nil {
		return "", nil, err
	}
	warnings, err := a.CheckTarget(ctx, r.URL)
	if err != nil {
		return "", nil, err
	}
	if r.AppID == 0 {
		app, err := a.App(ctx, r.App)
		if err != nil {
			return "", nil, err
		}
		r.AppID = app.ID
	} else if _, err := a.App(ctx, strconv.FormatInt(r.AppID, 10)); err != nil {
		return "", nil, err
	}
	return et, warnings, nil
}

// Subscribe creates a subscription with a fresh secret and returns it.
func (a *Admin) Subscribe(ctx context.Context, r SubscribeRequest) (*Subscription, error) {
	et, _, err := a.checkSubscribe(ctx, &r)
	if err != nil {
		return nil, err
	}
	headers := []byte("{}")
	if r.Headers != nil {
		headers, _ = json.Marshal(r.Headers) // map of strings: cannot fail
	}
	row := a.conn.QueryRow(ctx, `INSERT INTO hook.subscription
		(application_id, tenant_id, event_type, url, method, headers, format, ordered, secret, oversize)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING `+subscriptionColumns,
		r.AppID, r.Tenant, et, r.URL, r.Method, headers, r.Format, r.Ordered, NewSecret(), r.Oversize)
	sub, err := scanSubscription(row)
	if err != nil {
		return nil, dbError(fmt.Sprintf("subscribe (application %d, tenant %s, %s)", r.AppID, r.Tenant, et), err)
	}
	return sub, nil
}

// UpdateRequest changes a subscription; nil fields keep their value. Headers, when not nil,
// replace all headers (an empty map removes them). The tenant and the event are not changed:
// subscribe again for another, which issues a new uuid and secret.
type UpdateRequest struct {
	URL      *string
	Method   *string
	Headers  map[string]string
	Format   *string
	Ordered  *bool
	Oversize *string // "thin" or "dead_letter"
}

// Update applies r to the subscription uuid and returns it as stored.
func (a *Admin) Update(ctx context.Context, uuid string, r UpdateRequest) (*Subscription, error) {
	sub, err := a.Get(ctx, uuid)
	if err != nil {
		return nil, err
	}
	if r.URL == nil && r.Method == nil && r.Headers == nil && r.Format == nil && r.Ordered == nil && r.Oversize == nil {
		return nil, invalid("url", "nothing to change; pass what to change (url, method, header, format, ordered, oversize)")
	}
	if r.Oversize != nil {
		if sub.Oversize, err = normalizeOversize(*r.Oversize); err != nil {
			return nil, err
		}
	}
	if r.URL != nil {
		if _, err := a.CheckTarget(ctx, *r.URL); err != nil {
			return nil, err
		}
		sub.URL = *r.URL
	}
	if r.Method != nil {
		if sub.Method, err = normalizeMethod(*r.Method); err != nil {
			return nil, err
		}
	}
	if r.Format != nil {
		if sub.Format, err = normalizeFormat(*r.Format); err != nil {
			return nil, err
		}
	}
	if r.Headers != nil {
		if err := checkHeaders(r.Headers); err != nil {
			return nil, err
		}
		sub.Headers = r.Headers
	}
	if r.Ordered != nil {
		sub.Ordered = *r.Ordered
	}
	headers, _ := json.Marshal(sub.Headers)
	if sub.Headers == nil {
		headers = []byte("{}")
	}
	row := a.conn.QueryRow(ctx, `UPDATE hook.subscription SET url = $2, method = $3, headers = $4, format = $5,
		ordered = $6, oversize = $7, updated_at = now() WHERE uuid::text = $1 RETURNING `+subscriptionColumns,
		uuid, sub.URL, sub.Method, headers, sub.Format, sub.Ordered, sub.Oversize)
	updated, err := scanSubscription(row)
	if err != nil {
		return nil, dbError("update "+uuid, err)
	}
	return updated, nil
}

// Enable enables a disabled subscription again (after unsubscribe, auto-disable or a 410) and
// clears its failure state. Its URL must still pass the target policy.
func (a *Admin) Enable(ctx context.Context, uuid string) (*Subscription, error) {
	sub, err := a.Get(ctx, uuid)
	if err != nil {
		return nil, err
	}
	if _, err := a.CheckTarget(ctx, sub.URL); err != nil {
		var ie *InvalidError
		if errors.As(err, &ie) {
			ie.Message += "; change it with `walhook hooks update --url` first"
		}
		return nil, err
	}
	row := a.conn.QueryRow(ctx, `UPDATE hook.subscription SET is_enabled = true, disabled_at = NULL, disabled_reason = NULL,
		failing_since = NULL, updated_at = now() WHERE uuid::text = $1 RETURNING `+subscriptionColumns, uuid)
	enabled, err := scanSubscription(row)
	if err != nil {
		return nil, dbError("enable "+uuid, err)
	}
	return enabled, nil
}

const subscriptionColumns = `id, uuid::text, application_id, tenant_id, event_type, url, method, headers, format, ordered,
	is_enabled, secret, coalesce(previous_secret, ''), coalesce(previous_secret_expires_at, 'epoch'),
	coalesce(failing_since, 'epoch'), coalesce(disabled_reason, ''), created_at, oversize, ` + lifetimeColumns

// Unsubscribe disables a subscription (the row is kept).
func (a *Admin) Unsubscribe(ctx context.Context, uuid string) error {
	tag, err := a.conn.Exec(ctx, `UPDATE hook.subscription SET is_enabled = false, disabled_at = now(),
		disabled_reason = 'unsubscribed', updated_at = now() WHERE uuid::text = $1`, uuid)
	if err != nil {
		return dbError("unsubscribe "+uuid, err)
	}
	if tag.RowsAffected() == 0 {
		return unknownSubscription(uuid)
	}
	return nil
}

func unknownSubscription(uuid string) error {
	return fmt.Errorf("%w %q; `walhook hooks list` lists the subscriptions", ErrUnknownSubscription, uuid)
}

// List returns every subscription, oldest first.
func (a *Admin) List(ctx context.Context) ([]*Subscription, error) {
	subs, err := loadAllConn(ctx, a.conn)
	if isMissingSchema(err) {
		return nil, dbError("list subscriptions", err)
	}
	return subs, err
}

// Get returns one subscription.
func (a *Admin) Get(ctx context.Context, uuid string) (*Subscription, error) {
	sub, err := scanSubscription(a.conn.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM hook.subscription WHERE uuid::text = $1`, uuid))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, unknownSubscription(uuid)
	}
	if err != nil {
		return nil, dbError("read subscription "+uuid, err)
	}
	return sub, nil
}

// RotateSecret gives a subscription a new secret; the old one keeps signing (both signatures
// are sent) for grace.
func (a *Admin) RotateSecret(ctx context.Context, uuid string, grace time.Duration) (string, error) {
	if grace < 0 {
		return "", invalid("grace", "%s is negative; use 0 to stop the old secret at once, or a duration such as 24h", grace)
	}
	secret := NewSecret()
	tag, err := a.conn.Exec(ctx, `UPDATE hook.subscription SET previous_secret = secret,
		previous_secret_expires_at = now() + $2::interval, secret = $3, updated_at = now() WHERE uuid::text = $1`,
		uuid, fmt.Sprintf("%d microseconds", grace.Microseconds()), secret)
	if err != nil {
		return "", dbError("rotate the secret of "+uuid, err)
	}
	if tag.RowsAffected() == 0 {
		return "", unknownSubscription(uuid)
	}
	return secret, nil
}

// dbError turns a database error into one that says what to do, without a bare SQLSTATE.
func dbError(op string, err error) error {
	if err == nil {
		return nil
	}
	if isMissingSchema(err) {
		return fmt.Errorf("%w in this database (%s); apply internal/demo/schema.sql to it (walhook dev does)", ErrNoHookSchema, op)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Detail != "" {
			msg += ": " + pe.Detail
		}
		return fmt.Errorf("webhook: %s: %s", op, msg)
	}
	return fmt.Errorf("webhook: %s: %w", op, err)
}

// isMissingSchema reports undefined_table and invalid_schema_name.
func isMissingSchema(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
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
