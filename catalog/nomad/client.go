package nomad

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ForbiddenError is Nomad's 403: the token may not read what was asked.
// It names the namespace and the capability the token lacks, so that an
// operator fixes the policy instead of finding an empty pool.
type ForbiddenError struct {
	Path       string
	Namespace  string
	Capability string // the ACL capability the read needs
	Body       string // Nomad's own words ("Permission denied")
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("nomad refused %s: the token may not read namespace %q (it needs capability %q in that namespace's policy): %s",
		e.Path, e.Namespace, e.Capability, e.Body)
}

// httpClient is the part of Nomad's HTTP API the source uses: plain GETs
// of JSON with Nomad's blocking-query parameters, over one transport
// capped at the connection budget.
type httpClient struct {
	base   *url.URL
	region string
	http   *http.Client
}

func newHTTPClient(opts *Options) (*httpClient, error) {
	base, err := url.Parse(opts.Address)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("nomad address %q: want a URL such as http://127.0.0.1:4646", opts.Address)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = opts.MaxConnections
	tr.MaxIdleConnsPerHost = opts.MaxConnections
	// Never close an idle connection of the budget: a close and a redial
	// could hold budget+1 connections at the agent for a moment.
	tr.IdleConnTimeout = 0
	if base.Scheme == "https" || opts.CACert != "" || opts.ClientCert != "" || opts.SkipVerify {
		tc, err := tlsConfig(opts)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = tc
	}
	return &httpClient{base: base, region: opts.Region, http: &http.Client{Transport: tr}}, nil
}

func (c *httpClient) transport() *http.Transport { return c.http.Transport.(*http.Transport) }

func tlsConfig(opts *Options) (*tls.Config, error) {
	tc := &tls.Config{ServerName: opts.TLSServerName, InsecureSkipVerify: opts.SkipVerify} //nolint:gosec // the operator's choice, as NOMAD_SKIP_VERIFY
	if opts.CACert != "" {
		pem, err := os.ReadFile(opts.CACert)
		if err != nil {
			return nil, fmt.Errorf("nomad ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nomad ca_cert %s: no PEM certificate in it", opts.CACert)
		}
		tc.RootCAs = pool
	}
	if opts.ClientCert != "" || opts.ClientKey != "" {
		cert, err := tls.LoadX509KeyPair(opts.ClientCert, opts.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("nomad client_cert %s, client_key %s: %w", opts.ClientCert, opts.ClientKey, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// request is one GET: its path, namespace, the capability a 403 means the
// token lacks, and, for a blocking query, the index to wait on and for
// how long.
type request struct {
	path       string
	namespace  string
	capability string
	token      string
	index      uint64
	wait       time.Duration
	// timeout bounds a request that is no blocking query (default
	// readTimeout), so that a hung agent or client holds no connection of
	// the budget for ever.
	timeout time.Duration
}

// readTimeout bounds a plain read; a blocking query may take its wait,
// plus the up to wait/16 of jitter Nomad adds, plus this.
const readTimeout = 30 * time.Second

// get decodes the answer of r into v and returns its X-Nomad-Index (0
// when the endpoint gives none, as the client endpoints do).
func (c *httpClient) get(ctx context.Context, r request, v any) (uint64, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + r.path
	q := url.Values{}
	if r.namespace != "" {
		q.Set("namespace", r.namespace)
	}
	if c.region != "" {
		q.Set("region", c.region)
	}
	if r.index > 0 {
		q.Set("index", strconv.FormatUint(r.index, 10))
		q.Set("wait", fmt.Sprintf("%dms", r.wait.Milliseconds()))
	}
	u.RawQuery = q.Encode()
	limit := cmp.Or(r.timeout, readTimeout)
	if r.index > 0 {
		limit = r.wait + r.wait/16 + readTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	if r.token != "" {
		req.Header.Set("X-Nomad-Token", r.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		text := strings.TrimSpace(string(body))
		if resp.StatusCode == http.StatusForbidden {
			return 0, &ForbiddenError{Path: r.path, Namespace: r.namespace, Capability: r.capability, Body: text}
		}
		return 0, &StatusError{Path: r.path, Code: resp.StatusCode, Body: text}
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return 0, fmt.Errorf("decoding nomad's answer to %s: %w", r.path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // keep the connection for reuse
	var index uint64
	if h := resp.Header.Get("X-Nomad-Index"); h != "" {
		if index, err = strconv.ParseUint(h, 10, 64); err != nil {
			return 0, fmt.Errorf("nomad's answer to %s: X-Nomad-Index %q: %w", r.path, h, err)
		}
	}
	return index, nil
}

// StatusError is any other answer than 200 and 403.
type StatusError struct {
	Path string
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("nomad answered %s with %d: %s", e.Path, e.Code, e.Body)
}

// notFound reports whether err is Nomad's 404 (an allocation gone).
func notFound(err error) bool {
	var s *StatusError
	return errors.As(err, &s) && s.Code == http.StatusNotFound
}
