package cdc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// spillBuffers holds the raw messages of in-progress streamed transactions (pgoutput v2
// streaming) until their Stream Commit or Stream Abort. Messages stay in memory up to
// limit bytes in total; past that, the transaction being appended to moves to a file in dir
// and the rest of its messages go there. Owned by the stream goroutine.
type spillBuffers struct {
	dir   string
	limit int64
	mem   int64 // bytes held in memory over all transactions
	disk  int64 // bytes held in spill files over all transactions
	txns  map[uint32]*txnBuffer
	// onSize reports mem+disk after every change (the spill metric).
	onSize func(mem, disk int64)
}

// txnBuffer is one streamed top-level transaction. Frames are [len u32][subxid u32][message].
type txnBuffer struct {
	xid     uint32
	mem     []byte
	file    *os.File
	w       *bufio.Writer
	disk    int64
	aborted map[uint32]bool // subtransactions rolled back; their frames are skipped
	rows    int64
}

func newSpillBuffers(dir string, limit int64, onSize func(mem, disk int64)) *spillBuffers {
	return &spillBuffers{dir: dir, limit: limit, txns: map[uint32]*txnBuffer{}, onSize: onSize}
}

// add appends msg, a change of subtransaction subxid of the streamed transaction xid.
func (s *spillBuffers) add(xid, subxid uint32, msg []byte) error {
	b := s.txns[xid]
	if b == nil {
		b = &txnBuffer{xid: xid}
		s.txns[xid] = b
	}
	b.rows++
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(msg)))
	binary.BigEndian.PutUint32(hdr[4:], subxid)
	size := int64(len(msg) + 8)
	if b.w == nil && s.mem+size > s.limit {
		if err := s.spill(b); err != nil {
			return err
		}
	}
	if b.w != nil {
		if _, err := b.w.Write(hdr[:]); err != nil {
			return s.writeErr(b, err)
		}
		if _, err := b.w.Write(msg); err != nil {
			return s.writeErr(b, err)
		}
		b.disk += size
		s.disk += size
	} else {
		b.mem = append(append(b.mem, hdr[:]...), msg...)
		s.mem += size
	}
	s.report()
	return nil
}

// spill moves b's in-memory frames to a new file; later frames of b go to the file too.
func (s *spillBuffers) spill(b *txnBuffer) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("cdc: spill dir %s: %w; set cdc.spill_dir to a writable directory", s.dir, err)
	}
	f, err := os.CreateTemp(s.dir, fmt.Sprintf("xid-%d-*.spill", b.xid))
	if err != nil {
		return fmt.Errorf("cdc: create spill file for xid %d in %s: %w; set cdc.spill_dir to a writable directory with free space", b.xid, s.dir, err)
	}
	b.file, b.w = f, bufio.NewWriterSize(f, 256<<10)
	if _, err := b.w.Write(b.mem); err != nil {
		return s.writeErr(b, err)
	}
	n := int64(len(b.mem))
	b.disk += n
	s.disk += n
	s.mem -= n
	b.mem = nil
	return nil
}

func (s *spillBuffers) writeErr(b *txnBuffer, err error) error {
	return fmt.Errorf("cdc: write spill file %s of xid %d: %w; free space in cdc.spill_dir", b.file.Name(), b.xid, err)
}

// abort drops the frames of subtransaction subxid of xid, or the whole transaction when
// subxid == xid.
func (s *spillBuffers) abort(xid, subxid uint32) error {
	b := s.txns[xid]
	if b == nil {
		return nil
	}
	if subxid != xid {
		if b.aborted == nil {
			b.aborted = map[uint32]bool{}
		}
		b.aborted[subxid] = true
		return nil
	}
	return s.drop(b)
}

// drop forgets b and removes its file.
func (s *spillBuffers) drop(b *txnBuffer) error {
	delete(s.txns, b.xid)
	s.mem -= int64(len(b.mem))
	s.disk -= b.disk
	s.report()
	if b.file == nil {
		return nil
	}
	name := b.file.Name()
	err := errors.Join(b.file.Close(), os.Remove(name))
	if err != nil {
		return fmt.Errorf("cdc: remove spill file %s: %w", name, err)
	}
	return nil
}

// replay calls fn with every message of xid that no subtransaction abort dropped, in arrival
// order, then drops the transaction. msg is only valid during the call.
func (s *spillBuffers) replay(xid uint32, fn func(msg []byte) error) error {
	b := s.txns[xid]
	if b == nil {
		return nil
	}
	err := s.replayFrames(b, fn)
	return errors.Join(err, s.drop(b))
}

func (s *spillBuffers) replayFrames(b *txnBuffer, fn func(msg []byte) error) error {
	if b.w == nil {
		return forFrames(b, b.mem, fn)
	}
	if err := b.w.Flush(); err != nil {
		return s.writeErr(b, err)
	}
	if _, err := b.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("cdc: rewind spill file %s: %w", b.file.Name(), err)
	}
	r := bufio.NewReaderSize(b.file, 256<<10)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("cdc: read spill file %s: %w", b.file.Name(), err)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("cdc: read spill file %s: %w", b.file.Name(), err)
		}
		if b.aborted[binary.BigEndian.Uint32(hdr[4:])] {
			continue
		}
		if err := fn(buf); err != nil {
			return err
		}
	}
}

func forFrames(b *txnBuffer, p []byte, fn func([]byte) error) error {
	for len(p) >= 8 {
		n := binary.BigEndian.Uint32(p)
		sub := binary.BigEndian.Uint32(p[4:])
		msg := p[8 : 8+n]
		p = p[8+n:]
		if b.aborted[sub] {
			continue
		}
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// closeAll drops every buffered transaction (on shutdown: they are streamed again on restart).
func (s *spillBuffers) closeAll() error {
	var errs []error
	for _, b := range s.txns {
		errs = append(errs, s.drop(b))
	}
	return errors.Join(errs...)
}

func (s *spillBuffers) report() {
	if s.onSize != nil {
		s.onSize(s.mem, s.disk)
	}
}

// defaultSpillDir is used when cdc.spill_dir is empty.
func defaultSpillDir(slot string) string {
	return filepath.Join(os.TempDir(), "walhook-spill-"+slot)
}
