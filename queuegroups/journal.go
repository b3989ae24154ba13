package queuegroups

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

const segmentSuffix = ".journal"

// segment is one journal file. Older segments stay open read-only so
// runners can read message bodies with pread while new records append
// to the active one.
type segment struct {
	seq  uint64
	path string
	file *os.File
	size atomic.Int64 // bytes of valid records; only the writer changes it for the active segment

	live    int          // pending messages whose head record is here; guarded by the owning group's mutex
	damaged bool         // replay found unreadable bytes in it
	pins    atomic.Int32 // records appended here that the queue has not registered yet
	syncing atomic.Int32 // sync jobs for it the syncer has not done yet
}

// journal is one queue directory's append-only log with group commit:
// one writer goroutine takes every append waiting at the moment, writes
// them in order, and makes them durable with a single fdatasync.
type journal struct {
	dir         string
	segmentSize int64
	log         *slog.Logger

	mu   sync.Mutex // guards segs and each segment's membership in it
	segs []*segment // oldest first; the last is the active one

	closeMu    sync.RWMutex // held shared while sending to reqs, so close never races a send
	isClosed   bool
	readOnly   bool
	reqs       chan *appendReq
	writerDone chan struct{}
	syncq      chan syncJob // written records waiting for the syncer
	syncerDone chan struct{}
	broken     atomic.Pointer[error] // an fsync failed: no more appends
	syncs      atomic.Int64          // fdatasync calls, for benchmarks and tests
	chunk      []byte                // the writer's buffer for copying bodies
}

type appendReq struct {
	recs []record
	sync bool // the batch holding this request is fdatasynced before it returns
	pin  bool // pin the segment until the caller registers what it wrote
	done chan appendResult
}

type appendResult struct {
	seg  *segment
	offs []int64 // offset of each record's frame within seg
	err  error
}

var errClosed = errors.New("queue is closed")

// openJournal replays dir's segments into r in order and then opens a
// fresh active segment. Unreadable bytes are quarantined and skipped
// (replay.go); they are never fatal.
//
// A read-only journal (for inspecting the queue while no server runs)
// only replays: it creates no segment and takes no appends.
func openJournal(dir string, segmentSize int64, log *slog.Logger, readOnly bool, r replayer) (*journal, error) {
	j := &journal{dir: dir, segmentSize: segmentSize, log: log, readOnly: readOnly,
		reqs: make(chan *appendReq, 1024), writerDone: make(chan struct{}),
		syncq: make(chan syncJob, 1024), syncerDone: make(chan struct{})}
	seqs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	var last uint64
	for _, seq := range seqs {
		seg, err := j.replaySegment(seq, r)
		if err != nil {
			j.closeFiles()
			return nil, err
		}
		j.segs = append(j.segs, seg)
		last = seq
	}
	if readOnly {
		j.isClosed = true
		close(j.writerDone)
		close(j.syncerDone)
		return j, nil
	}
	if _, err := j.newSegment(last + 1); err != nil {
		j.closeFiles()
		return nil, err
	}
	go j.writer()
	go j.syncer()
	return j, nil
}

func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // read-only: a directory no server created yet is empty
	}
	if err != nil {
		return nil, fmt.Errorf("read queue directory: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
	return seqs, nil
}

func segmentPath(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x%s", seq, segmentSuffix))
}

// newSegment creates and becomes the active segment, starting with the
// header record that names the format. The directory is synced so the
// new file survives a crash along with what it will hold; the header is
// synced with the first records that need it.
func (j *journal) newSegment(seq uint64) (*segment, error) {
	path := segmentPath(j.dir, seq)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("create journal segment: %w", err)
	}
	hdr := encodeHeader()
	if _, err := f.WriteAt(hdr, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write journal segment header: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		return nil, err
	}
	seg := &segment{seq: seq, path: path, file: f}
	seg.size.Store(int64(len(hdr)))
	j.mu.Lock()
	j.segs = append(j.segs, seg)
	j.mu.Unlock()
	return seg, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open queue directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync queue directory: %w", err)
	}
	return nil
}

func (j *journal) active() *segment {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.segs[len(j.segs)-1]
}

// append writes recs contiguously and returns once they are written and,
// if sync is set, durable together with everything written before them.
// Concurrent callers share one fdatasync (group commit).
func (j *journal) append(sync, pin bool, recs ...record) (*segment, []int64, error) {
	req := &appendReq{recs: recs, sync: sync, pin: pin, done: make(chan appendResult, 1)}
	j.closeMu.RLock()
	if j.isClosed {
		j.closeMu.RUnlock()
		return nil, nil, errClosed
	}
	j.reqs <- req
	j.closeMu.RUnlock()
	res := <-req.done
	return res.seg, res.offs, res.err
}

// writer is the directory's only writer; batching happens naturally:
// whatever queued up during one fdatasync is written by the next.
func (j *journal) writer() {
	defer close(j.writerDone)
	defer close(j.syncq) // the syncer finishes what was queued, then stops
	var batch []*appendReq
	for req := range j.reqs {
		batch = drain(append(batch[:0], req), j.reqs, 4096)
		j.writeBatch(batch)
	}
}

// drain adds to batch what is already waiting on ch, without blocking,
// until batch holds limit items (0: no limit) or ch is empty or closed.
func drain[T any](batch []T, ch <-chan T, limit int) []T {
	for limit <= 0 || len(batch) < limit {
		select {
		case x, ok := <-ch:
			if !ok {
				return batch
			}
			batch = append(batch, x)
		default:
			return batch
		}
	}
	return batch
}

func (j *journal) writeBatch(batch []*appendReq) {
	if err := j.broken.Load(); err != nil {
		j.fail(batch, *err)
		return
	}
	seg := j.active()
	var total int64
	for _, req := range batch {
		for _, r := range req.recs {
			total += r.size()
		}
	}
	if size := seg.size.Load(); size > int64(len(encodeHeader())) && size+total > j.segmentSize {
		// Records written without a sync must not be left behind in a
		// segment that no later sync will cover.
		if err := syscall.Fdatasync(int(seg.file.Fd())); err != nil {
			j.fail(batch, fmt.Errorf("fdatasync journal %s: %w", seg.path, err))
			return
		}
		next, err := j.newSegment(seg.seq + 1)
		if err != nil {
			j.fail(batch, err)
			return
		}
		seg = next
	}
	start := seg.size.Load()
	off := start
	results := make([]appendResult, len(batch))
	sync := false
	// Whole records go out together with pwritev; a streamed one is
	// copied in between, at its place.
	var bufs [][]byte
	bufsAt := off
	var err error
	for i, req := range batch {
		sync = sync || req.sync
		results[i] = appendResult{seg: seg, offs: make([]int64, len(req.recs))}
		for k, r := range req.recs {
			results[i].offs[k] = off
			if r.body == nil {
				bufs = append(bufs, r.frame)
				off += int64(len(r.frame))
				continue
			}
			if err = writeAllAt(seg.file, bufs, bufsAt); err != nil {
				break
			}
			bufs = bufs[:0]
			if err = j.writeStreamed(seg.file, r, off); err != nil {
				break
			}
			off += r.size()
			bufsAt = off
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = writeAllAt(seg.file, bufs, bufsAt)
	}
	if err != nil {
		// Cut off whatever part landed so the next batch starts clean.
		_ = seg.file.Truncate(start)
		j.fail(batch, fmt.Errorf("write journal %s: %w", seg.path, err))
		return
	}
	seg.size.Store(off)
	// Requests that need no sync are done now; the others wait for the
	// syncer, while this goroutine goes on writing: a record that needs
	// no sync (a transaction's outcome) never waits behind an fsync.
	job := syncJob{seg: seg}
	for i, req := range batch {
		if req.pin {
			seg.pins.Add(1)
		}
		if req.sync {
			job.reqs = append(job.reqs, req)
			job.results = append(job.results, results[i])
			continue
		}
		req.done <- results[i]
	}
	if len(job.reqs) > 0 {
		seg.syncing.Add(1) // the segment stays open until the syncer is done with it
		j.syncq <- job
	}
}

// syncJob is written records whose requests wait for them to be durable.
type syncJob struct {
	seg     *segment
	reqs    []*appendReq
	results []appendResult
}

// syncer makes written records durable: it takes every job waiting, one
// fdatasync per segment covers them all (group commit), and completes
// their requests. A job is only queued after its records are written,
// so the fsync that follows covers them. An fsync error fails every
// later append too: what the kernel lost is unknown.
func (j *journal) syncer() {
	defer close(j.syncerDone)
	var jobs []syncJob
	for job := range j.syncq {
		jobs = drain(append(jobs[:0], job), j.syncq, 0)
		var err error
		var synced []*segment
		for _, jb := range jobs {
			if slices.Contains(synced, jb.seg) {
				continue
			}
			synced = append(synced, jb.seg)
			if e := syscall.Fdatasync(int(jb.seg.file.Fd())); e != nil {
				err = fmt.Errorf("fdatasync journal %s: %w", jb.seg.path, e)
				j.broken.Store(&err)
				j.log.Error("journal sync failed; the queue directory takes no more mail", "dir", j.dir, "err", e)
				break
			}
			j.syncs.Add(1)
		}
		for _, jb := range jobs {
			jb.seg.syncing.Add(-1)
			for i, req := range jb.reqs {
				if err != nil {
					req.done <- appendResult{err: err}
					continue
				}
				req.done <- jb.results[i]
			}
		}
	}
}

// streamChunk is the size of the writer's copies of a streamed body.
const streamChunk = 256 << 10

// writeStreamed writes r at off: its frame with the header still empty,
// then its body in chunks, and last the header with the length and the
// checksum of everything after it. Until that last write the record
// fails its checksum, so a crash in the middle leaves a torn record,
// never a wrong one.
func (j *journal) writeStreamed(f *os.File, r record, off int64) error {
	if j.chunk == nil {
		j.chunk = make([]byte, streamChunk)
	}
	if _, err := f.WriteAt(r.frame, off); err != nil {
		return err
	}
	crc := crc32.Update(lengthCRC(r.size()-frameHeader), castagnoli, r.frame[frameHeader:])
	n := r.body.Size()
	at := off + int64(len(r.frame))
	for done := int64(0); done < n; {
		c := j.chunk[:min(int64(len(j.chunk)), n-done)]
		if got, err := r.body.ReadAt(c, done); got < len(c) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read message body: %w", err)
		}
		if _, err := f.WriteAt(c, at); err != nil {
			return err
		}
		crc = crc32.Update(crc, castagnoli, c)
		done += int64(len(c))
		at += int64(len(c))
	}
	var hdr [frameHeader]byte
	putFrameHeader(hdr[:], r.size()-frameHeader, crc)
	_, err := f.WriteAt(hdr[:], off)
	return err
}

// writeAllAt writes bufs back to back at off with pwritev(2), so a batch
// of many small records costs a few syscalls and no copying.
func writeAllAt(f *os.File, bufs [][]byte, off int64) error {
	const iovMax = 1024 // IOV_MAX on Linux
	fd := int(f.Fd())
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		n, err := unix.Pwritev(fd, chunk, off)
		if err != nil {
			return err
		}
		if n == 0 && len(chunk[0]) > 0 {
			return io.ErrShortWrite
		}
		off += int64(n)
		// Skip what was written; a short write resumes mid-buffer.
		for n > 0 && len(chunk) > 0 {
			if n >= len(chunk[0]) {
				n -= len(chunk[0])
				chunk, bufs = chunk[1:], bufs[1:]
				continue
			}
			bufs[0] = bufs[0][n:]
			n = 0
		}
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
	}
	return nil
}

func (j *journal) fail(batch []*appendReq, err error) {
	j.log.Error("journal write failed", "dir", j.dir, "err", err)
	for _, req := range batch {
		req.done <- appendResult{err: err}
	}
}

func (j *journal) isReadOnly() bool { return j.readOnly }

// segments returns a snapshot of the segment list, oldest first.
func (j *journal) segments() []*segment {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]*segment(nil), j.segs...)
}

// dropOldest removes leading segments for which done says so; the active
// segment is never removed. done runs with the journal lock held.
func (j *journal) dropOldest(done func(*segment) bool) {
	j.mu.Lock()
	var drop []*segment
	for len(j.segs) > 1 && done(j.segs[0]) && j.segs[0].pins.Load() == 0 && j.segs[0].syncing.Load() == 0 {
		drop = append(drop, j.segs[0])
		j.segs = j.segs[1:]
	}
	j.mu.Unlock()
	for _, seg := range drop {
		seg.file.Close()
		if err := os.Remove(seg.path); err != nil {
			j.log.Warn("journal: cannot remove finished segment", "segment", seg.path, "err", err)
		}
	}
}

// close stops the writer once queued appends are done and closes files.
func (j *journal) close() {
	j.closeMu.Lock()
	if j.isClosed {
		j.closeMu.Unlock()
		<-j.writerDone
		<-j.syncerDone
		j.closeFiles()
		return
	}
	j.isClosed = true
	close(j.reqs)
	j.closeMu.Unlock()
	<-j.writerDone
	<-j.syncerDone
	j.closeFiles()
}

func (j *journal) closeFiles() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, seg := range j.segs {
		seg.file.Close()
	}
}

// section gives runners a reader over a body inside a segment.
func (seg *segment) section(off, n int64) io.Reader {
	return io.NewSectionReader(seg.file, off, n)
}
