package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// EnvPrefix starts the name of every environment override.
const EnvPrefix = "NIRPROXY_"

// sourcesEnv is the part of a variable's name, after EnvPrefix, that addresses a source by id:
// NIRPROXY_SOURCES_<ID>_<KEY>.
const sourcesEnv = "SOURCES"

// leaf is a key that holds a value (not a section), as leaves finds it.
type leaf struct {
	path    string        // its key path, like sources[0].auth.token
	env     string        // its variable's name less EnvPrefix and any source part, like AUTH_TOKEN
	v       reflect.Value // its value; invalid for a retired key
	retired string        // for a retired key only, why it is no longer read
}

// leaves lists the keys of struct v that hold a value, its sections' included, and its retired
// keys (see retiredKeys); path is v's key path and env its variable names' start. A key's variable
// name is its path in upper case, camelCase split into words, joined by "_": so every key gets an
// override without a list to keep. Lists of structs are left out (each source is addressed by
// its id; token issuers are set in the file only), as are maps (authorization.roleActions), which
// no single value can write.
func leaves(v reflect.Value, path, env string) []leaf {
	var out []leaf
	for key, msg := range retiredKeys(v.Type()) {
		out = append(out, leaf{path: joinPath(path, key), env: env + envWords(key), retired: msg})
	}
	for i, key := range keysOf(v.Type()) {
		f, p, e := v.Field(i), joinPath(path, key), env+envWords(key)
		switch {
		case key == "" || f.Kind() == reflect.Map || f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
		case f.Kind() == reflect.Struct:
			out = append(out, leaves(f, p, e+"_")...)
		default:
			out = append(out, leaf{path: p, env: e, v: f})
		}
	}
	return out
}

// envTable is leaves by variable name.
func envTable(v reflect.Value, path string) map[string]leaf {
	table := map[string]leaf{}
	for _, l := range leaves(v, path, "") {
		table[l.env] = l
	}
	return table
}

// envNames lists the names of table that can be set, sorted: not a retired key, not a source's id.
func envNames(table map[string]leaf) []string {
	var names []string
	for n, l := range table {
		if l.retired == "" && n != "ID" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// envWords turns a key into its part of a variable name: publicURL becomes PUBLIC_URL,
// maxResultsPerSource MAX_RESULTS_PER_SOURCE.
func envWords(key string) string {
	r := []rune(key)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			acronymEnd := unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || acronymEnd {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(c))
	}
	return b.String()
}

// EnvNames lists the environment variables that override the keys of cfg: the top-level keys,
// and each source's keys under its id. It is for documentation and tests.
func EnvNames(cfg Config) []string {
	var out []string
	for _, n := range envNames(envTable(reflect.ValueOf(cfg), "")) {
		out = append(out, EnvPrefix+n)
	}
	source := envNames(envTable(reflect.ValueOf(DefaultSource()), ""))
	for _, s := range cfg.Sources {
		for _, n := range source {
			out = append(out, EnvPrefix+sourcesEnv+"_"+strings.ToUpper(s.ID)+"_"+n)
		}
	}
	slices.Sort(out)
	return out
}

// applyEnv applies the NIRPROXY_ variables of environ (NAME=VALUE strings) to cfg. A variable that
// names no key, or a source that the file does not list, is a problem naming the variable.
func applyEnv(cfg *Config, environ []string, ps *Problems) {
	table := envTable(reflect.ValueOf(cfg).Elem(), "")
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		rest, ours := strings.CutPrefix(name, EnvPrefix)
		switch l, known := table[rest]; {
		case !ok || !ours:
		case rest == sourcesEnv || strings.HasPrefix(rest, sourcesEnv+"_"):
			applySourceEnv(cfg, name, strings.TrimPrefix(rest[len(sourcesEnv):], "_"), value, ps)
		case !known:
			ps.add(name, "names no configuration key; %s", suggestEnv(rest, envNames(table), EnvPrefix))
		default:
			setEnv(ps, name, l, value)
		}
	}
}

// applySourceEnv applies variable name, which addresses a source's key by id: rest is the part
// after NIRPROXY_SOURCES_, like RXA_URL.
func applySourceEnv(cfg *Config, name, rest, value string, ps *Problems) {
	ids := cfg.SourceIDs()
	id, key, _ := strings.Cut(rest, "_")
	table := envTable(reflect.ValueOf(DefaultSource()), "sources[]")
	l, known := table[key]
	switch {
	case id == "" || key == "":
		ps.add(name, "sources cannot be set from the environment as a whole; override one key of one listed in the file, like %s%s_%s_URL",
			EnvPrefix, sourcesEnv, firstOr(ids, "RXA"))
		return
	case key == "ID":
		ps.add(name, "the id of an entry of sources cannot be changed from the environment; change it in the file")
		return
	case !known:
		ps.add(name, "an entry of sources has no key %s; %s", key, suggestEnv(key, envNames(table), EnvPrefix+sourcesEnv+"_"+id+"_"))
		return
	case l.retired != "":
		setEnv(ps, name, l, value)
		return
	}
	matched := false
	for i := range cfg.Sources {
		if strings.EqualFold(cfg.Sources[i].ID, id) {
			matched = true
			setEnv(ps, name, envTable(reflect.ValueOf(&cfg.Sources[i]).Elem(), fmt.Sprintf("sources[%d]", i))[key], value)
		}
	}
	if !matched {
		known := "the file lists none"
		if len(ids) > 0 {
			known = "the ids are " + strings.Join(ids, ", ")
		}
		ps.add(name, "no entry of sources has the id %s; %s", id, known)
	}
}

// setEnv sets key l from variable name's value, or reports why it cannot.
func setEnv(ps *Problems, name string, l leaf, value string) {
	if l.retired != "" {
		ps.add(name, "overrides %s, which %s", l.path, l.retired)
	} else if err := setScalar(l.v, value); err != nil {
		ps.add(name, "%v (overriding %s)", err, l.path)
	}
}

// suggestEnv says which variable name may have been meant (prefix and one of names), and how
// names are formed.
func suggestEnv(rest string, names []string, prefix string) string {
	if best := closest(rest, names, 4); best != "" {
		return "did you mean " + prefix + best + "?"
	}
	return "a variable's name is " + EnvPrefix + " and the key's path in upper case, words split by _, like " +
		EnvPrefix + "SEARCH_MAX_LIMIT or " + EnvPrefix + "SOURCES_RXA_URL"
}

// firstOr is the first of ss, or def when there is none.
func firstOr(ss []string, def string) string {
	if len(ss) > 0 && ss[0] != "" {
		return ss[0]
	}
	return def
}
