package config

import (
	"reflect"
	"sort"
	"strings"
	"unicode"
)

// EnvPrefix starts the name of every environment override.
const EnvPrefix = "NIRPROXY_"

// envTarget is one key that an environment variable can set.
type envTarget struct {
	index []int  // the field's index path from the struct the table was built for
	key   string // the key's path, for messages
	// retired, for a retired key only, says why it is no longer read.
	retired string
}

// envTable maps a variable's name (less EnvPrefix and any source part) to what it sets.
type envTable struct {
	leaves map[string]envTarget
	// lists are the lists of structs with an "id" key (the sources), by their variable name part;
	// their elements are addressed by id: NIRPROXY_SOURCES_<ID>_<KEY>.
	lists map[string]envList
	// retired are the variables of retired keys (see retiredKeys), with their messages.
	retired map[string]envTarget
}

// envList is a list whose elements environment variables address by id.
type envList struct {
	index   []int // the list's field
	idIndex []int // the id's field in an element
	key     string
	elem    envTable
}

// id is the id of the list's i-th element.
func (l envList) id(list reflect.Value, i int) string {
	return list.Index(i).FieldByIndex(l.idIndex).String()
}

// newEnvTable derives the overrides of struct type t from its yaml keys: the key path upper-cased,
// camelCase split into words, joined by "_". So every key gets an override without a list to keep.
func newEnvTable(t reflect.Type) envTable {
	tab := envTable{leaves: map[string]envTarget{}, lists: map[string]envList{}, retired: map[string]envTarget{}}
	tab.add(t, nil, "", "")
	return tab
}

// add adds the keys of struct type t, reached by index from the table's root.
func (tab envTable) add(t reflect.Type, index []int, namePrefix, keyPrefix string) {
	for key, msg := range retiredKeys(t) {
		tab.retired[namePrefix+envWords(key)] = envTarget{key: joinPath(keyPrefix, key), retired: msg}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		key := yamlKey(f)
		if key == "" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		name := namePrefix + envWords(key)
		keyPath := joinPath(keyPrefix, key)
		switch {
		case f.Type == reflect.TypeFor[Duration]():
			tab.leaves[name] = envTarget{index: idx, key: keyPath}
		case f.Type.Kind() == reflect.Struct:
			tab.add(f.Type, idx, name+"_", keyPath)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			elem := newEnvTable(f.Type.Elem())
			if id, ok := elem.leaves["ID"]; ok {
				delete(elem.leaves, "ID") // The id addresses the element; it cannot be changed.
				tab.lists[name] = envList{index: idx, idIndex: id.index, key: keyPath, elem: elem}
			}
		default:
			tab.leaves[name] = envTarget{index: idx, key: keyPath}
		}
	}
}

// names lists the table's variable names (less EnvPrefix), sorted.
func (tab envTable) names() []string {
	var names []string
	for n := range tab.leaves {
		names = append(names, n)
	}
	sort.Strings(names)
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
	tab := newEnvTable(reflect.TypeFor[Config]())
	var out []string
	for _, n := range tab.names() {
		out = append(out, EnvPrefix+n)
	}
	for listName, l := range tab.lists {
		list := reflect.ValueOf(cfg).FieldByIndex(l.index)
		for i := range list.Len() {
			id := strings.ToUpper(l.id(list, i))
			for _, n := range l.elem.names() {
				out = append(out, EnvPrefix+listName+"_"+id+"_"+n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// applyEnv applies the NIRPROXY_ variables of environ (NAME=VALUE strings) to cfg. A variable that
// names no key, or a source that the file does not list, is a problem naming the variable.
func applyEnv(cfg *Config, environ []string, ps *Problems) {
	tab := newEnvTable(reflect.TypeFor[Config]())
	root := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		rest := strings.TrimPrefix(name, EnvPrefix)
		if t, ok := tab.leaves[rest]; ok {
			if err := setScalar(root.FieldByIndex(t.index), value); err != nil {
				ps.add(name, "%v (overriding %s)", err, t.key)
			}
			continue
		}
		if t, ok := tab.retired[rest]; ok {
			ps.add(name, "overrides %s, which %s", t.key, t.retired)
			continue
		}
		if applyListEnv(tab, root, name, rest, value, ps) {
			continue
		}
		ps.add(name, "names no configuration key; %s", suggestEnv(rest, tab, EnvPrefix))
	}
}

// applyListEnv applies a variable that addresses a list element by id, like
// NIRPROXY_SOURCES_RXA_URL. It reports false if the variable does not start with a list's name.
func applyListEnv(tab envTable, root reflect.Value, name, rest, value string, ps *Problems) bool {
	for listName, l := range tab.lists {
		if rest != listName && !strings.HasPrefix(rest, listName+"_") {
			continue
		}
		list := root.FieldByIndex(l.index)
		var ids []string
		for i := range list.Len() {
			ids = append(ids, l.id(list, i))
		}
		id, key, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(rest, listName), "_"), "_")
		if id == "" || key == "" {
			ps.add(name, "%s cannot be set from the environment as a whole; override one key of one listed in the file, like %s%s_%s_URL",
				l.key, EnvPrefix, listName, firstOr(ids, "RXA"))
			return true
		}
		if key == "ID" {
			ps.add(name, "the id of an entry of %s cannot be changed from the environment; change it in the file", l.key)
			return true
		}
		if t, ok := l.elem.retired[key]; ok {
			ps.add(name, "overrides %s[].%s, which %s", l.key, t.key, t.retired)
			return true
		}
		t, ok := l.elem.leaves[key]
		if !ok {
			ps.add(name, "an entry of %s has no key %s; %s", l.key, key, suggestEnv(key, l.elem, EnvPrefix+listName+"_"+id+"_"))
			return true
		}
		matched := false
		for i := range list.Len() {
			if !strings.EqualFold(l.id(list, i), id) {
				continue
			}
			matched = true
			if err := setScalar(list.Index(i).FieldByIndex(t.index), value); err != nil {
				ps.add(name, "%v (overriding %s[%d].%s)", err, l.key, i, t.key)
			}
		}
		if !matched {
			known := "the file lists none"
			if len(ids) > 0 {
				known = "the ids are " + strings.Join(ids, ", ")
			}
			ps.add(name, "no entry of %s has the id %s; %s", l.key, id, known)
		}
		return true
	}
	return false
}

// suggestEnv says which variable name may have been meant (prefix and one of tab's names), and
// how names are formed.
func suggestEnv(rest string, tab envTable, prefix string) string {
	best, bestDist := "", 4
	for _, n := range tab.names() {
		if d := editDistance(n, rest); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
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
