package config_test

import (
	"testing"

	"github.com/walhook/walhook/internal/pgtest"
)

// newDatabase returns the URL of a fresh, empty database for t (on WALHOOK_TEST_PG_URL when set).
func newDatabase(t *testing.T) string {
	t.Helper()
	return pgtest.NewDatabase(t, pgtest.Start(t))
}
