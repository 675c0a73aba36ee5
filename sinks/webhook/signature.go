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
// space-separated. It runs once per request, so it builds the header in one buffer.
func (s signer) sign(id string, ts time.Time, body []byte) string {
	var prefix [96]byte // id "." unix "."; ids are 30 bytes
	signed := append(append(append(append(prefix[:0], id...), '.'), strconv.AppendInt(nil, ts.Unix(), 10)...), '.')
	const sigLen = len("v1,") + 44 // base64 of 32 bytes
	out := make([]byte, 0, len(s.keys)*(sigLen+1))
	var sum [sha256.Size]byte
	for i, key := range s.keys {
		if i > 0 {
			out = append(out, ' ')
		}
		m := hmac.New(sha256.New, key)
		m.Write(signed)
		m.Write(body)
		out = append(out, "v1,"...)
		out = base64.StdEncoding.AppendEncode(out, m.Sum(sum[:0]))
	}
	return string(out)
}

// idEncoding is base32 with a lower-case alphabet: the webhook-id's characters as they always
// were (upper-case base32, lowered), without lowering each id.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// MessageID is the webhook-id of a delivery: stable across retries, replays and restarts, and
// unique per subscription, root and version: "msg_" and 26 base32 characters of
// SHA-256(subscription uuid | root type | key | version).
func MessageID(subUUID, rootType, key string, version int64) string {
	var stack [256]byte
	b := stack[:0]
	var num [20]byte
	for _, part := range [...][]byte{[]byte(subUUID), []byte(rootType), []byte(key), strconv.AppendInt(num[:0], version, 10)} {
		b = strconv.AppendInt(b, int64(len(part)), 10) // length-prefixed: no two tuples collide
		b = append(b, ':')
		b = append(b, part...)
		b = append(b, '|')
	}
	sum := sha256.Sum256(b)
	var out [4 + 32]byte // "msg_" and the base32 of the first 20 bytes of the hash (32 characters)
	copy(out[:], "msg_")
	idEncoding.Encode(out[4:], sum[:20])
	return string(out[:4+26])
}
