package importtest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Responder is real servers on local addresses: every TCP address answers
// HTTP, and HTTPS when the client starts a TLS handshake, with 200 and
// Body to any request, so that ldirectord's negotiate checks (whose
// receive regexps Body contains) and Consul's HTTP and TCP checks pass.
// Every UDP address echoes what it gets, for Consul's UDP checks.
//
// Its HTTPS certificate carries every address and DNSNames; Start writes
// it (its own CA) to a PEM file, for SSL_CERT_FILE, which both Go (Consul)
// and OpenSSL (ldirectord's perl) trust.
type Responder struct {
	Body     string
	TCP      []netip.AddrPort
	UDP      []netip.AddrPort
	DNSNames []string
}

// Start listens on every address until the test ends, and returns the
// path of its certificate.
func (r Responder) Start(t testing.TB) string {
	t.Helper()
	cert, pemPath := r.selfSigned(t)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(r.Body))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	t.Cleanup(func() { _ = srv.Close() })
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, a := range r.TCP {
		l, err := net.Listen("tcp", a.String())
		if err != nil {
			t.Fatalf("real server %s: %v", a, err)
		}
		go func() { _ = srv.Serve(sniffer{Listener: l, tls: tlsConf}) }()
	}
	for _, a := range r.UDP {
		c, err := net.ListenPacket("udp", a.String())
		if err != nil {
			t.Fatalf("real server udp %s: %v", a, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = c.WriteTo(buf[:n], from)
			}
		}()
	}
	return pemPath
}

// sniffer hands out TLS server connections for clients whose first byte
// is a TLS handshake record, plain ones otherwise.
type sniffer struct {
	net.Listener
	tls *tls.Config
}

func (s sniffer) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	pc := &peeked{Conn: c, r: br}
	if err == nil && first[0] == 0x16 {
		return tls.Server(pc, s.tls), nil
	}
	return pc, nil
}

type peeked struct {
	net.Conn
	r *bufio.Reader
}

func (p *peeked) Read(b []byte) (int, error) { return p.r.Read(b) }

func (r Responder) selfSigned(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "real server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, DNSNames: r.DNSNames,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[netip.Addr]bool{}
	for _, a := range r.TCP {
		if !seen[a.Addr()] {
			seen[a.Addr()] = true
			tmpl.IPAddresses = append(tmpl.IPAddresses, a.Addr().AsSlice())
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "real-servers.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path
}
