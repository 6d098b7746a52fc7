package config

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nirproxy/nirproxy/policy/authn"
)

// Package authn judges the token issuers (authn.Config.Validate, what authn.New refuses), naming
// the field it refuses by its Go name (Options.KeyMaxAge, Config.Issuers[1]). The checks below
// ask it, and turn those names into key paths. It reports one field of an issuer per call, so
// each group of an issuer's keys is tried alone, in an issuer it otherwise accepts (a probe), to
// name every problem at once.

// checkAuthentication checks the auth section: its own keys, then the issuers, as authn judges
// them.
func (c Config) checkAuthentication(ps *Problems) {
	a := c.Authentication
	checkPositive(ps, "auth.tokenCacheTTL", a.CacheTTL, "5m")
	if a.CacheSize < 1 {
		ps.add("auth.tokenCacheSize", "is %d; it must be at least 1, like 10000", a.CacheSize)
	}
	checkPositive(ps, "auth.httpTimeout", a.HTTPTimeout, "5s")
	if len(a.Issuers) == 0 {
		return
	}
	whole := c.Authn(time.Now, nil)
	if authnAccepts(whole) == nil {
		return
	}
	var found Problems
	for i, iss := range a.Issuers {
		n := len(found)
		checkTokenIssuer(&found, fmt.Sprintf("auth.issuers[%d]", i), iss)
		if len(found) > n {
			// Stand in an issuer authn accepts, to judge what is left: rules across issuers
			// (the same issuer twice), and any the probes do not isolate.
			whole.Issuers[i] = probeIssuer()
			whole.Issuers[i].Issuer += fmt.Sprintf("/%d", i)
		}
	}
	if err := authnAccepts(whole); err != nil {
		pr := authnProblem(err, "")
		if strings.HasSuffix(pr.Path, "].issuer") && strings.HasSuffix(pr.Message, "twice") {
			pr.Message += "; list each issuer once"
		}
		found = append(found, pr)
	}
	// authn also refuses the section's own keys checked above: they are said once.
	checked := slices.Clone(*ps)
	for _, f := range found {
		if !slices.ContainsFunc(checked, func(p Problem) bool { return p.Path == f.Path }) {
			*ps = append(*ps, f)
		}
	}
}

// authnAccepts is authn's judgement of cfg: nil when authn.New would accept it.
func authnAccepts(cfg authn.Config) error { return cfg.Validate() }

// probeIssuer is an issuer authn accepts; a probe copies one group of an entry's settings into
// it.
func probeIssuer() authn.Options {
	return authn.Options{
		Issuer:     "https://issuer.invalid",
		JWKSURL:    "https://issuer.invalid/jwks",
		Audiences:  []string{"nirproxy"},
		Algorithms: []string{"RS256"},
		ClockSkew:  time.Minute,
		KeyRefresh: time.Minute,
		KeyMaxAge:  time.Hour,
		Profile:    authn.ProfileIUA,
	}
}

// probe is authn's judgement of probeIssuer with set applied to it.
func probe(set func(o *authn.Options)) error {
	o := probeIssuer()
	set(&o)
	return authnAccepts(authn.Config{
		Issuers:    []authn.Options{o},
		CacheTTL:   time.Minute,
		CacheSize:  1,
		Clock:      time.Now,
		HTTPClient: http.DefaultClient,
	})
}

// checkTokenIssuer adds the problems authn finds in one issuer entry at path p, trying each
// group of its keys alone: the issuer, where its keys are, its audiences, each algorithm, its
// clock skew, its key ages, and its profile's settings.
func checkTokenIssuer(ps *Problems, p string, iss TokenIssuer) {
	o := iss.Options()
	hints := issuerHints()
	report := func(err error) {
		if err != nil {
			pr := authnProblem(err, p)
			if hint := hints[strings.TrimPrefix(pr.Path, p+".")]; hint != "" {
				pr.Message += "; " + hint
			}
			*ps = append(*ps, pr)
		}
	}
	report(probe(func(b *authn.Options) { b.Issuer = o.Issuer }))
	report(probe(func(b *authn.Options) { b.JWKSURL, b.Discovery = o.JWKSURL, o.Discovery }))
	report(probe(func(b *authn.Options) { b.Audiences = o.Audiences }))
	if len(o.Algorithms) == 0 {
		report(probe(func(b *authn.Options) { b.Algorithms = nil }))
	}
	for j, alg := range o.Algorithms {
		if err := probe(func(b *authn.Options) { b.Algorithms = []string{alg} }); err != nil {
			// authn says `Options.Algorithms names "X": only ... are accepted`: keep what it
			// accepts, and name the entry.
			_, accepted, _ := strings.Cut(err.Error(), `": `)
			msg := fmt.Sprintf("%q is not accepted; %s", alg, cmp.Or(accepted, err.Error()))
			if up := strings.ToUpper(strings.TrimSpace(alg)); up != alg && probe(func(b *authn.Options) { b.Algorithms = []string{up} }) == nil {
				msg += "; did you mean " + up + "?"
			}
			ps.add(fmt.Sprintf("%s.algorithms[%d]", p, j), "%s", msg)
		}
	}
	report(probe(func(b *authn.Options) { b.ClockSkew = o.ClockSkew }))
	report(probe(func(b *authn.Options) { b.KeyRefresh, b.KeyMaxAge = o.KeyRefresh, o.KeyMaxAge }))
	switch o.Profile {
	case authn.ProfileClaims:
		valid := authn.ClaimNames{Subject: "sub", Role: "role", Organisation: "org", Purpose: "purpose", System: "azp"}
		for _, names := range eachField(valid, o.Claims) {
			report(probe(func(b *authn.Options) { b.Profile, b.Claims = o.Profile, names }))
		}
		report(probe(func(b *authn.Options) { b.Profile, b.Claims, b.CIS2 = o.Profile, valid, o.CIS2 }))
	case authn.ProfileCIS2:
		valid := authn.CIS2Options{MinIDAssuranceLevel: 3, ACRPrefix: "AAL3_", UserinfoURL: "https://issuer.invalid/userinfo"}
		for _, cis2 := range eachField(valid, o.CIS2) {
			report(probe(func(b *authn.Options) { b.Profile, b.CIS2 = o.Profile, cis2 }))
		}
		report(probe(func(b *authn.Options) { b.Profile, b.CIS2, b.Claims = o.Profile, valid, o.Claims }))
	default:
		if err := probe(func(b *authn.Options) { b.Profile, b.Claims, b.CIS2 = o.Profile, o.Claims, o.CIS2 }); err != nil {
			pr := authnProblem(err, p)
			if pr.Path == p+".profile" {
				pr.Message += didYouMean(o.Profile, []string{authn.ProfileCIS2, authn.ProfileIUA, authn.ProfileClaims})
			}
			*ps = append(*ps, pr)
		}
	}
}

// eachField is one copy of valid for each field of struct type T, with that field taken from
// given.
func eachField[T any](valid, given T) []T {
	n := reflect.TypeFor[T]().NumField()
	out := make([]T, n)
	for i := range n {
		out[i] = valid
		reflect.ValueOf(&out[i]).Elem().Field(i).Set(reflect.ValueOf(given).Field(i))
	}
	return out
}

// authnField matches how authn's errors name a setting: Config.CacheTTL, Config.Issuers[1],
// Options.CIS2.ACRPrefix.
var authnField = regexp.MustCompile(`\b(?:Config|Options)(?:\.[A-Z][A-Za-z0-9]*(?:\[[0-9]+\])?)+`)

// authnIssuerPrefix starts an error about one issuer of an authn.Config.
var authnIssuerPrefix = regexp.MustCompile(`Config\.Issuers\[([0-9]+)\]: `)

// authnProblem turns an error of authn.New into a problem: the first setting it names is the
// problem's path, and every setting it names is written as its key (an issuer's relative to the
// issuer). issuer is the path of the issuer entry the error is about; "" takes it from the
// error.
func authnProblem(err error, issuer string) Problem {
	msg := strings.TrimPrefix(err.Error(), "configure authentication: ")
	if m := authnIssuerPrefix.FindStringSubmatchIndex(msg); m != nil {
		if issuer == "" {
			issuer = "auth.issuers[" + msg[m[2]:m[3]] + "]"
		}
		msg = msg[m[1]:]
	}
	path := ""
	msg = authnField.ReplaceAllStringFunc(msg, func(field string) string {
		key, full, ok := authnKey(field, issuer)
		if !ok {
			return field
		}
		if path == "" {
			path = full
		}
		return key
	})
	if path == "" {
		path = cmp.Or(issuer, "auth")
	}
	key := strings.TrimPrefix(strings.TrimPrefix(path, issuer), ".")
	if rest, ok := strings.CutPrefix(msg, key+" "); ok && key != "" {
		msg = rest
	}
	return Problem{Path: path, Message: msg}
}

// authnKey is the key of a setting authn names by its Go name: an issuer's (Options.X) relative
// to the issuer at path issuer, the auth section's (Config.X) in full; and its full path.
func authnKey(field, issuer string) (key, full string, ok bool) {
	root, rest, _ := strings.Cut(field, ".")
	t, base := reflect.TypeFor[Authentication](), "auth"
	if root == "Options" {
		t, base = reflect.TypeFor[TokenIssuer](), issuer
	}
	for name := range strings.SplitSeq(rest, ".") {
		name, index, _ := strings.Cut(name, "[")
		f, found := t.FieldByName(name)
		if !found || yamlKey(f) == "" {
			return "", "", false
		}
		key = joinPath(key, yamlKey(f))
		if index != "" {
			key += "[" + index
		}
		if t = f.Type; t.Kind() == reflect.Slice {
			t = t.Elem()
		}
	}
	if root == "Config" {
		full = joinPath(base, key)
		return full, full, true
	}
	return key, joinPath(base, key), true
}

// issuerHints are what to write for an issuer's keys whose authn refusal does not say it.
func issuerHints() map[string]string {
	claim := func(what, like string) string {
		return fmt.Sprintf("write the name of the top-level claim that holds %s, like %s", what, like)
	}
	return map[string]string{
		"issuer":              "write it exactly as the issuer's tokens state iss (CIS2's includes :443)",
		"claims.subject":      claim("the user's identifier", "sub"),
		"claims.role":         claim("the national RBAC job role", "role"),
		"claims.organisation": claim("the ODS code of the user's organisation", "org"),
		"claims.purpose":      claim("the purpose of use", "purpose_of_use"),
		"claims.system":       claim("the calling system's client id", "azp"),
		"cis2.userinfoURL":    "CIS2's is <issuer>/userinfo",
	}
}

// issuerWarnings are the issuers' valid but risky settings: a CIS2 issuer without a port, since
// CIS2 states its issuer with ":443" and issuers are compared exactly.
func issuerWarnings(ps *Problems, a Authentication) {
	for i, iss := range a.Issuers {
		u, err := url.Parse(iss.Issuer)
		if iss.Profile == authn.ProfileCIS2 && err == nil && u.Host != "" && u.Port() == "" {
			ps.add(fmt.Sprintf("auth.issuers[%d].issuer", i), "has no port, but CIS2 states its issuer with one "+
				"(https://am.nhsidentity.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare) "+
				"and issuers are compared exactly; check it against the iss of one of its tokens, or every token from it will be refused")
		}
	}
}
