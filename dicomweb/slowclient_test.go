package dicomweb

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
	"github.com/nirproxy/nirproxy/policy"
	"github.com/nirproxy/nirproxy/policy/audit"
	"github.com/nirproxy/nirproxy/upstream"
)

// The tests here put a real TCP connection with small socket buffers between the proxy and a
// client, so that a client that stops reading blocks the proxy's writes within a few hundred
// kilobytes, as a viewer on a slow or paused link does. The trusts' idle timeout is short and
// their answers are large, so a proxy that timed the trusts while it waits on its client would
// cut the stream and charge the trust.

const (
	slowIdle      = time.Second // the trusts' idle timeout
	slowPartBytes = 256 << 10   // each instance's size
	slowSockBuf   = 16 << 10    // socket buffers of the connections in the tests
)

// smallBufListener gives each accepted connection a small send buffer, so that unread data
// backs up into the writer promptly.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(slowSockBuf)
	}
	return c, err
}

func startSmallBufServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: smallBufListener{ln}, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// part10 is fakePart10 of the instance padded to size bytes, so that studies are large.
func part10(sop string, size int) []byte {
	b := fakePart10(sop)
	if pad := size - len(b); pad > 0 {
		b = append(b, bytes.Repeat([]byte{0x5a}, pad)...)
	}
	return b
}

// bulkyOrigin is a DICOMweb origin whose instances and metadata are large. It answers study
// searches by StudyInstanceUID, instance searches (with limit and offset), retrieves of a
// study, series or instance as multipart, and study metadata with a large inline value per
// instance. sendDeadline, when set, is the longest one of its writes may wait on the proxy,
// as for a PACS that drops readers who stop reading.
type bulkyOrigin struct {
	id           string
	sops         []string // "study/series/sop"
	sendDeadline time.Duration
	srv          *httptest.Server
}

func newBulkyOrigin(t *testing.T, id string, sendDeadline time.Duration, sops ...string) *bulkyOrigin {
	o := &bulkyOrigin{id: id, sops: sops, sendDeadline: sendDeadline}
	o.srv = startSmallBufServer(t, http.HandlerFunc(o.serve))
	return o
}

type bulkyInstance struct{ study, series, sop string }

func (o *bulkyOrigin) instances(study, series, sop string) []bulkyInstance {
	var out []bulkyInstance
	for _, s := range o.sops {
		p := strings.Split(s, "/")
		in := bulkyInstance{p[0], p[1], p[2]}
		if (study == "" || in.study == study) && (series == "" || in.series == series) && (sop == "" || in.sop == sop) {
			out = append(out, in)
		}
	}
	return out
}

// write writes p under the origin's send deadline; it reports false when the proxy did not
// take the bytes in time.
func (o *bulkyOrigin) write(w http.ResponseWriter, p []byte) bool {
	rc := http.NewResponseController(w)
	for len(p) > 0 {
		n := min(len(p), 16<<10)
		if o.sendDeadline > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(o.sendDeadline))
		}
		if _, err := w.Write(p[:n]); err != nil {
			return false
		}
		p = p[n:]
	}
	return true
}

func (o *bulkyOrigin) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.Split(strings.TrimPrefix(r.URL.Path, "/dicom-web/"), "/")
	q := r.URL.Query()
	at := func(i int) string {
		if i < len(p) {
			return p[i]
		}
		return ""
	}
	switch {
	case len(p) == 1 && p[0] == "studies":
		out := []dcmjson.Dataset{}
		if list := o.instances(q.Get(dcmjson.TagStudyInstanceUID), "", ""); len(list) > 0 {
			ds := dcmjson.Dataset{}
			ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", list[0].study)
			ds.SetStrings(dcmjson.TagPatientID, "LO", alice)
			out = append(out, ds)
		}
		writeTestJSON(w, out)
	case p[len(p)-1] == "instances" && len(p)%2 == 1:
		list := o.instances(at(1), at(3), "")
		offset, limit := 0, len(list)
		fmt.Sscan(q.Get("offset"), &offset)
		fmt.Sscan(q.Get("limit"), &limit)
		out := []dcmjson.Dataset{}
		for i := offset; i < len(list) && i < offset+limit; i++ {
			ds := dcmjson.Dataset{}
			ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", list[i].study)
			ds.SetStrings(dcmjson.TagSeriesInstanceUID, "UI", list[i].series)
			ds.SetStrings(dcmjson.TagSOPInstanceUID, "UI", list[i].sop)
			out = append(out, ds)
		}
		writeTestJSON(w, out)
	case p[len(p)-1] == "metadata":
		list := o.instances(at(1), at(3), at(5))
		w.Header().Set("Content-Type", "application/dicom+json")
		pad := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, slowPartBytes))
		var body bytes.Buffer
		body.WriteByte('[')
		for i, in := range list {
			ds := dcmjson.Dataset{}
			ds.SetStrings(dcmjson.TagStudyInstanceUID, "UI", in.study)
			ds.SetStrings(dcmjson.TagSeriesInstanceUID, "UI", in.series)
			ds.SetStrings(dcmjson.TagSOPInstanceUID, "UI", in.sop)
			ds["00291010"] = &dcmjson.Element{VR: "OB", InlineBinary: pad}
			if i > 0 {
				body.WriteByte(',')
			}
			body.Write(ds.AppendJSON(nil))
		}
		body.WriteByte(']')
		o.write(w, body.Bytes())
	default:
		list := o.instances(at(1), at(3), at(5))
		if len(list) == 0 {
			http.NotFound(w, r)
			return
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		for _, in := range list {
			pw, _ := mw.CreatePart(map[string][]string{"Content-Type": {"application/dicom"}})
			pw.Write(part10(in.sop, slowPartBytes))
		}
		mw.Close()
		w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		o.write(w, body.Bytes())
	}
}

// slowProxy is a proxy in front of bulky origins, on a listener with small send buffers.
type slowProxy struct {
	url     string
	sources []*upstream.Source
	reg     *prometheus.Registry
}

func newSlowProxy(t *testing.T, clientWriteTimeout time.Duration, origins ...*bulkyOrigin) *slowProxy {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	p := &slowProxy{reg: prometheus.NewRegistry()}
	for i, o := range origins {
		u, _ := url.Parse(o.srv.URL + "/dicom-web")
		p.sources = append(p.sources, upstream.NewSource(upstream.SourceConfig{ID: o.id, Name: o.id + " Trust", BaseURL: u, Priority: i, Timeout: 10 * time.Second},
			with(testSourceOptions(10*time.Second), func(o *upstream.Options) { o.HTTP.IdleTimeout = slowIdle }), log))
	}
	srv := New(with(testConfig("http://proxy.test"), func(c *Config) { c.ClientWriteTimeout = cmp.Or(clientWriteTimeout, c.ClientWriteTimeout) }), Deps{
		Locator: upstream.NewLocator(p.sources, mustLocalStore(t, 1<<20), time.Minute, log),
		Signer:  NewSigner([]byte("0123456789abcdef0123456789abcdef"), time.Hour, nil),
		Auth:    policy.AllowAll{}, Authz: policy.AllowAll{}, Audit: audit.Discard{}, Log: log,
		Metrics: NewMetrics(p.reg),
	})
	e := echo.New()
	srv.Register(e)
	p.url = startSmallBufServer(t, e).URL
	return p
}

// slowClient is an HTTP client whose connections have small receive buffers, so that a pause
// in reading stops the proxy's writes at once.
func slowClient() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(slowSockBuf)
			}
			return c, err
		},
	}}
}

// checkTrustsUncharged fails the test when a source counted a failure or holds a connection.
func (p *slowProxy) checkTrustsUncharged(t *testing.T) {
	t.Helper()
	for _, src := range p.sources {
		st := src.Status()
		if st.Failures != 0 || st.Breaker != "closed" || st.LastFailure != nil {
			t.Errorf("trust %s was charged for a client's pause: %d failures, breaker %s, last failure %+v", src.ID, st.Failures, st.Breaker, st.LastFailure)
		}
	}
}

// waitIdle waits until no source has a call in flight: every upstream body was closed.
func (p *slowProxy) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		busy := 0
		for _, src := range p.sources {
			busy += src.Status().InFlight
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d upstream calls still open 30 s after the client was cut off; want them released", busy)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// multipartSOPs reads a multipart DICOM answer and returns the SOP instance UID of each part,
// sorted; a part that is not exactly one instance's bytes fails the test.
func multipartSOPs(t *testing.T, resp *http.Response, body []byte) []string {
	t.Helper()
	var out []string
	for i, b := range partsOf(t, resp, body) {
		var sop string
		for _, in := range []string{"3.1.1.1", "3.1.1.2", "3.1.1.3", "3.1.1.4", "3.1.1.5", "3.1.1.6", "2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.1.4", "2.1.2.1", "2.1.2.2", "2.1.3.1"} {
			if b == string(part10(in, slowPartBytes)) {
				sop = in
			}
		}
		if sop == "" {
			t.Fatalf("part %d is not any instance's bytes (%d bytes)", i+1, len(b))
		}
		out = append(out, sop)
	}
	sort.Strings(out)
	return out
}

// slowCases are the requests a paused client makes: a single holder, and a study held at two
// trusts whose copies differ (a composite retrieve that opens its second holder mid-stream; a
// metadata answer that sends the second holder after the first). The second trust drops a
// reader that does not take its answer within sendDeadline (when not 0), as some PACS do: its
// answer must not be left unread while the first trust's is sent. (The first trust's own
// stream is sent as the client takes it in, never buffered whole, so it is not given one.)
func slowCases(t *testing.T, sendDeadline time.Duration) ([]*bulkyOrigin, []struct {
	name, path, accept string
	want               []string
}) {
	a := newBulkyOrigin(t, "SA", 0,
		"3.1/3.1.1/3.1.1.1", "3.1/3.1.1/3.1.1.2", "3.1/3.1.1/3.1.1.3", "3.1/3.1.1/3.1.1.4", "3.1/3.1.1/3.1.1.5", "3.1/3.1.1/3.1.1.6",
		"2.1/2.1.1/2.1.1.1", "2.1/2.1.1/2.1.1.2", "2.1/2.1.1/2.1.1.3", "2.1/2.1.1/2.1.1.4", "2.1/2.1.3/2.1.3.1")
	b := newBulkyOrigin(t, "SB", sendDeadline,
		"2.1/2.1.1/2.1.1.1", "2.1/2.1.1/2.1.1.2", "2.1/2.1.1/2.1.1.3", "2.1/2.1.1/2.1.1.4", "2.1/2.1.2/2.1.2.1", "2.1/2.1.2/2.1.2.2")
	dicom := `multipart/related; type="application/dicom"; transfer-syntax=*`
	return []*bulkyOrigin{a, b}, []struct {
		name, path, accept string
		want               []string
	}{
		{"single-holder retrieve", "/dicom-web/studies/3.1", dicom, []string{"3.1.1.1", "3.1.1.2", "3.1.1.3", "3.1.1.4", "3.1.1.5", "3.1.1.6"}},
		{"multi-holder retrieve", "/dicom-web/studies/2.1", dicom, []string{"2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.1.4", "2.1.2.1", "2.1.2.2", "2.1.3.1"}},
		{"single-holder metadata", "/dicom-web/studies/3.1/metadata", "application/dicom+json", []string{"3.1.1.1", "3.1.1.2", "3.1.1.3", "3.1.1.4", "3.1.1.5", "3.1.1.6"}},
		{"multi-holder metadata", "/dicom-web/studies/2.1/metadata", "application/dicom+json", []string{"2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.1.4", "2.1.2.1", "2.1.2.2", "2.1.3.1"}},
	}
}

// TestSlowClientResumes: a client that pauses for many times the trusts' idle timeout (but
// less than its write timeout) receives the whole study when it resumes, and no trust is
// charged for the pause. The second trust drops a reader that does not take its answer
// within 2 s, so a holder left unread while another is sent would break too.
func TestSlowClientResumes(t *testing.T) {
	origins, cases := slowCases(t, 2*time.Second)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newSlowProxy(t, time.Minute, origins...)
			req, _ := http.NewRequest(http.MethodGet, p.url+tc.path, nil)
			req.Header.Set("Accept", tc.accept)
			resp, err := slowClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			head := make([]byte, 1024)
			if _, err := io.ReadFull(resp.Body, head); err != nil {
				t.Fatalf("first bytes: %v", err)
			}
			// The pause: 5 idle timeouts, and more than twice the second trust's send deadline.
			time.Sleep(5 * slowIdle)
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("the study broke off after the client's pause: %v", err)
			}
			body := append(head, rest...)
			var got []string
			if strings.HasPrefix(tc.accept, "multipart/") {
				got = multipartSOPs(t, resp, body)
			} else {
				for _, ds := range decodeList(t, body) {
					got = append(got, ds.String(dcmjson.TagSOPInstanceUID))
				}
				sort.Strings(got)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("got instances %v, want %v", got, tc.want)
			}
			p.waitIdle(t)
			p.checkTrustsUncharged(t)
		})
	}
}

// TestClientThatNeverReadsIsCutOff: a client that stops reading for good is cut off after the
// client write timeout (3 s here; the other client, reading all the while, has as long for
// each 64 KiB, ample on a busy machine), its upstream calls are released, the cut is counted as the client's,
// no trust is charged, and another client reading the same study at the same time gets all
// of it.
func TestClientThatNeverReadsIsCutOff(t *testing.T) {
	origins, cases := slowCases(t, 0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newSlowProxy(t, 3*time.Second, origins...)
			req, _ := http.NewRequest(http.MethodGet, p.url+tc.path, nil)
			req.Header.Set("Accept", tc.accept)
			stalled, err := slowClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer stalled.Body.Close()

			// Another client, reading normally, while the first one stalls.
			var wg sync.WaitGroup
			var otherErr error
			var otherBody []byte
			var otherResp *http.Response
			wg.Add(1)
			go func() {
				defer wg.Done()
				r2, _ := http.NewRequest(http.MethodGet, p.url+tc.path, nil)
				r2.Header.Set("Accept", tc.accept)
				otherResp, otherErr = slowClient().Do(r2)
				if otherErr == nil {
					otherBody, otherErr = io.ReadAll(otherResp.Body)
					otherResp.Body.Close()
				}
			}()

			cut := p.waitCut(t)
			wg.Wait()
			if otherErr != nil {
				t.Fatalf("a client reading normally was affected by another that stalled: %v", otherErr)
			}
			if strings.HasPrefix(tc.accept, "multipart/") {
				if got := multipartSOPs(t, otherResp, otherBody); strings.Join(got, " ") != strings.Join(tc.want, " ") {
					t.Fatalf("the other client got %v, want %v", got, tc.want)
				}
			} else if n := len(decodeList(t, otherBody)); n != len(tc.want) {
				t.Fatalf("the other client got %d datasets, want %d", n, len(tc.want))
			}
			if cut < 1 {
				t.Fatal("the stalled client was not counted as cut off")
			}
			p.waitIdle(t)
			p.checkTrustsUncharged(t)
			// What the stalled client can still read ends in an error, never as a whole study.
			if _, err := io.ReadAll(stalled.Body); err == nil {
				t.Fatal("the cut-off client's response ended as if complete")
			}
		})
	}
}

// waitCut waits for the proxy to count a client cut off for not reading, and returns the count.
func (p *slowProxy) waitCut(t *testing.T) float64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n float64
		mfs, err := p.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "nirproxy_stream_aborts_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "cause" && l.GetValue() == "client_timeout" {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
		if n > 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client cut off 60 s after it stopped reading (client write timeout 3 s)")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
