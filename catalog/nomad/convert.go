package nomad

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/lvs-sync/lvs-sync/catalog"
	"github.com/lvs-sync/lvs-sync/lvs"
)

// registration is one entry of /v1/service/:name: an instance.
type registration struct {
	ID          string
	ServiceName string
	Namespace   string
	NodeID      string
	Datacenter  string
	JobID       string
	AllocID     string
	Address     string
	Port        int
	Tags        []string
	CreateIndex uint64
	ModifyIndex uint64
}

// checkResult is one entry of /v1/client/allocation/:id/checks.
type checkResult struct {
	ID         string
	Check      string // the check's name
	Group      string
	Task       string
	Mode       string // "healthiness" or "readiness"
	Output     string
	Service    string
	Status     string // "success", "failure", "pending"
	StatusCode int
	Timestamp  int64
	// anyService: a result lvs-sync made for a declared check whose
	// service name it cannot resolve (see allocSpec): it counts for every
	// service of the allocation.
	anyService bool
}

// Nomad's check statuses: only success serves.
const (
	checkSuccess = "success"
	checkPending = "pending"
)

// unreadCheck is the check an instance carries when its allocation's
// check results could never be read: it does not serve until they are.
const unreadCheck = "_nomad_checks_unread"

// The tags that carry what a Consul instance has in its weights and meta.
// Nomad services have no meta and no weights; these are their tag forms.
const (
	// TagWeight is "lvs-weight=N": the instance's weight (Consul's
	// Weights.Passing), 0 to 65535; 1 without it.
	TagWeight = "lvs-weight"
	// TagUpperThreshold and TagLowerThreshold are the connection
	// thresholds, as Consul's meta keys of the same names.
	TagUpperThreshold = lvs.MetaUpperThreshold
	TagLowerThreshold = lvs.MetaLowerThreshold
)

// maxWeight is the highest weight a tag may give.
const maxWeight = 65535

// newInstance converts a registration and its allocation's check results
// for the registration's service. unread is the error of an allocation
// whose checks were never read ("" when they were). bad collects a tag it
// could not parse.
func newInstance(r registration, results []checkResult, unread string, bad func(tag string)) *catalog.Instance {
	in := &catalog.Instance{
		ID:         r.ID,
		Node:       r.NodeID,
		Allocation: r.AllocID,
		Address:    r.Address,
		Port:       r.Port,
		Tags:       slices.Clone(r.Tags),
		Weights:    catalog.Weights{Passing: 1, Warning: 1},
		Status:     catalog.Passing,
	}
	for _, t := range r.Tags {
		key, val, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		switch key {
		case TagWeight:
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || n > maxWeight {
				bad(t)
				continue
			}
			in.Weights.Passing = n
		case TagUpperThreshold, TagLowerThreshold:
			// render judges the value, as it does Consul's meta.
			if in.Meta == nil {
				in.Meta = map[string]string{}
			}
			in.Meta[key] = val
		}
	}
	if unread != "" {
		in.Status = catalog.Critical
		in.Checks = []catalog.Check{{CheckID: unreadCheck, Name: "nomad check results", Status: "unread", Output: unread, ServiceID: r.ID}}
		return in
	}
	for _, c := range results {
		if c.Service != r.ServiceName && !c.anyService {
			continue
		}
		in.Checks = append(in.Checks, catalog.Check{CheckID: c.ID, Name: c.Check, Status: c.Status, Output: c.Output, ServiceID: r.ID})
		if c.Status != checkSuccess {
			in.Status = catalog.Critical
		}
	}
	slices.SortFunc(in.Checks, func(a, b catalog.Check) int { return cmp.Compare(a.CheckID, b.CheckID) })
	return in
}

// sortInstances puts instances in the model's order: by node, then ID.
func sortInstances(ins []*catalog.Instance) {
	slices.SortFunc(ins, func(a, b *catalog.Instance) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
}
