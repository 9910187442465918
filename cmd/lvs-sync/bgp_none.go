//go:build !lvs_sync_bgp

package main

import (
	"errors"

	"github.com/hashicorp/go-hclog"

	"github.com/lvs-sync/lvs-sync/config"
)

// newSpeaker stands in for the bgp package's speaker (bgp_speaker.go,
// built with -tags lvs_sync_bgp) until that package is merged: a bgp
// block is then refused at start, not run without announcing.
func newSpeaker(*config.BGP, hclog.Logger) (bgpSpeaker, error) {
	return nil, errors.New("this lvs-sync is built without its BGP speaker (package bgp)")
}
