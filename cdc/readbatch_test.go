package cdc

import (
	"errors"
	"testing"
	"time"
)

// scriptedReader returns reads of the given sizes, then err.
type scriptedReader struct {
	sizes []int
	err   error
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	if len(s.sizes) == 0 {
		return 0, s.err
	}
	n := min(s.sizes[0], len(p))
	s.sizes = s.sizes[1:]
	return n, nil
}

// TestBatchingReaderAdaptsWait walks the wait through a slow walsender (short reads after a
// wait double it, up to the cap), a fast one (large reads halve it, down to the floor) and an
// error (no wait before the next read).
func TestBatchingReaderAdaptsWait(t *testing.T) {
	const k = 1 << 10
	steps := []struct {
		size  int
		short bool
		wait  time.Duration
	}{
		{1 * k, true, replBatchWaitMin},        // short, but no wait before it: unchanged
		{1 * k, true, 2 * replBatchWaitMin},    // still short after waiting: doubled
		{1 * k, true, 4 * replBatchWaitMin},    // doubled again
		{1 * k, true, replBatchWaitMax},        // capped
		{200 * k, false, replBatchWaitMax / 2}, // a large read: halved
		{100 * k, false, replBatchWaitMax / 2}, // between the bounds: unchanged
		{200 * k, false, replBatchWaitMax / 4},
		{200 * k, false, replBatchWaitMin}, // floored
		{200 * k, false, replBatchWaitMin},
	}
	if replBatchWaitMax != 4*replBatchWaitMin {
		t.Fatalf("the steps assume replBatchWaitMax = 4 × replBatchWaitMin; got %v and %v", replBatchWaitMax, replBatchWaitMin)
	}
	src := &scriptedReader{err: errors.New("connection reset")}
	for _, s := range steps {
		src.sizes = append(src.sizes, s.size)
	}
	b := &batchingReader{r: src, wait: replBatchWaitMin}
	buf := make([]byte, replReadBuffer)
	for i, s := range steps {
		start := time.Now()
		wasShort := b.short
		waitBefore := b.wait
		n, err := b.Read(buf)
		if err != nil || n != s.size {
			t.Fatalf("read %d: %d bytes, %v; want %d", i, n, err, s.size)
		}
		if wasShort && time.Since(start) < waitBefore {
			t.Errorf("read %d came %v after a short read; want at least the wait %v", i, time.Since(start), waitBefore)
		}
		if b.short != s.short || b.wait != s.wait {
			t.Errorf("after read %d of %d bytes: short %v, wait %v; want %v, %v", i, s.size, b.short, b.wait, s.short, s.wait)
		}
	}
	b.short = true
	if _, err := b.Read(buf); err == nil || b.short {
		t.Errorf("after a failed read: err %v, short %v; want the error and no wait before the next read", err, b.short)
	}
	// A caller reading less than a batch at a time (a large message read past the buffer)
	// is never delayed.
	src.sizes = []int{100}
	if _, err := b.Read(make([]byte, 100)); err != nil || b.short {
		t.Errorf("small read: err %v, short %v; want no error and no wait", err, b.short)
	}
}
