package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a configuration: the key's path (like "sources[1].url", or an
// environment variable's name for an override) and what is wrong and how to fix it.
type Problem struct {
	// Path is the key's path, like "sources[1].url"; empty for the file as a whole.
	Path string
	// Message says what is wrong and how to fix it.
	Message string
}

// String is "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is what Load and Parse could not read, as an error; each problem is one line of its
// Error. Callers get at the list with errors.As.
type Problems []Problem

// Error lists the problems, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// add appends a problem.
func (ps *Problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// errOrNil is ps as an error, nil when empty.
func (ps Problems) errOrNil() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// FileError is every problem of a configuration file that could be read: what [Load] could not
// read, then what [Config.Validate] found wrong with the rest.
type FileError struct {
	// Unread are the problems Load reported: syntax, unknown keys and overrides, values of the
	// wrong type, unreadable secret files.
	Unread []Problem
	// Invalid are the problems Validate found in what could be read.
	Invalid []Problem
}

// Error lists every problem, one per line.
func (e *FileError) Error() string { return Problems(slices.Concat(e.Unread, e.Invalid)).Error() }

// LoadValid is how a configuration file is used: [Load], then [Config.Validate]. It returns the
// configuration to run with, or an error: a *FileError listing every problem of a file it could
// read, or else why it could not read it.
func LoadValid(path string, environ []string) (Config, error) {
	cfg, err := Load(path, environ)
	var unread Problems
	if err != nil && !errors.As(err, &unread) {
		return cfg, err
	}
	if invalid := cfg.Validate(); len(unread)+len(invalid) > 0 {
		return cfg, &FileError{Unread: unread, Invalid: invalid}
	}
	return cfg, nil
}

// Load reads the YAML file at path and returns the configuration it describes: the defaults, then
// the file, then the environment overrides in environ (as os.Environ returns them), then the
// secrets named by the *File keys (relative paths are taken from the file's directory, as are
// onboarding.registryFile's and those of the tls sections, the listener's and the sources',
// which Load leaves resolved). It reads the listener's tls files too, to report a certificate,
// key or CA bundle it cannot use (Validate reads the sources'). It does not validate: call
// Validate, or use LoadValid. Everything it could not read is reported at once as [Problems];
// the Config returned with them holds what could be read.
func Load(path string, environ []string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Default(), fmt.Errorf("read config file: %w", err)
	}
	return parse(data, environ, filepath.Dir(path))
}

// Parse is Load for a file's contents; relative *File paths (onboarding.registryFile and the
// tls sections' too) are taken from the current directory.
func Parse(data []byte, environ []string) (Config, error) {
	return parse(data, environ, "")
}

// parse is Load and Parse, with the directory relative secret files are found in.
func parse(data []byte, environ []string, baseDir string) (Config, error) {
	cfg := Default()
	var ps Problems
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		ps.add("", "the file is not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		return cfg, ps
	}
	decode(&ps, &root, reflect.ValueOf(&cfg).Elem(), "")
	applyEnv(&cfg, environ, &ps)
	resolveSecretFiles(&cfg, baseDir, &ps)
	cfg.Onboarding.RegistryFile = fromDir(baseDir, cfg.Onboarding.RegistryFile)
	cfg.Audit.SpoolDir = fromDir(baseDir, cfg.Audit.SpoolDir)
	for _, t := range []*SourceTLS{&cfg.Audit.PARS.TLS, &cfg.Audit.ATNA.TLS} {
		t.CAFile, t.CertFile, t.KeyFile = fromDir(baseDir, t.CAFile), fromDir(baseDir, t.CertFile), fromDir(baseDir, t.KeyFile)
	}
	for i := range cfg.Sources {
		t := &cfg.Sources[i].TLS
		t.CAFile, t.CertFile, t.KeyFile = fromDir(baseDir, t.CAFile), fromDir(baseDir, t.CertFile), fromDir(baseDir, t.KeyFile)
	}
	cfg.TLS.resolve(baseDir)
	_, unreadable := cfg.TLS.read()
	ps = append(ps, unreadable...)
	return cfg, ps.errOrNil()
}

// decode lays the YAML node n over v, key by key, so that keys n does not name keep their
// defaults; path is v's key path. Unlike yaml's own decoder it reports every problem with its key
// path, and a new entry of a list starts from its default (see entryDefault). A mapping given
// for a map replaces its default whole.
func decode(ps *Problems, n *yaml.Node, v reflect.Value, path string) {
	switch {
	case n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
		// An empty file, or "key:" with no value, keeps the defaults.
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			decode(ps, c, v, path)
		}
	case n.Kind == yaml.AliasNode:
		if n.Alias != nil {
			decode(ps, n.Alias, v, path)
		}
	case v.Kind() == reflect.Struct:
		decodeStruct(ps, n, v, path)
	case v.Kind() == reflect.Slice && n.Kind != yaml.SequenceNode:
		ps.add(path, "expected a list, found %s (line %d); write it like [a, b] or as lines starting with \"- \"", describe(n), n.Line)
	case v.Kind() == reflect.Slice:
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		d, fill := entryDefault(v.Type().Elem())
		for i, c := range n.Content {
			if fill {
				s.Index(i).Set(d)
			}
			decode(ps, c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case v.Kind() == reflect.Map:
		m := reflect.MakeMap(v.Type())
		decodeMap(ps, n, m, path)
		v.Set(m)
	case n.Kind != yaml.ScalarNode:
		ps.add(path, "expected a single value, found %s (line %d)", describe(n), n.Line)
	default:
		if err := setScalar(v, n.Value); err != nil {
			ps.add(path, "%s (line %d)", err, n.Line)
		}
	}
}

// decodeStruct lays a mapping over a struct, field by field, following merge keys ("<<: *anchor",
// or a list of anchors).
func decodeStruct(ps *Problems, n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		ps.add(path, "expected keys and values (a mapping), found %s (line %d)", describe(n), n.Line)
		return
	}
	keys := keysOf(v.Type())
	entries(ps, n, path, func(m *yaml.Node) { decode(ps, m, v, path) }, func(k, val *yaml.Node, key string) {
		field := slices.Index(keys, k.Value)
		switch msg, retired := retiredKeys(v.Type())[k.Value]; {
		case field >= 0 && k.Value != "":
			decode(ps, val, v.Field(field), key)
		case retired:
			ps.add(key, "%s (line %d)", msg, k.Line)
		default:
			ps.add(key, "unknown key (line %d); %s", k.Line, suggestKey(keys, k.Value))
		}
	})
}

// entries calls entry with each key of mapping n, its value and its path, once a key given twice
// is reported; a merge key ("<<: *anchor", or a list of anchors) calls merge with each node it
// merges instead.
func entries(ps *Problems, n *yaml.Node, path string, merge func(*yaml.Node), entry func(k, val *yaml.Node, key string)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" {
			merged := []*yaml.Node{val}
			if val.Kind == yaml.SequenceNode {
				merged = val.Content
			}
			for _, m := range merged {
				merge(m)
			}
			continue
		}
		key := joinPath(path, cmp.Or(k.Value, `""`)) // An empty key is named too.
		if line, dup := seen[k.Value]; dup {
			ps.add(key, "given twice (lines %d and %d); keep one", line, k.Line)
			continue
		}
		seen[k.Value] = k.Line
		entry(k, val, key)
	}
}

// decodeMap lays a mapping's entries into map m, each value decoded by the map's element type,
// following merge keys as decodeStruct does; an entry's path is its key's.
func decodeMap(ps *Problems, n *yaml.Node, m reflect.Value, path string) {
	switch {
	case n.Kind == yaml.AliasNode && n.Alias != nil:
		decodeMap(ps, n.Alias, m, path)
		return
	case n.Kind != yaml.MappingNode:
		ps.add(path, "expected keys and values (a mapping), found %s (line %d)", describe(n), n.Line)
		return
	}
	entries(ps, n, path, func(mn *yaml.Node) { decodeMap(ps, mn, m, path) }, func(k, val *yaml.Node, key string) {
		if k.Kind != yaml.ScalarNode {
			ps.add(path, "a key is %s (line %d); write each key as a single value", describe(k), k.Line)
			return
		}
		e := reflect.New(m.Type().Elem()).Elem()
		decode(ps, val, e, key)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(m.Type().Key()), e)
	})
}

// describe names a node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "keys and values (a mapping)"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}

// setScalar sets a string, integer, finite number, boolean or Duration value from its text, or a list whose
// elements are strings (such as []string or []Secret) from a comma-separated text. Its errors never
// contain a secret's value: a Secret or a list of them is a string kind, which never fails.
func setScalar(v reflect.Value, s string) error {
	switch {
	case v.Type() == reflect.TypeFor[Duration]():
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		i, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a whole number; write it like 100", s)
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a finite number; write it like 0.5", s)
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a boolean; write true or false", s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		// Only environment overrides reach here: a comma-separated list.
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		l := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			l.Index(i).SetString(item)
		}
		v.Set(l)
	default:
		return fmt.Errorf("cannot be set from text (a %s)", v.Type())
	}
	return nil
}

// yamlKey is a field's key in the file, or "" for a field the file cannot set.
func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// keysOf is the key of each field of struct type t, by the field's index ("" for a field the file
// cannot set).
func keysOf(t reflect.Type) []string {
	keys := make([]string, t.NumField())
	for i := range keys {
		keys[i] = yamlKey(t.Field(i))
	}
	return keys
}

// suggestKey says what an unknown key may have meant, and which of keys are known.
func suggestKey(keys []string, key string) string {
	known := strings.Join(slices.DeleteFunc(slices.Sorted(slices.Values(keys)), func(k string) bool { return k == "" }), ", ")
	if best := closest(key, keys, 3); best != "" {
		return fmt.Sprintf("did you mean %s? The keys here are %s", best, known)
	}
	return "the keys here are " + known
}

// closest is the first of names nearest to s, case aside, if fewer than maxDist edits away; or "".
func closest(s string, names []string, maxDist int) string {
	best := ""
	for _, n := range names {
		if d := editDistance(strings.ToLower(n), strings.ToLower(s)); n != "" && d < maxDist {
			best, maxDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// joinPath appends a key to a key path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolveSecretFiles reads each secret that a *File key names (signingKeyFile names the file of
// signingKey): a secret's trailing newlines are dropped; a list's keys are its lines, trimmed,
// blank ones and comments (#) left out. A secret given both directly (or by an environment
// override) and by file is a problem, as is an unreadable or empty file. Relative paths are taken
// from baseDir.
func resolveSecretFiles(cfg *Config, baseDir string, ps *Problems) {
	keys := leaves(reflect.ValueOf(cfg).Elem(), "", "")
	for i := range cfg.Sources {
		keys = append(keys, leaves(reflect.ValueOf(&cfg.Sources[i]).Elem(), fmt.Sprintf("sources[%d]", i), "")...)
	}
	byPath := map[string]reflect.Value{}
	for _, k := range keys {
		byPath[k.path] = k.v
	}
	for _, k := range keys {
		key, isFile := strings.CutSuffix(k.path, "File")
		dst := byPath[key]
		if !isFile || k.v.String() == "" || !dst.IsValid() || dst.Type() != reflect.TypeFor[Secret]() && dst.Type() != reflect.TypeFor[[]Secret]() {
			continue
		}
		if dst.Len() > 0 {
			ps.add(key, "given both directly and by %s; keep one of them", k.path)
			continue
		}
		file := fromDir(baseDir, k.v.String())
		data, unreadable := readFile(file)
		var list []Secret
		for line := range strings.Lines(string(data)) {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				list = append(list, Secret(line))
			}
		}
		secret := strings.TrimRight(string(data), "\r\n")
		switch {
		case unreadable != "":
			ps.add(k.path, "%s", unreadable)
		case dst.Kind() == reflect.Slice && len(list) == 0:
			ps.add(k.path, "%s holds no key; put one key on each line, the one to use first", file)
		case dst.Kind() == reflect.Slice:
			dst.Set(reflect.ValueOf(list))
		case secret == "":
			ps.add(k.path, "%s is empty; put the secret in it", file)
		default:
			dst.SetString(secret)
		}
	}
}

// fromDir is the path of file taken from directory dir when it is relative; "" stays "".
func fromDir(dir, file string) string {
	if file == "" || filepath.IsAbs(file) || dir == "" {
		return file
	}
	return filepath.Join(dir, file)
}

// readFile reads a file a key names; unreadable, when it cannot, says why and what to check.
func readFile(file string) (data []byte, unreadable string) {
	data, err := os.ReadFile(file)
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if err != nil {
		return nil, fmt.Sprintf("cannot read %s: %v; check the path and the file's permissions", file, err)
	}
	return data, ""
}
