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
//     once; then a sweep finds the others, coalesced: any number of moves
//     during a sweep cost one more sweep.
//
// # Sweeps by node
//
// When the nodes (of the nodes feed) are fewer than the watched services,
// a sweep reads nodes, not services: /v1/catalog/node-services/:node
// (Consul 1.7 and later) lists every instance on a node with its
// ModifyIndex. Consul's state store (agent/consul/state/catalog.go and
// catalog_ce.go, 1.22) sets an instance's ModifyIndex to the index of the
// write that changed it and writes nothing when a registration changes
// nothing (ensureServiceTxn); every insert or delete of an instance, and
// every write of the node, moves the node's own index
// (catalogUpdateNodeIndexes), which is the X-Consul-Index of a node read.
// So a sweep probes each node (a read filtered to nothing, its answer the
// node's index alone), reads in full only the nodes whose index moved
// since they were last read in full, and re-reads at once ("urgent") the
// watched services whose instances on such a node are another number than
// in their latest answer, or carry a ModifyIndex above any in it. An edit
// then costs a probe per node, a node read and a service read, where a
// per-service sweep costs a read per watched service: at 1,000 services on
// 100 nodes, 102 small reads instead of 1,000; at 10,000, the body of the
// one node changed (1,000 instances, decoded to ID, service and
// ModifyIndex alone) instead of 100,000 instances with their checks. Node
// reads go after urgent reads and before per-service sweep reads, and are
// never ?stale: a node read must see what the catalog/services answer that
// asked for it showed.
//
// # The first sync by node
//
// With node sweeps (and once all four feeds have answered), the first sync
// reads nodes, not services: each node of the nodes feed is read in full,
// its checks (/v1/health/node/:node) and then its instances
// (/v1/catalog/node-services/:node, with the node's addresses), never
// ?stale; once every node has answered, each watched service's first
// answer is built from them, as a health read of it would be (newInstance
// over the node's checks and the instance's own), and taken in as a read
// (the index kept as the lowest of its nodes' reads', so that any later
// read supersedes it; disagrees and the node events as for a read issued
// when the first node read went). At 10,000 services × 10 on 100 nodes,
// 200 reads instead of 10,000. These reads give each node's index, as a
// full node read does for the later sweeps.
//
// Why the node's checks are read, and not taken from the health-state
// feeds: the feeds hold the non-passing checks alone, so an answer built
// from them would lack every passing check, and differ (SameContent) from
// the next read of each service: the backstop sweep would emit every
// service as changed. A read of the node's checks makes the answer a
// health read's exactly, for a read per node.
//
// Why the checks are read before the instances: Consul writes a
// registration and its checks in one write, and the checks read's index
// is the checks table's, which every check write moves. An instance whose
// ModifyIndex is at most that index was there, checks and all, when the
// checks were read; one above it may not have been (registered or edited
// since, perhaps with a critical check): its service is read per service.
// See the holes below for the rest.
//
// The feeds are the Source's, not a watch's: every watch of one Source
// (a reload runs the new config's beside the running config's until it
// has answered) takes the same four feeds' answers (hub.go), so that two
// watches hold four blocking queries, not eight, and their reads are not
// left waiting for a feed to answer.
//
// Reads share MaxConnections-4 connections (at least one); urgent reads go
// first. Per-service sweep reads are ?stale (any server answers); a
// service's answer older than the one already held is dropped and re-read
// from the leader, so staleness never takes a service back in time.
// A full per-service sweep every ResyncInterval backs all the feeds up
// (and refreshes Instance.Checks, which a sweep's node reads do not carry).
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
//     seen by catalog/services (index moves) → sweep: by node, the
//     instance's node's count for its service moved.
//   - In-place edits of address, port, weights, tags, meta: catalog/services
//     index moves, body often not → sweep: by node, the instance's
//     ModifyIndex moved above its service's latest answer's.
//   - A registration on a node the nodes feed has not shown yet: the node
//     sweep its catalog/services move started does not read that node; the
//     nodes feed's answer that shows the node reads it.
//   - A catalog/services move while a node read is out: the node is read
//     again after it, as a service is.
//   - A node read that finds a difference for a service whose read is out,
//     or that has never answered: that read may be from before the change,
//     so the service is read again after it. A node read that finds no
//     difference against an answer newer than itself is right: the answer
//     holds the change.
//   - A node whose index has not moved since its last full read: the probe
//     skips it; whatever that read named was queued then, and answers
//     never go back in time (see above), so it still holds.
//   - The first node sweep: the first sync's node reads keep each node's
//     index as if read in full; every service's first answer is built
//     from those reads, or read after them, so holds all a node had at
//     its index. Without it the first edit would read every node in full
//     (at 10,000 services on 100 nodes, 100 bodies of 1,000 instances:
//     19 ms and 2.4 MB allocated each, BenchmarkNodeRead).
//   - The first sync by node: an instance edited or registered between
//     its node's checks read and instances read (its ModifyIndex above the
//     checks read's index): its checks may be missing; the service is read
//     per service (so is any service edited without a check write since
//     the last check write anywhere: a doubt, not a fault). A check that
//     changed after the checks read, or a node's address after the
//     instances read: the feeds show it, as for any read (disagrees, node
//     events). A registration after the instances read moves
//     catalog/services: its sweep probes the node, whose index moved. A
//     registration on a node the nodes feed has not shown yet: the nodes
//     feed's next answer reads that node (as below), and the service,
//     whose count there differs, is read. A node that leaves during the
//     first sync is not waited for; its services' answers disagree with
//     the nodes feed and are read again. A service a feed named during the
//     first sync is read, not built. A node read that fails or that ACLs
//     filtered: every service not answered yet is read per service (a
//     filtered node read does not say which service lost instances).
//   - A node read that fails: that sweep (or first sync) is done per service. A Consul
//     without the endpoint (404, before 1.7): every sweep per service,
//     logged once. Nodes as many as the watched services or more: per
//     service, fewer reads.
//   - A service edited on a node with two instances of it, one edit and one
//     deregistration between two node reads: the count moved or the
//     ModifyIndex did; both are caught.
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
//   - An index that goes backwards (a snapshot restore): every held index,
//     the nodes' included, is forgotten and everything is swept per
//     service (a restored ModifyIndex may be below an answer's).
//   - ACLs that hide checks or nodes from the token: logged, not closable.
//     A node read filtered by ACLs is used as any: Consul shows an instance
//     in a node read exactly when it shows it in a health read (node:read
//     on its node and service:read on its service both:
//     filterNodeServiceList and CheckServiceNode.CanRead, agent/structs),
//     and a node read only names services to read, so an instance hidden
//     from it is neither missed nor taken away.
//
// The price: a catalog edit anywhere in the datacenter costs a sweep: a
// probe per node and a read of each node and watched service it changed
// (a read of every watched service when the nodes are not fewer), bounded
// by the connection budget, not by the number of changes. Flips cost one
// read each.
package consul
