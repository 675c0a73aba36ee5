package avro

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// ErrTruncated and ErrCorrupt classify undecodable bodies.
var (
	ErrTruncated = errors.New("avro: body truncated")
	ErrCorrupt   = errors.New("avro: body corrupt")
)

// reader is a bounds-checked Avro binary reader. The first error sticks;
// later reads return zero values, so decoders check once at the end.
type reader struct {
	buf []byte
	off int
	err error
	// shareText, when above 0, is the length from which text aliases buf (DecodeShared).
	shareText int
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%w at byte %d", err, r.off)
	}
}

func (r *reader) long() int64 {
	if r.err != nil {
		return 0
	}
	u, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		if n == 0 {
			r.fail(ErrTruncated)
		} else {
			r.fail(ErrCorrupt)
		}
		return 0
	}
	r.off += n
	return int64(u>>1) ^ -int64(u&1)
}

func (r *reader) int() int32 {
	v := r.long()
	if v > math.MaxInt32 || v < math.MinInt32 {
		r.fail(ErrCorrupt)
		return 0
	}
	return int32(v)
}

// next returns the following n bytes, aliasing the body.
func (r *reader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf)-r.off {
		r.fail(ErrTruncated)
		return nil
	}
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// bytes returns a length-prefixed byte string, aliasing the body.
func (r *reader) bytes() []byte {
	n := r.long()
	if n < 0 || n > int64(len(r.buf)) {
		r.fail(ErrCorrupt)
		return nil
	}
	return r.next(int(n))
}

func (r *reader) string() string { return string(r.bytes()) }

// text is a text value: a copy, or with shareText a string over buf's bytes when it is that
// long or longer.
func (r *reader) text() string {
	b := r.bytes()
	if r.shareText > 0 && len(b) >= r.shareText {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

func (r *reader) boolean() bool {
	b := r.next(1)
	if b == nil {
		return false
	}
	if b[0] > 1 {
		r.fail(ErrCorrupt)
	}
	return b[0] == 1
}

func (r *reader) float() float32 {
	b := r.next(4)
	if b == nil {
		return 0
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(b))
}

func (r *reader) double() float64 {
	b := r.next(8)
	if b == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

// blockCount reads an array block header; negative counts carry a byte
// size, which we skip. A count larger than the remaining bytes is corrupt
// (every item takes at least one byte), bounding allocations.
func (r *reader) blockCount() int {
	n := r.long()
	if n < 0 {
		n = -n
		r.long()
	}
	if n < 0 || n > int64(len(r.buf)-r.off) {
		r.fail(ErrCorrupt)
		return 0
	}
	return int(n)
}

// finish reports the sticky error or trailing garbage.
func (r *reader) finish() error {
	if r.err == nil && r.off != len(r.buf) {
		r.fail(fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.buf)-r.off))
	}
	return r.err
}
