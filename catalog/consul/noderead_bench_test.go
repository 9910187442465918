package consul

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/lvs-sync/lvs-sync/internal/testconsul"
)

// BenchmarkNodeRead measures what a sweep by node costs per node at the
// bench's 10k size (10,000 services × 10 instances on 100 nodes: 1,000
// instances a node): a full read, decoded to ID, service and ModifyIndex,
// a probe (filtered to nothing, its index alone), and the first sync's
// read (the node's checks and instances, converted). Run it with
// LVS_SYNC_CONSUL set: go test -run '^$' -bench NodeRead -benchmem ./catalog/consul
func BenchmarkNodeRead(b *testing.B) {
	agent := testconsul.Start(b)
	const instances = 1000
	ops := api.TxnOps{}
	flush := func() {
		if ok, resp, _, err := agent.Client.Txn().Txn(ops, nil); err != nil || !ok {
			b.Fatalf("registering: %v %v", err, resp)
		}
		ops = ops[:0]
	}
	if _, err := agent.Client.Catalog().Register(&api.CatalogRegistration{Node: "node-000", Address: "10.250.0.1"}, nil); err != nil {
		b.Fatal(err)
	}
	for i := range instances {
		id := fmt.Sprintf("svc%05d-0", i)
		ops = append(ops, &api.TxnOp{Service: &api.ServiceTxnOp{Verb: api.ServiceSet, Node: "node-000",
			Service: api.AgentService{ID: id, Service: fmt.Sprintf("svc%05d", i), Port: 8080,
				Address: fmt.Sprintf("10.60.%d.%d", i/256, i%256), Weights: api.AgentWeights{Passing: 1, Warning: 1}}}},
			&api.TxnOp{Check: &api.CheckTxnOp{Verb: api.CheckSet, Check: api.HealthCheck{Node: "node-000", CheckID: id + "-ttl",
				Name: id + " ttl", Status: api.HealthPassing, ServiceID: id, Output: "ok"}}})
		if len(ops) >= 64 {
			flush()
		}
	}
	flush()
	s := NewSource(agent.Client, Options{})
	ctx := context.Background()
	full, err := s.readNode(ctx, "node-000", 0, nil)
	if err != nil || len(full.services) != instances {
		b.Fatalf("full read: %d services, %v", len(full.services), err)
	}
	for _, c := range []struct {
		name string
		held uint64
	}{{"full", 0}, {"probe", full.index}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.readNode(ctx, "node-000", c.held, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	watched := map[string]*serviceState{}
	for i := range instances {
		watched[fmt.Sprintf("svc%05d", i)] = &serviceState{}
	}
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if body, err := s.readNodeFull(ctx, "node-000", watched, nil); err != nil || len(body.services) != instances {
				b.Fatalf("first read: %v", err)
			}
		}
	})
}
