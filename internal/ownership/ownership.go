// Package ownership is the record of which virtual services lvs-sync made,
// kept across restarts in the state file: the line between lvs-sync's
// services and everyone else's. It imports only the lvs vocabulary.
package ownership

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/lvs-sync/lvs-sync/lvs"
)

// Record remembers which virtual services lvs-sync made, across
// restarts, so that one removed from the config is deleted while one made
// by hand or by keepalived is never touched. It is kept in a small JSON
// file; with no path it lives in memory only.
// It is safe for concurrent use: the API reads it while the loop writes.
type Record struct {
	path     string
	mu       sync.Mutex
	services map[lvs.ServiceKey]bool
}

type ownershipFile struct {
	Version  int      `json:"version"`
	Services []string `json:"services"`
}

// Load reads the record at path; a missing file is an empty one.
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
	var f ownershipFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("reading state file %s: %w", path, err)
	}
	for _, s := range f.Services {
		k, err := lvs.ParseServiceKey(s)
		if err != nil {
			return nil, fmt.Errorf("state file %s: %w", path, err)
		}
		o.services[k] = true
	}
	return o, nil
}

// Owns reports whether lvs-sync made the service.
func (o *Record) Owns(k lvs.ServiceKey) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.services[k]
}

// Keys returns the owned services, sorted.
func (o *Record) Keys() []lvs.ServiceKey {
	o.mu.Lock()
	keys := slices.Collect(maps.Keys(o.services))
	o.mu.Unlock()
	slices.SortFunc(keys, lvs.ServiceKey.Compare)
	return keys
}

// Set replaces the owned services and saves them if they changed.
func (o *Record) Set(keys map[lvs.ServiceKey]bool) error {
	o.mu.Lock()
	if maps.Equal(keys, o.services) {
		o.mu.Unlock()
		return nil
	}
	o.services = maps.Clone(keys)
	o.mu.Unlock()
	if o.path == "" {
		return nil
	}
	f := ownershipFile{Version: 1, Services: []string{}}
	for _, k := range o.Keys() {
		f.Services = append(f.Services, k.String())
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.path), 0o755); err != nil {
		return fmt.Errorf("writing state file %s: %w", o.path, err)
	}
	tmp := o.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing state file %s: %w", o.path, err)
	}
	if err := os.Rename(tmp, o.path); err != nil {
		return fmt.Errorf("writing state file %s: %w", o.path, err)
	}
	return nil
}
