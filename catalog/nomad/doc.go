// Package nomad is the Nomad implementation of catalog.Source: the
// services Nomad keeps itself (a job's service block with provider =
// "nomad"), for clusters without Consul. It speaks plain HTTP to the agent
// (the few GETs it needs did not warrant nomad/api and its dependencies)
// and may import catalog, lvs, internal/backoff, internal/blocking,
// go-hclog and clockwork; nothing above it.
//
// # Instances: one feed, then reads
//
// A registration (/v1/service/:name) carries the instance's address, port,
// tags, node ID, job and allocation ID. Nomad answers blocking queries on
// /v1/service/:name and /v1/services, but one blocking query per service
// would hold one connection per service, which the budget forbids (see
// catalog/consul's note: the same limits hold for a Nomad agent). So the
// source follows one feed, /v1/services?namespace=NS, whose index is the
// registrations table's: it moves with every registration, deregistration
// and in-place edit (tags, address, port) of any service in the region.
// Its body does not say which instance changed (it lists names and tags
// only), so every watched service is read again ("sweep"), by the readers:
// a read in flight when the feed moves is done once more after it.
//
// The event stream (/v1/event/stream, topic Service) would name the
// service, but it is one more connection that must be resumed by index
// after every break, and it carries no check results either: the feed and
// a sweep are simpler and miss nothing the stream would show.
//
// # Health: Nomad's catalog has none
//
// Nomad keeps no check status with its registrations: /v1/service/:name
// does not change (same ModifyIndex) when a check fails, and the
// allocation stays running. A check's results live on the client that runs
// it, read per allocation at /v1/client/allocation/:id/checks, which the
// agent asked forwards to that client (hashicorp/nomad #15603, #23317):
// lvs-sync always asks its configured agent, never a client directly
// (as nomad/api would try first). Each
// result names its service, check, mode, status ("success", "failure",
// "pending") and output. An instance is passing while every result for
// its service is "success" (a service without checks is passing, as in
// Consul) and critical otherwise; Instance.Checks carries the results
// (name, Nomad's status word, output) for explain, Instance.Allocation the
// allocation. An allocation that Nomad stops is deregistered at the start
// of its shutdown_delay and so leaves the registrations: render drains it
// as it drains a Consul deregistration. There is no warning state.
//
// The results are polled, within a bounded budget:
//
//   - every allocation under a watched service is read at most once per
//     CheckInterval (default 500 ms), and all of them together at most
//     CheckRate times a second (default 100), round robin;
//   - an allocation a read has just brought is read first, and its
//     service's new answer is held until its results are known, so that a
//     new instance arrives with its health, never passing by default;
//   - allocations no watched service has any more are forgotten.
//
// The cost per allocation is one GET a CheckInterval (2 a second) up to
// CheckRate / CheckInterval allocations (50 by default), then the global
// CheckRate: 100 GETs a second whatever the number, each one RPC from the
// server to a client. A failing check is seen after the check's own
// interval plus one poll period, max(CheckInterval, allocations /
// CheckRate) (0.5 s up to 50 allocations; 10 s at 1,000), plus a request.
//
// Measured (BenchmarkNomad, Nomad 1.11.3 dev agent on this 2-core machine,
// check interval 1 s, default options; N by $LVS_SYNC_NOMAD_ALLOCS):
//
//	bench nomad: allocations=50 flip_p99_ms=1290 requests_per_s_idle=94 conns_max=2
//	bench nomad: allocations=100 flip_p99_ms=1483 requests_per_s_idle=94 conns_max=4
//	bench nomad: allocations=200 flip_p99_ms=2762 requests_per_s_idle=94 conns_max=5
//
// The requests stay at the CheckRate whatever N; the flip delay grows as
// the check interval plus N/CheckRate, as above. Each query cost the
// agent 1.1 to 2.0 ms of CPU (a shared machine), so the default CheckRate
// is 11 to 20% of a core, at 50 allocations as at 1,000 (where a flip would take about
// 1 + 10 s). 200 is the most this machine's dev client runs in reasonable
// time (each raw_exec allocation is three processes, ~40 MB; the run takes
// 3 minutes), not a limit of the source; `make bench` runs 50.
//
// # Weights and options: tags
//
// Nomad services have neither Consul's weights nor meta. Tags of the form
// key=value carry the few options render reads:
//
//   - lvs-weight=N (TagWeight): the weight of the instance (Consul's
//     Weights.Passing), 0 to 65535; 1 without it. Weights.Warning stays 1:
//     there is no warning state to use it;
//   - lvs-upper-threshold=N and lvs-lower-threshold=N: the connection
//     thresholds, as Consul's meta of the same names (render judges them).
//
// A tag lvs-weight that is no such number is logged once and ignored. No
// other meta option has a tag form.
//
// # Connections
//
// Options.MaxConnections (default 8, at least 3) caps the transport,
// idle connections included: one for the feed, a third of the rest for
// service reads, the remainder for check polls. Fetch (render, plan)
// reads as many at a time as the budget allows, without CheckRate.
//
// # The holes, and what closes them
//
//   - Registrations, deregistrations, edits: the feed moves → sweep. A
//     change during a read: the read is done again. Changes before the
//     feed's first answer: the first sweep follows it.
//   - Check flips: not in any feed; seen by the polls, one poll period
//     late. A flip and a flip back between two polls of an allocation is
//     never seen (as a flap shorter than a Consul agent's anti-entropy).
//   - An allocation whose results cannot be read: before the first
//     success, it is critical with a check "_nomad_checks_unread" whose
//     output is the error (a token that may not read, an allocation gone:
//     404); after one, a failure keeps its last results and retries with
//     backoff, so that a blip of the server takes nothing out. The price:
//     a client that died keeps its instances passing until the servers
//     mark its allocations lost (the node's heartbeat timeout) and
//     deregister them.
//   - A check without a result yet: any status but "success" (Nomad's
//     "pending" among them) is critical. Nomad's client registers a
//     group's services (groupServiceHook) before it records their checks
//     as pending (checksHook, the next allocation hook), so on a busy
//     client a registration can be read while its allocation lists no
//     result at all: in one CI run a joiner was served 66 ms before its
//     server listened. So an allocation that lists none is checked against
//     its job (/v1/allocation/:id, once per allocation, while it lists
//     none): each check its task group declares on a Nomad service counts
//     as pending until it has a result. A service whose name the job
//     interpolates (${…}) cannot be matched to its registration: its
//     declared checks count for every service of the allocation, which
//     errs toward not serving for that short while.
//   - Two service blocks of one name in one allocation (two ports): the
//     results name the service, not the port, so each instance carries the
//     results of both.
//   - Check modes: readiness checks (on_update) count as healthiness ones.
//   - Namespaces: the feed lists the namespaces each watched name is in;
//     "*" reads the name in each of them (Nomad's /v1/service/:name does
//     not take "*"). A name that appears in another namespace moves the
//     feed.
//   - An index that goes backwards (a restored snapshot): everything is
//     read again. A new token (SetToken): the feed's query ends, and every
//     service and allocation is read again.
//   - ACLs: every read needs read-job in its namespace. Nomad answers 403
//     rather than filtering, and the source returns a ForbiddenError
//     naming the namespace and the capability (Fetch fails; Watch logs it
//     once at error and emits no snapshot until it may read): never an
//     empty pool.
//   - Node: a registration carries the node's ID, not its name, so
//     Instance.Node is the node ID.
//   - A ResyncInterval sweep (default 5 m) backs the feed up.
//
// The price: any registration change in the region costs a read of every
// watched service (coalesced while reads are out); health costs CheckRate
// GETs a second at most.
package nomad
