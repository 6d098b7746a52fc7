package redisserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// clusterTimeout bounds creating a cluster with redis-cli and waiting for it to become healthy.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of nodes started by this package, each a master owning a share of
// the slots (no replicas). Its methods are safe for concurrent use.
type Cluster struct {
	nodes  []*Server
	client *redis.ClusterClient
}

// StartCluster starts n (at least 3) cluster-enabled redis-servers, each in its own directory
// and with its own bus port, joins them with `redis-cli --cluster create ... --cluster-replicas
// 0`, and waits until every node reports cluster_state:ok and ClusterClient can write and read
// a key in every node's slots. opts applies to every node (see Options for Dir and Port).
func StartCluster(ctx context.Context, n int, opts Options) (*Cluster, error) {
	if n < 3 {
		return nil, fmt.Errorf("start redis cluster of %d nodes: redis-cli --cluster create needs at least 3", n)
	}
	opts.withDefaults()
	nodes := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o := opts
			if opts.Dir != "" {
				o.Dir = filepath.Join(opts.Dir, "node-"+strconv.Itoa(i))
			}
			if opts.Port != 0 {
				o.Port = opts.Port + i
			}
			nodes[i], errs[i] = start(ctx, o, true)
		})
	}
	wg.Wait()
	c := &Cluster{}
	for _, s := range nodes {
		if s != nil {
			c.nodes = append(c.nodes, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("start redis cluster nodes: %w", err)
	}
	c.client = redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		Password:              opts.Password,
		DialTimeout:           time.Second,
		ReadTimeout:           2 * time.Second,
		WriteTimeout:          2 * time.Second,
		DialerRetries:         1,
		DialerRetryTimeout:    10 * time.Millisecond,
		ContextTimeoutEnabled: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	if err := c.create(ctx, opts); err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := c.WaitHealthy(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// StartClusterT starts a cluster as StartCluster does, bounded in time, and stops it when tb
// ends. It calls Require first.
func StartClusterT(tb testing.TB, n int, opts Options) *Cluster {
	tb.Helper()
	Require(tb)
	ctx, cancel := context.WithTimeout(context.Background(), tBudget)
	defer cancel()
	c, err := StartCluster(ctx, n, opts)
	if err != nil {
		tb.Fatalf("start redis cluster: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("stop redis cluster %v: %v", c.Addrs(), err)
		}
	})
	return c
}

// create runs redis-cli --cluster create over the nodes.
func (c *Cluster) create(ctx context.Context, opts Options) error {
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if opts.Password != "" {
		args = append(args, "-a", opts.Password, "--no-auth-warning")
	}
	cmd := exec.CommandContext(ctx, opts.CLI, args...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("create redis cluster of %v with %s: %w; output:\n%s", c.Addrs(), opts.CLI, err, out.String())
	}
	if !strings.Contains(out.String(), "All 16384 slots covered") {
		return fmt.Errorf("create redis cluster of %v: redis-cli did not report every slot covered; output:\n%s", c.Addrs(), out.String())
	}
	return nil
}

// WaitHealthy waits, within ctx and at most 30 s, until every node reports cluster_state:ok and
// knows every other node, and ClusterClient writes, reads and deletes a key owned by each node
// (checked on the node itself, so the client's slot map is known to be right).
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = c.checkStates(ctx)
		if last == nil {
			c.client.ReloadState(ctx)
			last = c.probe(ctx)
			if last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for redis cluster %v to be healthy: %w (last: %w)", c.Addrs(), ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// checkStates asks every node for CLUSTER INFO.
func (c *Cluster) checkStates(ctx context.Context) error {
	known := "cluster_known_nodes:" + strconv.Itoa(len(c.nodes))
	for _, s := range c.nodes {
		info, err := s.Client().ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("read cluster info of %s: %w", s.Addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, known) {
			fields := strings.Fields(info)
			return fmt.Errorf("node %s is not ready: %s", s.Addr(), strings.Join(fields[:min(3, len(fields))], " "))
		}
	}
	return nil
}

// probe writes a key owned by each node through ClusterClient, reads it back both through
// ClusterClient and from the node itself, and deletes it.
func (c *Cluster) probe(ctx context.Context) error {
	keys, err := c.keyPerNode(ctx)
	if err != nil {
		return err
	}
	for i, s := range c.nodes {
		k, v := keys[i], "probe of "+s.Addr()
		if err := c.client.Set(ctx, k, v, time.Minute).Err(); err != nil {
			return fmt.Errorf("set probe key %s for %s through the cluster client: %w", k, s.Addr(), err)
		}
		if got, err := c.client.Get(ctx, k).Result(); err != nil || got != v {
			return fmt.Errorf("get probe key %s for %s through the cluster client: %q, %v", k, s.Addr(), got, err)
		}
		if got, err := s.Client().Get(ctx, k).Result(); err != nil || got != v {
			return fmt.Errorf("get probe key %s from %s itself: %q, %v", k, s.Addr(), got, err)
		}
		if err := c.client.Del(ctx, k).Err(); err != nil {
			return fmt.Errorf("delete probe key %s for %s: %w", k, s.Addr(), err)
		}
	}
	return nil
}

// keyPerNode returns, for each node in order, a key in one of its slots, asking the nodes
// themselves which slot a key hashes to (CLUSTER KEYSLOT) and who owns it (CLUSTER SLOTS).
func (c *Cluster) keyPerNode(ctx context.Context) ([]string, error) {
	first := c.nodes[0].Client()
	slots, err := first.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("read cluster slots from %s: %w", c.nodes[0].Addr(), err)
	}
	owner := func(slot int64) string {
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
				return r.Nodes[0].Addr
			}
		}
		return ""
	}
	keys := make([]string, len(c.nodes))
	found := 0
	for i := 0; i < 1000 && found < len(c.nodes); i++ {
		k := "redisserver:probe:" + strconv.Itoa(i)
		slot, err := first.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("hash key %s on %s: %w", k, c.nodes[0].Addr(), err)
		}
		addr := owner(slot)
		for j, s := range c.nodes {
			if keys[j] == "" && s.Addr() == addr {
				keys[j] = k
				found++
			}
		}
	}
	if found < len(c.nodes) {
		return nil, fmt.Errorf("find a key for every node of %v: cluster slots %v leave some node without slots", c.Addrs(), slots)
	}
	return keys, nil
}

// Addrs are the nodes' "127.0.0.1:PORT", in start order.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Nodes are the cluster's servers, in start order. Killing or restarting one is how tests
// take part of the cluster away.
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// ClusterClient returns a cluster client seeded with every node, shared by every caller and
// closed by Stop; callers must not close it.
func (c *Cluster) ClusterClient() *redis.ClusterClient { return c.client }

// Kill kills every node at once (SIGKILL) and waits until they have gone.
func (c *Cluster) Kill() error {
	return c.eachNode(func(s *Server) error { return s.Kill() })
}

// Restart restarts every node on its port (each keeps its identity and slots, but no data) and
// waits until the cluster is healthy again, as WaitHealthy says.
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.eachNode(func(s *Server) error { return s.Restart(ctx) }); err != nil {
		return fmt.Errorf("restart redis cluster: %w", err)
	}
	return c.WaitHealthy(ctx)
}

// Stop stops every node, as Server.Stop does, and closes ClusterClient. Calling it again does
// nothing.
func (c *Cluster) Stop() error {
	err := c.eachNode(func(s *Server) error { return s.Stop() })
	if c.client != nil {
		// Closing twice only reports that the client is already closed.
		_ = c.client.Close()
	}
	return err
}

// eachNode runs f on every node in parallel and joins the errors.
func (c *Cluster) eachNode(f func(*Server) error) error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, s := range c.nodes {
		wg.Go(func() { errs[i] = f(s) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
