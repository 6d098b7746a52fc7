// Package redisserver runs real Redis for nirproxy's cache tests: Debian's redis-server 7.0
// (installed by test/scripts/install-deps.sh), one node or a Redis Cluster, each node a direct
// child process (never --daemonize, so its PID is ours to signal) bound to 127.0.0.1 on a free
// port, with its own temporary directory and log file, and no persistence (--save ""
// --appendonly no), so a restarted node comes back empty.
//
// # Typical use
//
//	func TestSomething(t *testing.T) {
//		single := redisserver.StartT(t, redisserver.Options{})      // stopped by t.Cleanup
//		cluster := redisserver.StartClusterT(t, 3, redisserver.Options{})
//		c, _ := cache.NewRedis(cache.RedisOptions{Addrs: cluster.Addrs(), ...}, sealer, log)
//		...
//		stored, _ := redisserver.ScanAll(ctx, cluster.ClusterClient()) // every key, every node
//		single.Kill()                   // SIGKILL: the cache's next calls fail
//		single.Restart(ctx)             // the same port again, no data
//	}
//
// StartT and StartClusterT call Require, which skips the test loudly when redis-server or
// redis-cli is missing and fails it when NIRPROXY_REQUIRE_REAL_SERVERS=1 or CI=true (the rule
// orthanc.Strict states for every real-server test). Start and StartCluster leave that choice to
// the caller.
//
// # Redis facts the package relies on
//
//   - redis-server answers within about 30 ms of starting; readiness is checked by asking
//     INFO for the server's process_id, so another redis-server that holds the port is never
//     taken for ours.
//   - A cluster node's bus port is chosen free and passed with --cluster-port: the default,
//     port+10000, overflows for ports above 55535, which free ports often are.
//   - A cluster node restarted with its nodes.conf keeps its identity and slots and rejoins;
//     Cluster.Restart waits until every node says cluster_state:ok again and a client can use
//     every node's slots.
//   - Without save points, SIGTERM saves nothing, as SHUTDOWN NOSAVE would; Stop uses SIGTERM
//     (SIGKILL after a few seconds) so it works whatever the password or state of the server.
package redisserver
