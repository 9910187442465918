package importer

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvs-sync/lvs-sync/internal/progress"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/golden")

// TestGolden imports every config of testdata and compares the notes and
// both files with testdata/golden; -update rewrites them.
func TestGolden(t *testing.T) {
	for tool, parse := range map[string]func(string, []byte, *progress.Reporter) (*Result, error){
		"ldirectord": ParseLdirectord, "keepalived": ParseKeepalived,
	} {
		files, _ := filepath.Glob(filepath.Join("testdata", tool, "*"))
		if len(files) == 0 {
			t.Fatalf("no %s configs in testdata", tool)
		}
		for _, f := range files {
			name := filepath.Base(f)
			t.Run(tool+"/"+name, func(t *testing.T) {
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				got := render(parse(name, src, nil))
				golden := filepath.Join("testdata", "golden", tool, name+".golden")
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update)", err)
				}
				if got != string(want) {
					t.Errorf("import of %s differs from %s:\n%s", f, golden, got)
				}
			})
		}
	}
}

func render(r *Result, err error) string {
	if err != nil {
		return "errors:\n" + err.Error() + "\n"
	}
	var b strings.Builder
	for _, n := range r.Notes {
		b.WriteString(n.String() + "\n")
	}
	b.WriteString("--- lvs-sync.hcl\n")
	b.Write(LVSSyncHCL(r))
	b.WriteString("--- consul-services.hcl\n")
	b.Write(ConsulServicesHCL(r))
	return b.String()
}

// TestLdirectord checks the mapping of single directives.
func TestLdirectord(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		// want are substrings of the output; notes of the notes.
		want, notes []string
		err         string
	}{
		{name: "defaults: wrr, tcp, a 5s connect timeout, every 10s",
			src:  "virtual=10.0.0.1:22\n\treal=10.0.0.2:22 gate\n\tchecktype=connect\n",
			want: []string{`scheduler  = "wrr"`, `protocol   = "tcp"`, `forwarding = "gate"`, `tcp      = "10.0.0.2:22"`, `interval = "10s"`, `timeout  = "5s"`}},
		{name: "port 53 is udp, and its dns check a UDP check",
			src:   "virtual=10.0.0.1:53\n\treal=10.0.0.2:53 masq 3\n",
			want:  []string{`protocol   = "udp"`, `udp      = "10.0.0.2:53"`, `passing = 3`, `timeout  = "30s"`},
			notes: []string{"1: service = dns negotiates"}},
		{name: "negotiate http: request, checkport, virtualhost, HEAD, failurecount",
			src: "failurecount=3\nvirtual=10.0.0.1:80\n\treal=10.0.0.2:8080 masq\n\trequest=\"health\"\n\tcheckport=9000\n" +
				"\tvirtualhost=www.example.com\n\thttpmethod=HEAD\n\tnegotiatetimeout=4\n",
			want: []string{`http                     = "http://10.0.0.2:9000/health"`, `method                   = "HEAD"`,
				`Host = ["www.example.com"]`, `failures_before_critical = 3`, `timeout                  = "4s"`, `port    = 8080`}},
		{name: "a per-real request and receive",
			src:   "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate 2 \"/a\", \"ok\"\n\treal=10.0.0.3:80 gate\n",
			want:  []string{`"http://10.0.0.2:80/a"`, `"http://10.0.0.3:80/"`},
			notes: []string{`2: receive "ok"`}},
		{name: "persistent, quiescent, fallback, global settings after the block",
			src:  "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n\tpersistent=600\n\tfallback=127.0.0.1\nquiescent=yes\ncleanstop=yes\n",
			want: []string{`persistence = "600s"`, `quiescent   = true`, `fallback    = "127.0.0.1:80"`, `cleanup_on_exit = true`}},
		{name: "a range of reals",
			src:  "virtual=10.0.0.1:80\n\treal=10.0.0.2->10.0.0.4:80 gate\n\tchecktype=on\n",
			want: []string{`address = "10.0.0.2"`, `address = "10.0.0.3"`, `address = "10.0.0.4"`}},
		{name: "IPv6",
			src:  "virtual6=[2001:db8::1]:80\n\treal6=[2001:db8::2]:80 masq\n\tfallback6=[::1]:80 masq\n",
			want: []string{`address     = "[2001:db8::1]:80"`, `"http://[2001:db8::2]:80/"`, `fallback    = "[::1]:80"`}},
		{name: "https with virtualhost verifies the certificate for that name",
			src:  "virtual=10.0.0.1:443\n\treal=10.0.0.2:443 masq\n\tvirtualhost=shop.example.com\n",
			want: []string{`tls_server_name = "shop.example.com"`, `"https://10.0.0.2:443/"`}},
		{name: "no equivalent: each is a note with its line",
			src: "emailalert=\"ops@example.com\"\ncallback=\"/bin/true\"\nvirtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n" +
				"\tnetmask=255.255.255.0\n\tschedflags=sh-port\n\treceive=\"ok.*\"\n",
			notes: []string{"1: emailalert", "2: callback", "5: netmask 255.255.255.0", "6: schedflags", `7: receive "ok.*"`}},
		{name: "persistence netmask, one-packet scheduling and connection thresholds carried over",
			src: "virtual=10.0.0.1:53\n\treal=10.0.0.2:53 gate 1 u:100 l:50\n\treal=10.0.0.3:53 gate 2 \"u:7\"\n\tprotocol=udp\n" +
				"\tpersistent=60\n\tnetmask=255.255.255.0\n\tops=yes\n\tchecktype=on\n" +
				"virtual6=[2001:db8::1]:80\n\treal6=[2001:db8::2]:80 masq\n\tpersistent=30\n\tnetmask=64\n\tchecktype=on\n",
			want: []string{`persistence_netmask = "255.255.255.0"`, `ops = true`, `persistence_netmask = "64"`,
				`lvs-lower-threshold = "50" lvs-upper-threshold = "100"`, `imported_from = "t.cf:3" lvs-upper-threshold = "7"`}},
		{name: "a threshold above INT_MAX, which the kernel refuses, is left out",
			src:   "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate 1 u:2147483648\n\treal=10.0.0.3:80 gate 1 u:99999999999999999999\n\treal=10.0.0.4:80 gate 1 u:2147483647\n",
			want:  []string{`lvs-upper-threshold = "2147483647"`},
			notes: []string{"2: real 10.0.0.2: connection threshold u:2147483648 is above 2147483647, which the kernel refuses: left out", "3: real 10.0.0.3: connection threshold u:99999999999999999999 is above 2147483647"}},
		{name: "options that cannot be carried over are notes",
			src: "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate 1 l:5\n\tops=yes\n\tpersistent=60\n\tnetmask=255.0.255.0\n",
			notes: []string{"2: real 10.0.0.2: lower connection threshold 5 above the upper 0", "3: ops = yes: one-packet scheduling is for UDP",
				"5: netmask 255.0.255.0: \"255.0.255.0\": the mask's ones must come first"}},
		{name: "fwmark: a mark service, its fallback on the packet's port",
			src: "virtual=7\n\treal=10.0.0.2 masq\n\tprotocol=fwm\n\tcheckport=80\n\tfallback=10.0.0.9:8080\n\tpersistent=600\n" +
				"virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n",
			want: []string{`virtual_service "fwmark-7" { fwmark = 7 scheduler = "wrr" forwarding = "masq" persistence = "600s" fallback = "10.0.0.9" }`,
				`"http://10.0.0.2:80/"`, `virtual_service "tcp-10-0-0-1-80"`},
			notes: []string{"1: virtual = 7 is a firewall-mark service: the VIPs its rule marks are not in ldirectord.cf"}},
		{name: "fwmark: a NAT real with a port", src: "virtual=7\n\treal=10.0.0.2:8080 masq\n",
			want:  []string{`port = 8080`},
			notes: []string{"2: real 10.0.0.2: ldirectord sends every marked port to port 8080 with NAT"}},
		{name: "fwmark: virtual6 and a servicename",
			src:  "virtual6=3\n\treal6=[2001:db8::2] gate\n\tservicename=Web Six\n\tchecktype=on\n",
			want: []string{`virtual_service "web-six" { fwmark = 3 family = "ipv6"`, `address = "2001:db8::2"`}},
		{name: "fwmark: a mark with protocol tcp", src: "virtual=7\n\treal=10.0.0.2 gate\n\tprotocol=tcp\n",
			err: `t.cf:3: error: virtual = 7 is a firewall mark, whose protocol is fwm, not "tcp"`},
		{name: "fwmark: mark 0", src: "virtual=0\n\treal=10.0.0.2 gate\n",
			err: `t.cf:1: error: virtual = 0: a firewall mark is 1 to 4294967295`},
		{name: "a real that is the fallback is the fallback",
			src:   "virtual=10.0.0.1:143\n\treal=127.0.0.1:143 masq\n\treal=10.0.0.2:143 masq\n\tfallback=127.0.0.1:143 masq\n\tchecktype=on\n",
			notes: []string{"2: real 127.0.0.1:143 is also the fallback"}},
		{name: "weight 0 is left out",
			src:   "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate 0\n",
			notes: []string{"2: real 10.0.0.2:80 has weight 0"}},
		{name: "a blank line ends the block", src: "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n\n\tscheduler=rr\n",
			err: "t.cf:4: error: unknown directive"},
		{name: "errors name file and line", src: "checktimeout=x\nvirtual=10.0.0.1:80\n\treal=10.0.0.2:80 direct\n\tbogus=1\n",
			err: "t.cf:1: error: checktimeout: \"x\" is not a positive number of seconds\nt.cf:3: error: real 10.0.0.2: forwarding method must be gate, masq or ipip, not \"direct\"\nt.cf:4: error: unknown directive \"bogus\" in the virtual service of line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseLdirectord("t.cf", []byte(tc.src), nil)
			check(t, r, err, tc.want, tc.notes, tc.err)
		})
	}
}

// TestKeepalived checks the mapping of single keywords.
func TestKeepalived(t *testing.T) {
	for _, tc := range []struct {
		name, src   string
		want, notes []string
		err         string
	}{
		{name: "DR, wrr, persistence, sorry server, TCP_CHECK",
			src: "virtual_server 10.0.0.1 80 {\n delay_loop 3\n lb_algo wrr\n lb_kind DR\n persistence_timeout 120\n sorry_server 10.0.0.9 80\n" +
				" real_server 10.0.0.2 80 {\n  weight 5\n  TCP_CHECK {\n   connect_timeout 2\n   retry 2\n  }\n }\n}\n",
			want: []string{`scheduler   = "wrr"`, `forwarding  = "gate"`, `persistence = "120s"`, `fallback    = "10.0.0.9:80"`,
				`passing = 5`, `tcp                      = "10.0.0.2:80"`, `interval                 = "3s"`, `timeout                  = "2s"`, `failures_before_critical = 3`}},
		{name: "defaults: wlc, NAT, UDP (as keepalived 2.2), a 60s interval; lvs_sched and lvs_method are the new names",
			src:   "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 8080 {\n  HTTP_GET {\n   url {\n    path /health\n   }\n  }\n }\n}\nvirtual_server 10.0.0.1 81 {\n lvs_sched sh\n lvs_method TUN\n}\n",
			want:  []string{`protocol = "udp"`, `scheduler  = "wlc"`, `forwarding = "masq"`, `"http://10.0.0.2:8080/health"`, `interval = "60s"`, `scheduler  = "sh"`, `forwarding = "ipip"`},
			notes: []string{"1: virtual_server 10.0.0.1:80 has no protocol: keepalived makes it UDP"}},
		{name: "brace on its own line, quoted words, ! comments",
			src:  "virtual_server 10.0.0.1 443\n{\n protocol UDP ! one\n real_server 10.0.0.2 443\n {\n  weight \"2\" # two\n }\n}\n",
			want: []string{`protocol   = "udp"`, `passing = 2`}},
		{name: "group: one virtual service per address, one Consul service",
			src: "virtual_server_group web {\n 10.0.0.1 80\n 10.0.0.2 80\n fwmark 3\n}\nvirtual_server group web {\n lb_kind DR\n" +
				" real_server 10.0.1.1 80 {\n  weight 1\n }\n}\n",
			want:  []string{`virtual_service "web-10-0-0-1-80"`, `virtual_service "web-10-0-0-2-80"`, `service    = "web"`, `name    = "web"`},
			notes: []string{"4: fwmark 3 in virtual_server_group web"}},
		{name: "fwmark: no protocol, the sorry server and reals on the packet's port",
			src: "virtual_server fwmark 5 {\n lb_kind NAT\n protocol TCP\n sorry_server 10.0.0.9 80\n" +
				" real_server 10.0.0.2 443 {\n  TCP_CHECK {\n  }\n }\n}\n",
			want: []string{`virtual_service "fwmark-5" { fwmark = 5 scheduler = "wlc" forwarding = "masq" fallback = "10.0.0.9" }`,
				`port = 443`, `tcp = "10.0.0.2:443"`},
			notes: []string{"1: virtual_server fwmark 5 is a firewall-mark service: the VIPs its rule marks are not in keepalived.conf",
				"5: real_server 10.0.0.2:443: keepalived sends every marked port to port 443 with NAT"}},
		{name: "fwmark: mark 0", src: "virtual_server fwmark 0 {\n}\n",
			err: `t.conf:1: error: virtual_server fwmark "0": a firewall mark is 1 to 4294967295`},
		{name: "notes: include, fwmark, vrrp, digest, MISC_CHECK, inhibit_on_failure",
			src: "include /etc/keepalived/more.conf\nvrrp_instance VI {\n state MASTER\n}\nvirtual_server fwmark 1 {\n}\n" +
				"virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  inhibit_on_failure\n  MISC_CHECK {\n   misc_path /bin/true\n  }\n" +
				"  HTTP_GET {\n   url {\n    path /\n    digest abc\n    status_code 301\n   }\n  }\n }\n}\n",
			want:  []string{`quiescent  = true`},
			notes: []string{"1: include", "2: vrrp_instance", "5: virtual_server fwmark 1", "9: inhibit_on_failure", "10: MISC_CHECK", "16: digest", "17: status_code 301"}},
		{name: "persistence_granularity, ops and thresholds, whatever their order",
			src: "virtual_server 10.0.0.1 53 {\n ops\n persistence_granularity 255.255.0.0\n persistence_timeout 60\n protocol UDP\n" +
				" real_server 10.0.0.2 53 {\n  uthreshold 100\n  lthreshold 20\n }\n real_server 10.0.0.3 53 {\n  lthreshold 5\n }\n}\n" +
				"virtual_server 10.0.0.1 80 {\n protocol TCP\n ops\n persistence_granularity 255.255.0.0\n real_server 10.0.0.2 80 {\n  uthreshold x\n }\n}\n",
			want: []string{`persistence_netmask = "255.255.0.0"`, `ops = true`, `lvs-lower-threshold = "20" lvs-upper-threshold = "100"`},
			notes: []string{"10: real_server 10.0.0.3:53: lthreshold 5 above uthreshold 0", "16: ops: one-packet scheduling is for UDP, and this service is tcp",
				"17: persistence_granularity 255.255.0.0 groups the clients of a persistent service", `19: uthreshold: "x" is not a connection count`}},
		{name: "a threshold above INT_MAX, which the kernel refuses, is left out",
			src:   "virtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n  uthreshold 2147483648\n }\n real_server 10.0.0.3 80 {\n  uthreshold 4294967295\n  lthreshold -1\n }\n}\n",
			notes: []string{"3: uthreshold 2147483648: above 2147483647, which the kernel refuses: left out", "6: uthreshold 4294967295: above 2147483647", `7: lthreshold: "-1" is not a connection count`}},
		{name: "errors", src: "virtual_server 10.0.0.1 80 {\n lb_kind XX\n real_server nowhere 80 {\n }\n",
			err: "t.conf:2: error: lb_kind must be NAT, DR or TUN, not \"XX\"\nt.conf:3: error: real_server: \"nowhere\" is not an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseKeepalived("t.conf", []byte(tc.src), nil)
			check(t, r, err, tc.want, tc.notes, tc.err)
		})
	}
}

func check(t *testing.T, r *Result, err error, want, notes []string, wantErr string) {
	t.Helper()
	if wantErr != "" {
		var es Errors
		if !errors.As(err, &es) || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	out := string(LVSSyncHCL(r)) + string(ConsulServicesHCL(r))
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, w := range want {
		if !strings.Contains(squeeze(out), squeeze(w)) {
			t.Errorf("no %q in\n%s", w, out)
		}
	}
	var got []string
	for _, n := range r.Notes {
		got = append(got, n.String())
	}
	all := strings.Join(got, "\n")
	for _, n := range notes {
		line, rest, _ := strings.Cut(n, ": ")
		if !strings.Contains(all, ":"+line+": warning: "+rest) {
			t.Errorf("no note %q in\n%s", n, all)
		}
	}
}
