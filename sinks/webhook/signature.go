package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret, as in the Standard Webhooks specification.
const SecretPrefix = "whsec_"

// secretBytes is the length of a generated secret's key (before base64).
const secretBytes = 32

// ErrBadSecret: a stored secret is not "whsec_" followed by base64.
var ErrBadSecret = errors.New("webhook: secret is not whsec_<base64>")

// NewSecret returns a fresh random signing secret "whsec_<base64 of 32 bytes>".
func NewSecret() string {
	b := make([]byte, secretBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// decodeSecret returns the HMAC key of a "whsec_<base64>" secret. The error never contains the
// secret.
func decodeSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// signer holds the decoded keys a subscription signs with: the current secret and, during a
// rotation's grace period, the previous one.
type signer struct {
	keys [][]byte
}

// sign returns the webhook-signature header: "v1,<base64 HMAC-SHA256(key, id.ts.body)>" per key,
// space-separated.
func (s signer) sign(id string, ts time.Time, body []byte) string {
	var b strings.Builder
	unix := strconv.FormatInt(ts.Unix(), 10)
	for i, key := range s.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write([]byte(unix))
		m.Write([]byte{'.'})
		m.Write(body)
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return b.String()
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// MessageID is the webhook-id of a delivery: stable across retries, replays and restarts, and
// unique per subscription, root and version: "msg_" and 26 base32 characters of
// SHA-256(subscription uuid | root type | key | version).
func MessageID(subUUID, rootType, key string, version int64) string {
	h := sha256.New()
	for _, part := range []string{subUUID, rootType, key, strconv.FormatInt(version, 10)} {
		h.Write([]byte(strconv.Itoa(len(part)))) // length-prefixed: no two tuples collide
		h.Write([]byte{':'})
		h.Write([]byte(part))
		h.Write([]byte{'|'})
	}
	return "msg_" + strings.ToLower(idEncoding.EncodeToString(h.Sum(nil))[:26])
}
