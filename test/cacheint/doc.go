// Package cacheint tests nirproxy's cache end to end: the built nirproxy binary in front of two
// real Orthanc servers (test/orthanc), with its cache in real Redis (test/redisserver: one node
// and a 3-node Redis Cluster) or in process, as an operator would run it.
//
// Every upstream call is observed, not assumed: each Orthanc sits behind a small counting
// reverse proxy in the test process (a tap), which the proxy's source URL points at. A tap
// counts each request by path and query, and can make its trust slow (a delay), or down (it
// answers 502, or closes connections without an answer). The Orthancs themselves are also
// stopped and restarted, and the Redis servers killed and restarted, as outages are.
//
// The tests hold the cache to what DESIGN.md promises: a fresh copy answers without reaching
// the trust, an expired one does not; identical concurrent searches make one upstream call; a
// trust that is down is stood in for by its stale copy only when serveStale allows, and the
// answer says so (Warning 110, and a 299 naming the trust and the copy's age); Redis holds
// nothing readable (HMAC'd keys, sealed values) and nothing past cache.maxRetention; `nirproxy
// cache purge` removes a patient's entries and no one else's; a Redis outage fails no request,
// and the cache is used again once Redis is back, without restarting nirproxy; and no log
// names a patient.
//
// TestMain builds the data set and the binary and starts the Orthancs, shared by every test;
// each test starts the nirproxy (and Redis) its configuration needs. Without Orthanc, dcmtk,
// pydicom's files or redis-server the tests skip loudly, or fail when
// NIRPROXY_REQUIRE_REAL_SERVERS=1 (see orthanc.Strict).
package cacheint
