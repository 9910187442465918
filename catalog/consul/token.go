package consul

import (
	"context"
	"sync"

	"github.com/hashicorp/consul/api"
)

// token is the ACL token the source's queries carry, replaceable while
// they run: a reload re-reads token_file. Empty is the client's own
// (its token_file or $CONSUL_HTTP_TOKEN as consul/api read them).
type token struct {
	mu    sync.Mutex // guards the fields; newSource sets changed
	value string
	// changed ends when the token is replaced, so that blocking queries
	// in flight with the old one stop and ask again with the new one.
	changed context.Context
	cancel  context.CancelFunc
}

// SetToken makes every query from now on carry t, and ends the blocking
// queries in flight, which ask again at once with it.
func (s *Source) SetToken(t string) {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	if t == s.tok.value {
		return
	}
	s.tok.value = t
	cancel := s.tok.cancel
	s.tok.changed, s.tok.cancel = context.WithCancel(context.Background())
	cancel() // after the new generation is in place: watchers look for it
	s.log.Info("consul token replaced; queries in flight ask again with it, and every service is read again")
}

// Token is the token the queries carry now ("" is the client's own): the
// one token holder, that director.ha's calls ask too.
func (s *Source) Token() string {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	return s.tok.value
}

// tokenChanged ends when the token in use now is replaced.
func (s *Source) tokenChanged() <-chan struct{} {
	s.tok.mu.Lock()
	defer s.tok.mu.Unlock()
	return s.tok.changed.Done()
}

// query is the options of one query, with the current token, and a
// context that ends with ctx or when the token is replaced; call done
// when the query returned. retry tells whether it ended for a new token.
func (s *Source) query(ctx context.Context, q *api.QueryOptions) (qo *api.QueryOptions, done func(), retry func() bool) {
	s.tok.mu.Lock()
	q.Token = s.tok.value
	changed := s.tok.changed
	s.tok.mu.Unlock()
	qctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(changed, cancel)
	return q.WithContext(qctx), func() { stop(); cancel() }, func() bool { return ctx.Err() == nil && changed.Err() != nil }
}

// WithToken is a source that reads through the same client and budget as
// s, with the token t: a reloaded config's watch carries its new token
// from its first query, while the running config's watch keeps s's, so
// that the token changes with the config or, when the reload is given up,
// not at all. s is left as it is.
func (s *Source) WithToken(t string) *Source {
	n := newSource(s.api, s.opts)
	n.sleep, n.jitter, n.watched = s.sleep, s.jitter, s.watched
	n.tok.value = t
	return n
}
