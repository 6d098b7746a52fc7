package redisserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ScanAll returns every key client's Redis holds with its raw value: a string's bytes; a set's,
// list's or hash's members (hash fields as field=value) sorted where order is not kept and
// joined by newlines; for any other type, a note saying which type it is and that its value was
// not read. For a *redis.ClusterClient it scans every master (ForEachMaster), so a whole
// cluster is covered; any other client is scanned as one node. A key that expires or is deleted
// during the scan is left out. Tests use it to prove that nothing readable is stored.
func ScanAll(ctx context.Context, client redis.UniversalClient) (map[string][]byte, error) {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return scanNode(ctx, client)
	}
	out := make(map[string][]byte)
	var mu sync.Mutex
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		m, err := scanNode(ctx, node)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		maps.Copy(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan redis cluster: %w", err)
	}
	return out, nil
}

// scanNode scans one node with SCAN and reads each key by its type.
func scanNode(ctx context.Context, c redis.Cmdable) (map[string][]byte, error) {
	out := make(map[string][]byte)
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "", 200).Result()
		if err != nil {
			return nil, fmt.Errorf("scan keys of %s: %w", nodeName(c), err)
		}
		for _, k := range keys {
			v, err := readValue(ctx, c, k)
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read key %q of %s: %w", k, nodeName(c), err)
			}
			if v != nil {
				out[k] = v
			}
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}

// readValue reads key k as its type says; it returns nil, nil for a key that has gone.
func readValue(ctx context.Context, c redis.Cmdable, k string) ([]byte, error) {
	typ, err := c.Type(ctx, k).Result()
	if err != nil {
		return nil, err
	}
	switch typ {
	case "none":
		return nil, nil
	case "string":
		return c.Get(ctx, k).Bytes()
	case "set":
		members, err := c.SMembers(ctx, k).Result()
		if err != nil {
			return nil, err
		}
		slices.Sort(members)
		return []byte(strings.Join(members, "\n")), nil
	case "list":
		items, err := c.LRange(ctx, k, 0, -1).Result()
		if err != nil {
			return nil, err
		}
		return []byte(strings.Join(items, "\n")), nil
	case "hash":
		fields, err := c.HGetAll(ctx, k).Result()
		if err != nil {
			return nil, err
		}
		lines := make([]string, 0, len(fields))
		for f, v := range fields {
			lines = append(lines, f+"="+v)
		}
		slices.Sort(lines)
		return []byte(strings.Join(lines, "\n")), nil
	default:
		return []byte("(a " + typ + ", value not read by ScanAll)"), nil
	}
}

// nodeName names the node c talks to, for errors.
func nodeName(c redis.Cmdable) string {
	if rc, ok := c.(*redis.Client); ok {
		return "redis " + rc.Options().Addr
	}
	return "redis"
}
