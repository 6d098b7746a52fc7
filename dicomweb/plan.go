package dicomweb

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/nirproxy/nirproxy/dicomweb/media"
	"github.com/nirproxy/nirproxy/upstream"
)

// inventory lists, for each holder, the instances it has of the target (study or series).
type inventory struct {
	holders []*upstream.Source
	// has maps holder id -> SOP instance UID -> series UID.
	has   map[string]map[string]string
	union map[string]string // SOP instance UID -> series UID
}

// held is how many instances of the union holder id has.
func (inv *inventory) held(id string) int { return len(inv.has[id]) }

// step is one upstream fetch of a composite answer.
type step struct {
	src  *upstream.Source
	path string
	// sops are the instances of the union this step must deliver: each is sent by this step
	// or was sent by an earlier one when the step ends, or the answer is aborted and src is
	// blamed. No instance is given to two steps.
	sops []string
}

// plan covers the union of instances with as few fetches as it can: the first holder's whole
// copy, then whole series from the others where the copies so far lack the series, then single
// instances. ok is false when the holders cannot cover the union.
func (inv *inventory) plan(t target, holders []*upstream.Source) (steps []step, ok bool) {
	if len(holders) == 0 {
		return nil, false
	}
	covered := map[string]bool{}
	lead := step{src: holders[0], path: t.path()}
	for sop := range inv.has[lead.src.ID] {
		covered[sop] = true
		lead.sops = append(lead.sops, sop)
	}
	sort.Strings(lead.sops)
	steps = append(steps, lead)
	for _, h := range holders[1:] {
		steps = append(steps, inv.fill(t, h, covered)...)
	}
	return steps, len(covered) == len(inv.union)
}

// fill plans what holder h adds to what is covered: each series missing entirely so far and
// complete at h as one fetch, else the instances h has one by one.
func (inv *inventory) fill(t target, h *upstream.Source, covered map[string]bool) []step {
	has := inv.has[h.ID]
	bySeries := map[string][]string{}
	total := map[string]int{}
	for sop, series := range inv.union {
		total[series]++
		if !covered[sop] {
			bySeries[series] = append(bySeries[series], sop)
		}
	}
	var steps []step
	for _, se := range slices.Sorted(maps.Keys(bySeries)) {
		missing := bySeries[se]
		atH := 0
		for sop, s2 := range has {
			if s2 == se && !covered[sop] {
				atH++
			}
		}
		if atH == 0 {
			continue
		}
		sort.Strings(missing)
		seriesPath := "studies/" + t.study + "/series/" + se
		if len(missing) == total[se] && atH == total[se] {
			steps = append(steps, step{src: h, path: seriesPath, sops: missing})
			for _, sop := range missing {
				covered[sop] = true
			}
			continue
		}
		for _, sop := range missing {
			if has[sop] != "" {
				steps = append(steps, step{src: h, path: seriesPath + "/instances/" + sop, sops: []string{sop}})
				covered[sop] = true
			}
		}
	}
	return steps
}

// ErrUnlistedInstance reports an upstream answer with an instance its trust did not list for
// it: its listing and its answer disagree, so neither can be taken as whole.
var ErrUnlistedInstance = errors.New("upstream answer holds an instance its trust did not list")

// ErrInstancesMissing reports an upstream answer that ended without instances its trust
// listed for it: a composite answer that went on would lack them.
var ErrInstancesMissing = errors.New("upstream answer lacks instances its trust listed")

// delivery is what a composite answer must send and what it has sent, by SOP Instance UID.
// It keeps the UIDs only, never part bytes, and one reusable buffer for a part's head.
type delivery struct {
	union   map[string]string // SOP instance UID -> series UID: exactly what the answer must hold
	done    map[string]bool
	skipped int // parts read and not sent: duplicates of instances already sent
	head    []byte
}

func newDelivery(union map[string]string) *delivery {
	return &delivery{union: union, done: make(map[string]bool, len(union))}
}

// sent notes that the instance sop was sent; a nil delivery notes nothing.
func (d *delivery) sent(sop string) {
	if d != nil {
		d.done[sop] = true
	}
}

// headBuffer returns the buffer a part's head is read into, made on first use.
func (d *delivery) headBuffer() []byte {
	if d.head == nil {
		d.head = make([]byte, media.MaxFileMetaBytes)
	}
	return d.head
}

// checkStep fails with ErrInstancesMissing when an instance st was planned to deliver has
// not been sent.
func (d *delivery) checkStep(st step) error {
	got := 0
	for _, sop := range st.sops {
		if d.done[sop] {
			got++
		}
	}
	if got < len(st.sops) {
		return fmt.Errorf("%s sent %d of the %d instances it listed: %w", st.src.ID, got, len(st.sops), ErrInstancesMissing)
	}
	return nil
}

// checkAll is the last check before a composite answer is closed: every instance of the
// union was sent. It returns the holder of a step that should have sent a missing one (the
// last step's holder when no step was given it) with an error wrapping ErrInstancesMissing.
// After checkStep has passed for every step of a complete plan it cannot fail; it guards
// against a plan that does not cover the union.
func (d *delivery) checkAll(steps []step) (*upstream.Source, error) {
	missing := 0
	for sop := range d.union {
		if !d.done[sop] {
			missing++
		}
	}
	if missing == 0 {
		return nil, nil
	}
	src := steps[len(steps)-1].src
	for _, st := range steps {
		if d.checkStep(st) != nil {
			src = st.src
			break
		}
	}
	return src, fmt.Errorf("composite answer lacks %d of the %d instances held: %w", missing, len(d.union), ErrInstancesMissing)
}
