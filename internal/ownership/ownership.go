// Package ownership is the record of which virtual services lvs-sync made,
// kept across restarts in the state file: the line between lvs-sync's
// services and everyone else's. It imports only the lvs vocabulary and the
// standard library (and x/sys/unix for flock).
//
// The state file is written durably (temp file, fsync, rename, fsync of the
// directory) and, for the life of `lvs-sync run`, held under an exclusive
// lock (see Open), so that two lvs-sync never decide over the same kernel
// from the same record. A file that cannot be understood makes a record
// that owns nothing (Unknown): nothing is then ever deleted.
package ownership

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// ErrUnknown is wrapped by the error of Load and Open when the state file
// exists but cannot be understood (empty, not JSON, an unknown version, a
// bad service key). The record they return with it is Unknown.
var ErrUnknown = errors.New("state file unreadable: lvs-sync owns nothing until it is moved aside")

// LockedError is the error of Open when another process holds the state
// file's lock.
type LockedError struct {
	Path string // the state file
	Lock string // the lock file beside it
	Pid  int    // the holder's pid as it recorded it; 0 when unknown
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.Pid > 0 {
		holder = fmt.Sprintf("another process (pid %d)", e.Pid)
	}
	return fmt.Sprintf("state file %s is in use by %s holding %s: only one lvs-sync may run per state file", e.Path, holder, e.Lock)
}

// Record remembers which virtual services lvs-sync made, across
// restarts, so that one removed from the config is deleted while one made
// by hand or by keepalived is never touched. It is kept in a small JSON
// file; with no path it lives in memory only.
// It is safe for concurrent use: the API reads it while the loop writes.
type Record struct {
	path string
	lock *os.File // the held lock file; nil for Load's records

	writing sync.Mutex // one write of the file at a time; held without mu
	mu      sync.Mutex
	// services are the owned ones, as lvs-sync knows them now; when dirty
	// the file lags behind them and the next Set writes it again.
	services map[lvs.ServiceKey]bool
	dirty    bool
	unknown  bool
}

type ownershipFile struct {
	Version  int      `json:"version"`
	Services []string `json:"services"`
}

// LockPath is the lock file of a state file: beside it, not the file
// itself, because each write replaces the state file by a rename, and a
// lock on the replaced inode would not stop a process that opens the new one.
func LockPath(path string) string { return path + ".lock" }

// Load reads the record at path without taking its lock: for readers
// (status, plan) and for tests. A missing file is an empty record.
//
// A file that exists but cannot be understood gives a record that is
// Unknown, together with an error wrapping ErrUnknown that says how to
// recover; callers may warn and go on with that record, which owns nothing.
// Any other error (the file cannot be read) gives no record.
func Load(path string) (*Record, error) {
	o := &Record{path: path, services: map[lvs.ServiceKey]bool{}}
	if path == "" {
		return o, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state file %s: %w", path, err)
	}
	services, err := parse(b)
	if err != nil {
		o.unknown = true
		return o, fmt.Errorf("state file %s: %w: %w; lvs-sync will delete none of the services in the kernel; "+
			"to recover, move it aside (mv %s %s.bad) and restart: lvs-sync then makes the config's services the kernel lacks, "+
			"leaves those it has as conflicts until their virtual service says adopt = true, "+
			"and leaves every other service alone", path, ErrUnknown, err, path, path)
	}
	o.services = services
	return o, nil
}

func parse(b []byte) (map[lvs.ServiceKey]bool, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty")
	}
	var f ownershipFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("version %d, want 1", f.Version)
	}
	services := map[lvs.ServiceKey]bool{}
	for _, s := range f.Services {
		k, err := lvs.ParseServiceKey(s)
		if err != nil {
			return nil, err
		}
		services[k] = true
	}
	return services, nil
}

// Open takes the exclusive lock of the state file at path and loads it,
// for a process that will write it for its whole life (`lvs-sync run`).
// The lock is flock(2) on LockPath(path), which records the holder's pid;
// when another process holds it Open fails at once with a *LockedError.
// The lock is the kernel's: it goes when the process dies, however it dies.
// With an unreadable file Open returns the Unknown record, locked, and an
// error wrapping ErrUnknown, as Load does. Close releases the lock.
func Open(path string) (*Record, error) {
	if path == "" {
		return Load("")
	}
	lock, err := acquire(path)
	if err != nil {
		return nil, err
	}
	o, err := Load(path)
	if o == nil {
		_ = lock.Close()
		return nil, err
	}
	o.lock = lock
	return o, err
}

func acquire(path string) (*os.File, error) {
	lp := LockPath(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("locking state file %s: %w", path, err)
	}
	// Never removed: a process that opened it before a removal would lock
	// an inode no one else sees.
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking state file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := os.ReadFile(lp) // the pid, if the holder wrote it yet
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &LockedError{Path: path, Lock: lp, Pid: pid}
		}
		return nil, fmt.Errorf("locking state file %s: %w", path, err)
	}
	// Ours now: say whose, for the next one who tries.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// Close writes the file once more if the last write failed, and releases
// the lock if the record holds it. The record still answers afterwards.
func (o *Record) Close() error {
	var err error
	o.mu.Lock()
	dirty := o.dirty
	o.mu.Unlock()
	if dirty {
		err = o.save()
	}
	o.writing.Lock()
	defer o.writing.Unlock()
	if o.lock != nil {
		err = errors.Join(err, o.lock.Close()) // closing the last fd of the open file drops the flock
		o.lock = nil
	}
	return err
}

// Unknown reports that the state file could not be understood: the record
// owns nothing, and Set never writes over the file, which waits for an
// operator to move it aside.
func (o *Record) Unknown() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.unknown
}

// Owns reports whether lvs-sync made the service; always false when the
// record is Unknown.
func (o *Record) Owns(k lvs.ServiceKey) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.unknown && o.services[k]
}

// Keys returns the owned services, sorted; none when Unknown.
func (o *Record) Keys() []lvs.ServiceKey {
	o.mu.Lock()
	keys := slices.AppendSeq(make([]lvs.ServiceKey, 0, len(o.services)), maps.Keys(o.services)) // sized: no growth to collect
	if o.unknown {
		keys = nil
	}
	o.mu.Unlock()
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	return keys
}

// Set replaces the owned services and saves them if they changed, or if
// the last write failed: a failed write leaves the record dirty, holding
// the new services in memory, and each later Set (even with the same
// services) writes again until one succeeds. On failure the file keeps
// its previous content, whole. An Unknown record ignores Set.
func (o *Record) Set(keys map[lvs.ServiceKey]bool) error {
	next := make(map[lvs.ServiceKey]bool, len(keys))
	for k, ok := range keys {
		if ok {
			next[k] = true
		}
	}
	o.mu.Lock()
	if o.unknown || (!o.dirty && maps.Equal(next, o.services)) {
		o.mu.Unlock()
		return nil
	}
	o.services = next
	o.dirty = true
	o.mu.Unlock()
	return o.save()
}

// Change adds and removes services, and saves the record if that changed
// it (or an earlier write failed): a sync of a few services costs a few
// map operations, not a copy of every owned key.
func (o *Record) Change(add, remove []lvs.ServiceKey) error {
	o.mu.Lock()
	if o.unknown {
		o.mu.Unlock()
		return nil
	}
	changed := o.dirty
	for _, k := range add {
		if !o.services[k] {
			o.services[k], changed = true, true
		}
	}
	for _, k := range remove {
		if o.services[k] {
			delete(o.services, k)
			changed = true
		}
	}
	o.dirty = changed
	o.mu.Unlock()
	if !changed {
		return nil
	}
	return o.save()
}

// save writes the services to the file, durably, and clears dirty on
// success.
func (o *Record) save() error {
	o.writing.Lock()
	defer o.writing.Unlock()
	if o.path == "" {
		o.mu.Lock()
		o.dirty = false
		o.mu.Unlock()
		return nil
	}
	f := ownershipFile{Version: 1, Services: []string{}}
	o.mu.Lock()
	written := maps.Clone(o.services)
	o.mu.Unlock()
	keys := slices.Collect(maps.Keys(written))
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	for _, k := range keys {
		f.Services = append(f.Services, k.String())
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(o.path, append(b, '\n')); err != nil {
		return fmt.Errorf("writing state file %s (will retry): %w", o.path, err)
	}
	o.mu.Lock()
	if maps.Equal(written, o.services) { // else a Set came in meanwhile and writes again
		o.dirty = false
	}
	o.mu.Unlock()
	return nil
}

// writeFile replaces path with b so that a crash at any point leaves
// either the old file or the new one, whole: a temp file in the same
// directory, written and fsynced, renamed over path, and the directory
// fsynced so that the rename itself is on disk.
func writeFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// One fixed name: the lock makes one writer at a time, and a temp file
	// left by a crash is simply written over.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
