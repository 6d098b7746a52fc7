package chaos_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nirproxy/nirproxy/dicomweb/dcmjson"
)

// Classes of answers.
const (
	// classComplete is a 200 (or 204 search) holding everything held anywhere, each once.
	classComplete = "complete"
	// classPartial is a 200 search with a Warning naming the trusts whose results are missing.
	classPartial = "partial"
	// classRefused is a 503 naming the trusts that could not be had.
	classRefused = "refused"
	// classAborted is an answer whose body broke off (connection reset, no final chunk): the
	// client sees an error, never a short answer.
	classAborted = "aborted"
	// classNone is no answer at all (the connection failed before the headers).
	classNone = "no answer"
)

// verdict is the judgement of one answer. Problems are contract violations.
type verdict struct {
	op         *operation
	start, end time.Time
	headers    time.Duration
	status     int
	class      string
	// named are the trusts the answer names as missing (Warning headers, a 503's body).
	named    []string
	problems []string
}

func (v *verdict) problem(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

// trustsNamed returns the ids of c's sources named as words in any of texts.
func (c *chaos) trustsNamed(texts ...string) []string {
	var out []string
	for _, id := range c.manifest.Sources {
		re := regexp.MustCompile(`\b` + regexp.QuoteMeta(id) + `\b`)
		for _, s := range texts {
			if re.MatchString(s) {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// judge classifies an answer to op and lists every way it breaks the degraded-mode contract.
func (c *chaos) judge(op *operation, o outcome) verdict {
	v := verdict{op: op, start: o.start, end: o.end, headers: o.headers, status: o.status}
	warnings := o.header.Values("Warning")
	switch {
	case o.err != nil:
		v.class = classNone
		v.problem("no answer: %v", o.err)
	case o.readErr != nil:
		// The body broke off: acceptable (the client cannot mistake it for a whole answer),
		// and counted.
		v.class = classAborted
	case o.status == http.StatusOK || (o.status == http.StatusNoContent && op.kind == search):
		v.class = classComplete
		v.named = c.trustsNamed(warnings...)
		switch op.kind {
		case search:
			c.judgeSearch(&v, op, o)
		case retrieve:
			c.judgeInstances(&v, op, c.multipartInstances(&v, o))
		case metadata:
			c.judgeInstances(&v, op, c.metadataInstances(&v, o))
		}
	case o.status == http.StatusServiceUnavailable:
		v.class = classRefused
		v.named = c.trustsNamed(append(slices.Clone(warnings), string(o.body))...)
		if len(v.named) == 0 {
			v.problem("503 names no trust: Warning %q, body %.300s", warnings, o.body)
		}
		if o.header.Get("Retry-After") == "" {
			v.problem("503 without Retry-After")
		}
	default:
		v.class = fmt.Sprintf("status %d", o.status)
		v.problem("unexpected status %d: Warning %q, body %.300s", o.status, warnings, o.body)
	}
	if took := o.end.Sub(o.start); took > maxWait {
		v.problem("took %v (headers after %v), past the bound of %v", took.Round(time.Millisecond), o.headers.Round(time.Millisecond), maxWait)
	}
	return v
}

// judgeSearch checks a 200 search: without a Warning naming a trust it must list every study
// of the patient held anywhere; with one, every study held by the trusts it does not name.
func (c *chaos) judgeSearch(v *verdict, op *operation, o outcome) {
	if len(v.named) > 0 {
		v.class = classPartial
	}
	var ds []dcmjson.Dataset
	if o.status == http.StatusOK {
		var err error
		if ds, err = dcmjson.Decode(o.body); err != nil {
			v.problem("a 200 search whose body, ended cleanly, is not DICOM JSON: %v; body %.200s", err, o.body)
			return
		}
	}
	got := map[string]int{}
	for _, d := range ds {
		got[d.String(dcmjson.TagStudyInstanceUID)]++
	}
	for uid, n := range got {
		switch {
		case !slices.Contains(op.all, uid):
			v.problem("study %s is not the patient's", uid)
		case n > 1:
			v.problem("study %s listed %d times", op.keys[uid], n)
		}
	}
	for id, uids := range op.held {
		if slices.Contains(v.named, id) {
			continue
		}
		for _, uid := range uids {
			if got[uid] == 0 {
				v.problem("study %s, held by %s, is missing and no Warning names %s (Warning %q)",
					op.keys[uid], id, id, o.header.Values("Warning"))
			}
		}
	}
}

// multipartInstances parses a 200 multipart body whole and returns the SOP Instance UID of
// each part, known by its bytes. A body that ended cleanly without the closing delimiter is a
// truncated study closed as complete.
func (c *chaos) multipartInstances(v *verdict, o outcome) []string {
	ct := o.header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		v.problem("a 200 retrieve with Content-Type %q, not multipart/related with a boundary", ct)
		return nil
	}
	mr := multipart.NewReader(bytes.NewReader(o.body), params["boundary"])
	var uids []string
	for i := 1; ; i++ {
		p, err := mr.NextRawPart()
		// NextRawPart returns io.EOF itself only after the closing delimiter; a body that stops
		// short gives an error wrapping io.EOF or io.ErrUnexpectedEOF.
		if err == io.EOF {
			return uids
		}
		if err != nil {
			v.problem("TRUNCATED STUDY CLOSED AS COMPLETE: the body of %d bytes ended cleanly but part %d cannot be read (%v); %d parts before it",
				len(o.body), i, err, len(uids))
			return uids
		}
		data, err := io.ReadAll(p)
		if err != nil {
			v.problem("TRUNCATED STUDY CLOSED AS COMPLETE: part %d of a body that ended cleanly breaks off: %v", i, err)
			return uids
		}
		uid, ok := c.instanceByHash[sha256.Sum256(data)]
		if !ok {
			v.problem("part %d (%d bytes) equals no stored instance of the data set", i, len(data))
			continue
		}
		uids = append(uids, uid)
	}
}

// metadataInstances decodes a 200 metadata body whole and returns each instance's SOP
// Instance UID.
func (c *chaos) metadataInstances(v *verdict, o outcome) []string {
	ds, err := dcmjson.Decode(o.body)
	if err != nil {
		v.problem("TRUNCATED METADATA CLOSED AS COMPLETE: the body of %d bytes ended cleanly but is not DICOM JSON: %v", len(o.body), err)
		return nil
	}
	var uids []string
	for _, d := range ds {
		uids = append(uids, d.String(dcmjson.TagSOPInstanceUID))
	}
	return uids
}

// judgeInstances checks that a 200 retrieve or metadata answer holds every instance held
// anywhere, each once. Under partialRetrieve: fail a 200 may not name a missing trust.
func (c *chaos) judgeInstances(v *verdict, op *operation, uids []string) {
	if len(v.named) > 0 {
		v.problem("a 200 under partialRetrieve: fail names %v in a Warning", v.named)
	}
	got := map[string]int{}
	for _, u := range uids {
		got[u]++
	}
	var missing []string
	for _, u := range op.all {
		switch n := got[u]; {
		case n == 0:
			missing = append(missing, op.keys[u])
		case n > 1:
			v.problem("instance %s came %d times", op.keys[u], n)
		}
	}
	for u := range got {
		if !slices.Contains(op.all, u) {
			v.problem("instance %s does not belong here", u)
		}
	}
	if len(missing) > 0 {
		v.problem("a 200 with %d of the %d instances held anywhere; missing %v", len(op.all)-len(missing), len(op.all), missing)
	}
}

// checkAllComplete sends each operation once, one after another, and fails t unless every
// answer is complete and names no trust.
func (c *chaos) checkAllComplete(t *testing.T, ops []*operation) {
	t.Helper()
	for _, op := range ops {
		v := c.judge(op, c.send(op))
		if v.class != classComplete || len(v.problems) > 0 || len(v.named) > 0 {
			t.Errorf("%s: %s, status %d, naming %v: %v", op, v.class, v.status, v.named, v.problems)
		}
	}
}

// checkTally judges the load's answers as a whole: every contract violation, warnings that
// name a trust that was not faulty, and whether the faults were seen at all.
func (c *chaos) checkTally(t *testing.T, verdicts []verdict) {
	if len(verdicts) == 0 {
		t.Fatal("the load sent no requests")
	}
	type stats struct {
		byClass    map[string]int
		maxTook    time.Duration
		maxHeaders time.Duration
	}
	byOp := map[string]*stats{}
	var order []string
	namedSeen := map[string]int{}
	var failures []string
	for i := range verdicts {
		v := &verdicts[i]
		for _, id := range v.named {
			namedSeen[id]++
			if !c.faults.covers(id, v.start, v.end) {
				v.problem("names %s as missing, but %s was not faulty then", id, id)
			}
		}
		st := byOp[v.op.String()]
		if st == nil {
			st = &stats{byClass: map[string]int{}}
			byOp[v.op.String()] = st
			order = append(order, v.op.String())
		}
		st.byClass[v.class]++
		st.maxTook = max(st.maxTook, v.end.Sub(v.start))
		st.maxHeaders = max(st.maxHeaders, v.headers)
		for _, p := range v.problems {
			failures = append(failures, fmt.Sprintf("t=%6.2fs %s: status %d: %s", v.start.Sub(c.t0).Seconds(), v.op, v.status, p))
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d answers under chaos (max wait allowed %v):\n", len(verdicts), maxWait)
	sort.Strings(order)
	for _, name := range order {
		st := byOp[name]
		var classes []string
		for cl, n := range st.byClass {
			classes = append(classes, fmt.Sprintf("%s %d", cl, n))
		}
		sort.Strings(classes)
		fmt.Fprintf(&sb, "  %s\n      %s; slowest %v (headers %v)\n", name, strings.Join(classes, ", "),
			st.maxTook.Round(time.Millisecond), st.maxHeaders.Round(time.Millisecond))
		if st.byClass[classComplete] == 0 {
			failures = append(failures, fmt.Sprintf("%s: never answered completely during the load", name))
		}
	}
	t.Log(sb.String())
	for _, id := range c.faults.faulted() {
		if namedSeen[id] == 0 {
			failures = append(failures, fmt.Sprintf("no answer ever named %s as missing, though it was killed or frozen", id))
		}
	}
	const show = 40
	for i, f := range failures {
		if i == show {
			t.Errorf("... and %d more", len(failures)-show)
			break
		}
		t.Error(f)
	}
}
