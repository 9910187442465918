package bgp

import (
	"context"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// gobgpHandler carries GoBGP's slog records into hclog. GoBGP logs every
// connect attempt, FSM step and peer (re)configuration at INFO; those are
// its chatter and become DEBUG here. Its WARN and ERROR stay what they
// are. The session going up and down is said once, at INFO and WARN, by
// the speaker itself from the peer events, with the neighbour's address:
// that is the line an operator reads.
type gobgpHandler struct {
	log   hclog.Logger
	attrs []any
	group string
}

func newGobgpLogger(log hclog.Logger) *slog.Logger {
	return slog.New(&gobgpHandler{log: log})
}

func level(l slog.Level) hclog.Level {
	switch {
	case l >= slog.LevelError:
		return hclog.Error
	case l >= slog.LevelWarn:
		return hclog.Warn
	default:
		return hclog.Debug
	}
}

func (h *gobgpHandler) Enabled(_ context.Context, l slog.Level) bool {
	switch level(l) {
	case hclog.Error:
		return h.log.IsError()
	case hclog.Warn:
		return h.log.IsWarn()
	default:
		return h.log.IsDebug()
	}
}

func (h *gobgpHandler) Handle(_ context.Context, r slog.Record) error {
	args := append([]any(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		args = h.appendAttr(args, a)
		return true
	})
	// GoBGP capitalises its messages; the house logs lowercase ones.
	msg := r.Message
	if msg != "" {
		msg = strings.ToLower(msg[:1]) + msg[1:]
	}
	h.log.Log(level(r.Level), msg, args...)
	return nil
}

func (h *gobgpHandler) appendAttr(args []any, a slog.Attr) []any {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return args
	}
	key := strings.ToLower(a.Key)
	if h.group != "" {
		key = h.group + "." + key
	}
	if a.Value.Kind() == slog.KindGroup {
		sub := &gobgpHandler{group: key}
		for _, g := range a.Value.Group() {
			args = sub.appendAttr(args, g)
		}
		return args
	}
	return append(args, key, a.Value.Any())
}

func (h *gobgpHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]any(nil), h.attrs...)
	for _, a := range attrs {
		n.attrs = h.appendAttr(n.attrs, a)
	}
	return &n
}

func (h *gobgpHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	if n.group != "" {
		n.group += "." + name
	} else {
		n.group = name
	}
	return &n
}
