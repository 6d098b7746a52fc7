package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
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

// Load reads the YAML file at path and returns the configuration it describes: the defaults, then
// the file, then the environment overrides in environ (as os.Environ returns them), then the
// secrets named by the *File keys (relative paths are taken from the file's directory). It does
// not validate: call Validate. Everything it could not read is reported at once as [Problems];
// the Config returned with them holds what could be read.
func Load(path string, environ []string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Default(), fmt.Errorf("read config file: %w", err)
	}
	return parse(data, environ, filepath.Dir(path))
}

// Parse is Load for a file's contents; relative *File paths are taken from the current directory.
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
	d := decoder{problems: &ps}
	d.decode(&root, reflect.ValueOf(&cfg).Elem(), "")
	applyEnv(&cfg, environ, &ps)
	resolveSecretFiles(&cfg, baseDir, &ps)
	return cfg, ps.errOrNil()
}

// decoder lays a YAML node tree over a Go value, key by key, so that keys the file does not name
// keep their defaults. Unlike yaml's own decoder it reports every problem with its key path.
type decoder struct {
	problems *Problems
}

// decode lays n over v; path is v's key path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	switch n.Kind {
	case 0:
		return // An empty file.
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.decode(c, v, path)
		}
		return
	case yaml.AliasNode:
		if n.Alias != nil {
			d.decode(n.Alias, v, path)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with no value keeps the default.
	}
	switch {
	case v.Type() == reflect.TypeFor[Duration]() || v.Kind() != reflect.Struct && v.Kind() != reflect.Slice:
		if n.Kind != yaml.ScalarNode {
			d.problems.add(path, "expected a single value, found %s (line %d)", describe(n), n.Line)
			return
		}
		if err := setScalar(v, n.Value); err != nil {
			d.problems.add(path, "%s (line %d)", err, n.Line)
		}
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case v.Kind() == reflect.Slice:
		d.decodeSlice(n, v, path)
	}
}

// decodeStruct lays a mapping over a struct, field by field.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problems.add(path, "expected keys and values (a mapping), found %s (line %d)", describe(n), n.Line)
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "<<" && k.Kind == yaml.ScalarNode {
			d.decodeMerge(val, v, path)
			continue
		}
		key := joinPath(path, k.Value)
		if line, dup := seen[k.Value]; dup {
			d.problems.add(key, "given twice (lines %d and %d); keep one", line, k.Line)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fieldByKey(v, k.Value)
		if msg, retired := retiredKeys(v.Type())[k.Value]; !ok && retired {
			d.problems.add(key, "%s (line %d)", msg, k.Line)
			continue
		}
		if !ok {
			d.problems.add(key, "unknown key (line %d); %s", k.Line, suggestKey(v.Type(), k.Value))
			continue
		}
		d.decode(val, f, key)
	}
}

// decodeMerge applies a YAML merge key ("<<: *anchor", or a list of anchors) to a struct.
func (d *decoder) decodeMerge(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			d.decode(c, v, path)
		}
		return
	}
	d.decode(n, v, path)
}

// decodeSlice replaces a list with the sequence's elements; elements that implement defaulter
// start from their defaults.
func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.problems.add(path, "expected a list, found %s (line %d); write it like [a, b] or as lines starting with \"- \"", describe(n), n.Line)
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		e := s.Index(i)
		if df, ok := e.Addr().Interface().(defaulter); ok {
			df.applyDefaults()
		}
		d.decode(c, e, fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
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

// fieldByKey finds the field of struct v whose yaml key is key.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if yamlKey(t.Field(i)) == key {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
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

// keysOf lists the yaml keys of struct type t.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// suggestKey says what an unknown key may have meant, and which keys are known.
func suggestKey(t reflect.Type, key string) string {
	keys := keysOf(t)
	best, bestDist := "", 3
	for _, k := range keys {
		if strings.EqualFold(k, key) {
			best = k
			break
		}
		if dist := editDistance(strings.ToLower(k), strings.ToLower(key)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	if best != "" {
		return fmt.Sprintf("did you mean %s? The keys here are %s", best, strings.Join(sorted, ", "))
	}
	return "the keys here are " + strings.Join(sorted, ", ")
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

// resolveSecretFiles reads the secrets that *File keys name. A secret given both inline (or by an
// environment override) and by file is a problem, as is an unreadable or empty file.
func resolveSecretFiles(cfg *Config, baseDir string, ps *Problems) {
	resolveSecretFile(&cfg.SigningKey, cfg.SigningKeyFile, "signingKey", "signingKeyFile", baseDir, ps)
	for i := range cfg.Sources {
		a := &cfg.Sources[i].Auth
		p := fmt.Sprintf("sources[%d].auth.", i)
		resolveSecretFile(&a.Password, a.PasswordFile, p+"password", p+"passwordFile", baseDir, ps)
		resolveSecretFile(&a.Token, a.TokenFile, p+"token", p+"tokenFile", baseDir, ps)
	}
	c, r := &cfg.Cache, &cfg.Cache.Redis
	resolveSecretFile(&c.KeySecret, c.KeySecretFile, "cache.keySecret", "cache.keySecretFile", baseDir, ps)
	resolveSecretListFile(&c.EncryptionKeys, c.EncryptionKeysFile, "cache.encryptionKeys", "cache.encryptionKeysFile", baseDir, ps)
	resolveSecretFile(&r.Password, r.PasswordFile, "cache.redis.password", "cache.redis.passwordFile", baseDir, ps)
	resolveSecretFile(&r.SentinelPassword, r.SentinelPasswordFile, "cache.redis.sentinelPassword", "cache.redis.sentinelPasswordFile", baseDir, ps)
}

// resolveSecretFile reads one secret from file into *dst.
func resolveSecretFile(dst *Secret, file, key, fileKey, baseDir string, ps *Problems) {
	if file == "" {
		return
	}
	if *dst != "" {
		ps.add(key, "given both directly and by %s; keep one of them", fileKey)
		return
	}
	data, file, ok := readSecretFile(file, fileKey, baseDir, ps)
	if !ok {
		return
	}
	s := strings.TrimRight(data, "\r\n")
	if s == "" {
		ps.add(fileKey, "%s is empty; put the secret in it", file)
		return
	}
	*dst = Secret(s)
}

// resolveSecretListFile reads a list of secrets from file into *dst: one a line, in order, with
// spaces trimmed; blank lines and lines starting with # are left out.
func resolveSecretListFile(dst *[]Secret, file, key, fileKey, baseDir string, ps *Problems) {
	if file == "" {
		return
	}
	if len(*dst) > 0 {
		ps.add(key, "given both directly and by %s; keep one of them", fileKey)
		return
	}
	data, file, ok := readSecretFile(file, fileKey, baseDir, ps)
	if !ok {
		return
	}
	var list []Secret
	for line := range strings.Lines(data) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			list = append(list, Secret(line))
		}
	}
	if len(list) == 0 {
		ps.add(fileKey, "%s holds no key; put one key on each line, the one to use first", file)
		return
	}
	*dst = list
}

// readSecretFile reads a secret file, relative to baseDir unless absolute. It reports a file it
// cannot read as a problem of fileKey, and returns the path it read.
func readSecretFile(file, fileKey, baseDir string, ps *Problems) (data, path string, ok bool) {
	if !filepath.IsAbs(file) && baseDir != "" {
		file = filepath.Join(baseDir, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		ps.add(fileKey, "cannot read %s: %v; check the path and the file's permissions", file, err)
		return "", file, false
	}
	return string(b), file, true
}
