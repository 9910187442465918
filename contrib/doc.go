// Package contrib holds no code: it is the home of the tests of what
// contrib/ ships for the operators' own tools, the Prometheus alert rules
// (contrib/prometheus) and the Grafana dashboard (contrib/grafana), so
// that `go test ./...`, and so `make test`, checks them: promtool checks
// the rules and runs their unit tests, and every metric name the rules
// and the dashboard use must be one internal/metrics registers.
package contrib
