package ipvs

// The external tests (package ipvs_test, which may import internal/ipvstest)
// build their tables with the same helpers as the internal ones.
var (
	SvcKey      = svcKey
	RealKeyOf   = realKey
	Svc         = svc
	Gate        = gate
	PlanStrings = planStrings
)

// SyncContract runs the sync daemon contract against another SyncKernel
// (ipvs/genl's, in the VM).
var SyncContract = testSyncContract

// ApplyClock is Apply with its progress lines on a given clock.
var ApplyClock = apply
