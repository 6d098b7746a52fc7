package cacheint

import (
	"bytes"
	"testing"
	"time"
)

// TestCacheInProcess: with no cache.redis configured the cache is in the process, and a
// repeated search is answered from it.
func TestCacheInProcess(t *testing.T) {
	need(t)
	r := startRig(t, cacheConfig{search: freshness{30 * time.Second, 10 * time.Minute}})
	log, err := r.proxy.Log()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte(`"cache":"in process, `)) {
		t.Errorf("the start-up line does not say the cache is in process; log:\n%s", log)
	}
	checkHit(t, r)
}
