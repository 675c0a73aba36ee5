package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Key prefixes: an operator key sees everything, a tenant token one tenant. The prefix lets a
// secret scanner recognise a leaked key.
const (
	OperatorKeyPrefix = "whk_"
	TenantKeyPrefix   = "wht_"
)

// Key is a row of hook.api_key. The key itself is never stored: only its SHA-256.
type Key struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Tenant     string     `json:"tenant"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// Principal is who a request is made by.
type Principal struct {
	KeyID  int64
	Name   string
	Tenant string // "" for an operator
}

// Operator reports whether the principal may see every tenant.
func (p Principal) Operator() bool { return p.Tenant == "" }

// ErrUnknownKey: no key has the given id.
var ErrUnknownKey = errors.New("api: unknown API key")

// errBadKey: the presented key is unknown, revoked or expired (one message for all three, so a
// caller learns nothing about which).
var errBadKey = errors.New("api: the API key is unknown, revoked or expired")

type keyDB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Keys manages hook.api_key: `walhook api key` and the /v1/api-keys resource share it.
type Keys struct {
	db    keyDB
	close func()
	now   func() time.Time
}

// OpenKeys connects to the database holding the hook schema.
func OpenKeys(ctx context.Context, pgURL string) (*Keys, error) {
	if pgURL == "" {
		return nil, errors.New("api: no database: pass --pg-url, set WALHOOK_PG_URL or postgres.url in the config")
	}
	pc, err := pgxpool.ParseConfig(pgURL)
	if err != nil {
		return nil, fmt.Errorf("api: postgres URL: %w", err)
	}
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("api: connect to PostgreSQL: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(cctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("api: connect to PostgreSQL: %w; check postgres.url (WALHOOK_PG_URL)", err)
	}
	return &Keys{db: pool, close: pool.Close, now: time.Now}, nil
}

// Close closes the pool.
func (k *Keys) Close() { k.close() }

var keyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func hashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// Create makes a key named name: an operator key when tenant is "", else a token scoped to
// tenant. It returns the key, shown only now, and its row. ttl > 0 makes it expire.
func (k *Keys) Create(ctx context.Context, name, tenant string, ttl time.Duration) (string, Key, error) {
	name, tenant = strings.TrimSpace(name), strings.TrimSpace(tenant)
	if name == "" {
		return "", Key{}, &fieldError{"name", "empty; name the key after who uses it, e.g. ci or acme-portal"}
	}
	if ttl < 0 {
		return "", Key{}, &fieldError{"expires_in", "negative; give a duration such as 720h, or none for a key that does not expire"}
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	prefix := OperatorKeyPrefix
	if tenant != "" {
		prefix = TenantKeyPrefix
	}
	key := prefix + strings.ToLower(keyEncoding.EncodeToString(b))
	var expires *time.Time
	if ttl > 0 {
		t := k.now().Add(ttl)
		expires = &t
	}
	row := Key{Name: name, Prefix: key[:12], Tenant: tenant, ExpiresAt: expires}
	err := k.db.QueryRow(ctx, `INSERT INTO hook.api_key (name, prefix, hash, tenant_id, expires_at)
		VALUES ($1, $2, $3, nullif($4, ''), $5) RETURNING id, created_at`, name, row.Prefix, hashKey(key), tenant, expires).
		Scan(&row.ID, &row.CreatedAt)
	if err != nil {
		return "", Key{}, keyDBError("create an API key", err)
	}
	return key, row, nil
}

const keyColumns = `id, name, prefix, coalesce(tenant_id, ''), created_at, expires_at, revoked_at, last_used_at`

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	err := row.Scan(&k.ID, &k.Name, &k.Prefix, &k.Tenant, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt)
	return k, err
}

// List returns every key, oldest first.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	rows, err := k.db.Query(ctx, `SELECT `+keyColumns+` FROM hook.api_key ORDER BY id`)
	if err != nil {
		return nil, keyDBError("list API keys", err)
	}
	defer rows.Close()
	out := []Key{}
	for rows.Next() {
		key, err := scanKey(rows)
		if err != nil {
			return nil, keyDBError("list API keys", err)
		}
		out = append(out, key)
	}
	return out, keyDBError("list API keys", rows.Err())
}

// Revoke revokes key id; revoking a revoked key keeps its first revocation time.
func (k *Keys) Revoke(ctx context.Context, id int64) (Key, error) {
	key, err := scanKey(k.db.QueryRow(ctx, `UPDATE hook.api_key SET revoked_at = coalesce(revoked_at, now())
		WHERE id = $1 RETURNING `+keyColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("%w %d; `walhook api key list` lists them", ErrUnknownKey, id)
	}
	return key, keyDBError("revoke API key", err)
}

// RevokeNamed revokes every live key named name (walhook dev replaces its own key on start).
func (k *Keys) RevokeNamed(ctx context.Context, name string) error {
	_, err := k.db.Exec(ctx, `UPDATE hook.api_key SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL`, name)
	return keyDBError("revoke API keys named "+name, err)
}

// Authenticate finds the live key presented; errBadKey when there is none.
func (k *Keys) Authenticate(ctx context.Context, presented string) (Principal, error) {
	if !strings.HasPrefix(presented, OperatorKeyPrefix) && !strings.HasPrefix(presented, TenantKeyPrefix) {
		return Principal{}, errBadKey
	}
	var p Principal
	err := k.db.QueryRow(ctx, `SELECT id, name, coalesce(tenant_id, '') FROM hook.api_key
		WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`, hashKey(presented)).
		Scan(&p.KeyID, &p.Name, &p.Tenant)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, errBadKey
	}
	if err != nil {
		return Principal{}, keyDBError("check the API key", err)
	}
	return p, nil
}

// Touch records that key id was used now.
func (k *Keys) Touch(ctx context.Context, id int64) {
	_, _ = k.db.Exec(ctx, `UPDATE hook.api_key SET last_used_at = now() WHERE id = $1`, id)
}

// fieldError is a refused request field with the fix (the CLI shows it as its flag).
type fieldError struct{ Field, Message string }

func (e *fieldError) Error() string { return e.Field + ": " + e.Message }

func keyDBError(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") {
		return fmt.Errorf("api: %s: the hook.api_key table is missing; apply internal/demo/schema.sql to this database (walhook dev does)", op)
	}
	return fmt.Errorf("api: %s: %w", op, err)
}
