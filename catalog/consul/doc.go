// Package consul is the Consul implementation of catalog.Source: blocking
// queries against a Consul agent's HTTP API, converted into the neutral
// model of package catalog. It may import catalog, internal/backoff,
// internal/blocking, consul/api and clockwork; nothing above it.
// internal/backoff is the one retry delay it shares with the daemon's
// loop, a leaf of the standard library alone; internal/blocking the one
// blocking-query loop it shares with the pair's lease (ha), a leaf over
// backoff and clockwork: internal because they are no API of lvs-sync's
// (whose promises are its CLI, HCL and HTTP), which a package of the
// module may import.
//
// # Why a change feed, and not one blocking query per service
//
// A blocking query holds its connection for the whole wait. Over plain
// HTTP/1.1 one query per service is one TCP connection per service, and a
// default agent accepts 200 per client IP (idle keep-alives included,
// shared with Nomad and consul-template on the host): at a few hundred
// services the agent answers 429 and nothing ever syncs. Over HTTPS the
// agent speaks HTTP/2, but ~250 streams a connection still puts 10,000
// services at 40 connections. So, whatever the transport, the source
// watches four change feeds, each one blocking query:
//
//   - /v1/health/state/critical and /v1/health/state/warning list every
//     non-passing check (small in a healthy datacenter). Their bodies are
//     diffed by (node, check ID) → (status, service), outputs aside: a
//     service check that changed names its service; a node check
//     (ServiceID "") names every watched service with an instance on that
//     node. Those services are re-read at once ("urgent").
//   - /v1/catalog/nodes is diffed by node → addresses (its address and its
//     tagged addresses lan_ipv4, wan_ipv4, lan_ipv6, wan_ipv6): a node
//     whose addresses changed, or that left, names the services on it.
//   - /v1/catalog/services moves on every registration, deregistration and
//     in-place edit (address, port, weights, tags, meta) anywhere in the
//     datacenter, but its body (name → tags) does not say which service
//     changed. Names that appeared, left or changed tags are re-read at
//     once; then every watched service is re-read ("sweep"), coalesced:
//     any number of moves during a sweep cost one more sweep.
//
// Reads share MaxConnections-4 connections (at least one); urgent reads go
// before sweep reads. Sweep reads are ?stale (any server answers); a
// service's answer older than the one already held is dropped and re-read
// from the leader, so staleness never takes a service back in time.
// A full sweep every ResyncInterval backs all the feeds up.
//
// # The holes each feed has, and what closes them
//
//   - Check flips (passing↔warning↔critical), service and node
//     maintenance (critical checks _service_maintenance:<id> and
//     _node_maintenance), node checks such as serfHealth: always in the
//     health-state feeds, since a flip changes a check's membership or
//     status in the critical or warning list. Exact and urgent.
//   - A check that changes only its output: the state feeds wake but the
//     diff ignores outputs; per-service answers carry the latest outputs,
//     but an output-only difference does not emit a snapshot.
//   - Registration of a passing instance, or of one without checks, and
//     deregistration of a healthy instance: invisible to the state feeds;
//     seen by catalog/services (index moves) → sweep.
//   - In-place edits of address, port, weights, tags, meta: catalog/services
//     index moves, body often not → sweep.
//   - Node address changes, and changes of a node's tagged addresses (which
//     an instance at its node's address takes): not in catalog/services at
//     all → catalog/nodes.
//   - A node event while a read of a service on that node is in flight:
//     the node index built from answers does not know of the instance yet.
//     Every node event is stamped; an answer issued before an event on one
//     of its nodes is re-read.
//   - A change while a read of that service is in flight: re-read after it.
//   - A change a read saw before its feed showed it, undone before that feed
//     answered again (node maintenance, a node or service check, a node's
//     address or tagged address, on and off within one rate-limit
//     interval): the feed's two answers are alike and their diff names
//     nothing, yet the read holds the change. Every answer is compared with
//     the last answers of the health-state and node feeds (its checks in
//     each status, its nodes' addresses and tagged addresses); one that
//     differs from a feed's is re-read at that feed's next answer, which
//     must come, since the feed has a change to show; at once if that feed
//     answered while the read was out, or if the read was ?stale. A
//     difference the feeds never resolve (ACLs that show a feed less than a
//     read) costs a read per answer of that feed.
//   - Changes between start and the feeds' first answers: the first sweep
//     starts only once all four feeds have answered once, so every later
//     change moves a feed past the index it already holds.
//   - Adding or removing a passing check of a passing instance changes no
//     status and no catalog/services index: the kernel is unaffected; only
//     the backstop sweep refreshes Instance.Checks.
//   - An index that goes backwards (a snapshot restore): every held index
//     is forgotten and everything is swept.
//   - ACLs that hide checks or nodes from the token: logged, not closable.
//
// The price: a catalog edit anywhere in the datacenter costs a sweep of
// the watched services, bounded by the connection budget, not by the
// number of changes. Flips cost one read each.
package consul
