//go:build !unix && !nodev

package main

// lockDevDir is a no-op where flock(2) does not exist; a second demo on the same folder then
// fails in PostgreSQL's own lock (postmaster.pid).
func lockDevDir(string) (func(), error) { return func() {}, nil }
